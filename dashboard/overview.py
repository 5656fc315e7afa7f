"""The results overview: the paper's four tables from our results, with best cells, differences to plain MoCo
and the published numbers beside ours.

The tables themselves come from ``monai_ilm.results`` (:func:`~monai_ilm.results.linear_evaluation_table` and
friends); this module only chooses their options and decorates them for display and download.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.data import order_methods
from dashboard.labels import dataset_label, dataset_short_label, fraction_label, method_label, method_short_label
from monai_ilm.results import (
    PERFORMANCE_PROTOCOLS,
    PaperTable,
    feature_reuse_table,
    finetune_table,
    format_cell,
    linear_evaluation_table,
    probing_table,
)

__all__ = [
    "TABLES",
    "TableSpec",
    "best_mask",
    "build_table",
    "compact_column_label",
    "delta_to_reference",
    "display_frame",
    "low_label_gains",
    "performance_metric_options",
    "tidy_table",
]

REFERENCE = "moco"
FINETUNE_METHODS = ("supervised",)  # the paper's "Supervised" column is a fully trained network


@dataclass(frozen=True)
class TableSpec:
    """One of the paper's tables.

    Attributes:
        name: the ``PaperTable`` name.
        title: heading shown above the table.
        protocols: protocols whose rows the table needs (the first one decides whether it is shown).
        methods_in_columns: whether methods are the columns (else they are an index level).
    """

    name: str
    title: str
    protocols: tuple[str, ...]
    methods_in_columns: bool


TABLES: tuple[TableSpec, ...] = (
    TableSpec("linear", "Table 1 · Linear evaluation (100 % labels)", ("linear",), True),
    TableSpec("finetune", "Table 2 · Fine-tuning the entire encoder by label fraction", ("finetune",), True),
    TableSpec(
        "feature_reuse",
        "Table 3 · Feature reuse (CKA before vs after fine-tuning, per block) and fine-tuned performance",
        ("feature_reuse", "finetune"),
        False,
    ),
    TableSpec("probe", "Table 4 · Layer-wise probing (linear classifier on each block)", ("probe",), False),
)
_SPECS = {spec.name: spec for spec in TABLES}


def performance_metric_options(df: pd.DataFrame) -> dict[str, list[str]]:
    """Performance metrics per dataset over the linear, fine-tuning and probing rows (CKA/KS excluded).

    Args:
        df: results rows.

    Returns:
        ``{dataset: sorted metric names}``.
    """
    rows = df[df["protocol"].isin(PERFORMANCE_PROTOCOLS)]
    return {d: sorted(rows.loc[rows["dataset"] == d, "metric"].unique()) for d in rows["dataset"].unique()}


def _datasets(df: pd.DataFrame) -> list[str]:
    from dashboard.data import filter_options

    return filter_options(df)["datasets"]


def column_format(name: str, column: object) -> tuple[float, int]:
    """Display scale and decimals of a table column (percent for performance, raw CKA with 2 decimals)."""
    if name == "feature_reuse" and isinstance(column, tuple) and column[1] != "perf":
        return 1.0, 2
    return 100.0, 1


def build_table(name: str, df: pd.DataFrame, metrics: Mapping[str, str], cka_kind: str = "cka_linear") -> PaperTable:
    """Build one of the paper's tables with ``monai_ilm.results``.

    Args:
        name: ``"linear"``, ``"finetune"``, ``"feature_reuse"`` or ``"probe"``.
        df: results rows, one per cell (see :func:`dashboard.data.collapse_seeds`).
        metrics: performance metric per dataset (must name every dataset present).
        cka_kind: the CKA metric of the feature-reuse table.

    Returns:
        The :class:`~monai_ilm.results.PaperTable`.

    Raises:
        ValueError: from the table builders (e.g. a dataset without a metric).
    """
    common = {"methods": order_methods(df["method"]), "datasets": _datasets(df), "duplicates": "seeds"}
    if name == "linear":
        has_ft = ((df["protocol"] == "finetune") & df["method"].isin(FINETUNE_METHODS)).any()
        return linear_evaluation_table(
            df, metric=dict(metrics), finetune_methods=FINETUNE_METHODS if has_ft else (), **common
        )
    if name == "finetune":
        return finetune_table(df, metric=dict(metrics), **common)
    if name == "feature_reuse":
        return feature_reuse_table(df, metric=cka_kind, perf_metric=dict(metrics), cka_decimals=2, **common)
    if name == "probe":
        return probing_table(df, metric=dict(metrics), **common)
    raise ValueError(f"name: expected one of {list(_SPECS)}, got {name!r}.")


def _reference_frame(value: pd.DataFrame, reference: str, methods_in_columns: bool) -> pd.DataFrame | None:
    """The reference method's values broadcast to the shape of ``value`` (None if absent)."""
    if methods_in_columns:
        if reference not in value.columns:
            return None
        return pd.DataFrame({c: value[reference] for c in value.columns}, index=value.index)[value.columns]
    methods = value.index.get_level_values("method")
    if reference not in set(methods):
        return None
    ref = value[methods == reference].droplevel("method")
    out = ref.reindex(value.index.get_level_values("dataset"))
    out.index = value.index
    return out


