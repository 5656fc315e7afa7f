"""Layer-wise linear probing of a frozen encoder (the paper's Table 4).

Kaku et al. (NeurIPS 2021) ask *where* in the network the useful features appear: for each ResNet block
``k = 1..4`` a linear classifier is trained on the globally average-pooled output of that block of the frozen
self-supervised encoder (256/512/1024/2048-d for ResNet-50). Their claim is that the intermediate-layer loss
makes earlier blocks more linearly informative.

Implementation. The encoder is frozen and in eval mode, so each image's pooled features are a fixed function
of the image: they are extracted **once** per split for all four blocks
(:func:`~monai_ilm.evaluation.features.extract_stage_features`) and the four heads are trained on the cached
vectors. Without train-time augmentation this is exactly the end-to-end probe, at a tiny fraction of the cost
(a random augmentation in the training transform would be drawn once instead of once per epoch). Each head
is a :class:`~monai_ilm.evaluation.classifier.LinearHead` (the training features standardised with their own
frozen mean and standard deviation, zero weights and the prevalence bias to start, docs/method.md D22) trained
by :func:`~monai_ilm.evaluation.training.fit_downstream` (MONAI ``SupervisedTrainer``, mini-batch Adam, the task
loss) with per-epoch validation and best-epoch selection, then tested with a bootstrap interval. That mirrors
the reference probe (Adam 1e-3 on a ``Linear``, batch 16, checkpoints chosen on the validation metric,
docs/method.md §7.4; ``standardize=False, head_init="default"`` is its raw ``Linear``) and shares one code path
with linear evaluation; the evaluation cell (``EvaluationRun``, protocol ``probe``) trains it with the same
learning rate, batch size, epochs and head settings as the ``linear`` protocol.

Block 4 and the linear evaluation. The paper prints the same number for both (its probe trained on augmented
images, like its linear evaluation). Here the block-4 probe differs from the ``linear`` protocol in two ways:
its head sees cached features of **un-augmented** training images, while ``linear`` draws a new training
augmentation every epoch through the frozen encoder; and the head's random initialisation is drawn differently.
Both are reported and neither is copied into the other: the linear evaluation as protocol ``linear``, the
block-4 probe as protocol ``probe``, block 4. Compare blocks with each other within ``probe``. scikit-learn's
``LogisticRegression`` was not used: it adds an L2 penalty whose strength would need its own validation
search, needs one-vs-rest wrappers for the 14 NIH findings, and cannot run on a GPU.

Fixes of docs/method.md D14 and D11: every block (including "all") works, the heads are tested on the test set,
``max_epochs`` is explicit, and BatchNorm keeps its pretrained running statistics (eval mode).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from monai_ilm.evaluation.classifier import LinearHead
from monai_ilm.evaluation.downstream_rows import downstream_rows
from monai_ilm.evaluation.features import StageFeatures, extract_stage_features
from monai_ilm.evaluation.prediction import DownstreamResult, evaluate_downstream
from monai_ilm.evaluation.tasks import DownstreamTask, get_task
from monai_ilm.evaluation.training import LOGGER_NAME, fit_downstream
from monai_ilm.networks.backbones import StageEncoder

__all__ = ["FeatureBatches", "probe_blocks", "probe_features", "probe_rows"]


class FeatureBatches:
    """Mini-batches of cached feature vectors as engine batch dicts ``{"image", "label", "id"}``.

    An iterable with a length (what MONAI engines need), much faster than a ``DataLoader`` collating one
    vector at a time. With ``shuffle`` every pass draws a new order from its own seeded generator, so the
    sequence of epochs is reproducible and independent of the global RNG.

    Args:
        features: ``(n, d)`` array or tensor.
        labels: ``(n,)`` or ``(n, n_classes)`` labels.
        batch_size: rows per batch.
        shuffle: reshuffle the rows on every pass.
        seed: seed of the shuffling generator.
        ids: optional sample identifiers, yielded under ``"id"``.

    Raises:
        ValueError: for mismatched lengths, an empty set or ``batch_size < 1``.
    """

    def __init__(
        self,
        features: Any,
        labels: Any,
        batch_size: int = 256,
        shuffle: bool = False,
        seed: int = 0,
        ids: Sequence[str] | None = None,
    ) -> None:
        self.features = torch.as_tensor(np.asarray(features), dtype=torch.float32)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.float32)
        n = self.features.shape[0]
        if n == 0 or self.labels.shape[0] != n or (ids is not None and len(ids) != n):
            raise ValueError(
                f"features, labels and ids: expected the same non-zero number of rows, got {n}, "
                f"{self.labels.shape[0]} and {None if ids is None else len(ids)}."
            )
        if batch_size < 1:
            raise ValueError(f"batch_size: expected a positive batch size, got {batch_size}.")
        self.batch_size, self.shuffle, self.ids = batch_size, shuffle, None if ids is None else list(ids)
        self._generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return math.ceil(self.features.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        n = self.features.shape[0]
        order = torch.randperm(n, generator=self._generator) if self.shuffle else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch: dict[str, Any] = {"image": self.features[idx], "label": self.labels[idx]}
            if self.ids is not None:
                batch["id"] = [self.ids[i] for i in idx.tolist()]
            yield batch


def _num_outputs(task: DownstreamTask, labels: np.ndarray | None, num_classes: int | None) -> int:
    if num_classes is not None:
        return num_classes
    if task.num_classes is not None:
        return task.num_classes
    if labels is None or labels.ndim != 2:
        raise ValueError(
            "num_classes: expected a number for a multi-label task whose labels are not (n, n_classes), got None."
        )
    return int(labels.shape[1])


def _require_labels(features: StageFeatures, name: str) -> np.ndarray:
    if features.labels is None:
        raise ValueError(f"{name}: expected labelled features (StageFeatures.labels), got none.")
    return features.labels


def probe_features(
    train: StageFeatures,
    val: StageFeatures,
    test: StageFeatures,
    task: str | DownstreamTask,
    blocks: Sequence[int] | None = None,
    num_classes: int | None = None,
    max_epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    batch_size: int = 16,
    standardize: bool = True,
    head_init: str = "prior",
    device: str | torch.device | None = None,
    seed: int = 0,
    select: str = "best",
    n_resamples: int = 1000,
    ci_method: str = "percentile",
    confidence: float = 0.95,
    log_name: str | None = LOGGER_NAME,
) -> dict[int, DownstreamResult]:
    """Train, select and test one linear probe per block on cached pooled features.

    Args:
        train: training-split features (with labels) from :func:`extract_stage_features`.
        val: validation-split features, used to pick the best epoch of each probe.
        test: test-split features, scored with a bootstrap interval.
        task: task preset name or :class:`~monai_ilm.evaluation.tasks.DownstreamTask`.
        blocks: 1-based blocks to probe (default: all blocks of ``train``).
        num_classes: outputs of each head (default: the task's, or the label width for multi-label).
        max_epochs: epochs per probe.
        lr: Adam learning rate (the evaluation cell passes its ``lr``, the bundles' ``evaluation_lr``).
        weight_decay: Adam weight decay.
        batch_size: mini-batch size of the head's training (the cell passes ``evaluation_batch_size``; 16 is
            the reference probe's); the validation and test features are scored in batches of the same size.
        standardize: z-score each feature with the training mean and standard deviation, kept in the head
            (off in the reference; it does not change what a linear probe can express, but without it Adam on
            large non-negative pooled features first learns a direction that scores below chance, D22).
        head_init: ``"prior"`` (zero weights, the training prevalence as bias) or ``"default"`` (PyTorch's).
        device: where to train (default: CUDA if available).
        seed: seeds each head's initialisation, the batch order and the bootstrap.
        select: ``"best"`` validation epoch (default) or ``"last"``.
        n_resamples, ci_method, confidence: test interval (see ``score_predictions``).
        log_name: logger of the MONAI ``StatsHandler`` (None = no logging).

    Returns:
        ``{block: DownstreamResult}`` in block order; each result carries its ``fit`` information.

    Raises:
        ValueError: for unlabelled features, blocks that were not extracted, or bad training arguments.
    """
    task = get_task(task)
    blocks = train.block_ids if blocks is None else tuple(int(b) for b in blocks)
    y_train, y_val, y_test = _require_labels(train, "train"), _require_labels(val, "val"), _require_labels(test, "test")
    outputs = _num_outputs(task, y_train, num_classes)
    results: dict[int, DownstreamResult] = {}
    for block in blocks:
        x_train, x_val, x_test = train.block(block), val.block(block), test.block(block)
        torch.manual_seed(seed)
        head = LinearHead(x_train.shape[1], outputs, standardize=standardize, init=head_init)
        fit = fit_downstream(
            head,
            FeatureBatches(x_train, y_train, batch_size, shuffle=True, seed=seed),
            FeatureBatches(x_val, y_val, batch_size),
            task,
            max_epochs=max_epochs,
            lr=lr,
            weight_decay=weight_decay,
            device=device,
            seed=seed,
            select=select,
            log_name=log_name,
        )
        results[block] = evaluate_downstream(
            head,
            FeatureBatches(x_test, y_test, batch_size, ids=test.ids),
            task,
            device=device,
            n_resamples=n_resamples,
            ci_method=ci_method,
            confidence=confidence,
            seed=seed,
            id_key="id",
            fit=fit,
        )
    return results


def probe_blocks(
    encoder: StageEncoder,
    train_loader: Iterable[Mapping[str, Any]],
    val_loader: Iterable[Mapping[str, Any]],
    test_loader: Iterable[Mapping[str, Any]],
    task: str | DownstreamTask,
    blocks: Sequence[int] = (1, 2, 3, 4),
    device: str | torch.device | None = None,
    image_key: str = "image",
    label_key: str = "label",
    id_key: str | None = None,
    **probe_kwargs: Any,
) -> dict[int, DownstreamResult]:
    """Layer-wise probing end to end: extract the frozen encoder's pooled block features, then :func:`probe_features`.

    The encoder runs in eval mode without gradients, so its weights and BatchNorm statistics are untouched.
    The validation and test loaders must keep their order (no shuffling); the training loader may shuffle.

    Args:
        encoder: the pretrained (or random, for a from-scratch baseline) stage encoder.
        train_loader, val_loader, test_loader: batch dicts with ``image_key`` and ``label_key``.
        task: task preset name or :class:`~monai_ilm.evaluation.tasks.DownstreamTask`.
        blocks: 1-based blocks to probe.
        device: where to run (default: CUDA if available).
        image_key, label_key, id_key: batch keys (see ``extract_stage_features``).
        probe_kwargs: further arguments of :func:`probe_features` (``max_epochs``, ``lr``, ``seed`` ...).

    Returns:
        ``{block: DownstreamResult}``.
    """
    extract = {"blocks": blocks, "device": device, "image_key": image_key, "label_key": label_key, "id_key": id_key}
    train = extract_stage_features(encoder, train_loader, require_order=False, **extract)
    val = extract_stage_features(encoder, val_loader, **extract)
    test = extract_stage_features(encoder, test_loader, **extract)
    return probe_features(train, val, test, task, blocks=blocks, device=device, **probe_kwargs)


def probe_rows(
    results: Mapping[int, DownstreamResult],
    dataset: str,
    method: str,
    seed: int,
    run_id: str,
    label_fraction: float = 1.0,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Results rows (protocol ``"probe"``, one per block) of :func:`probe_features` / :func:`probe_blocks`.

    Args:
        results: ``{block: DownstreamResult}``.
        dataset, method, seed, run_id: results columns.
        label_fraction: labelled fraction of the training split used by the probes (the paper: 100 %).
        fields: further columns (``checkpoint``, ``config_hash``, ``timestamp``).

    Returns:
        A list of row dicts.
    """
    rows: list[dict[str, Any]] = []
    for block, result in results.items():
        rows += downstream_rows(
            result, "probe", dataset, method, label_fraction, seed, run_id, block=int(block), **fields
        )
    return rows
