from __future__ import annotations

import hashlib

import pytest

from monai_ilm.evaluation import EvaluationRun
from tests.evaluation._downstream import sample_nih_cell


def make(tmp_path, **kwargs):
    return sample_nih_cell(tmp_path, 10, 8, **kwargs)  # a fingerprint reads the identity of the data set (#23)


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
        make(
            tmp_path, protocol=protocol, method="supervised", amp=True, backbone="resnet18", linear_features="augmented"
        ).run()
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


@pytest.mark.parametrize("standardize", [True, False])
def test_the_head_setting_reaches_the_linear_and_probe_heads_and_the_fingerprint(tmp_path, monkeypatch, standardize):
    import monai_ilm.evaluation.protocols as protocols

    networks, probes = [], []
    monkeypatch.setattr(
        protocols, "run_downstream", lambda network, *args, **kwargs: networks.append(network) or _Stop()
    )
    monkeypatch.setattr(protocols, "probe_features", lambda *args, **kwargs: probes.append(kwargs) or _Stop())
    monkeypatch.setattr(protocols, "extract_stage_features", lambda *args, **kwargs: None)
    monkeypatch.setattr(EvaluationRun, "loader", lambda self, split, train=False: split)
    monkeypatch.setattr(EvaluationRun, "check_data", lambda self: None)
    for protocol in ("linear", "probe"):
        run = make(
            tmp_path,
            protocol=protocol,
            method="supervised",
            backbone="resnet18",
            standardize_features=standardize,
            linear_features="augmented",  # the cached default goes through probe_features (test_linear.py)
        )
        with pytest.raises(_StopError):
            run.run()
    head = networks[0].head
    assert (head.standardize, head.init) == ((True, "prior") if standardize else (False, "default"))
    assert (probes[0]["standardize"], probes[0]["head_init"]) == (head.standardize, head.init)
    assert run.settings()["standardize_features"] is standardize
    other = make(
        tmp_path, protocol="probe", method="supervised", backbone="resnet18", standardize_features=not standardize
    )
    assert other.fingerprint() != run.fingerprint()
    with pytest.raises(ValueError, match="standardize_features: expected true or false, got 'no'"):
        make(tmp_path, standardize_features="no")
