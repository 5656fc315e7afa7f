"""Regenerate the paper's four result tables from the long-form results table.

The tables of Kaku et al. (NeurIPS 2021; reproduced in ``paper_results.md``):

1. linear evaluation (dataset x method, 100 % labels) — :func:`linear_evaluation_table`;
2. fine-tuning by label fraction ((dataset, fraction) x method) — :func:`finetune_table`;
3. feature reuse, CKA per block before vs after fine-tuning, with the fine-tuned performance
   ((dataset, method) x (fraction, block | perf)) — :func:`feature_reuse_table`;
4. layer-wise probing ((dataset, method) x block) — :func:`probing_table`.

Each returns a :class:`PaperTable` with numeric frames (value, ci_low, ci_high, n_seeds) and a formatted frame
whose cells read ``"74.4 (73.9–75.0)"`` (values scaled by 100 for percentages) or just the value when no interval
was stored. When several rows fall into one cell ``duplicates`` decides. The default, ``"seeds"``, never shows
one seed as if it were the mean: re-runs of one seed count once (the newest), and the seeds present are combined
into their mean, with the interval of the ``seed_mean`` summary row (:mod:`monai_ilm.results.seeds`) when that
row covers exactly these seeds, else without an interval (a single seed keeps its own). ``"latest"`` keeps the
newest row whatever its seed, ``"mean"`` averages every row (and drops the interval), ``"error"`` raises.
:func:`differences_table` shows the paired differences to a baseline method.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from monai_ilm.results.rows import is_per_class_metric, parse_seeds
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
]

DUPLICATE_POLICIES = ("seeds", "latest", "mean", "error")
DEFAULT_CKA = "cka_linear"
SUPERVISED_METHODS = ("supervised",)
"""Baselines trained from scratch: they have fine-tuning rows only, and fill Table 1 from them."""
MetricSpec = str | Mapping[str, str] | None


@dataclass(frozen=True)
class PaperTable:
    """One regenerated table.

    Attributes:
        name: table name (``"linear"``, ``"finetune"``, ``"feature_reuse"`` or ``"probe"``).
        value: numeric values (unscaled), NaN for empty cells.
        ci_low: lower interval ends (NaN if none).
        ci_high: upper interval ends (NaN if none).
        formatted: strings ``"value (ci_low–ci_high)"``, scaled and rounded for display; ``""`` for empty cells.
        n_seeds: how many seeds each cell combines (NaN for empty cells).
    """

    name: str
    value: pd.DataFrame
    ci_low: pd.DataFrame
    ci_high: pd.DataFrame
    formatted: pd.DataFrame
    n_seeds: pd.DataFrame | None = None

    @property
    def seed_counts(self) -> list[int]:
        """The distinct numbers of seeds behind the table's cells, ascending."""
        if self.n_seeds is None:
            return []
        counts = self.n_seeds.to_numpy(dtype=float).ravel()
        return sorted({int(c) for c in counts if np.isfinite(c)})


