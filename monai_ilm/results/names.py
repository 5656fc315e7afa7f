"""Metric names of CKA rows in the results table, defined once for the evaluation and the dashboard.

Convention (``protocol="feature_reuse"`` rows, ``block = i``):

* ``cka_<kernel>``: feature reuse of block ``i`` (the paper's Table 3): CKA between block ``i`` of ``method``'s
  pretrained encoder and block ``i`` of the same encoder fine-tuned at ``label_fraction``.
* ``cka_<kernel>@b<j>``: one entry of the block x block matrix: block ``i`` of the pretrained encoder vs block
  ``j`` of the fine-tuned one. The diagonal ``j == i`` may be omitted (it is the plain ``cka_<kernel>`` row).
* ``cka_<kernel>@<other>:b<j>``: block ``i`` of ``method``'s pretrained encoder vs block ``j`` of method
  ``<other>``'s pretrained encoder (no fine-tuning; ``label_fraction = 1.0``).

``<kernel>`` is one of :data:`CKA_KERNELS` (the kernels of :mod:`monai_ilm.evaluation.cka`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["CKA_KERNELS", "CKAMetric", "cka_metric_name", "parse_cka_metric"]

CKA_KERNELS = ("linear", "rbf", "linear_debiased")
_KIND = re.compile(r"^cka_[A-Za-z0-9_]+$")
_PAIR = re.compile(r"^(?P<kind>cka_[A-Za-z0-9_]+)@(?:(?P<other>[A-Za-z0-9_.+\-]+):)?b(?P<block>\d+)$")


@dataclass(frozen=True)
class CKAMetric:
    """A parsed CKA metric name.

    Attributes:
        kind: the plain metric, e.g. ``"cka_linear"``.
        block_b: block ``j`` of encoder B, or None for a plain (diagonal, feature-reuse) row.
        other: the method of encoder B for an encoder-vs-encoder row, None for pretrained-vs-fine-tuned.
    """

    kind: str
    block_b: int | None = None
    other: str | None = None


def parse_cka_metric(metric: str) -> CKAMetric | None:
    """Parse a CKA metric name.

    Args:
        metric: a metric name.

    Returns:
        The :class:`CKAMetric`, or None if ``metric`` is not a CKA metric.
    """
    if _KIND.match(metric):
        return CKAMetric(metric)
    m = _PAIR.match(metric)
    if m is None:
        return None
    return CKAMetric(m["kind"], int(m["block"]), m["other"])


def cka_metric_name(kernel: str, block_b: int | None = None, other: str | None = None) -> str:
    """The metric name of a CKA row.

    Args:
        kernel: ``"linear"``, ``"rbf"``, ``"linear_debiased"`` (or another kernel name).
        block_b: block ``j`` of encoder B for a block x block entry, None for a feature-reuse row.
        other: method of encoder B for an encoder-vs-encoder entry (needs ``block_b``).

    Returns:
        E.g. ``"cka_linear"``, ``"cka_linear@b2"``, ``"cka_rbf@mse:b3"``.

    Raises:
        ValueError: for ``other`` without ``block_b`` or a name that would not parse back.
    """
    if other is not None and block_b is None:
        raise ValueError("other: expected block_b with an encoder-vs-encoder entry, got block_b=None.")
    name = f"cka_{kernel}"
    if block_b is not None:
        name += f"@{other}:b{int(block_b)}" if other is not None else f"@b{int(block_b)}"
    if parse_cka_metric(name) != CKAMetric(f"cka_{kernel}", None if block_b is None else int(block_b), other):
        raise ValueError(f"kernel/other: expected names that parse back, got {kernel!r}/{other!r} ({name!r}).")
    return name
