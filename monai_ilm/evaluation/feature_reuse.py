"""Feature reuse: CKA between each block's features before and after fine-tuning (the paper's Table 3).

Kaku et al. (NeurIPS 2021), following Neyshabur et al. (2020), measure how much of the self-supervised
representation survives fine-tuning: the test images are passed through the pretrained encoder ("before") and
the fine-tuned one ("after"), the output of every ResNet block is globally average-pooled (the reference's
``l1``..``l4``), and the two feature matrices of each block are compared with centred kernel alignment. A CKA
near 1 means the block was reused; the paper reports that the intermediate-layer loss raises the reuse.

Correctness of the pairing (docs/method.md D8): the reference saved the two feature sets from two processes and,
for chest X-rays, shuffled the test set differently in each, so "before" and "after" rows were different
images. :func:`feature_reuse` feeds **each batch to both encoders**, so the rows pair by construction, and it
records the sample ids; :func:`feature_reuse_from_features` (features saved separately) refuses to compare
feature sets whose ids differ.

Similarity (docs/method.md D9): linear CKA is the default, computed with
:class:`~monai_ilm.evaluation.StreamingLinearCKA` so that any number of test images needs only ``d x d``
accumulators and never an ``n x n`` Gram matrix. RBF CKA (median-heuristic or absolute bandwidth; the paper's
``sigma=0.8`` is degenerate) and the paper's subsampling protocol (mean and std of the CKA over 50 subsets of
1,000 images, :func:`~monai_ilm.evaluation.bootstrap_cka`) are available on kept features.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from monai_ilm.evaluation.cka import KERNELS, StreamingLinearCKA, cka
from monai_ilm.evaluation.cka_summaries import CKABootstrap, bootstrap_cka, cka_matrix
from monai_ilm.evaluation.features import StageFeatures, iter_stage_features
from monai_ilm.networks.backbones import StageEncoder
from monai_ilm.results.names import cka_metric_name
from monai_ilm.results.rows import make_row

__all__ = ["FeatureReuseResult", "feature_reuse", "feature_reuse_from_features", "feature_reuse_rows"]


@dataclass
class FeatureReuseResult:
    """CKA between two encoders' per-block features on the same samples.

    Attributes:
        kernel: ``"linear"``, ``"linear_debiased"`` or ``"rbf"``.
        sigma: the RBF bandwidth given (None = median heuristic, or a linear kernel).
        blocks: the 1-based blocks compared.
        cka: ``{block: CKA(before_block, after_block)}`` on all samples (Table 3's cells).
        n: number of samples.
        ids: the sample ids, identical for both encoders.
        matrix: optional ``(len(blocks), len(blocks))`` matrix, entry ``(i, j)`` = CKA(before block i, after
            block j).
        subsets: optional ``{block: CKABootstrap}`` of the paper's subsampling protocol.
        before: optional kept features of the first encoder.
        after: optional kept features of the second encoder.
    """

    kernel: str
    sigma: float | None
    blocks: tuple[int, ...]
    cka: dict[int, float]
    n: int
    ids: list[str]
    matrix: np.ndarray | None = None
    subsets: dict[int, CKABootstrap] | None = None
    before: StageFeatures | None = None
    after: StageFeatures | None = None


def _check_kernel(kernel: str, sigma: float | None) -> None:
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {KERNELS}, got {kernel!r}.")
    if sigma is not None and kernel != "rbf":
        raise ValueError(f"sigma: expected None with kernel={kernel!r} (only kernel='rbf' uses it), got {sigma!r}.")


def _check_rbf_size(kernel: str, n: int, max_rbf_samples: int) -> None:
    if kernel == "rbf" and n > max_rbf_samples:
        raise ValueError(
            f"max_rbf_samples: expected at least the {n} samples of an RBF CKA ({n} x {n} kernel matrices), "
            f"got {max_rbf_samples} (use kernel='linear' (streamed), a smaller test loader, or raise max_rbf_samples)."
        )


def _summaries(
    before: StageFeatures,
    after: StageFeatures,
    kernel: str,
    sigma: float | None,
    diagonal: Mapping[int, float] | None,
    matrix: bool,
    n_sets: int,
    subset_size: int,
    seed: int,
    max_rbf_samples: int,
) -> FeatureReuseResult:
    """Full-set CKA per block (unless given), and optionally the block x block matrix and the subsets."""
    blocks = before.block_ids
    if diagonal is None:
        _check_rbf_size(kernel, before.n, max_rbf_samples)
        diagonal = {b: cka(before.block(b), after.block(b), kernel=kernel, sigma=sigma) for b in blocks}
    full_matrix = None
    if matrix:
        _check_rbf_size(kernel, before.n, max_rbf_samples)
        full_matrix = cka_matrix(before.blocks, after.blocks, kernel=kernel, sigma=sigma)
    subsets = None
    if n_sets > 0:
        size = min(subset_size, before.n)
        subsets = {
            b: bootstrap_cka(before.block(b), after.block(b), n_sets, size, seed=seed, kernel=kernel, sigma=sigma)
            for b in blocks
        }
    return FeatureReuseResult(
        kernel, sigma, blocks, dict(diagonal), before.n, list(before.ids), full_matrix, subsets, before, after
    )


def feature_reuse(
    encoder_before: StageEncoder,
    encoder_after: StageEncoder,
    loader: Iterable[Mapping[str, Any]],
    blocks: Sequence[int] = (1, 2, 3, 4),
    kernel: str = "linear",
    sigma: float | None = None,
    matrix: bool = False,
    n_sets: int = 0,
    subset_size: int = 1000,
    seed: int = 0,
    keep_features: bool = False,
    device: str | torch.device | None = None,
    image_key: str = "image",
    id_key: str | None = None,
    max_rbf_samples: int = 5000,
) -> FeatureReuseResult:
    """Per-block CKA between a pretrained and a fine-tuned encoder, in one pass over ``loader``.

    Both encoders see every batch (eval mode, no gradients), so the rows are the same images in the same
    order. For the linear kernels each block's CKA is accumulated with :class:`StreamingLinearCKA` (memory
    ``O(d^2)`` whatever the number of samples). The features are kept in memory only if something needs them:
    ``kernel="rbf"``, ``matrix``, ``n_sets > 0`` or ``keep_features``.

    Args:
        encoder_before: the pretrained encoder (e.g. ``load_pretrained_encoder(ssl_ckpt, ...)``).
        encoder_after: the fine-tuned encoder (e.g. ``DownstreamClassifier.encoder``).
        loader: test batches; a ``DataLoader`` must not shuffle.
        blocks: 1-based blocks to compare.
        kernel: ``"linear"`` (default), ``"linear_debiased"`` or ``"rbf"``.
        sigma: RBF bandwidth (None = median heuristic per input; the paper used 0.8, see docs/method.md D9).
        matrix: also compute the block x block CKA matrix.
        n_sets: number of random subsets of the paper's protocol (the paper: 50; 0 = skip).
        subset_size: rows per subset (the paper: 1,000; capped at the number of samples).
        seed: seed of the subsets.
        keep_features: return the pooled features of both encoders in the result.
        device: where to run (default: CUDA if available).
        image_key: key of the images in a batch.
        id_key: key of a per-sample identifier (see ``batch_ids``).
        max_rbf_samples: refuse full-set RBF CKA (or an RBF matrix) beyond this many samples.

    Returns:
        A :class:`FeatureReuseResult`.

    Raises:
        ValueError: for a shuffling loader, an unknown kernel, ``sigma`` with a linear kernel, an empty loader or
            too many samples for RBF.
    """
    _check_kernel(kernel, sigma)
    keep = keep_features or matrix or n_sets > 0 or kernel == "rbf"
    streams = {int(b): StreamingLinearCKA(debiased=kernel == "linear_debiased") for b in blocks}
    kept: list[list[list[torch.Tensor]]] = [[], []]
    ids: list[str] = []
    for batch in iter_stage_features(
        [encoder_before, encoder_after], loader, blocks, device, image_key, label_key=None, id_key=id_key
    ):
        before, after = batch.features
        if kernel != "rbf":
            for i, b in enumerate(streams):
                streams[b].update(before[i].double(), after[i].double())
        if keep:
            kept[0].append(before)
            kept[1].append(after)
        ids.extend(batch.ids)
    if not ids:
        raise ValueError("loader: expected at least one batch, got none.")
    diagonal = None if kernel == "rbf" else {b: s.compute() for b, s in streams.items()}
    if not keep:
        return FeatureReuseResult(kernel, sigma, tuple(streams), diagonal, len(ids), ids)
    feats = [
        StageFeatures(
            [torch.cat([c[i] for c in chunks]).numpy() for i in range(len(streams))], tuple(streams), None, ids
        )
        for chunks in kept
    ]
    result = _summaries(feats[0], feats[1], kernel, sigma, diagonal, matrix, n_sets, subset_size, seed, max_rbf_samples)
    if not keep_features:
        result.before = result.after = None
    return result


def feature_reuse_from_features(
    before: StageFeatures,
    after: StageFeatures,
    kernel: str = "linear",
    sigma: float | None = None,
    matrix: bool = False,
    n_sets: int = 0,
    subset_size: int = 1000,
    seed: int = 0,
    max_rbf_samples: int = 5000,
) -> FeatureReuseResult:
    """Per-block CKA between two feature sets extracted separately (e.g. saved by two runs).

    The two sets must describe the same samples in the same order: their ids are compared first, which
    catches the reference's shuffled chest X-ray test order (docs/method.md D8).

    Args:
        before: features of the pretrained encoder (:func:`~monai_ilm.evaluation.features.extract_stage_features`).
        after: features of the fine-tuned encoder, same loader.
        kernel, sigma, matrix, n_sets, subset_size, seed, max_rbf_samples: see :func:`feature_reuse`.

    Returns:
        A :class:`FeatureReuseResult` (holding both feature sets).

    Raises:
        ValueError: if the ids or blocks differ, or for bad kernel arguments.
    """
    _check_kernel(kernel, sigma)
    if before.block_ids != after.block_ids:
        raise ValueError(
            f"after: expected the same blocks as before {list(before.block_ids)}, got {list(after.block_ids)}."
        )
    if before.ids != after.ids:
        differ = next((i for i, (a, b) in enumerate(zip(before.ids, after.ids)) if a != b), min(before.n, after.n))
        raise ValueError(
            f"after: expected the same samples in the same order as before (docs/method.md D8), "
            f"got {after.n} samples vs {before.n}, first differing at row {differ}."
        )
    return _summaries(before, after, kernel, sigma, None, matrix, n_sets, subset_size, seed, max_rbf_samples)


def feature_reuse_rows(
    result: FeatureReuseResult,
    dataset: str,
    method: str,
    label_fraction: float,
    seed: int,
    run_id: str,
    value: str = "full",
    **fields: Any,
) -> list[dict[str, Any]]:
    """Results rows (protocol ``"feature_reuse"``, one per block, metric ``"cka_<kernel>"``), plus the
    off-diagonal block x block entries (metric ``"cka_<kernel>@b<j>"``, :mod:`monai_ilm.results.names`) when
    ``result.matrix`` was computed.

    Args:
        result: a :class:`FeatureReuseResult`.
        dataset, method, seed, run_id: results columns.
        label_fraction: label fraction of the fine-tuned ("after") model.
        value: ``"full"`` (CKA on all samples, default) or ``"subsets"`` (the paper's mean over subsets; the
            row's interval is then empty, the spread being a standard deviation, not a confidence interval).
        fields: further columns (``checkpoint``, ``config_hash``, ``timestamp``).

    Returns:
        A list of row dicts.

    Raises:
        ValueError: for an unknown ``value`` or ``"subsets"`` without subsets in ``result``.
    """
    if value not in ("full", "subsets"):
        raise ValueError(f"value: expected 'full' or 'subsets', got {value!r}.")
    if value == "subsets" and result.subsets is None:
        raise ValueError("value: expected 'full' for a result computed with n_sets=0, got 'subsets'.")
    common = {
        "dataset": dataset,
        "method": method,
        "protocol": "feature_reuse",
        "label_fraction": label_fraction,
        "seed": seed,
        "metric": f"cka_{result.kernel}",
        "n": result.n,
        "run_id": run_id,
        **fields,
    }
    rows = []
    for block in result.blocks:
        v = result.cka[block] if value == "full" else result.subsets[block].mean
        rows.append(make_row(block=int(block), value=float(v), **common))
    if result.matrix is not None:
        for i, block_a in enumerate(result.blocks):
            for j, block_b in enumerate(result.blocks):
                if i != j:  # the diagonal is the plain row above
                    metric = cka_metric_name(result.kernel, block_b=int(block_b))
                    rows.append(
                        make_row(block=int(block_a), value=float(result.matrix[i, j]), **{**common, "metric": metric})
                    )
    return rows
