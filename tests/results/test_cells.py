"""The rows behind a table cell: the duplicates policies and the metric shown per data set."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monai_ilm.results.tables import linear_evaluation_table
from tests.results._rows import DR, NIH, cell


def test_duplicates(long_table):
    newer = cell(NIH, "moco", "linear", 1.0, "mean_auc", 0.760, 0.750, 0.770, timestamp="2025-02-01T00:00:00+00:00")
    older = cell(NIH, "moco", "linear", 1.0, "mean_auc", 0.700, 0.690, 0.710, timestamp="2024-12-01T00:00:00Z")
    df = pd.concat([long_table, pd.DataFrame([newer, older])], ignore_index=True)
    assert linear_evaluation_table(df).value.loc[NIH, "moco"] == 0.760
    mean = linear_evaluation_table(df, duplicates="mean")
    assert mean.value.loc[NIH, "moco"] == pytest.approx((0.744 + 0.760 + 0.700) / 3)
    assert np.isnan(mean.ci_low.loc[NIH, "moco"]) and mean.formatted.loc[NIH, "moco"] == "73.5"
    with pytest.raises(ValueError, match="duplicates: expected one row per cell with duplicates='error', got several"):
        linear_evaluation_table(df, duplicates="error")
    with pytest.raises(ValueError, match="duplicates: expected one of"):
        linear_evaluation_table(df, duplicates="first")


def test_metric_selection(long_table):
    extra = cell(NIH, "moco", "linear", 1.0, "loss", 0.3)
    df = pd.concat([long_table, pd.DataFrame([extra])], ignore_index=True)
    with pytest.raises(
        ValueError, match="metric: expected a name or .*, got None while dataset 'nih' has several metrics"
    ):
        linear_evaluation_table(df)
    t = linear_evaluation_table(df, metric={NIH: "loss", DR: "auc"})
    assert t.value.loc[NIH, "moco"] == 0.3 and np.isnan(t.value.loc[NIH, "mse"])
    with pytest.raises(ValueError, match=r"metric: expected a metric for dataset 'dr' \(one of .*\), got none"):
        linear_evaluation_table(df, metric={NIH: "mean_auc"})