def format_cell(
    value: float,
    ci_low: float = np.nan,
    ci_high: float = np.nan,
    scale: float = 100.0,
    decimals: int = 1,
    dash: str = "–",
) -> str:
    """Format one cell as the paper does, e.g. ``"74.4 (73.9–75.0)"``.

    Args:
        value: the value (unscaled, e.g. an AUC of 0.744).
        ci_low: lower interval end, or NaN for no interval.
        ci_high: upper interval end, or NaN for no interval.
        scale: display multiplier (100 for percentages, 1 for CKA).
        decimals: digits after the decimal point.
        dash: separator between the interval ends.

    Returns:
        The formatted string, ``""`` if ``value`` is NaN.
    """
    if pd.isna(value):
        return ""
    text = f"{value * scale:.{decimals}f}"
    if pd.isna(ci_low) or pd.isna(ci_high):
        return text
    return f"{text} ({ci_low * scale:.{decimals}f}{dash}{ci_high * scale:.{decimals}f})"


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
                raise ValueError(f"metric: no metric given for dataset {dataset!r} (available: {available}).")
            out[dataset] = metric[dataset]
        elif len(available) == 1:
            out[dataset] = available[0]
        elif DEFAULT_CKA in available and all(m.startswith("cka_") for m in available):
            out[dataset] = DEFAULT_CKA  # the feature-reuse cells always write linear CKA beside other kernels
        else:
            raise ValueError(
                f"metric: dataset {dataset!r} has several metrics for protocol {protocol!r} ({available}); "
                "pass metric= as a name or a {dataset: name} mapping."
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
        return _combine_seeds(newest_rows(rows, [*keys, "seed"]), summaries, keys)
    counts = rows.groupby(keys, dropna=False).size()
    if duplicates == "error" and (counts > 1).any():
        raise ValueError(
            f"duplicates: several rows for cell(s) {counts[counts > 1].index.tolist()[:3]} (duplicates='error')."
        )
    if duplicates == "mean":
        agg = rows.groupby(keys, dropna=False, sort=False)["value"].agg(["mean", "size"]).reset_index()
        return agg.rename(columns={"mean": "value", "size": "n_seeds"}).assign(ci_low=np.nan, ci_high=np.nan)
    return newest_rows(rows, keys).assign(n_seeds=1)


def newest_rows(rows: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """The newest row (by ``timestamp``) of each group of ``keys``."""
    order = pd.to_datetime(rows["timestamp"], utc=True, format="ISO8601")
    return rows.assign(_t=order).sort_values("_t", kind="stable").groupby(keys, dropna=False, sort=False).tail(1)


def _combine_seeds(runs: pd.DataFrame, summaries: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """One record per cell: the mean over its seeds, with the summary row's interval when it is up to date."""
    fresh = {}
    for rec in newest_rows(summaries, keys).to_dict("records"):
        fresh[tuple(rec[k] for k in keys)] = rec
    cells = []
    for key, group in runs.groupby(keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        seeds = frozenset(int(s) for s in group["seed"])
        summary = fresh.get(key)
        record = dict(zip(keys, key), n_seeds=len(seeds), value=float(group["value"].mean()))
        if summary is not None and parse_seeds(summary["seeds"]) == seeds:
            record.update(value=summary["value"], ci_low=summary["ci_low"], ci_high=summary["ci_high"])
        elif len(group) == 1:
            record.update(ci_low=group["ci_low"].iloc[0], ci_high=group["ci_high"].iloc[0])
        else:
            record.update(ci_low=np.nan, ci_high=np.nan)
        cells.append(record)
        fresh.pop(key, None)
    for key, summary in fresh.items():  # cells given only as summaries (e.g. already collapsed over seeds)
        cells.append(
            dict(
                zip(keys, key),
                n_seeds=len(parse_seeds(summary["seeds"])),
                value=summary["value"],
                ci_low=summary["ci_low"],
                ci_high=summary["ci_high"],
            )
        )
    return pd.DataFrame(cells, columns=[*keys, "n_seeds", "value", "ci_low", "ci_high"])


def _ordered(values: Sequence, preferred: Sequence | None) -> list:
    """``preferred`` (filtered to present values) or the order of first appearance."""
    present = list(dict.fromkeys(values))
    if preferred is None:
        return present
    return [v for v in preferred if v in present]


def _frame_index(keys: list[str], order: list) -> pd.Index:
    if len(keys) == 1:
        return pd.Index(order, name=keys[0], dtype=object)
    if not order:
        return pd.MultiIndex.from_arrays([[] for _ in keys], names=keys)
    return pd.MultiIndex.from_tuples(order, names=keys)


def _pivot(
    cells: pd.DataFrame, index: list[str], columns: list[str], row_order: list, col_order: list
) -> dict[str, pd.DataFrame]:
    """Spread one-row-per-cell records into value / ci_low / ci_high frames with the given row and column order."""
    row_pos = {key: i for i, key in enumerate(row_order)}
    col_pos = {key: j for j, key in enumerate(col_order)}
    fields = ("value", "ci_low", "ci_high", "n_seeds")
    arrays = {field: np.full((len(row_order), len(col_order)), np.nan) for field in fields}
    for rec in cells.to_dict("records"):
        r = tuple(rec[k] for k in index) if len(index) > 1 else rec[index[0]]
        c = tuple(rec[k] for k in columns) if len(columns) > 1 else rec[columns[0]]
        if r in row_pos and c in col_pos:
            for field, arr in arrays.items():
                value = rec.get(field, np.nan)
                arr[row_pos[r], col_pos[c]] = np.nan if pd.isna(value) else float(value)
    rows, cols = _frame_index(index, row_order), _frame_index(columns, col_order)
    return {field: pd.DataFrame(arr, index=rows, columns=cols) for field, arr in arrays.items()}


def _per_column(option: Any, col: Any, default: Any) -> Any:
    return option.get(col, default) if isinstance(option, Mapping) else option


def _formatted(frames: dict[str, pd.DataFrame], scale, decimals, dash: str, with_ci=True) -> pd.DataFrame:
    """Format every cell; ``scale``, ``decimals`` and ``with_ci`` may be per-column mappings (mixed CKA/perf table)."""
    value = frames["value"]
    out = pd.DataFrame(index=value.index, columns=value.columns, dtype=object)
    for col in value.columns:
        s, d = _per_column(scale, col, 100.0), _per_column(decimals, col, 1)
        show_ci = _per_column(with_ci, col, True)
        lows = frames["ci_low"][col] if show_ci else [np.nan] * len(value)
        highs = frames["ci_high"][col] if show_ci else [np.nan] * len(value)
        out[col] = [format_cell(v, lo, hi, s, d, dash) for v, lo, hi in zip(value[col], lows, highs)]
    return out


def _table(name: str, frames: dict[str, pd.DataFrame], scale, decimals, dash: str, with_ci=True) -> PaperTable:
    formatted = _formatted(frames, scale, decimals, dash, with_ci)
    return PaperTable(name, frames["value"], frames["ci_low"], frames["ci_high"], formatted, frames["n_seeds"])


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
        raise ValueError(f"kwargs: unsupported option(s) {unknown}; expected a subset of {sorted(allowed)}.")
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
