"""Regenerate the paper's four result tables from the long-form results table.

The tables of Kaku et al. (NeurIPS 2021; reproduced in ``paper_results.md``):

1. linear evaluation (dataset x method, 100 % labels) — :func:`linear_evaluation_table`;
2. fine-tuning by label fraction ((dataset, fraction) x method) — :func:`finetune_table`;
3. feature reuse, CKA per block before vs after fine-tuning, with the fine-tuned performance
   ((dataset, method) x (fraction, block | perf)) — :func:`feature_reuse_table`;
4. layer-wise probing ((dataset, method) x block) — :func:`probing_table`.

Each returns a :class:`~monai_ilm.results.paper_table.PaperTable` with numeric frames (value, ci_low, ci_high,
n_seeds) and a formatted frame whose cells read ``"74.4 (73.9–75.0)"`` (values scaled by 100 for percentages) or
just the value when no interval was stored. When several rows fall into one cell ``duplicates`` decides
(:mod:`monai_ilm.results.cells`; by default the mean over the seeds). The paired differences to a baseline method
are :func:`~monai_ilm.results.differences.differences_table`, importable from here too.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import numpy as np
import pandas as pd

from monai_ilm.results.cells import DUPLICATE_POLICIES, MetricSpec, _dedupe, _select, newest_rows
from monai_ilm.results.differences import differences_table
from monai_ilm.results.paper_table import PaperTable, _ordered, _pivot, _table, format_cell
from monai_ilm.results.schema import validate

__all__ = [
    "DUPLICATE_POLICIES",
    "PaperTable",
    "format_cell",
    "linear_evaluation_table",
    "finetune_table",
    "feature_reuse_table",
    "probing_table",
    "paper_tables",
    "differences_table",
    "newest_rows",
]

SUPERVISED_METHODS = ("supervised",)
"""Baselines trained from scratch: they have fine-tuning rows only, and fill Table 1 from them."""


def linear_evaluation_table(
    df: pd.DataFrame,
    metric: MetricSpec = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    finetune_methods: Sequence[str] = (),
    label_fraction: float = 1.0,
    duplicates: str = "seeds",
    scale: float = 100.0,
    decimals: int = 1,
    dash: str = "–",
) -> PaperTable:
    """Table 1: linear evaluation at full labels, datasets as rows and methods as columns.

    The paper's "Supervised" column is a fully trained network, not a linear probe: list such methods in
    ``finetune_methods`` to take their ``protocol="finetune"`` rows at the same label fraction.

    Args:
        df: the long-form results table.
        metric: metric to show, a ``{dataset: metric}`` mapping, or None to infer the unique one per dataset.
        methods: column order (default: order of first appearance).
        datasets: row order (default: order of first appearance).
        finetune_methods: methods whose fine-tuning rows fill their column.
        label_fraction: label fraction of the linear evaluation (paper: 100 %).
        duplicates: policy for several rows per cell (``"seeds"``, ``"latest"``, ``"mean"`` or ``"error"``).
        scale: display multiplier.
        decimals: display decimals.
        dash: separator inside the interval.

    Returns:
        A :class:`PaperTable` indexed by dataset with one column per method.

    Raises:
        ValueError: if the table fails schema validation, or for an ambiguous metric or duplicate cells.
    """
    df = validate(df)
    frac = np.isclose(df["label_fraction"].to_numpy(dtype=float), label_fraction, rtol=0.0, atol=1e-9)
    linear = _select(df[frac & ~df["method"].isin(finetune_methods)], "linear", metric, blocks=False)
    full = _select(df[frac & df["method"].isin(finetune_methods)], "finetune", metric, blocks=False)
    rows = pd.concat([linear, full], ignore_index=True)
    cells = _dedupe(rows, ["dataset", "method"], duplicates)
    frames = _pivot(
        cells, ["dataset"], ["method"], _ordered(cells["dataset"], datasets), _ordered(cells["method"], methods)
    )
    return _table("linear", frames, scale, decimals, dash)


def finetune_table(
    df: pd.DataFrame,
    metric: MetricSpec = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    duplicates: str = "seeds",
    scale: float = 100.0,
    decimals: int = 1,
    dash: str = "–",
) -> PaperTable:
    """Table 2: full fine-tuning, rows (dataset, label_fraction descending) and one column per method.

    Args:
        df: the long-form results table.
        metric: metric to show, a ``{dataset: metric}`` mapping, or None to infer the unique one per dataset.
        methods: column order (default: order of first appearance).
        datasets: dataset order (default: order of first appearance).
        duplicates: policy for several rows per cell.
        scale: display multiplier.
        decimals: display decimals.
        dash: separator inside the interval.

    Returns:
        A :class:`PaperTable` indexed by ``(dataset, label_fraction)``.

    Raises:
        ValueError: if the table fails schema validation, or for an ambiguous metric or duplicate cells.
    """
    df = validate(df)
    cells = _dedupe(_select(df, "finetune", metric, blocks=False), ["dataset", "label_fraction", "method"], duplicates)
    row_order = [
        (d, f)
        for d in _ordered(cells["dataset"], datasets)
        for f in sorted(cells.loc[cells["dataset"] == d, "label_fraction"].unique(), reverse=True)
    ]
    frames = _pivot(cells, ["dataset", "label_fraction"], ["method"], row_order, _ordered(cells["method"], methods))
    return _table("finetune", frames, scale, decimals, dash)


def _block_label(block: int) -> str:
    return f"B{int(block)}"


def feature_reuse_table(
    df: pd.DataFrame,
    metric: MetricSpec = None,
    perf_metric: MetricSpec = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    label_fractions: Sequence[float] | None = None,
    duplicates: str = "seeds",
    cka_decimals: int = 2,
    perf_scale: float = 100.0,
    perf_decimals: int = 1,
    perf_with_ci: bool = False,
    dash: str = "–",
) -> PaperTable:
    """Table 3: per-block feature reuse (CKA before vs after fine-tuning) and the fine-tuned performance.

    Rows are ``(dataset, method)``; columns are ``(label_fraction, "B1".."B4", "perf")``. CKA values come from
    ``protocol="feature_reuse"`` rows with a block, the performance from ``protocol="finetune"`` rows of the
    same dataset, method and label fraction.

    Args:
        df: the long-form results table.
        metric: the CKA metric name (e.g. ``"cka_linear"``), a mapping, or None to infer.
        perf_metric: the fine-tuning metric, a mapping, or None to infer.
        methods: row order of methods (default: order of first appearance).
        datasets: dataset order (default: order of first appearance).
        label_fractions: fractions to show (default: all with feature-reuse rows, ascending as in the paper).
        duplicates: policy for several rows per cell.
        cka_decimals: display decimals of the CKA values (shown unscaled).
        perf_scale: display multiplier of the performance column.
        perf_decimals: display decimals of the performance column.
        perf_with_ci: also format the performance interval (the paper shows the value only); the numeric
            frames always carry it.
        dash: separator inside an interval.

    Returns:
        A :class:`PaperTable` with MultiIndex rows and columns.

    Raises:
        ValueError: if the table fails schema validation, or for an ambiguous metric or duplicate cells.
    """
    df = validate(df)
    cka = _dedupe(
        _select(df, "feature_reuse", metric, blocks=True), ["dataset", "method", "label_fraction", "block"], duplicates
    )
    cka = cka.assign(column=cka["block"].map(_block_label))
    perf = _dedupe(
        _select(df, "finetune", perf_metric, blocks=False), ["dataset", "method", "label_fraction"], duplicates
    )
    fractions = sorted(cka["label_fraction"].unique()) if label_fractions is None else list(label_fractions)
    perf = perf[perf["label_fraction"].isin(fractions) & perf["dataset"].isin(cka["dataset"])].assign(column="perf")
    cells = pd.concat([cka, perf], ignore_index=True)
    blocks = [_block_label(b) for b in sorted(cka["block"].unique())]
    col_order = [(f, c) for f in fractions for c in [*blocks, "perf"]]
    row_order = [
        (d, m)
        for d in _ordered(cka["dataset"], datasets)
        for m in _ordered(cka.loc[cka["dataset"] == d, "method"], methods)
    ]
    frames = _pivot(cells, ["dataset", "method"], ["label_fraction", "column"], row_order, col_order)
    scale = {col: (perf_scale if col[1] == "perf" else 1.0) for col in col_order}
    decimals = {col: (perf_decimals if col[1] == "perf" else cka_decimals) for col in col_order}
    with_ci = {col: (perf_with_ci if col[1] == "perf" else True) for col in col_order}
    return _table("feature_reuse", frames, scale, decimals, dash, with_ci)


def probing_table(
    df: pd.DataFrame,
    metric: MetricSpec = None,
    methods: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    duplicates: str = "seeds",
    scale: float = 100.0,
    decimals: int = 1,
    dash: str = "–",
) -> PaperTable:
    """Table 4: layer-wise probing, rows ``(dataset, method)`` and one column per block (``"B1"``...).

    Args:
        df: the long-form results table.
        metric: metric to show, a ``{dataset: metric}`` mapping, or None to infer the unique one per dataset.
        methods: method order (default: order of first appearance).
        datasets: dataset order (default: order of first appearance).
        duplicates: policy for several rows per cell.
        scale: display multiplier.
        decimals: display decimals.
        dash: separator inside the interval.

    Returns:
        A :class:`PaperTable` indexed by ``(dataset, method)``.

    Raises:
        ValueError: if the table fails schema validation, or for an ambiguous metric or duplicate cells.
    """
    df = validate(df)
    cells = _dedupe(_select(df, "probe", metric, blocks=True), ["dataset", "method", "block"], duplicates)
    cells = cells.assign(column=cells["block"].map(_block_label))
    row_order = [
        (d, m)
        for d in _ordered(cells["dataset"], datasets)
        for m in _ordered(cells.loc[cells["dataset"] == d, "method"], methods)
    ]
    col_order = [_block_label(b) for b in sorted(cells["block"].unique())]
    frames = _pivot(cells, ["dataset", "method"], ["column"], row_order, col_order)
    return _table("probe", frames, scale, decimals, dash)


def paper_tables(df: pd.DataFrame, **kwargs) -> dict[str, PaperTable]:
    """All four tables that have rows in ``df``, keyed ``"linear"``, ``"finetune"``, ``"feature_reuse"``, ``"probe"``.

    Args:
        df: the long-form results table.
        kwargs: options applied to every table that accepts them (``methods``, ``datasets``, ``duplicates``,
            ``dash``, ``metric``). Table 1 takes its Supervised column from the fine-tuning rows at 100 %, as
            the paper's does.

    Returns:
        A dict of :class:`PaperTable`; tables without rows are left out.

    Raises:
        ValueError: for an unsupported option or any error of the individual builders.
    """
    allowed = {"methods", "datasets", "duplicates", "dash", "metric"}
    unknown = sorted(set(kwargs) - allowed)
    if unknown:
        raise ValueError(f"kwargs: expected a subset of {sorted(allowed)}, got unsupported option(s) {unknown}.")
    df = validate(df)
    supervised = tuple(m for m in SUPERVISED_METHODS if ((df["protocol"] == "finetune") & (df["method"] == m)).any())
    builders = {
        "linear": (partial(linear_evaluation_table, finetune_methods=supervised), "linear"),
        "finetune": (finetune_table, "finetune"),
        "feature_reuse": (feature_reuse_table, "feature_reuse"),
        "probe": (probing_table, "probe"),
    }
    return {
        name: build(df, **kwargs) for name, (build, protocol) in builders.items() if (df["protocol"] == protocol).any()
    }
