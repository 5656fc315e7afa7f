"""Kolmogorov-Smirnov distance between the output distributions of two models.

The paper's abstract compares models fine-tuned with few (1 %) and many (100 %) labels by the distance between
their output-probability distributions on the test set: a smaller distance means the low-label model already
behaves like the fully supervised one. No code for this exists in the original repository (docs/method.md
§7.6); here it is the two-sample KS statistic per output column::

    D = sup_t | F_a(t) - F_b(t) |

with ``F_a``, ``F_b`` the empirical CDFs of the two models' probabilities for one class. ``D`` is 0 for
identical distributions and 1 for disjoint supports. The two samples need not be paired or of equal size.
The statistic and its p-value come from ``scipy.stats.ks_2samp``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import ks_2samp

from monai_ilm.results.rows import make_row
from monai_ilm.statistics.arrays import to_numpy

__all__ = ["KSResult", "ks_distance", "ks_rows"]


@dataclass(frozen=True)
class KSResult:
    """Result of :func:`ks_distance`.

    Attributes:
        statistic: KS statistic ``D`` per class, shape ``(n_classes,)`` (one entry for binary outputs).
        pvalue: two-sided p-value per class (``scipy.stats.ks_2samp``).
        classes: column index of each entry in the input arrays.
    """

    statistic: np.ndarray
    pvalue: np.ndarray
    classes: tuple[int, ...]

    @property
    def mean_statistic(self) -> float:
        """Mean KS statistic over the classes."""
        return float(self.statistic.mean())


def _as_columns(probs: Any, name: str) -> np.ndarray:
    arr = to_numpy(probs, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise ValueError(
            f"{name}: expected shape (n_samples,) or (n_samples, n_classes) with n_samples > 0, got {arr.shape}."
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, got NaN or infinity.")
    return arr


def ks_distance(
    probs_a: Any,
    probs_b: Any,
    binary: bool = False,
    method: str = "auto",
    ids_a: Sequence[Any] | None = None,
    ids_b: Sequence[Any] | None = None,
) -> KSResult:
    """Per-class two-sample KS statistic between two models' output probabilities.

    Multi-label (sigmoid) and multi-class (softmax) outputs are compared column by column. For a two-class
    softmax output pass ``binary=True`` to compare only the positive class (column 1); the statistic of column 0
    would be identical since ``p_0 = 1 - p_1``. A 1-D input is a single positive-class probability.

    Args:
        probs_a: probabilities of model A, shape ``(n_a,)`` or ``(n_a, n_classes)``.
        probs_b: probabilities of model B, shape ``(n_b,)`` or ``(n_b, n_classes)``; ``n_b`` may differ.
        binary: keep only the positive class of a two-column input.
        method: p-value method of ``scipy.stats.ks_2samp`` (``"auto"``, ``"exact"`` or ``"asymp"``).
        ids_a: optional sample identifiers of the rows of ``probs_a``.
        ids_b: optional sample identifiers of the rows of ``probs_b``; when both are given they must be the same
            test samples in the same order (two models evaluated on one test set).

    Returns:
        A :class:`KSResult`.

    Raises:
        ValueError: if the inputs are malformed, have different numbers of columns, ``binary`` is set for an
            input with more than two columns, or ``ids_a`` and ``ids_b`` differ.
    """
    a, b = _as_columns(probs_a, "probs_a"), _as_columns(probs_b, "probs_b")
    if ids_a is not None and ids_b is not None and list(map(str, ids_a)) != list(map(str, ids_b)):
        raise ValueError(
            f"ids_b: expected the same test samples as ids_a in the same order, got {len(ids_b)} ids that differ "
            f"from the {len(ids_a)} of ids_a."
        )
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"probs_a and probs_b: expected the same number of classes, got {a.shape[1]} and {b.shape[1]}."
        )
    classes = tuple(range(a.shape[1]))
    if binary:
        if a.shape[1] > 2:
            raise ValueError(f"probs_a: expected shape (n,) or (n, 2) with binary=True, got {a.shape}.")
        classes = (a.shape[1] - 1,)
    tests = [ks_2samp(a[:, c], b[:, c], method=method) for c in classes]
    stats = np.array([t.statistic for t in tests], dtype=np.float64)
    pvalues = np.array([t.pvalue for t in tests], dtype=np.float64)
    return KSResult(statistic=stats, pvalue=pvalues, classes=classes)


def ks_rows(
    result: KSResult,
    n: int,
    dataset: str,
    method: str,
    label_fraction: float,
    seed: int,
    run_id: str,
    metric: str = "ks_vs_100",
    **fields: Any,
) -> list[dict[str, Any]]:
    """The results row (protocol ``"ks"``) of a :func:`ks_distance` result: the KS statistic averaged over classes.

    Args:
        result: the :class:`KSResult` of the low-label model against the reference (usually 100 %) model.
        n: number of test samples compared.
        dataset, method, label_fraction, seed, run_id: results columns (``label_fraction`` of the low-label model).
        metric: metric name of the mean statistic.
        fields: further columns (``checkpoint``, ``config_hash``, ``timestamp``).

    Returns:
        A list with one row dict.
    """
    row = make_row(
        dataset=dataset,
        method=method,
        protocol="ks",
        label_fraction=label_fraction,
        seed=seed,
        run_id=run_id,
        metric=metric,
        value=result.mean_statistic,
        n=int(n),
        **fields,
    )
    return [row]
