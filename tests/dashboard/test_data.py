"""Loading, problems, filters and seed aggregation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard import data, labels
from dashboard.sample import SampleLayout
from monai_ilm.results import make_row, validate
from monai_ilm.results.summaries import runs_stamp

from .conftest import MALFORMED


def _row(**kw) -> dict:
    base = {
        "dataset": "nih",
        "method": "moco",
        "protocol": "finetune",
        "label_fraction": 0.01,
        "seed": 0,
        "metric": "mean_auc",
        "value": 0.6,
        "ci_low": 0.58,
        "ci_high": 0.62,
        "n": 100,
        "run_id": "r0",
        "timestamp": "2025-01-01T00:00:00+00:00",
    }
    base.update(kw)
    return make_row(**base)


def test_load_sample(sample: SampleLayout) -> None:
    loaded = data.load_results(sample.results_dir)
    assert loaded.exists and not loaded.problems
    assert len(loaded.frame) == sample.n_rows and loaded.n_files == sample.n_runs
    options = data.filter_options(loaded.frame)
    assert options["datasets"] == ["nih", "dr", "idc"]
    assert options["methods"] == ["moco", "mse", "barlow", "supervised"]
    assert options["seeds"] == [0, 1]
    assert options["protocols"] == ["linear", "finetune", "probe", "feature_reuse", "ks"]


def test_problems_name_the_file_and_the_reason(malformed: Path) -> None:
    loaded = data.load_results(malformed)
    problems = {p.file: p.problem for p in loaded.problems}
    assert set(problems) == set(MALFORMED)
    for name, fragment in MALFORMED.items():
        assert fragment in problems[name], (name, problems[name])
    assert set(loaded.frame["run_id"]) == {
        "finetune-nih-moco-s0-f1pct",
        "finetune-nih-mse-s0-f1pct",
        "probe-nih-moco-s0",
        "feature_reuse-nih-moco-s0",
    }


def test_missing_and_empty_directories(tmp_path: Path) -> None:
    missing = data.load_results(tmp_path / "nope")
    assert not missing.exists and missing.frame.empty and not missing.problems
    empty = data.load_results(tmp_path)
    assert empty.exists and empty.frame.empty and empty.n_files == 0


def test_signature_changes_when_a_run_is_added(tmp_path: Path) -> None:
    from monai_ilm.results import write_results

    assert data.directory_signature(tmp_path / "nope") == ()
    before = data.directory_signature(tmp_path)
    write_results(tmp_path, [_row()])
    after = data.directory_signature(tmp_path)
    assert before != after and {name for name, *_ in after} == {"r0.csv", "r0.json"}


def test_filters(sample: SampleLayout) -> None:
    df = data.load_results(sample.results_dir).frame
    chosen = data.apply_filters(df, data.Filters(("dr",), ("moco", "mse"), (1,), ("probe",)))
    assert len(chosen) == 2 * 4
    assert set(chosen["dataset"]) == {"dr"} and set(chosen["seed"]) == {1}
    assert data.apply_filters(df, data.Filters((), (), (), ())).empty


def test_aggregate_seeds_means_values_and_interval_ends() -> None:
    rows = validate(
        pd.DataFrame(
            [
                _row(seed=0, value=0.60, ci_low=0.58, ci_high=0.62, run_id="a"),
                _row(seed=1, value=0.64, ci_low=0.61, ci_high=0.66, run_id="b"),
                _row(seed=2, value=0.62, ci_low=None, ci_high=None, run_id="c"),
            ]
        )
    )
    agg = data.aggregate_seeds(rows)
    assert len(agg) == 1
    cell = agg.iloc[0]
    assert cell["value"] == pytest.approx(0.62)
    # no runner summary for seeds 0-2: the mean has no interval (the mean of per-seed intervals is not one)
    assert np.isnan(cell["ci_low"]) and np.isnan(cell["ci_high"])
    assert cell["seeds"] == (0, 1, 2) and cell["run_ids"] == ("a", "b", "c") and cell["n_rows"] == 3
    assert cell["value_std"] == pytest.approx(np.std([0.60, 0.64, 0.62]))


def test_collapse_seeds_gives_one_valid_row_per_cell(sample: SampleLayout) -> None:
    df = data.load_results(sample.results_dir).frame
    collapsed = data.collapse_seeds(df)
    validate(collapsed)
    runs = df[df["kind"] == "run"]
    assert len(collapsed) == len(runs) // 2  # two seeds everywhere
    assert not collapsed.duplicated(data.CELL_KEYS).any()
    # the runner's summary rows give the performance cells their two-stage interval; CKA and KS have no replicates
    performance = collapsed["protocol"].isin(["linear", "finetune", "probe"])
    assert collapsed.loc[performance, "ci_low"].notna().all() and collapsed.loc[~performance, "ci_low"].isna().all()
    summary = df[(df["kind"] == "seed_mean")].set_index(data.CELL_KEYS)
    cell = collapsed[performance].iloc[0]
    expected = summary.loc[tuple(cell[k] for k in data.CELL_KEYS)]
    assert (cell["ci_low"], cell["ci_high"]) == (expected["ci_low"], expected["ci_high"])
    assert data.collapse_seeds(df.iloc[:0]).empty


def test_labels_and_defaults() -> None:
    assert labels.fraction_label(0.01) == "1%" and labels.fraction_label(1.0) == "100%"
    assert labels.fraction_label(0.125) == "12.5%"
    assert data.order_methods(["zeta", "supervised", "mse", "moco", "alpha"]) == [
        "moco",
        "mse",
        "supervised",
        "alpha",
        "zeta",
    ]
    assert data.default_metric(["auc", "f1_macro"], "idc") == "f1_macro"  # the paper's metric of IDC is F1
    assert data.default_metric(["auc", "f1_macro"], "other") == "auc"
    assert data.default_metric(["zz", "yy"]) == "yy"
    assert labels.method_label("barlow") == "MoCo + Barlow Twins" and labels.method_label("new") == "new"


def test_sample_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dashboard.sample import main

    main([str(tmp_path), "--seeds", "3", "--no-logs"])
    assert "streamlit run dashboard/app.py -- --results" in capsys.readouterr().out
    loaded = data.load_results(tmp_path / "results")
    assert not loaded.problems and set(loaded.frame["seed"].dropna()) == {3} and not (tmp_path / "pretrain").exists()


def test_seed_intervals_come_from_the_runner_summary_rows() -> None:
    runs = [
        _row(seed=0, value=0.60, ci_low=0.58, ci_high=0.62, run_id="a"),
        _row(seed=1, value=0.64, ci_low=0.61, ci_high=0.66, run_id="b"),
    ]
    stamp = runs_stamp(validate(pd.DataFrame(runs)))  # what the runner's summary stores of the runs it combines
    summary = _row(
        seed=None,
        kind="seed_mean",
        seeds="0,1",
        value=0.62,
        ci_low=0.55,
        ci_high=0.69,
        run_id="summary-nih",
        config_hash=stamp,
    )
    diff = _row(
        seed=None,
        kind="paired_difference",
        baseline="moco",
        seeds="0,1",
        method="mse",
        value=0.03,
        ci_low=0.01,
        ci_high=0.05,
        run_id="summary-nih",
    )
    rows = validate(pd.DataFrame([*runs, summary, diff]))
    both_seeds = data.Filters(("nih",), ("moco", "mse"), (0, 1), ("finetune",))
    cell = data.aggregate_seeds(data.apply_filters(rows, both_seeds))
    assert len(cell) == 1 and (cell.at[0, "ci_low"], cell.at[0, "ci_high"]) == (0.55, 0.69)
    assert cell.at[0, "value"] == pytest.approx(0.62)
    one = data.apply_filters(rows, data.Filters(("nih",), ("moco", "mse"), (1,), ("finetune",)))
    assert set(one["run_id"]) == {"b"}  # the summary of seeds 0,1 does not describe seed 1 alone
    cell = data.aggregate_seeds(one)
    assert (cell.at[0, "ci_low"], cell.at[0, "ci_high"]) == (0.61, 0.66)  # one seed: its run's own interval
    both = data.apply_filters(rows, data.Filters(("nih",), ("moco", "mse"), (0, 1), ("finetune",)))
    assert set(both["kind"]) == {"run", "seed_mean", "paired_difference"}
