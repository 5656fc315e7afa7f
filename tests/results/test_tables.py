from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monai_ilm.results.schema import validate
from monai_ilm.results.tables import (
    feature_reuse_table,
    finetune_table,
    format_cell,
    linear_evaluation_table,
    paper_tables,
    probing_table,
)
from tests.results._rows import row

NIH, DR = "nih", "dr"
METHODS = ["moco", "mse", "barlow", "supervised"]


def cell(dataset, method, protocol, fraction, metric, value, low=None, high=None, block=None, **kw):
    return row(
        dataset=dataset,
        method=method,
        protocol=protocol,
        label_fraction=fraction,
        metric=metric,
        value=value,
        ci_low=low,
        ci_high=high,
        block=block,
        run_id=f"{method}-{protocol}",
        **kw,
    )


@pytest.fixture
def long_table() -> pd.DataFrame:
    """A hand-made slice of the paper's tables (paper_results.md), in long form."""
    rows = [
        # Table 1 (linear evaluation, 100 %); supervised comes from full fine-tuning
        cell(NIH, "moco", "linear", 1.0, "mean_auc", 0.744, 0.739, 0.750),
        cell(NIH, "mse", "linear", 1.0, "mean_auc", 0.748, 0.742, 0.754),
        cell(DR, "moco", "linear", 1.0, "auc", 0.746, 0.745, 0.747),
        cell(DR, "mse", "linear", 1.0, "auc", 0.848, 0.846, 0.850),
        # Table 2 (fine-tuning)
        cell(NIH, "supervised", "finetune", 1.0, "mean_auc", 0.798, 0.792, 0.803),
        cell(NIH, "supervised", "finetune", 0.06, "mean_auc", 0.652, 0.646, 0.658),
        cell(NIH, "supervised", "finetune", 0.01, "mean_auc", 0.578, 0.572, 0.584),
        cell(NIH, "moco", "finetune", 0.01, "mean_auc", 0.592, 0.586, 0.599),
        cell(NIH, "moco", "finetune", 0.06, "mean_auc", 0.698, 0.693, 0.704),
        cell(NIH, "mse", "finetune", 0.01, "mean_auc", 0.614, 0.607, 0.620),
        cell(NIH, "mse", "finetune", 0.06, "mean_auc", 0.705, 0.699, 0.710),
        cell(DR, "supervised", "finetune", 1.0, "auc", 0.941, 0.941, 0.942),
    ]
    # Table 3 (feature reuse, NIH, 1 % and 6 %)
    cka = {
        ("moco", 0.01): [0.81, 0.80, 0.57, 0.41],
        ("mse", 0.01): [0.97, 0.83, 0.65, 0.42],
        ("moco", 0.06): [0.72, 0.75, 0.66, 0.39],
        ("mse", 0.06): [0.97, 0.84, 0.55, 0.43],
    }
    for (method, frac), values in cka.items():
        rows += [cell(NIH, method, "feature_reuse", frac, "cka_rbf", v, block=b + 1) for b, v in enumerate(values)]
    # Table 4 (probing, NIH MoCo)
    probe = [(0.588, 0.584, 0.593), (0.595, 0.590, 0.600), (0.653, 0.648, 0.658), (0.744, 0.739, 0.750)]
    rows += [cell(NIH, "moco", "probe", 1.0, "mean_auc", *v, block=b + 1) for b, v in enumerate(probe)]
    return pd.DataFrame(rows)


def test_format_cell():
    assert format_cell(0.744, 0.739, 0.750, dash="-") == "74.4 (73.9-75.0)"
    assert format_cell(0.81, scale=1.0, decimals=2) == "0.81"
    assert format_cell(np.nan) == ""
    assert format_cell(0.5, 0.4, 0.6) == "50.0 (40.0–60.0)"


def test_linear_evaluation(long_table):
    t = linear_evaluation_table(long_table, finetune_methods=["supervised"], methods=METHODS, dash="-")
    expected = pd.DataFrame(
        {
            "moco": ["74.4 (73.9-75.0)", "74.6 (74.5-74.7)"],
            "mse": ["74.8 (74.2-75.4)", "84.8 (84.6-85.0)"],
            "supervised": ["79.8 (79.2-80.3)", "94.1 (94.1-94.2)"],
        },
        index=pd.Index([NIH, DR], name="dataset"),
    )
    pd.testing.assert_frame_equal(
        t.formatted, expected, check_names=False, check_dtype=False, check_index_type=False, check_column_type=False
    )
    assert t.value.loc[DR, "mse"] == 0.848 and t.ci_low.loc[NIH, "moco"] == 0.739
    assert list(t.value.columns) == ["moco", "mse", "supervised"]


