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


# ---------------------------------------------------------------- issue 23: stale summaries, unproven pairs, one CI


def _rerun(results, method, seed, value, replicates, stamp, fingerprint, ids="ids-a", **kw):
    """Write a run as the runner would after a re-run: a new timestamp and (new model) a new fingerprint."""
    run_id = f"dr-linear-{method}-seed{seed}-frac1"
    r = row(
        dataset="dr",
        method=method,
        protocol="linear",
        label_fraction=1.0,
        seed=seed,
        metric="auc",
        value=value,
        ci_low=kw.get("low"),
        ci_high=kw.get("high"),
        n=100,
        run_id=run_id,
        timestamp=stamp,
        config_hash=fingerprint,
    )
    write_results(
        results, [r], kw.get("metadata"), overwrite=True, replicates={"auc": replicates, "test_ids_sha256": ids}
    )


def test_rerun_seed_makes_its_summary_stale(tmp_path, caplog):
    # seeds 0 and 1 summarised (mean 0.683), then seed 0 re-run with a better model: the table must show the
    # new mean (0.93 + 0.80) / 2 = 0.865, not the old value and its old interval
    _rerun(tmp_path, "moco", 0, 0.566, np.full(200, 0.566), "2025-01-31T12:00:00+00:00", "f-old")
    _rerun(tmp_path, "moco", 1, 0.800, np.full(200, 0.800), "2025-01-31T12:00:00+00:00", "f-1")
    summarize(tmp_path)
    before = linear_evaluation_table(read_results(tmp_path))
    assert before.value.loc["dr", "moco"] == pytest.approx(0.683)
    _rerun(tmp_path, "moco", 0, 0.930, np.full(200, 0.930), "2025-02-01T09:00:00+00:00", "f-new")
    with caplog.at_level("WARNING", logger="monai_ilm.results"):
        table = linear_evaluation_table(read_results(tmp_path))
    assert table.value.loc["dr", "moco"] == pytest.approx(0.865)
    assert np.isnan(table.ci_low.loc["dr", "moco"]) and np.isnan(table.ci_high.loc["dr", "moco"])
    assert "stale" in caplog.text and "summarize" in caplog.text
    summarize(tmp_path)  # refreshed: the interval of the new runs
    table = linear_evaluation_table(read_results(tmp_path))
    assert (table.ci_low.loc["dr", "moco"], table.ci_high.loc["dr", "moco"]) == (
        pytest.approx(0.80),
        pytest.approx(0.93),
    )


def test_rerun_seed_makes_the_paired_difference_stale(tmp_path, caplog):
    base = np.random.default_rng(0).normal(0.75, 0.03, 300)
    _rerun(tmp_path, "moco", 0, 0.75, base, "2025-01-31T12:00:00+00:00", "m")
    _rerun(tmp_path, "mse", 0, 0.78, base + 0.03, "2025-01-31T12:00:00+00:00", "e-old")
    summarize(tmp_path)
    assert differences_table(read_results(tmp_path)).value.loc[("dr", "linear", 1.0), "mse"] == pytest.approx(0.03)
    _rerun(tmp_path, "mse", 0, 0.70, base - 0.05, "2025-02-01T09:00:00+00:00", "e-new")
    with caplog.at_level("WARNING", logger="monai_ilm.results"):
        table = differences_table(read_results(tmp_path))
    assert table.value.size == 0 and "stale" in caplog.text


def test_difference_of_unproven_test_sets_is_not_written(tmp_path, caplog):
    # different test-id hashes: the replicates do not pair, so there is no paired difference at all
    base = np.random.default_rng(0).normal(0.75, 0.03, 1000)
    _write_run(tmp_path, "moco", 0, 0.75, base, ids="ids-a")
    _write_run(tmp_path, "mse", 0, 0.6764, base - 0.0736, ids="ids-b")
    with caplog.at_level("WARNING", logger="monai_ilm.results"):
        rows = pd.DataFrame(summary_rows(read_results(tmp_path), tmp_path))
    assert not (rows["kind"] == "paired_difference").any()
    assert "dr-linear-mse-seed0-frac1" in caplog.text and "dr-linear-moco-seed0-frac1" in caplog.text
    summarize(tmp_path)
    assert differences_table(read_results(tmp_path)).value.size == 0


def test_difference_without_test_ids_is_not_written(tmp_path):
    # replicates stored without a test-id hash (no ids in the data): nothing proves the test sets identical
    base = np.random.default_rng(0).normal(0.75, 0.03, 300)
    for method, shift in (("moco", 0.0), ("mse", 0.02)):
        r = row(
            dataset="dr",
            method=method,
            protocol="linear",
            label_fraction=1.0,
            seed=0,
            metric="auc",
            value=0.75 + shift,
            ci_low=None,
            ci_high=None,
            n=100,
            run_id=f"dr-{method}",
        )
        write_results(tmp_path, [r], replicates={"auc": base + shift})
    rows = pd.DataFrame(summary_rows(read_results(tmp_path), tmp_path))
    assert not (rows["kind"] == "paired_difference").any()


_Z = 1.96  # the paper's constant at 95 % (docs/method.md §7.2)
_SE = {"settings": {"ci_method": "standard_error"}}


def test_standard_error_interval_is_one_method_for_any_number_of_seeds(tmp_path):
    # closed form of the documented multi-seed standard error: Var(mean) = s^2 / S + sum(se_i^2) / S^2,
    # s the sample sd (ddof 1) of the seed values, se_i = each run's standard error (its half-width / 1.96)
    values, ses = np.array([0.70, 0.76, 0.79]), np.array([0.002, 0.001, 0.003])
    reps = np.random.default_rng(1).normal(0.75, 0.03, (3, 400))
    for s, (v, se) in enumerate(zip(values, ses)):
        _rerun(
            tmp_path,
            "moco",
            s,
            v,
            reps[s],
            f"2025-01-2{s}T12:00:00+00:00",
            f"f{s}",
            low=v - _Z * se,
            high=v + _Z * se,
            metadata=_SE,
        )
    rows = pd.DataFrame(summary_rows(read_results(tmp_path), tmp_path))
    mean = rows[rows["kind"] == "seed_mean"].iloc[0]
    half = _Z * np.sqrt(values.var(ddof=1) / 3 + (ses**2).sum() / 9)
    assert mean["value"] == pytest.approx(values.mean(), abs=1e-12)
    assert (mean["ci_low"], mean["ci_high"]) == (
        pytest.approx(values.mean() - half, abs=1e-12),
        pytest.approx(values.mean() + half, abs=1e-12),
    )


def test_standard_error_paired_difference_of_one_seed(tmp_path):
    reps = np.random.default_rng(2).normal(0.75, 0.03, (2, 500))
    _rerun(tmp_path, "moco", 0, 0.75, reps[0], "2025-01-30T12:00:00+00:00", "a", low=0.7, high=0.8, metadata=_SE)
    _rerun(tmp_path, "mse", 0, 0.78, reps[1], "2025-01-30T12:00:00+00:00", "b", low=0.7, high=0.8, metadata=_SE)
    rows = pd.DataFrame(summary_rows(read_results(tmp_path), tmp_path))
    diff = rows[rows["kind"] == "paired_difference"].iloc[0]
    half = _Z * np.std(reps[1] - reps[0]) / np.sqrt(500)  # the paper's formula on the paired replicates
    assert diff["value"] == pytest.approx(0.03, abs=1e-12)
    assert (diff["ci_low"], diff["ci_high"]) == (
        pytest.approx(0.03 - half, abs=1e-12),
        pytest.approx(0.03 + half, abs=1e-12),
    )