def delta_to_reference(table: PaperTable, reference: str = REFERENCE) -> pd.DataFrame:
    """Each cell minus the reference method's cell of the same row (methods in columns) or of the same dataset
    and column (methods in the index); NaN where either is missing and for the reference itself.

    Args:
        table: a table built by :func:`build_table`.
        reference: the reference method.

    Returns:
        Unscaled differences, same shape as ``table.value``.
    """
    value = table.value
    in_columns = _SPECS[table.name].methods_in_columns
    ref = _reference_frame(value, reference, in_columns)
    if ref is None:
        return pd.DataFrame(np.nan, index=value.index, columns=value.columns)
    delta = value - ref
    if in_columns:
        delta[reference] = np.nan
    else:
        delta.loc[value.index.get_level_values("method") == reference] = np.nan
    return delta


def best_mask(table: PaperTable) -> pd.DataFrame:
    """Cells holding the best (highest) value among the methods compared: per row when methods are columns,
    per dataset and column when methods are an index level. Needs at least two values to compare.

    Args:
        table: a table built by :func:`build_table`.

    Returns:
        A boolean frame, same shape as ``table.value``.
    """
    value = table.value
    if table.name == "feature_reuse":  # CKA is a description of similarity, not a score: no "best"
        value = value.where([[c[1] == "perf" for c in value.columns]] * len(value))
    if _SPECS[table.name].methods_in_columns:
        best = value.max(axis=1)
        count = value.notna().sum(axis=1)
        mask = value.eq(best, axis=0) & value.notna()
        return mask & (count >= 2).to_numpy()[:, None]
    groups = value.groupby(level="dataset", sort=False)
    best = groups.transform("max")
    count = groups.transform("count")
    return value.eq(best) & value.notna() & (count >= 2)


def _index_columns(table: PaperTable, short: bool = False) -> pd.DataFrame:
    """The row labels of a table as display columns (``short``: data set and method abbreviations)."""
    index = table.value.index
    out = {}
    for level, name in enumerate(index.names):
        values = index.get_level_values(level)
        if name == "dataset":
            out["Dataset"] = [dataset_short_label(v) if short else dataset_label(v) for v in values]
        elif name == "label_fraction":
            out["Labels"] = [fraction_label(v) for v in values]
        elif name == "method":
            out["Method"] = [method_short_label(v) if short else method_label(v) for v in values]
        else:
            out[str(name)] = list(values)
    return pd.DataFrame(out)


def column_label(name: str, column: object) -> str:
    """Display label of a table column."""
    if isinstance(column, tuple):  # feature reuse: (label_fraction, "B1" | "perf")
        return f"{fraction_label(column[0])} · {column[1]}"
    return method_label(str(column)) if _SPECS[name].methods_in_columns else str(column)


def _decorated(table: PaperTable, best: pd.DataFrame, delta: pd.DataFrame, show_delta: bool) -> pd.DataFrame:
    out = table.formatted.copy()
    for j, col in enumerate(table.value.columns):
        scale, decimals = column_format(table.name, col)
        cells = []
        for i, text in enumerate(table.formatted.iloc[:, j]):
            if text and best.iat[i, j]:
                text = f"★ {text}"
            d = delta.iat[i, j]
            if text and show_delta and not pd.isna(d):
                text = f"{text}  Δ{d * scale:+.{decimals}f}"
            cells.append(text)
        out.iloc[:, j] = cells
    return out


