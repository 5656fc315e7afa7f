"""The long-form ("tidy") results schema: one row per (run, metric, block) measurement.

Every number the project reports (linear evaluation, fine-tuning, layer-wise probing, feature-reuse CKA, KS
distances) is one row of the same table, so a single reader can regenerate the paper's four tables and a
runner can tell which cells already exist. :data:`SCHEMA` is the single source of truth for the column names,
types and nullability; :func:`validate` checks a frame against it and returns a copy with canonical dtypes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Column", "SCHEMA", "COLUMNS", "PERFORMANCE_PROTOCOLS", "PROTOCOLS", "ROW_KINDS", "empty_frame", "validate"]

PROTOCOLS = ("linear", "finetune", "probe", "feature_reuse", "ks")
"""The evaluation protocols, in one place: the ``protocol`` column, the ``protocol`` setting of ``evaluate.json``
(:mod:`monai_ilm.recipe_checks`) and :mod:`monai_ilm.evaluation.protocols` read it."""
PERFORMANCE_PROTOCOLS = PROTOCOLS[:3]
"""The protocols that score a classifier (linear probe, fine-tuning, layer-wise probing), where methods are compared."""
ROW_KINDS = ("run", "seed_mean", "paired_difference")
"""``run``: one seed's measurement; ``seed_mean``: the mean over the seeds of a cell with an interval that
accounts for seed-to-seed spread and test sampling; ``paired_difference``: ``method - baseline`` on the same
test resamples (see :mod:`monai_ilm.results.seeds`)."""


@dataclass(frozen=True)
class Column:
    """One column of the results schema.

    Attributes:
        name: column name.
        kind: ``"str"``, ``"float"``, ``"int"`` or ``"timestamp"`` (an ISO-8601 string).
        nullable: whether missing values are allowed (written as empty CSV fields).
        description: meaning of the column.
        allow_empty: for ``"str"`` columns, whether the empty string is allowed.
        default: the value a frame without this column gets (columns added after schema version 1, so older
            results files stay readable); None for a required column.
    """

    name: str
    kind: str
    nullable: bool
    description: str
    allow_empty: bool = False
    default: Any = None

    @property
    def dtype(self) -> str:
        """The pandas dtype of the column after :func:`validate`."""
        return {"str": "string", "timestamp": "string", "float": "float64", "int": "Int64"}[self.kind]


SCHEMA: tuple[Column, ...] = (
    Column("dataset", "str", False, "dataset name, e.g. 'nih', 'dr', 'idc' (monai_ilm.data.DATASETS)"),
    Column(
        "method",
        "str",
        False,
        "pretraining method: 'moco', 'mse', 'barlow' (monai_ilm.methods.METHODS) or e.g. 'supervised'",
    ),
    Column("protocol", "str", False, f"evaluation protocol, one of {PROTOCOLS}"),
    Column("label_fraction", "float", False, "fraction of the labelled training set used, in (0, 1]"),
    Column("seed", "int", True, "random seed of the run; empty for rows that combine seeds (see 'seeds')"),
    Column("block", "int", True, "ResNet block (1-4) for probe/feature_reuse rows; empty for whole-model rows"),
    Column("metric", "str", False, "metric name, e.g. 'mean_auc', 'auc', 'f1_macro', 'cka_linear', 'ks'"),
    Column("value", "float", False, "metric value on the full test set"),
    Column("ci_low", "float", True, "lower end of the confidence interval (empty if none)"),
    Column("ci_high", "float", True, "upper end of the confidence interval (empty if none)"),
    Column("n", "int", False, "number of test samples the value was computed on"),
    Column("run_id", "str", False, "identifier of the run; also the results file name"),
    Column("checkpoint", "str", False, "checkpoint evaluated (path or name; may be empty)", allow_empty=True),
    Column(
        "config_hash",
        "str",
        False,
        "run rows: hash of the run configuration (the cell's fingerprint); seed_mean and paired_difference rows: "
        "the stamp of the runs they combine (monai_ilm.results.summaries.runs_stamp); may be empty",
        allow_empty=True,
    ),
    Column("timestamp", "timestamp", False, "ISO-8601 time the row was produced, e.g. 2025-01-31T12:00:00+00:00"),
    Column("kind", "str", False, f"what the row is, one of {ROW_KINDS}", default="run"),
    Column("baseline", "str", False, "for paired_difference rows: the method subtracted", allow_empty=True, default=""),
    Column(
        "seeds",
        "str",
        False,
        "the seeds a row combines, e.g. '0,1,2' (empty: the row's seed)",
        allow_empty=True,
        default="",
    ),
)
COLUMNS: tuple[str, ...] = tuple(c.name for c in SCHEMA)

_EXPECTED = {
    "str": "a non-empty string",
    "float": "a finite number",
    "int": "an integer",
    "timestamp": "an ISO-8601 timestamp string",
}


def empty_frame() -> pd.DataFrame:
    """An empty results frame with the schema's columns and dtypes.

    Returns:
        A zero-row :class:`pandas.DataFrame`.
    """
    return pd.DataFrame({c.name: pd.Series([], dtype=c.dtype) for c in SCHEMA})


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, str) and v == "") or (isinstance(v, float) and math.isnan(v))


def _to_str(v: Any) -> str:
    if not isinstance(v, str):
        raise TypeError
    return v


def _to_float(v: Any) -> float:
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (numbers.Real, str)):
        raise TypeError
    out = float(v)
    if not math.isfinite(out):
        raise ValueError
    return out


def _to_int(v: Any) -> int:
    if isinstance(v, (bool, np.bool_)):
        raise TypeError
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, str):
        return int(v.strip())
    if isinstance(v, numbers.Real) and float(v).is_integer():
        return int(v)
    raise TypeError


def _to_timestamp(v: Any) -> str:
    if isinstance(v, datetime):  # includes pandas.Timestamp
        return v.isoformat()
    datetime.fromisoformat(_to_str(v))
    return v


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": _to_str,
    "float": _to_float,
    "int": _to_int,
    "timestamp": _to_timestamp,
}


def _convert_column(values: pd.Series, col: Column) -> list[Any]:
    """Convert every value of one column, raising a ValueError that names the column and the bad rows."""
    out: list[Any] = []
    bad: list[tuple[Any, Any]] = []
    for row, v in values.items():
        if _is_missing(v) and not (col.kind == "str" and col.allow_empty and v == ""):
            if not col.nullable:
                bad.append((row, v))
            out.append(None)
            continue
        try:
            out.append(_CONVERTERS[col.kind](v))
        except (TypeError, ValueError, OverflowError):
            bad.append((row, v))
            out.append(None)
    if bad:
        expected = _EXPECTED[col.kind] + (" or empty" if col.nullable else "")
        examples = ", ".join(f"row {r}: {v!r}" for r, v in bad[:3])
        raise ValueError(
            f"results column {col.name!r}: expected {expected}, got {examples}"
            + (f" and {len(bad) - 3} more." if len(bad) > 3 else ".")
        )
    return out


def _check_ranges(df: pd.DataFrame) -> None:
    def fail(column: str, expected: str, mask: pd.Series) -> None:
        rows = df.index[mask.fillna(False).to_numpy(dtype=bool)].tolist()
        if rows:
            raise ValueError(f"results column {column!r}: expected {expected}, got other values in rows {rows[:5]}.")

    fail("protocol", f"one of {PROTOCOLS}", ~df["protocol"].isin(PROTOCOLS))
    fail("kind", f"one of {ROW_KINDS}", ~df["kind"].isin(ROW_KINDS))
    fail("seed", "a seed for every 'run' row", (df["kind"] == "run") & df["seed"].isna())
    fail(
        "baseline",
        "a baseline method for every 'paired_difference' row",
        (df["kind"] == "paired_difference") & (df["baseline"] == ""),
    )
    fail("label_fraction", "a fraction in (0, 1]", (df["label_fraction"] <= 0) | (df["label_fraction"] > 1))
    fail("block", "a block index >= 0 or empty", df["block"] < 0)
    fail("n", "a sample count >= 1", df["n"] < 1)
    fail("ci_low", "ci_low and ci_high both given or both empty", df["ci_low"].isna() != df["ci_high"].isna())
    fail("ci_high", "ci_high >= ci_low", df["ci_high"] < df["ci_low"])


def validate(df: pd.DataFrame) -> pd.DataFrame:
    """Check a results frame against :data:`SCHEMA` and return a copy with canonical dtypes and column order.

    Values may be given as strings (as read from CSV): numbers are parsed, empty strings become missing values
    in nullable columns. The index is reset. Columns that have a :attr:`Column.default` may be absent (files
    written before they existed); they are filled with the default.

    Args:
        df: a frame with the schema's columns (in any order).

    Returns:
        A validated copy with the columns in schema order and the dtypes of :attr:`Column.dtype`.

    Raises:
        ValueError: naming the first offending column and what was expected (missing or unexpected columns,
            wrong types, missing values in non-nullable columns, out-of-range values).
    """
    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"df: expected a pandas DataFrame, got {type(df).__name__}.")
    df = df.assign(**{c.name: c.default for c in SCHEMA if c.default is not None and c.name not in df.columns})
    missing = [c for c in COLUMNS if c not in df.columns]
    extra = [c for c in df.columns if c not in COLUMNS]
    if missing:
        raise ValueError(f"results: expected the columns {list(COLUMNS)}, got missing column(s) {missing}.")
    if extra:
        raise ValueError(f"results: expected the columns {list(COLUMNS)}, got unexpected column(s) {extra}.")
    df = df.reset_index(drop=True)
    out = pd.DataFrame({c.name: pd.Series(_convert_column(df[c.name], c), dtype=c.dtype) for c in SCHEMA})
    _check_ranges(out)
    return out
