"""The rows behind each cell of a results table: the metric to show, and one record per cell.

A table shows one metric per data set (given, or inferred when a protocol has a single one) and one record per
cell. When several rows fall into one cell the ``duplicates`` policy decides. The default, ``"seeds"``, never
shows one seed as if it were the mean: re-runs of one seed count once (the newest), and the seeds present are
combined into their mean (:func:`monai_ilm.results.summaries.combine_seeds`), with the interval of the
``seed_mean`` summary row when that row covers exactly these seeds, else without an interval (a single seed
keeps its own). ``"latest"`` keeps the newest row whatever its seed, ``"mean"`` averages every row (and drops
the interval), ``"error"`` raises.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from monai_ilm.results.rows import is_per_class_metric
from monai_ilm.results.summaries import combine_seeds

__all__ = ["DUPLICATE_POLICIES", "MetricSpec", "newest_rows"]

DUPLICATE_POLICIES = ("seeds", "latest", "mean", "error")
DEFAULT_CKA = "cka_linear"
MetricSpec = str | Mapping[str, str] | None


def _resolve_metrics(rows: pd.DataFrame, metric: MetricSpec, protocol: str) -> dict[str, str]:
    """Map each dataset to the metric to tabulate, inferring it when it is unique."""
    out = {}
    for dataset in rows["dataset"].unique():
        present = rows.loc[rows["dataset"] == dataset, "metric"].unique()
        # block x block CKA entries ("cka_<kernel>@b<j>", monai_ilm.results.names) are not a table's metric
        available = sorted(m for m in present if not is_per_class_metric(m, present) and "@" not in m)
        if isinstance(metric, str):
            out[dataset] = metric
        elif isinstance(metric, Mapping):
            if dataset not in metric:
                raise ValueError(f"metric: expected a metric for dataset {dataset!r} (one of {available}), got none.")
            out[dataset] = metric[dataset]
        elif len(available) == 1:
            out[dataset] = available[0]
        elif DEFAULT_CKA in available and all(m.startswith("cka_") for m in available):
            out[dataset] = DEFAULT_CKA  # the feature-reuse cells always write linear CKA beside other kernels
        else:
            raise ValueError(
                f"metric: expected a name or a {{dataset: name}} mapping, got None while dataset {dataset!r} has "
                f"several metrics for protocol {protocol!r} ({available})."
            )
    return out


def _select(df: pd.DataFrame, protocol: str, metric: MetricSpec, blocks: bool) -> pd.DataFrame:
    """Rows of one protocol with the chosen metric per dataset, whole-model (or per-block) rows only."""
    rows = df[(df["protocol"] == protocol) & (df["block"].notna() if blocks else df["block"].isna())]
    rows = rows[rows["kind"] != "paired_difference"]
    if rows.empty:
        return rows
    chosen = _resolve_metrics(rows, metric, protocol)
    return rows[rows["metric"] == rows["dataset"].map(chosen)]


def _dedupe(rows: pd.DataFrame, keys: list[str], duplicates: str) -> pd.DataFrame:
    """One row per cell according to the ``duplicates`` policy."""
    if duplicates not in DUPLICATE_POLICIES:
        raise ValueError(f"duplicates: expected one of {DUPLICATE_POLICIES}, got {duplicates!r}.")
    summaries, rows = rows[rows["kind"] == "seed_mean"], rows[rows["kind"] == "run"]
    if duplicates == "seeds":
        return combine_seeds(newest_rows(rows, [*keys, "seed"]), newest_rows(summaries, keys), keys)
    counts = rows.groupby(keys, dropna=False).size()
    if duplicates == "error" and (counts > 1).any():
        raise ValueError(
            f"duplicates: expected one row per cell with duplicates='error', got several for cell(s) "
            f"{counts[counts > 1].index.tolist()[:3]}."
        )
    if duplicates == "mean":
        agg = rows.groupby(keys, dropna=False, sort=False)["value"].agg(["mean", "size"]).reset_index()
        return agg.rename(columns={"mean": "value", "size": "n_seeds"}).assign(ci_low=np.nan, ci_high=np.nan)
    return newest_rows(rows, keys).assign(n_seeds=1)


def newest_rows(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The newest row (by ``timestamp``) of each group of ``keys``."""
    order = pd.to_datetime(rows["timestamp"], utc=True, format="ISO8601")
    newest = rows.assign(_t=order).sort_values("_t", kind="stable").groupby(keys, dropna=False, sort=False).tail(1)
    return newest.drop(columns="_t")
