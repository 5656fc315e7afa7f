"""The experiment runner: plan, run, skip what is done, print commands."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest

from monai_ilm.cli import main
from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.experiment import Cell, bundles_root, parse_overrides, plan_cells, run_experiment
from monai_ilm.results import read_results
from monai_ilm.results.tables import paper_tables


def test_plan_respects_dependencies():
    cells = plan_cells(["moco", "mse"], [0.01, 0.06], [0, 1])
    order = [(c.protocol, c.method, c.seed, c.label_fraction) for c in cells]
    assert order[:4] == [
        ("pretrain", "moco", 0, 1.0),
        ("pretrain", "mse", 0, 1.0),
        ("pretrain", "moco", 1, 1.0),
        ("pretrain", "mse", 1, 1.0),
    ]
    for protocol, method, seed, fraction in order:
        if protocol in ("feature_reuse", "ks"):
            needed = [("finetune", method, seed, fraction)] + (
                [("finetune", method, seed, 1.0)] if protocol == "ks" else []
            )
            assert all(order.index(n) < order.index((protocol, method, seed, fraction)) for n in needed)
    # per seed: 3 fractions x (2 methods + supervised) finetune, 2 x (linear, probe), 2 x 2 feature reuse, 2 x 2 ks
    assert len(cells) == 4 + 2 * (9 + 4 + 4 + 4)


def test_plan_rejects_bad_input():
    with pytest.raises(ValueError, match="method"):
        plan_cells(["simclr"], [0.1], [0])
    with pytest.raises(ValueError):
        plan_cells(["mse"], [1.5], [0])


def test_print_commands(tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    main(
        [
            "experiment",
            "--bundle",
            "nih_chestxray_ilm",
            "--dataset_dir",
            str(data),
            "--output_dir",
            str(tmp_path / "out"),
            "--methods",
            "mse",
            "--fractions",
            "0.01",
            "--print_commands",
            "--quick",
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(plan_cells(["mse"], [0.01], [0]))
    assert all("-m monai.bundle run --config_file" in line for line in lines)
    assert "evaluate.json" in lines[1] and "--protocol finetune" in lines[1] and "--label_fraction 1.0" in lines[1]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # the real runner end to end: pretraining and every evaluation cell
def test_quick_experiment_without_nih_lists_fills_the_four_tables_and_resumes(tmp_path):
    data = tmp_path / "nih"
    make_nih_sample(data, n_patients=40, image_size=64, seed=0)
    for optional in ("train_val_list.txt", "test_list.txt"):  # as in Kaggle's sample download or a user's subset
        (data / optional).unlink()
    bundle = bundles_root() / "nih_chestxray_ilm"
    # one epoch of pretraining and of each evaluation instead of quick.json's 2 and 3: no assertion counts epochs
    short = {"max_epochs": 1, "evaluation_epochs": 1}
    ran = run_experiment(bundle, data, tmp_path / "out", ["mse"], [0.06], [0], quick=True, overrides=short)
    assert len(ran) == len(plan_cells(["mse"], [0.06], [0]))
    results = read_results(tmp_path / "out" / "results")
    assert set(results["protocol"]) == {"linear", "finetune", "probe", "feature_reuse", "ks"}
    assert set(results["method"]) == {"mse", "supervised"}
    tables = paper_tables(results)
    assert set(tables) == {"linear", "finetune", "feature_reuse", "probe"}
    assert tables["probe"].value.shape == (1, 4)  # blocks 1-4
    finetune = results.query("protocol == 'finetune' and kind == 'run' and method == 'mse'")
    assert {"mean_auc", "auc_Effusion"} <= set(finetune["metric"])  # per-finding rows beside the mean
    assert set(results["kind"]) == {"run", "seed_mean", "paired_difference"}
    assert (tmp_path / "out" / "results" / "nih-finetune-mse-seed0-frac0.06.replicates.npz").is_file()
    reuse = results.query("protocol == 'feature_reuse' and kind == 'run'")
    assert sorted(reuse.groupby("block")["metric"].size()) == [4] * 4  # the 4 x 4 block matrix of linear CKA
    assert set(reuse["metric"]) == {"cka_linear", "cka_linear@b1", "cka_linear@b2", "cka_linear@b3", "cka_linear@b4"}
    assert run_experiment(bundle, data, tmp_path / "out", ["mse"], [0.06], [0], quick=True, overrides=short) == []

    # a setting that only feature reuse uses: exactly that cell runs again, the old rows are kept aside
    changed = {**short, "cka_kernel": "linear_debiased"}
    ran = run_experiment(bundle, data, tmp_path / "out", ["mse"], [0.06], [0], quick=True, overrides=changed)
    assert [(c.protocol, c.method, c.label_fraction) for c in ran] == [("feature_reuse", "mse", 0.06)]
    results = read_results(tmp_path / "out" / "results")
    plain = {m for m in results.query("protocol == 'feature_reuse'")["metric"] if "@" not in m}
    assert plain == {"cka_linear", "cka_linear_debiased"}  # linear always, plus the configured kernel
    reasons = next((tmp_path / "out" / "superseded").glob("*/reasons.txt")).read_text()
    assert 'changed: cka_kernel "linear" -> "linear_debiased"' in reasons
    assert run_experiment(bundle, data, tmp_path / "out", ["mse"], [0.06], [0], quick=True, overrides=changed) == []


class _FakePretraining:
    """Stands in for the pretraining bundle: writes the files a finished run leaves, their content from max_epochs."""

    def __init__(self):
        self.calls = []

    def __call__(self, bundle, configs, arguments):
        self.calls.append(dict(arguments))
        models = (
            Path(arguments["output_dir"]) / "pretrain" / f"{arguments['method']}_seed{arguments['seed']}" / "models"
        )
        models.mkdir(parents=True, exist_ok=True)
        for name in ("model.pt", "checkpoint_final.pt"):
            (models / name).write_text(f"epochs {arguments.get('max_epochs', 2)}")


def _pretraining_experiment(data, out, caplog):
    """A runner of the one pretraining cell ``mse`` seed 0 with overrides; returns (cells run, log)."""
    bundle = bundles_root() / "nih_chestxray_ilm"

    def experiment(extra_configs=(), **overrides):
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="monai_ilm.experiment"):
            ran = run_experiment(
                bundle, data, out, ["mse"], [1.0], [0], quick=True, extra_configs=extra_configs, overrides=overrides
            )
        return len(ran), caplog.text

    return experiment


@pytest.fixture
def fake_pretraining(monkeypatch):
    fake = _FakePretraining()
    monkeypatch.setattr("monai_ilm.experiment.run_bundle", fake)
    monkeypatch.setattr("monai_ilm.experiment.plan_cells", lambda *a, **k: [Cell("pretrain", "mse", 0)])
    monkeypatch.setattr("monai_ilm.results.seeds.summarize", lambda *a, **k: [])
    return fake


def test_pretraining_is_reused_only_with_the_same_settings(tmp_path, fake_pretraining, caplog):
    data, out = tmp_path / "data", tmp_path / "out"
    make_nih_sample(data, n_patients=10, image_size=8, seed=0)  # the fingerprint reads the data set's identity
    experiment = _pretraining_experiment(data, out, caplog)

    assert experiment()[0] == 1
    count, log = experiment()
    assert count == 0 and "reuse pretrain mse seed 0: fingerprint" in log
    count, log = experiment(evaluation_epochs=7)  # an evaluation setting does not touch pretraining
    assert count == 0
    count, log = experiment(max_epochs=3)
    assert count == 1 and "run pretrain mse seed 0: changed: max_epochs 2 -> 3" in log
    superseded = next((out / "superseded").glob("*/pretrain/mse_seed0/models/model.pt"))
    assert superseded.read_text() == "epochs 2"  # the old run is kept, out of the way
    record = json.loads((out / "pretrain" / "mse_seed0" / "run_settings.json").read_text())
    assert record["status"] == "done" and record["settings"]["max_epochs"] == 3 and record["code_version"]["torch"]


def test_a_run_made_without_the_runner_is_not_reused_silently(tmp_path, fake_pretraining, caplog):
    out, data = tmp_path / "out", make_nih_sample(tmp_path / "data", n_patients=10, image_size=8, seed=0)
    fake_pretraining("bundle", [], {"output_dir": out, "method": "mse", "seed": 0, "max_epochs": 100})  # the demo's
    with caplog.at_level(logging.INFO, logger="monai_ilm.experiment"):
        ran = run_experiment(bundles_root() / "nih_chestxray_ilm", data, out, ["mse"], [1.0], [0], quick=True)
    assert len(ran) == 1 and "made without a fingerprint" in caplog.text


def test_overrides_reach_every_printed_command(tmp_path, capsys):
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"image_size": 128}))
    main(
        [
            "experiment",
            "--bundle",
            "nih_chestxray_ilm",
            "--dataset_dir",
            str(tmp_path),
            "--methods",
            "mse",
            "--fractions",
            "0.01",
            "--print_commands",
            "--config",
            str(extra),
            "--set",
            "max_epochs=50",
            "--set",
            'layers=["layer3","layer4"]',
        ]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines and all(str(extra) in line for line in lines)
    # each cell is given the settings its workflow reads: max_epochs is pretraining's alone
    pretraining = [line for line in lines if "evaluate.json" not in line]
    assert pretraining and all("--max_epochs 50" in line for line in pretraining)
    assert not any("--max_epochs 50" in line for line in lines if line not in pretraining)
    assert all("""--layers '["layer3", "layer4"]'""" in line for line in pretraining)


def test_parse_overrides():
    assert parse_overrides(["a=3", "b=x", "c=[1, 2]", "d=true"]) == {"a": 3, "b": "x", "c": [1, 2], "d": True}
    with pytest.raises(ValueError, match="--set: expected KEY=VALUE"):
        parse_overrides(["max_epochs"])


def test_a_misspelt_setting_is_named_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="--set max_epoch: .*unknown key \\(did you mean max_epochs"):
        run_experiment(
            bundles_root() / "nih_chestxray_ilm",
            tmp_path,
            tmp_path / "out",
            ["mse"],
            [1.0],
            [0],
            overrides={"max_epoch": 3},
        )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "override, change",
    [
        ({"optimizer#momentum": 0.5}, "optimizer#momentum 0.9 -> 0.5"),
        ({"optimizer#_target_": "torch.optim.AdamW"}, 'optimizer#_target_ "torch.optim.SGD" -> "torch.optim.AdamW"'),
        ({"train#pipeline#image_size": 32}, 'train#pipeline#image_size "@image_size" -> 32'),
        ({"network_def#queue_size": 128}, 'network_def#queue_size "@queue_size" -> 128'),
        ({"contrastive_loss#temperature": 0.2}, 'contrastive_loss#temperature "@temperature" -> 0.2'),
    ],
)
def test_a_nested_override_reruns_pretraining(tmp_path, fake_pretraining, caplog, override, change):
    data = make_nih_sample(tmp_path / "data", n_patients=10, image_size=8, seed=0)
    experiment = _pretraining_experiment(data, tmp_path / "out", caplog)
    assert experiment()[0] == 1
    count, log = experiment(**override)
    assert count == 1 and f"run pretrain mse seed 0: changed: {change}" in log
    assert experiment(**override)[0] == 0


def test_a_component_edited_in_a_config_file_reruns_pretraining(tmp_path, fake_pretraining, caplog):
    data = make_nih_sample(tmp_path / "data", n_patients=10, image_size=8, seed=0)
    experiment = _pretraining_experiment(data, tmp_path / "out", caplog)
    pretrain = json.loads((bundles_root() / "nih_chestxray_ilm" / "configs" / "pretrain.json").read_text())
    extra = tmp_path / "adamw.json"
    extra.write_text(json.dumps({"optimizer": {**pretrain["optimizer"], "_target_": "torch.optim.AdamW"}}))
    assert experiment()[0] == 1
    count, log = experiment(extra_configs=[extra])
    assert count == 1 and "optimizer#_target_" in log


def test_replaced_or_dropped_images_rerun_only_the_pretraining_that_reads_them(tmp_path, fake_pretraining, caplog):
    from PIL import Image

    data = make_nih_sample(tmp_path / "data", n_patients=10, image_size=8, seed=0)
    experiment = _pretraining_experiment(data, tmp_path / "out", caplog)
    assert experiment()[0] == 1
    test_image = (data / "test_list.txt").read_text().split()[0]
    train_image = (data / "train_val_list.txt").read_text().split()[0]
    images = {path.name: path for path in data.glob("images_*/images/*.png")}
    Image.fromarray(np.full((8, 8), 255, dtype=np.uint8)).save(images[test_image])  # pretraining never reads test
    count, log = experiment()
    assert count == 0 and "reuse pretrain mse seed 0" in log
    Image.fromarray(np.full((9, 9), 255, dtype=np.uint8)).save(images[train_image])  # same name, new pixels
    count, log = experiment()
    assert count == 1 and "run pretrain mse seed 0: changed: 1 image (1 replaced)" in log
    for table in (data / "Data_Entry_2017_v2020.csv", data / "train_val_list.txt"):  # an image dropped from the set
        lines = table.read_text().splitlines()
        table.write_text("\n".join(line for line in lines if not line.startswith(train_image)) + "\n")
    count, log = experiment()
    assert count == 1 and "1 removed" in log and "Data_Entry_2017_v2020.csv content" in log


def test_the_worker_count_does_not_rerun_device_augmented_pretraining(tmp_path, fake_pretraining, caplog):
    data = make_nih_sample(tmp_path / "data", n_patients=10, image_size=8, seed=0)
    experiment = _pretraining_experiment(data, tmp_path / "out", caplog)
    assert experiment(num_workers=0)[0] == 1
    assert experiment(num_workers=3)[0] == 0  # another machine's core count: the same draws, the same run
    assert experiment(num_workers=3, augment_on="loader")[0] == 1


def test_a_misspelt_nested_setting_is_named_before_anything_runs(tmp_path):
    with pytest.raises(ValueError, match="--set optimizer#momentun: .*unknown key \\(did you mean optimizer#momentum"):
        run_experiment(
            bundles_root() / "nih_chestxray_ilm",
            tmp_path,
            tmp_path / "out",
            ["mse"],
            [1.0],
            [0],
            overrides={"optimizer#momentun": 0.5},
        )
    with pytest.raises(ValueError, match="--set train#pipline#image_size: .*unknown key"):
        run_experiment(
            bundles_root() / "nih_chestxray_ilm",
            tmp_path,
            tmp_path / "out",
            ["mse"],
            [1.0],
            [0],
            overrides={"train#pipline#image_size": 32},
        )
    assert not (tmp_path / "out").exists()
