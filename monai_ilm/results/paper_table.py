"""A regenerated paper table: numeric frames, their formatted cells, and how one-row-per-cell records fill them.

A :class:`PaperTable` holds value / ci_low / ci_high / n_seeds frames and a formatted frame whose cells read
``"74.4 (73.9–75.0)"`` (:func:`format_cell`; values scaled by 100 for percentages) or just the value when no
interval was stored. The table builders (:mod:`monai_ilm.results.tables`, :mod:`monai_ilm.results.differences`)
choose the rows and order; the helpers here spread the cells into frames and format them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["PaperTable", "format_cell"]


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
