"""Training curves from TensorBoard event files and metrics.csv."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dashboard import logs
from dashboard.sample import SampleLayout, has_tensorboard

needs_tensorboard = pytest.mark.skipif(not has_tensorboard(), reason="tensorboard is not installed")


@needs_tensorboard
def test_discovers_event_and_csv_runs(sample: SampleLayout) -> None:
    runs = logs.discover_runs([sample.results_dir / "pretrain", sample.pretrain_dir])
    assert [r.name for r in runs] == [
        "moco_seed0",
        "moco_seed1",
        "mse_seed0",
        "mse_seed1",
        "barlow_seed0",
        "barlow_seed1",
    ]
    by_name = {r.name: r for r in runs}
    assert by_name["mse_seed1"].method == "mse" and by_name["mse_seed1"].seed == 1
    assert by_name["mse_seed1"].event_dirs and not by_name["mse_seed1"].metrics_files
    assert by_name["barlow_seed1"].metrics_files and not by_name["barlow_seed1"].event_dirs
    assert by_name["barlow_seed1"].label == "MoCo + Barlow Twins · seed 1"


@needs_tensorboard
def test_reads_every_loss_part_and_nothing_else(sample: SampleLayout) -> None:
    runs = logs.discover_runs([sample.pretrain_dir])
    frame, problems = logs.load_runs(runs)
    assert not problems
    tags = frame.groupby("run")["tag"].unique().map(set)
    layers = {f"loss_layer{k}" for k in range(1, 5)}
    assert tags["moco_seed0"] == {"loss", "loss_infonce", "val_loss"}
    assert tags["mse_seed0"] == {"loss", "loss_infonce", "val_loss"} | layers  # from event files
    assert tags["barlow_seed1"] == {"loss", "loss_infonce", "val_loss"} | layers  # from metrics.csv
    assert "lr" not in set(frame["tag"])
    one = frame[(frame["run"] == "mse_seed0") & (frame["tag"] == "loss_infonce")]
    assert one["step"].tolist() == list(range(150)) and one["wall_time"].notna().all()
    assert set(frame.loc[frame["run"] == "barlow_seed1", "source"]) == {"barlow_seed1/metrics.csv"}


@needs_tensorboard
def test_unreadable_logs_become_problems(malformed: Path) -> None:
    runs = logs.discover_runs([malformed.parent / "pretrain"])
    frame, problems = logs.load_runs(runs)
    assert frame.empty
    found = {p.file: p.problem for p in problems}
    assert "missing column(s) ['value']" in found["moco_seed0/metrics.csv"]
    assert "no readable event" in found["mse_seed0/tensorboard"]


def test_metrics_csv_checks(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"
    path.write_text("step,tag,value,extra\n0,loss,1.5,x\n1,loss,1.25,x\n1,lr,0.1,x\n", encoding="utf-8")
    frame = logs.read_metrics_csv(path)
    assert frame["value"].tolist() == [1.5, 1.25] and frame["step"].tolist() == [0, 1]
    path.write_text("step,tag,value\n0,loss,1\n1.5,loss,2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="line 3"):
        logs.read_metrics_csv(path)
    path.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(ValueError):
        logs.read_metrics_csv(path)


def test_symlinked_runs_outside_the_root_are_ignored(tmp_path: Path, sample: SampleLayout) -> None:
    root = tmp_path / "pretrain"
    root.mkdir()
    os.symlink(sample.pretrain_dir / "moco_seed0", root / "moco_seed0")
    assert logs.discover_runs([root]) == []


def test_loss_part_labels() -> None:
    assert logs.loss_part_label("loss_infonce") == "InfoNCE"
    assert logs.loss_part_label("loss_layer3") == "stage 3 term"
    assert logs.loss_part_label("val_loss_layer1") == "stage 1 term (val)"
    assert logs.loss_part_label("loss") == "total" and logs.loss_part_label("train_loss/loss") == "total"
    assert logs.loss_part_label("my_loss_thing") == "my_loss_thing"
    assert logs.is_loss_tag("Train/LOSS") and not logs.is_loss_tag("lr")
    assert logs.is_loss_tag("knn/val_auc") and logs.is_loss_tag("health/effective_rank_layer4")
    assert logs.parse_run_name("barlow_seed12") == ("barlow", 12) and logs.parse_run_name("custom") == ("custom", None)


def test_smooth() -> None:
    values = np.array([1.0, 3.0, 3.0, 3.0])
    np.testing.assert_allclose(logs.smooth(values, 0.0), values)
    out = logs.smooth(values, 0.5)
    assert out[0] == 1.0 and 1.0 < out[1] < 3.0 and out[-1] < 3.0 and np.all(np.diff(out) > 0)
    with pytest.raises(ValueError):
        logs.smooth(values, 1.0)
