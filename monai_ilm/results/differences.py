"""The table of paired differences to a baseline method (``paired_difference`` rows of the seed summaries).

A ``paired_difference`` row is shown only while it is fresh: its ``config_hash`` is the
:func:`~monai_ilm.results.summaries.runs_stamp` of the runs of both methods it combines, and a seed of either
method added, removed or re-run since makes it stale (:func:`fresh_differences`).
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from monai_ilm.results.cells import MetricSpec, _resolve_metrics, newest_rows
from monai_ilm.results.paper_table import PaperTable, _ordered, _pivot, _table
from monai_ilm.results.rows import parse_seeds
from monai_ilm.results.schema import validate
from monai_ilm.results.summaries import CELL_KEYS, _cell, runs_stamp, stale_warning

__all__ = ["differences_table", "fresh_differences"]


def fresh_differences(df: pd.DataFrame) -> pd.DataFrame:
    """The ``paired_difference`` rows of ``df`` that combine exactly the runs ``df`` holds now.

    A row is kept when its ``config_hash`` equals the stamp of the newest runs of its method and its baseline
    at the seeds both have now, or when ``df`` holds no run of either cell (a table of summary rows only);
    stale rows are dropped and named in a warning.

    Args:
        df: results rows (validated), with the ``run`` rows the differences were computed from.

    Returns:
        The fresh ``paired_difference`` rows.
    """
    diffs = df[df["kind"] == "paired_difference"]
    runs = newest_rows(df[df["kind"] == "run"], [*CELL_KEYS, "seed"])
    by_cell = {_cell(key): group for key, group in runs.groupby(CELL_KEYS, dropna=False, sort=False)}
    keep, stale = [], []
    for index, rec in zip(diffs.index, diffs.to_dict("records")):
        cell = [rec[k] for k in CELL_KEYS]
        method = by_cell.get(_cell(cell))
        base = by_cell.get(_cell([rec["baseline"] if k == "method" else rec[k] for k in CELL_KEYS]))
        if method is None and base is None:
            keep.append(index)
            continue
        seeds = set() if method is None or base is None else set(method["seed"]) & set(base["seed"])
        now = pd.concat([g[g["seed"].isin(seeds)] for g in (method, base) if g is not None])
        if seeds and rec["config_hash"] == runs_stamp(now):
            keep.append(index)
        else:
            stale.append((*_cell(cell), f"- {rec['baseline']}"))
    stale_warning("paired_difference", stale, "they are left out")
    return diffs.loc[keep]


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
    have, with its paired interval. Stale rows (a seed re-run since) are left out with a warning
    (:func:`fresh_differences`).

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
    shown = (df["baseline"] == baseline) & df["block"].isna() & df["protocol"].isin(("linear", "finetune"))
    rows = fresh_differences(df[(df["kind"] != "paired_difference") | shown])
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
