from __future__ import annotations

import hashlib

import pytest

from monai_ilm.evaluation import EvaluationRun


def make(tmp_path, **kwargs):
    fields = dict(
        protocol="finetune",
        dataset_name="nih",
        dataset_dir=str(tmp_path),
        output_dir=str(tmp_path / "out"),
        method="mse",
    )
    return EvaluationRun(**{**fields, **kwargs})


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"protocol": "zero_shot"}, ValueError, "protocol"),
        ({"dataset_name": "mnist"}, ValueError, "dataset_name"),
        ({"label_fraction": 0.0}, ValueError, "label_fraction"),
        ({"pretrained_checkpoint": "/nowhere/model.pt"}, FileNotFoundError, "pretrain 'mse' first"),
    ],
)
def test_bad_settings_are_named(tmp_path, kwargs, error, match):
    with pytest.raises(error, match=match):
        make(tmp_path, **kwargs)


def test_feature_reuse_needs_the_finetune_outputs(tmp_path):
    run = make(tmp_path, protocol="ks", label_fraction=0.01)
    with pytest.raises(
        FileNotFoundError, match="run the finetune protocol for method 'mse', seed 0, label_fraction 0.01"
    ):
        run._finetune_output("predictions.npz")


def test_run_ids_and_folders_are_per_cell(tmp_path):
    run = make(tmp_path, label_fraction=0.06, seed=2)
    assert run.run_id == "nih-finetune-mse-seed2-frac0.06"
    assert run.cell_dir() == tmp_path / "out" / "evaluation" / "finetune" / "mse_seed2_frac0.06"
    assert run.cell_dir("finetune", 1.0).name == "mse_seed2_frac1"


@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_amp_reaches_the_downstream_training(tmp_path, monkeypatch, protocol):
    import monai_ilm.evaluation.protocols as protocols

    calls = []
    monkeypatch.setattr(protocols, "run_downstream", lambda *args, **kwargs: calls.append(kwargs) or _Stop())
    monkeypatch.setattr(EvaluationRun, "loader", lambda self, split, train=False: split)
    monkeypatch.setattr(EvaluationRun, "check_data", lambda self: None)  # no data set on disk
    with pytest.raises(_StopError):
        make(tmp_path, protocol=protocol, method="supervised", amp=True, backbone="resnet18").run()
    assert calls[0]["amp"] is True and calls[0]["device"].type in ("cpu", "cuda")


class _StopError(Exception):
    pass


class _Stop:
    """Stands for a DownstreamResult; saving its outputs ends the run."""

    def __getattr__(self, name):
        raise _StopError(name)


def test_fingerprint_follows_the_checkpoint_content_and_the_settings_used(tmp_path):
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights after 2 epochs")
    run = make(tmp_path, pretrained_checkpoint=str(checkpoint))
    before = run.fingerprint()
    assert run.input_hashes() == {"pretrained_checkpoint": hashlib.sha256(b"weights after 2 epochs").hexdigest()}
    assert make(tmp_path, pretrained_checkpoint=str(checkpoint), cka_kernel="rbf").fingerprint() == before  # unused
    assert make(tmp_path, pretrained_checkpoint=str(checkpoint), max_epochs=5).fingerprint() != before
    moved = tmp_path / "elsewhere.pt"
    moved.write_bytes(b"weights after 2 epochs")
    assert make(tmp_path, pretrained_checkpoint=str(moved), output_dir=str(tmp_path / "o2")).fingerprint() == before
    checkpoint.write_bytes(b"weights after re-pretraining with another lambda")
    assert run.fingerprint() != before


def test_ks_is_fingerprinted_by_the_predictions_it_compares(tmp_path):
    run = make(tmp_path, protocol="ks", label_fraction=0.01, method="supervised")
    with pytest.raises(FileNotFoundError, match="predictions"):
        run.fingerprint()
    for fraction in (0.01, 1.0):
        run.cell_dir("finetune", fraction).mkdir(parents=True)
        (run.cell_dir("finetune", fraction) / "predictions.npz").write_bytes(b"p%g" % fraction)
    assert set(run.input_hashes()) == {"predictions", "predictions_full_labels"}
    assert make(tmp_path, protocol="ks", label_fraction=0.01, method="supervised", lr=0.5).fingerprint() == (
        run.fingerprint()
    )
