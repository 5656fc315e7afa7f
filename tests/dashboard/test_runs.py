"""The run browser's data."""

from __future__ import annotations

from pathlib import Path

from dashboard import runs
from dashboard.data import load_results
from dashboard.sample import SampleLayout


def test_run_summaries(sample: SampleLayout) -> None:
    loaded = load_results(sample.results_dir)
    summary = runs.run_summaries(sample.results_dir, loaded.frame)
    assert len(summary) == sample.n_runs and set(summary["status"]) == {"ok"}
    row = summary.set_index("run_id").loc["finetune-dr-mse-s1-f6pct"]
    assert row["protocols"] == "finetune" and row["seeds"] == "1" and row["label_fractions"] == "0.06"
    assert row["checkpoint"] == "pretrain/mse_seed1/checkpoint_final.pt" and len(row["config_hash"]) == 12
    assert row["time: train_seconds"] > 0 and row["time: eval_seconds"] > 0


def test_skipped_runs_are_listed_with_the_reason(malformed: Path) -> None:
    loaded = load_results(malformed)
    summary = runs.run_summaries(malformed, loaded.frame, loaded.problems).set_index("run_id")
    assert summary.loc["broken", "status"] == "skipped" and "missing column" in summary.loc["broken", "problem"]
    assert summary.loc["finetune-nih-moco-s0-f1pct", "status"] == "ok"


def test_runs_for_cell(sample: SampleLayout) -> None:
    df = load_results(sample.results_dir).frame
    ids = runs.runs_for_cell(df, dataset="idc", method="barlow", protocol="probe", block=2, label_fraction=None)
    assert ids == ["probe-idc-barlow-s0", "probe-idc-barlow-s1", "summary-idc"]  # the summary rows combine them
    assert runs.runs_for_cell(df, dataset="idc", protocol="finetune", label_fraction=0.06, method="supervised") == [
        "finetune-idc-supervised-s0-f6pct",
        "finetune-idc-supervised-s1-f6pct",
        "summary-idc",
    ]


def test_details_and_sidecar_problems(sample: SampleLayout, tmp_path: Path) -> None:
    info = runs.run_details(sample.results_dir, "linear-nih-moco-s0")
    assert info["problem"] is None and info["seed"] == 0 and info["config"]["protocol"] == "linear"
    assert set(info["timings"]) == {"train_seconds", "eval_seconds"} and info["other"] == {"host": "sample-generator"}
    (tmp_path / "x.json").write_text("[1, 2]", encoding="utf-8")
    assert runs.read_sidecar(tmp_path / "x.json")[1] == "sidecar is a JSON list, expected an object"
    assert "no .json sidecar" in runs.read_sidecar(tmp_path / "missing.json")[1]
    assert runs.sidecar_timings({"wall_time_s": 3.5, "seed": 1, "phase": {"train_seconds": 2}}) == {"wall_time_s": 3.5}
    assert runs.sidecar_timings({"timings": {"train": {"seconds": 4}, "flag": True}}) == {"train.seconds": 4}
