"""Results-table rows of a downstream result (linear evaluation, fine-tuning, probes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from monai_ilm.evaluation.prediction import DownstreamResult
from monai_ilm.results.rows import make_row, per_class_metric

__all__ = ["downstream_rows"]


def _class_label(class_names: Sequence[str] | None, c: int) -> str:
    if class_names is None:
        return str(c)
    if c >= len(class_names):
        raise ValueError(f"class_names: expected at least {c + 1} names, got {len(class_names)}.")
    return str(class_names[c])


def downstream_rows(
    result: DownstreamResult,
    protocol: str,
    dataset: str,
    method: str,
    label_fraction: float,
    seed: int,
    run_id: str,
    block: int | None = None,
    per_class_rows: bool = False,
    class_names: Sequence[str] | None = None,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Results-table rows (:func:`monai_ilm.results.make_row`) of a downstream result.

    One row with the task metric and its interval; with ``per_class_rows`` also one row per class with a
    defined per-class value (metric ``"auc_<class name>"``, no interval). Per-class rows are off by default
    because the table builders infer the metric to show when a protocol has a single one per data set.

    Args:
        result: a :class:`DownstreamResult`.
        protocol: ``"linear"``, ``"finetune"`` or ``"probe"``.
        dataset: data set name.
        method: pretraining method (``"moco"``, ``"mse"``, ``"barlow"``, ``"supervised"`` ...).
        label_fraction: fraction of the training labels used.
        seed: seed of the run.
        run_id: run identifier.
        block: ResNet block for probe rows (None for whole-model rows).
        per_class_rows: add one row per class of a per-class metric (NIH findings).
        class_names: names of the classes (e.g. the 14 findings); default: their indices.
        fields: further columns, e.g. ``checkpoint``, ``config_hash``, ``timestamp``.

    Returns:
        A list of row dicts.

    Raises:
        ValueError: for unknown columns or too few ``class_names``.
    """
    common = dict(
        dataset=dataset,
        method=method,
        protocol=protocol,
        label_fraction=label_fraction,
        seed=seed,
        run_id=run_id,
        block=block,
        n=result.n,
        **fields,
    )
    rows = [make_row(metric=result.metric, value=result.value, ci_low=result.ci_low, ci_high=result.ci_high, **common)]
    if per_class_rows and result.per_class is not None:
        for c, value in enumerate(result.per_class):
            if np.isfinite(value):
                metric = per_class_metric(result.metric, _class_label(class_names, c))
                rows.append(make_row(metric=metric, value=float(value), **common))
    return rows
