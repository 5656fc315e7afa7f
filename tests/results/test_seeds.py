"""Seeds combined and methods compared: closed forms for the two-stage bootstrap and the paired differences."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monai_ilm.results import read_results, write_results
from monai_ilm.results.seeds import summarize, summary_rows, two_stage_interval
from monai_ilm.results.tables import differences_table, linear_evaluation_table, paper_tables
from tests.results._rows import row


def test_two_stage_interval_of_constant_seeds_spans_the_seeds():
    # no test-set variation: the mean of two resampled seeds is 0.6 (p=1/4), 0.7 (1/2) or 0.8 (1/4)
    low, high = two_stage_interval([np.full(500, 0.6), np.full(500, 0.8)], n_resamples=4000)
    assert (low, high) == (pytest.approx(0.6), pytest.approx(0.8))


def test_two_stage_interval_of_one_seed_is_its_test_interval():
    replicates = np.random.default_rng(1).normal(0.7, 0.02, 4000)
    low, high = two_stage_interval([replicates], n_resamples=20000)
    expected = np.quantile(replicates, [0.025, 0.975])
    assert low == pytest.approx(expected[0], abs=2e-3) and high == pytest.approx(expected[1], abs=2e-3)


def test_two_stage_interval_skips_undefined_replicates_and_rejects_empty_seeds():
    assert two_stage_interval([np.array([np.nan, 0.5, 0.5])]) == (0.5, 0.5)
    with pytest.raises(ValueError, match="replicates"):
        two_stage_interval([np.array([np.nan])])


def _write_run(
    results,
    method,
    seed,
    value,
    replicates=None,
    ids="ids-a",
    protocol="linear",
    fraction=1.0,
    metric="auc",
    low=None,
    high=None,
):
    run_id = f"dr-{protocol}-{method}-seed{seed}-frac{fraction:g}"
    r = row(
        dataset="dr",
        method=method,
        protocol=protocol,
        label_fraction=fraction,
        seed=seed,
        metric=metric,
        value=value,
        ci_low=low,
        ci_high=high,
        n=100,
        run_id=run_id,
    )
    stored = None if replicates is None else {metric: replicates, "test_ids_sha256": ids}
    write_results(results, [r], overwrite=True, replicates=stored)


def test_paired_difference_uses_the_shared_resamples(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.normal(0.75, 0.03, 1000)  # wide per-method intervals...
    _write_run(tmp_path, "moco", 0, 0.75, base, low=0.69, high=0.81)
    _write_run(tmp_path, "mse", 0, 0.77, base + 0.02, low=0.71, high=0.83)  # ...but always 0.02 better
    rows = pd.DataFrame(summary_rows(read_results(tmp_path), tmp_path))
    diff = rows[(rows["kind"] == "paired_difference") & (rows["method"] == "mse")].iloc[0]
    assert diff["baseline"] == "moco" and diff["seeds"] == "0"
    assert diff["value"] == pytest.approx(0.02)
    assert (diff["ci_low"], diff["ci_high"]) == (pytest.approx(0.02), pytest.approx(0.02))


def test_difference_without_shared_test_rows_has_no_interval(tmp_path):
    base = np.random.default_rng(0).normal(0.75, 0.03, 1000)
    _write_run(tmp_path, "moco", 0, 0.75, base, ids="ids-a")
    _write_run(tmp_path, "mse", 0, 0.77, base + 0.02, ids="ids-b")
    rows = pd.DataFrame(summary_rows(read_results(tmp_path), tmp_path))
    diff = rows[rows["kind"] == "paired_difference"].iloc[0]
    assert diff["value"] == pytest.approx(0.02) and pd.isna(diff["ci_low"])


def test_tables_average_every_seed_and_say_how_many(tmp_path):
    # today's tables showed the newest seed alone (0.879) with its single-seed interval
    _write_run(tmp_path, "moco", 0, 0.782, np.full(200, 0.782), low=0.75, high=0.81)
    _write_run(tmp_path, "moco", 1, 0.879, np.full(200, 0.879), low=0.85, high=0.91)
    raw = read_results(tmp_path)
    table = linear_evaluation_table(raw)
    assert table.value.loc["dr", "moco"] == pytest.approx((0.782 + 0.879) / 2)
    assert np.isnan(table.ci_low.loc["dr", "moco"])  # no summary yet: no interval rather than a wrong one
    assert table.n_seeds.loc["dr", "moco"] == 2

    summarize(tmp_path)
    table = linear_evaluation_table(read_results(tmp_path))
    assert table.value.loc["dr", "moco"] == pytest.approx((0.782 + 0.879) / 2)
    assert (table.ci_low.loc["dr", "moco"], table.ci_high.loc["dr", "moco"]) == (
        pytest.approx(0.782),
        pytest.approx(0.879),
    )
    assert table.seed_counts == [2]


def test_stale_summary_is_not_used(tmp_path):
    _write_run(tmp_path, "moco", 0, 0.70, np.full(200, 0.70))
    _write_run(tmp_path, "moco", 1, 0.80, np.full(200, 0.80))
    summarize(tmp_path)
    _write_run(tmp_path, "moco", 2, 0.90, np.full(200, 0.90))  # a third seed after the summary
    table = linear_evaluation_table(read_results(tmp_path))
    assert table.value.loc["dr", "moco"] == pytest.approx(0.80) and np.isnan(table.ci_low.loc["dr", "moco"])


def test_one_seed_keeps_its_own_interval(tmp_path):
    _write_run(tmp_path, "moco", 0, 0.75, np.linspace(0.7, 0.8, 101), low=0.7025, high=0.7975)
    summarize(tmp_path)
    seed_mean = read_results(tmp_path).query("kind == 'seed_mean'").iloc[0]
    assert (seed_mean["ci_low"], seed_mean["ci_high"]) == (0.7025, 0.7975)


def test_table_1_has_the_supervised_column_and_differences_table(tmp_path):
    base = np.random.default_rng(0).normal(0.75, 0.03, 300)
    _write_run(tmp_path, "moco", 0, 0.75, base)
    _write_run(tmp_path, "mse", 0, 0.78, base + 0.03)
    _write_run(tmp_path, "supervised", 0, 0.94, base + 0.19, protocol="finetune")
    _write_run(tmp_path, "mse", 0, 0.80, base + 0.05, protocol="finetune")
    summarize(tmp_path)
    results = read_results(tmp_path)
    assert list(paper_tables(results)["linear"].value.columns) == ["moco", "mse", "supervised"]
    to_moco = differences_table(results, "moco")
    assert to_moco.formatted.loc[("dr", "linear", 1.0), "mse"] == "+3.0 (3.0–3.0)"
    to_supervised = differences_table(results, "supervised")
    assert to_supervised.value.loc[("dr", "finetune", 1.0), "mse"] == pytest.approx(-0.14)


def test_per_finding_rows_do_not_hide_the_table_metric():
    rows = [row(dataset="nih", method="moco", protocol="linear", label_fraction=1.0, metric="mean_auc", value=0.7)]
    rows += [
        row(
            dataset="nih",
            method="moco",
            protocol="linear",
            label_fraction=1.0,
            metric=f"auc_{name}",
            value=0.6,
            ci_low=None,
            ci_high=None,
        )
        for name in ("Effusion", "Hernia")
    ]
    table = linear_evaluation_table(pd.DataFrame(rows))
    assert table.value.loc["nih", "moco"] == 0.7


def test_table_3_shows_linear_cka_when_another_kernel_was_also_computed():
    rows = [
        row(
            dataset="nih",
            method="moco",
            protocol="feature_reuse",
            label_fraction=0.01,
            block=b,
            metric=m,
            value=v,
            ci_low=None,
            ci_high=None,
        )
        for b in (1, 2)
        for m, v in (("cka_linear", 0.9), ("cka_rbf", 0.5), ("cka_linear@b2", 0.1))
    ]
    table = paper_tables(pd.DataFrame(rows))["feature_reuse"]
    assert table.value.loc[("nih", "moco"), (0.01, "B1")] == 0.9
