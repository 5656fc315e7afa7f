"""Helpers to build results rows: a stable configuration hash and a row constructor with sensible defaults."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from monai_ilm.results.schema import COLUMNS

__all__ = ["config_hash", "utc_now", "make_row", "per_class_metric", "is_per_class_metric", "seeds_text", "parse_seeds"]


def config_hash(config: Mapping[str, Any], length: int = 12) -> str:
    """Short, stable hash of a JSON-serialisable configuration.

    The configuration is serialised as canonical JSON (sorted keys, no whitespace) and hashed with SHA-256,
    so the same settings always give the same hash regardless of key order.

    Args:
        config: the run configuration.
        length: number of hexadecimal characters to keep (1-64).

    Returns:
        The first ``length`` hex digits of the SHA-256 digest.

    Raises:
        ValueError: if ``config`` is not JSON-serialisable or ``length`` is out of range.
    """
    if not 1 <= length <= 64:
        raise ValueError(f"length: expected 1 to 64 hex characters, got {length}.")
    try:
        text = json.dumps(config, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"config: expected a JSON-serialisable mapping, got an unserialisable value ({err}).") from err
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def utc_now() -> str:
    """Current time as an ISO-8601 string in UTC, e.g. ``2025-01-31T12:00:00.123456+00:00``.

    Returns:
        The timestamp string.
    """
    return datetime.now(timezone.utc).isoformat()


def make_row(**fields: Any) -> dict[str, Any]:
    """Build one results row, filling the optional columns with defaults.

    Defaults: ``block``, ``ci_low``, ``ci_high`` = None; ``checkpoint``, ``config_hash``, ``baseline``, ``seeds``
    = ``""``; ``kind`` = ``"run"``; ``timestamp`` = :func:`utc_now`. All other columns of
    :data:`~monai_ilm.results.schema.SCHEMA` are required.
    Types are checked later by :func:`~monai_ilm.results.schema.validate` (called when writing).

    Args:
        fields: column values by name.

    Returns:
        A dict with exactly the schema's columns.

    Raises:
        ValueError: for unknown or missing columns.
    """
    unknown = sorted(set(fields) - set(COLUMNS))
    if unknown:
        raise ValueError(f"fields: expected a subset of {list(COLUMNS)}, got unknown column(s) {unknown}.")
    row: dict[str, Any] = {
        "block": None,
        "ci_low": None,
        "ci_high": None,
        "checkpoint": "",
        "config_hash": "",
        "kind": "run",
        "baseline": "",
        "seeds": "",
    }
    row.update(fields)
    row.setdefault("timestamp", utc_now())
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise ValueError(f"fields: expected values for the required column(s) {missing}, got none.")
    return {c: row[c] for c in COLUMNS}


def per_class_metric(metric: str, class_name: str) -> str:
    """The metric name of one class's value beside a class-averaged metric: ``mean_auc`` -> ``auc_<class>``.

    Args:
        metric: the averaged metric, e.g. ``"mean_auc"`` or ``"auc"``.
        class_name: the class (e.g. an NIH finding such as ``"Effusion"``).

    Returns:
        ``"<last word of metric>_<class_name>"``.
    """
    return f"{metric.split('_')[-1]}_{class_name}"


def is_per_class_metric(name: str, metrics: Iterable[str]) -> bool:
    """Whether ``name`` is a per-class metric (see :func:`per_class_metric`) of one of the averaged ``metrics``.

    Args:
        name: a metric name.
        metrics: the other metric names present.

    Returns:
        True if ``name`` starts with the per-class prefix of a different metric in ``metrics``.
    """
    return any(m != name and m.startswith("mean_") and name.startswith(per_class_metric(m, "")) for m in metrics)


def seeds_text(seeds: Iterable[int]) -> str:
    """The ``seeds`` column of a row that combines seeds: ``[1, 0]`` -> ``"0,1"``."""
    return ",".join(str(int(s)) for s in sorted(seeds))


def parse_seeds(text: Any) -> frozenset[int]:
    """The seeds of a ``seeds`` column value (:func:`seeds_text`); empty for a missing or empty value."""
    return (
        frozenset(int(s) for s in str(text).split(",") if s.strip().isdigit()) if isinstance(text, str) else frozenset()
    )