def test_finetune_rows_ordered_by_descending_fraction(long_table):
    t = finetune_table(long_table, methods=["supervised", "moco", "mse"], dash="-")
    assert t.formatted.index.tolist() == [(NIH, 1.0), (NIH, 0.06), (NIH, 0.01), (DR, 1.0)]
    assert t.formatted.loc[(NIH, 0.01)].tolist() == ["57.8 (57.2-58.4)", "59.2 (58.6-59.9)", "61.4 (60.7-62.0)"]
    assert t.formatted.loc[(NIH, 1.0), "moco"] == ""  # no row, empty cell
    assert np.isnan(t.value.loc[(NIH, 1.0), "moco"])


def test_feature_reuse_with_performance(long_table):
    t = feature_reuse_table(long_table)
    cols = [(f, c) for f in (0.01, 0.06) for c in ("B1", "B2", "B3", "B4", "perf")]
    assert t.formatted.columns.tolist() == cols
    assert t.formatted.index.tolist() == [(NIH, "moco"), (NIH, "mse")]
    assert t.formatted.loc[(NIH, "moco")].tolist() == [
        "0.81",
        "0.80",
        "0.57",
        "0.41",
        "59.2",
        "0.72",
        "0.75",
        "0.66",
        "0.39",
        "69.8",
    ]
    assert t.formatted.loc[(NIH, "mse"), (0.06, "perf")] == "70.5"
    assert t.ci_high.loc[(NIH, "mse"), (0.06, "perf")] == 0.710  # numeric interval kept
    with_ci = feature_reuse_table(long_table, perf_with_ci=True, dash="-")
    assert with_ci.formatted.loc[(NIH, "moco"), (0.01, "perf")] == "59.2 (58.6-59.9)"


def test_probing(long_table):
    t = probing_table(long_table, dash="-")
    assert t.formatted.columns.tolist() == ["B1", "B2", "B3", "B4"]
    assert t.formatted.loc[(NIH, "moco")].tolist() == [
        "58.8 (58.4-59.3)",
        "59.5 (59.0-60.0)",
        "65.3 (64.8-65.8)",
        "74.4 (73.9-75.0)",
    ]


def test_paper_tables_builds_all_four(long_table):
    tables = paper_tables(long_table)
    assert list(tables) == ["linear", "finetune", "feature_reuse", "probe"]
    assert paper_tables(long_table[long_table["protocol"] == "probe"]).keys() == {"probe"}
    with pytest.raises(ValueError, match="unsupported option"):
        paper_tables(long_table, scale=1)


def test_duplicates(long_table):
    newer = cell(NIH, "moco", "linear", 1.0, "mean_auc", 0.760, 0.750, 0.770, timestamp="2025-02-01T00:00:00+00:00")
    older = cell(NIH, "moco", "linear", 1.0, "mean_auc", 0.700, 0.690, 0.710, timestamp="2024-12-01T00:00:00Z")
    df = pd.concat([long_table, pd.DataFrame([newer, older])], ignore_index=True)
    assert linear_evaluation_table(df).value.loc[NIH, "moco"] == 0.760
    mean = linear_evaluation_table(df, duplicates="mean")
    assert mean.value.loc[NIH, "moco"] == pytest.approx((0.744 + 0.760 + 0.700) / 3)
    assert np.isnan(mean.ci_low.loc[NIH, "moco"]) and mean.formatted.loc[NIH, "moco"] == "73.5"
    with pytest.raises(ValueError, match="duplicates: several rows"):
        linear_evaluation_table(df, duplicates="error")
    with pytest.raises(ValueError, match="duplicates: expected one of"):
        linear_evaluation_table(df, duplicates="first")


def test_metric_selection(long_table):
    extra = cell(NIH, "moco", "linear", 1.0, "loss", 0.3)
    df = pd.concat([long_table, pd.DataFrame([extra])], ignore_index=True)
    with pytest.raises(ValueError, match="metric: dataset 'nih' has several metrics"):
        linear_evaluation_table(df)
    t = linear_evaluation_table(df, metric={NIH: "loss", DR: "auc"})
    assert t.value.loc[NIH, "moco"] == 0.3 and np.isnan(t.value.loc[NIH, "mse"])
    with pytest.raises(ValueError, match="metric: no metric given for dataset 'dr'"):
        linear_evaluation_table(df, metric={NIH: "mean_auc"})


def test_invalid_table_is_rejected(long_table):
    with pytest.raises(ValueError, match="column 'value'"):
        probing_table(long_table.assign(value="high"))
    assert len(validate(long_table)) == len(long_table)
