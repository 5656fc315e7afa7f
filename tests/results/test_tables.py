from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monai_ilm.results.schema import validate
from monai_ilm.results.tables import (
    feature_reuse_table,
    finetune_table,
    linear_evaluation_table,
    paper_tables,
    probing_table,
)
from tests.results._rows import DR, NIH

METHODS = ["moco", "mse", "barlow", "supervised"]


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


def test_invalid_table_is_rejected(long_table):
    with pytest.raises(ValueError, match="column 'value'"):
        probing_table(long_table.assign(value="high"))
    assert len(validate(long_table)) == len(long_table)