def display_frame(
    table: PaperTable,
    reference: str = REFERENCE,
    show_delta: bool = True,
    paper: PaperTable | None = None,
    compact: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The table as display strings: best cells starred, ``Δ`` to the reference, published numbers beside ours.

    Args:
        table: a table built by :func:`build_table`.
        reference: the method the differences are taken to (plain MoCo).
        show_delta: append ``Δ+1.2`` (display units) to every non-reference cell.
        paper: the published table of the same name; its cells become a ``"<column> (paper)"`` column right
            after each of ours (blank where the paper has no such cell).
        compact: for wide tables (3 and 4) with ``paper``: each cell reads ``"ours · paper"`` (the paper's value
            without its interval, ``–`` where it has none), no ``Δ``, the fine-tuned score of Table 3 without its
            interval (Table 2 has it), short data set names and ``"1% B1"`` headers. The downloads keep every number.

    Returns:
        ``(text, best)``: the display frame (row labels as leading columns, flat string column names) and a
        boolean frame of the same shape marking the best cells (for highlighting).
    """
    best = best_mask(table)
    if compact and paper is not None:
        return _compact_frame(table, best, paper)
    text = _decorated(table, best, delta_to_reference(table, reference), show_delta)
    paper_text = None
    if paper is not None:
        paper_text = paper.formatted.reindex(index=table.value.index, columns=table.value.columns).fillna("")
    labels = _index_columns(table)
    columns: dict[str, list] = {c: list(labels[c]) for c in labels.columns}
    flags: dict[str, list] = {c: [False] * len(labels) for c in labels.columns}
    for j, col in enumerate(table.value.columns):
        label = column_label(table.name, col)
        columns[label] = list(text.iloc[:, j])
        flags[label] = list(best.iloc[:, j])
        if paper_text is not None:
            columns[f"{label} (paper)"] = list(paper_text.iloc[:, j])
            flags[f"{label} (paper)"] = [False] * len(labels)
    return pd.DataFrame(columns), pd.DataFrame(flags)


def _compact_frame(table: PaperTable, best: pd.DataFrame, paper: PaperTable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``"ours · paper"`` cells (see :func:`display_frame` ``compact``)."""
    published = paper.value.reindex(index=table.value.index, columns=table.value.columns)
    labels = _index_columns(table, short=True)
    columns: dict[str, list] = {c: list(labels[c]) for c in labels.columns}
    flags: dict[str, list] = {c: [False] * len(labels) for c in labels.columns}
    for j, col in enumerate(table.value.columns):
        scale, decimals = column_format(table.name, col)
        score_only = isinstance(col, tuple) and col[1] == "perf"
        cells = []
        for i in range(len(table.value)):
            ours = table.formatted.iat[i, j]
            if ours and score_only:
                ours = format_cell(table.value.iat[i, j], scale=scale, decimals=decimals)
            theirs = format_cell(published.iat[i, j], scale=scale, decimals=decimals) or "–"
            star = "★ " if ours and best.iat[i, j] else ""
            cells.append(f"{star}{ours} · {theirs}" if ours else "")
        label = compact_column_label(table.name, col)
        columns[label] = cells
        flags[label] = list(best.iloc[:, j])
    return pd.DataFrame(columns), pd.DataFrame(flags)


def compact_column_label(name: str, column: object) -> str:
    """A short header: ``"1% B1"``, ``"6% score"`` (Table 3) or ``"B2"`` (Table 4)."""
    if isinstance(column, tuple):
        part = "score" if column[1] == "perf" else column[1]
        return f"{fraction_label(column[0])} {part}"
    return column_label(name, column)


def tidy_table(table: PaperTable, reference: str = REFERENCE, paper: PaperTable | None = None) -> pd.DataFrame:
    """The table in long form for download: one row per cell with its numbers, the best flag and Δ.

    Args:
        table: a table built by :func:`build_table`.
        reference: the reference method of ``delta_vs_<reference>``.
        paper: the published table of the same name (adds ``paper_value``, ``paper_ci_low``, ``paper_ci_high``).

    Returns:
        Columns: the row labels, the column labels (``method``/``column``/``label_fraction``), ``value``,
        ``ci_low``, ``ci_high``, ``formatted``, ``best``, ``delta_vs_<reference>`` and the paper columns.
    """
    value = table.value
    best, delta = best_mask(table), delta_to_reference(table, reference)
    row_names = list(value.index.names)
    col_names = list(value.columns.names) if isinstance(value.columns, pd.MultiIndex) else [value.columns.name]
    aligned = {}
    if paper is not None:
        aligned = {
            k: getattr(paper, k).reindex(index=value.index, columns=value.columns)
            for k in ("value", "ci_low", "ci_high")
        }
    records = []
    for i, row in enumerate(value.index):
        row_key = row if isinstance(row, tuple) else (row,)
        for j, col in enumerate(value.columns):
            col_key = col if isinstance(col, tuple) else (col,)
            rec = dict(zip(row_names, row_key)) | dict(zip(col_names, col_key))
            rec |= {
                "value": value.iat[i, j],
                "ci_low": table.ci_low.iat[i, j],
                "ci_high": table.ci_high.iat[i, j],
                "formatted": table.formatted.iat[i, j],
                "best": bool(best.iat[i, j]),
                f"delta_vs_{reference}": delta.iat[i, j],
            }
            for k, frame in aligned.items():
                rec[f"paper_{k}"] = frame.iat[i, j]
            records.append(rec)
    return pd.DataFrame(records)


def low_label_gains(table: PaperTable, reference: str = REFERENCE, max_fraction: float = 0.06) -> dict[str, float]:
    """The paper's headline: mean improvement over the reference at low label fractions, per method.

    Args:
        table: the fine-tuning table (:func:`build_table` ``("finetune", ...)``).
        reference: the reference method.
        max_fraction: label fractions up to this value count as "low".

    Returns:
        ``{method: mean unscaled difference}`` over the datasets and low fractions where both cells exist;
        methods without such cells and the reference are left out.
    """
    if table.name != "finetune":
        raise ValueError(f"table: expected the fine-tuning table, got {table.name!r}.")
    delta = delta_to_reference(table, reference)
    fractions = delta.index.get_level_values("label_fraction").to_numpy(dtype=float)
    low = delta[fractions <= max_fraction + 1e-12]
    means = low.mean(axis=0, skipna=True)
    return {m: float(v) for m, v in means.items() if m != reference and not pd.isna(v)}
