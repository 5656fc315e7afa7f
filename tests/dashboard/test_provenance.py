"""What the results come from: the demonstration notes and the pretraining run list."""

from __future__ import annotations

from pathlib import Path

import pytest

from dashboard import health, logs, provenance
from dashboard.data import load_results


def test_caveats_name_sample_data_quick_settings_one_seed_and_n(demo_like: Path) -> None:
    notes = provenance.caveats(demo_like, load_results(demo_like).frame)
    assert notes == [
        "The images are generated sample data (`sample_data/`), not a real data set.",
        "Quick settings: 64 px images, 2 pretraining epoch(s), resnet18.",
        "One seed (0): intervals hold the test sampling only, not the seed-to-seed spread.",
        "Small test sets (n = 36): wide intervals.",
    ]
    assert provenance.caveats(demo_like, load_results(demo_like).frame.iloc[:0]) == []


def test_pretraining_runs_and_health(demo_like: Path, tmp_path: Path) -> None:
    runs = provenance.pretraining_runs([demo_like.parent / "pretrain", tmp_path / "missing"])
    assert list(runs["run"]) == ["moco_seed0"] and runs.at[0, "git_commit"] == "1739c5f4"
    assert runs.at[0, "queue_size"] == 256 and runs.at[0, "mse_weights"] == "0.25, 0.25, 0.25, 0.25"
    bad = tmp_path / "pretrain" / "mse_seed0"
    bad.mkdir(parents=True)
    (bad / provenance.PRETRAINING_RECORD).write_text("[1]", encoding="utf-8")
    broken = provenance.pretraining_runs([tmp_path / "pretrain"])
    assert broken.at[0, "status"] == "unreadable" and "expected a JSON object" in broken.at[0, "problem"]
    frame, _ = logs.load_runs(logs.discover_runs([demo_like.parent / "pretrain"]))
    ranks = health.block_ranks(frame)
    assert list(ranks["block"]) == [1, 2, 3, 4] and set(ranks["epoch"]) == {2}  # the last epoch
    assert health.collapsed_blocks(ranks).loc["moco"].all()  # ranks 1.1-1.4 < 2
    assert health.block_ranks(frame.iloc[:0]).empty


def test_throughput_from_wall_times() -> None:
    import numpy as np
    import pandas as pd

    # 2 epochs of 4 iterations, one iteration per second, epoch means logged at step = epoch
    steps = [1, 2, 3, 4, 1, 5, 6, 7, 8, 2]
    frame = pd.DataFrame(
        {
            "run": "mse_seed0",
            "tag": "loss",
            "step": steps,
            "value": 1.0,
            "wall_time": [0, 1, 2, 3, 3.5, 4, 5, 6, 7, 7.5],
        }
    )
    frame = frame.assign(axis=logs.step_axis("loss", steps))
    runs = pd.DataFrame({"run": ["mse_seed0"], "batch_size": [8]})
    out = provenance.throughput(frame, runs)
    assert out.to_dict("records") == [
        {
            "run": "mse_seed0",
            "epochs": 2,
            "seconds_per_epoch": 4.0,
            "iterations_per_second": 1.0,
            "samples_per_second": 8.0,
            "data_wait_share": None,
        }
    ]
    assert provenance.throughput(frame.assign(wall_time=np.nan), runs).empty  # metrics.csv has no wall times
    waits = pd.DataFrame({"run": "mse_seed0", "tag": "data_wait_share", "step": [1, 2], "value": [0.2, 0.4]})
    with_wait = provenance.throughput(pd.concat([frame, waits.assign(wall_time=[3.5, 7.5], axis="epoch")]), runs)
    assert with_wait["data_wait_share"].tolist() == pytest.approx([0.3])  # the mean of the epochs' shares
