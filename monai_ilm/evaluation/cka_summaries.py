"""Summaries of CKA over a network's blocks and over subsets of the samples (the paper's Table 3 protocol).

:func:`cka_matrix` compares every block of one network with every block of another (its diagonal, before vs
after fine-tuning, is the per-block feature reuse); :func:`bootstrap_cka` is the paper's subsampling protocol,
the mean and spread of CKA over random subsets. The CKA itself is :func:`monai_ilm.evaluation.cka.cka`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from monai_ilm.evaluation.cka import cka
from monai_ilm.statistics.arrays import as_matrix, check_same_rows

__all__ = ["cka_matrix", "CKABootstrap", "bootstrap_cka"]


def _check_blocks(feats: Sequence[Any], name: str) -> list[np.ndarray]:
    if isinstance(feats, (np.ndarray, torch.Tensor)) or len(feats) == 0:
        raise ValueError(
            f"{name}: expected a non-empty sequence of per-block feature arrays, got {type(feats).__name__}."
        )
    return [as_matrix(f, f"{name}[{i}]", min_rows=2) for i, f in enumerate(feats)]


def cka_matrix(
    feats_a: Sequence[Any], feats_b: Sequence[Any], kernel: str = "linear", sigma: float | None = None
) -> np.ndarray:
    """Block-by-block CKA matrix between two networks' features (e.g. before vs after fine-tuning).

    Entry ``(i, j)`` is ``CKA(feats_a[i], feats_b[j])``; the diagonal of the before/after matrix is the
    per-block feature reuse of the paper's Table 3. All arrays must hold the same samples in the same order.

    Args:
        feats_a: per-block features of the first network, each of shape ``(n, d_i, ...)``.
        feats_b: per-block features of the second network, each of shape ``(n, d_j, ...)``.
        kernel: one of :data:`KERNELS`.
        sigma: RBF bandwidth (``None`` = median heuristic); only for ``kernel="rbf"``.

    Returns:
        A float64 array of shape ``(len(feats_a), len(feats_b))``.

    Raises:
        ValueError: if a sequence is empty, the blocks have different row counts, or for bad kernel arguments.
    """
    blocks_a, blocks_b = _check_blocks(feats_a, "feats_a"), _check_blocks(feats_b, "feats_b")
    for i, block in enumerate(blocks_a[1:] + blocks_b, start=1):
        name = f"feats_a[{i}]" if i < len(blocks_a) else f"feats_b[{i - len(blocks_a)}]"
        check_same_rows(blocks_a[0], block, "feats_a[0]", name)
    out = np.empty((len(blocks_a), len(blocks_b)))
    for i, xa in enumerate(blocks_a):
        for j, xb in enumerate(blocks_b):
            out[i, j] = cka(xa, xb, kernel=kernel, sigma=sigma)
    return out


@dataclass(frozen=True)
class CKABootstrap:
    """Result of :func:`bootstrap_cka`.

    Attributes:
        mean: mean CKA over the subsets.
        std: population standard deviation (ddof = 0) over the subsets, as the paper reports.
        values: the per-subset CKA values, shape ``(n_sets,)``.
    """

    mean: float
    std: float
    values: np.ndarray


def bootstrap_cka(
    x: Any,
    y: Any,
    n_sets: int = 50,
    subset_size: int = 1000,
    seed: int = 0,
    kernel: str = "linear",
    sigma: float | None = None,
) -> CKABootstrap:
    """The paper's subsampling protocol for feature reuse (``bootstrap_similarity``, docs/method.md §10.4).

    Each of ``n_sets`` subsets is the first ``subset_size`` indices of a seeded random permutation, i.e.
    distinct rows, the same indices for ``x`` and ``y``; CKA is computed on every subset and summarised by the
    mean and the population std. The paper used ``kernel="rbf", sigma=0.8`` (degenerate, docs/method.md D9); the
    default here is linear CKA.

    Args:
        x: features of shape ``(n, d1, ...)``.
        y: features of shape ``(n, d2, ...)`` for the same samples in the same order.
        n_sets: number of subsets (paper: 50).
        subset_size: rows per subset (paper: 1,000); at most ``n``.
        seed: seed of the ``numpy.random.Generator`` drawing the subsets.
        kernel: one of :data:`KERNELS`.
        sigma: RBF bandwidth (``None`` = median heuristic); only for ``kernel="rbf"``.

    Returns:
        A :class:`CKABootstrap` with the mean, population std and per-subset values.

    Raises:
        ValueError: if ``n_sets < 1``, ``subset_size`` is not in ``[2, n]``, or for bad inputs.
    """
    xm, ym = as_matrix(x, "x", min_rows=2), as_matrix(y, "y", min_rows=2)
    check_same_rows(xm, ym, "x", "y")
    n = xm.shape[0]
    if n_sets < 1:
        raise ValueError(f"n_sets: expected a positive number of subsets, got {n_sets}.")
    if not 2 <= subset_size <= n:
        raise ValueError(f"subset_size: expected an integer in [2, n_samples={n}], got {subset_size}.")
    rng = np.random.default_rng(seed)
    values = np.empty(n_sets)
    for s in range(n_sets):
        idx = rng.permutation(n)[:subset_size]
        values[s] = cka(xm[idx], ym[idx], kernel=kernel, sigma=sigma)
    return CKABootstrap(mean=float(values.mean()), std=float(values.std()), values=values)
