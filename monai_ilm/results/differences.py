"""The table of paired differences to a baseline method (``paired_difference`` rows of the seed summaries)."""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from monai_ilm.results.cells import MetricSpec, _resolve_metrics
from monai_ilm.results.paper_table import PaperTable, _ordered, _pivot, _table
from monai_ilm.results.rows import parse_seeds
from monai_ilm.results.schema import validate

__all__ = ["differences_table"]


def differences_table(
    df: pd.DataFrame,
    baseline: str = "moco",
    metric: MetricSpec = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    scale: float = 100.0,
    decimals: int = 1,
    dash: str = "–",
) -> PaperTable:
    """Paired differences ``method - baseline`` (``paired_difference`` rows of :mod:`monai_ilm.results.seeds`).

    Rows are ``(dataset, protocol, label_fraction)`` for the whole-model protocols (linear, finetune),
    columns the methods; a cell reads ``"+2.2 (0.4–4.1)"``: the mean difference over the seeds both methods
    have, with its paired bootstrap interval.

    Args:
        df: the long-form results table.
        baseline: the method subtracted (``"moco"`` or ``"supervised"``).
        metric: metric to show, a mapping, or None to infer the unique one per dataset.
        methods: column order.
        datasets: dataset order.
        scale: display multiplier.
        decimals: display decimals.
        dash: separator inside the interval.

    Returns:
        A :class:`PaperTable` named ``"difference_to_<baseline>"``; empty when there are no such rows.
    """
    df = validate(df)
    rows = df[(df["kind"] == "paired_difference") & (df["baseline"] == baseline) & df["block"].isna()]
    rows = rows[rows["protocol"].isin(("linear", "finetune"))]
    if not rows.empty:
        chosen = _resolve_metrics(rows, metric, "paired_difference")
        rows = rows[rows["metric"] == rows["dataset"].map(chosen)]
    cells = rows.assign(n_seeds=rows["seeds"].map(lambda text: len(parse_seeds(text))))
    keys = ["dataset", "protocol", "label_fraction"]
    row_order = [
        (d, p, f)
        for d in _ordered(cells["dataset"], datasets)
        for p in ("linear", "finetune")
        for f in sorted(
            cells.loc[(cells["dataset"] == d) & (cells["protocol"] == p), "label_fraction"].unique(), reverse=True
        )
    ]
    frames = _pivot(cells, keys, ["method"], row_order, _ordered(cells["method"], methods))
    table = _table(f"difference_to_{baseline}", frames, scale, decimals, dash)
    signed = table.formatted.copy()
    for col in signed.columns:
        signed[col] = ["+" + text if text and value > 0 else text for text, value in zip(signed[col], table.value[col])]
    return PaperTable(table.name, table.value, table.ci_low, table.ci_high, signed, table.n_seeds)
