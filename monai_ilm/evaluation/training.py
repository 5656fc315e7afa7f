"""Train a downstream model with MONAI engines and select the epoch on the validation set.

Linear evaluation (Table 1) and fine-tuning (Table 2) both train with MONAI's ``SupervisedTrainer`` (Adam,
lr 1e-3 as in the reference) and a ``SupervisedEvaluator`` that scores the validation set after every epoch
with the task metric (:func:`task_metric`). The weights of the best validation epoch are kept
(:class:`~monai_ilm.evaluation.BestWeights`) and, with ``select="best"``, loaded back at the end, so it is
**these** weights that are tested (fix of D3, docs/method.md §9; ``select="last"`` reproduces the reference).

A network with a ``prepare_head(loader, task, device)`` method (:class:`~monai_ilm.evaluation.classifier.LinearHead`,
:class:`~monai_ilm.evaluation.DownstreamClassifier`) gets it called once before the first epoch, so its head
standardises with the training statistics and starts at the training prevalence. The training labels are
counted as they pass, so a finding the head never saw a positive (or a negative) example of is known to the
test (:attr:`FitResult.untrained_classes`).
"""

from __future__ import annotations

import itertools
import math
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from ignite.metrics import EpochMetric
from monai.engines import SupervisedEvaluator, SupervisedTrainer
from monai.handlers import CheckpointSaver, StatsHandler, ValidationHandler
from monai.utils import CommonKeys as Keys
from monai.utils import set_determinism
from torch import nn

from monai_ilm.evaluation.best_weights import BestWeights
from monai_ilm.evaluation.features import _default_device
from monai_ilm.evaluation.tasks import DownstreamTask, get_task

__all__ = ["FitResult", "fit_downstream", "task_metric"]

LOGGER_NAME = "monai_ilm.evaluation"
SELECTIONS = ("best", "last")


def _as_float_pair(output: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pred, label)`` of a non-decollated engine output, as float32 tensors (so every batch has one dtype)."""
    return output[Keys.PRED].detach().float(), output[Keys.LABEL].detach().float()


class _TaskScore:
    """``compute_fn`` of Ignite's ``EpochMetric``: the task's validation metric on all gathered predictions.

    An undefined metric (e.g. an AUC on a validation set with a single class) gives NaN with a warning rather
    than stopping training; an epoch with a NaN score is never selected.
    """

    def __init__(self, task: DownstreamTask) -> None:
        self.task = task

    def __call__(self, y_pred: torch.Tensor, y: torch.Tensor) -> float:
        logits = y_pred.detach().cpu().double().numpy()
        if logits.ndim == 1:
            logits = logits[:, None]
        try:
            return float(self.task.val_metric(self.task.targets(y), logits))
        except ValueError as err:
            warnings.warn(f"val_loader: the validation metric {self.task.metric!r} is undefined ({err}).", stacklevel=2)
            return math.nan


def task_metric(task: DownstreamTask) -> EpochMetric:
    """An Ignite metric computing ``task.val_metric`` over a whole epoch (all-gathered across ranks)."""
    return EpochMetric(_TaskScore(task), output_transform=_as_float_pair, check_compute_fn=False)


@dataclass
class FitResult:
    """What :func:`fit_downstream` learnt about model selection.

    Attributes:
        metric_name: engine name of the validation metric (``val_<metric>``).
        history: validation metric after every epoch.
        best_epoch: epoch (1-based) with the best validation metric, or None if none was finite.
        best_metric: that metric, or None.
        selected_epoch: the epoch whose weights the network holds after fitting.
        select: ``"best"`` or ``"last"``.
        train_samples: training samples seen over all epochs (each sample once per epoch).
        train_label_counts: over the same passes, the positives of each finding (multi-label) or the samples of
            each class (single-label); None when the training batches had no labels to count.
        multilabel: whether the counts are per finding (multi-label) or per class.
    """

    metric_name: str
    history: list[float]
    best_epoch: int | None
    best_metric: float | None
    selected_epoch: int
    select: str
    train_samples: int = 0
    train_label_counts: np.ndarray | None = None
    multilabel: bool = False

    @property
    def untrained_classes(self) -> tuple[int, ...]:
        """Findings without a positive or without a negative training example (multi-label), or classes without
        a training example (single-label): the head could not learn to rank them."""
        if self.train_label_counts is None:
            return ()
        counts = self.train_label_counts
        missing = (counts == 0) | (counts == self.train_samples) if self.multilabel else counts == 0
        return tuple(int(c) for c in np.flatnonzero(missing))


class _LabelCounts:
    """Ignite handler counting the training labels of a non-decollated trainer, batch by batch."""

    def __init__(self, multilabel: bool) -> None:
        self.multilabel = multilabel
        self.samples = 0
        self.counts: np.ndarray | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        pred, label = engine.state.output[Keys.PRED], engine.state.output.get(Keys.LABEL)
        if label is None:
            return
        label = label.detach().cpu().double().reshape(pred.shape[0], -1)
        if self.multilabel:
            counts = label.sum(dim=0).numpy()
        else:
            counts = np.bincount(label[:, 0].long().numpy(), minlength=pred.shape[1]).astype(np.float64)
        self.counts = counts if self.counts is None else self.counts + counts
        self.samples += int(pred.shape[0])


def _every(engine: Engine, event: int, interval: int) -> bool:
    return event % interval == 0


def _loss_value(output: Mapping[str, torch.Tensor]) -> float:
    return float(output[Keys.LOSS])


def _trainable(network: nn.Module) -> list[nn.Parameter]:
    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise ValueError("network: expected at least one trainable parameter (requires_grad=True), got none.")
    return params


def fit_downstream(
    network: nn.Module,
    train_loader: Iterable[Mapping[str, Any]],
    val_loader: Iterable[Mapping[str, Any]],
    task: str | DownstreamTask,
    max_epochs: int = 100,
    lr: float = 1e-3,
    weight_decay: float = 0.0,
    optimizer: torch.optim.Optimizer | None = None,
    device: str | torch.device | None = None,
    seed: int | None = 0,
    select: str = "best",
    ckpt_dir: str | os.PathLike | None = None,
    amp: bool = False,
    log_name: str | None = LOGGER_NAME,
    log_interval: int = 0,
    train_handlers: Sequence[Any] | None = None,
    val_handlers: Sequence[Any] | None = None,
    epoch_length: int | None = None,
) -> FitResult:
    """Train ``network`` on the labelled data with MONAI's ``SupervisedTrainer``, selecting epochs on validation.

    After every epoch a ``SupervisedEvaluator`` (via ``ValidationHandler``) computes the task's validation
    metric (:func:`task_metric`); :class:`BestWeights` keeps the weights of the best epoch, and with
    ``select="best"`` they are loaded back into ``network`` at the end (docs/method.md D3). ``ckpt_dir``
    additionally writes them to ``<ckpt_dir>/model.pt`` with MONAI's ``CheckpointSaver`` (the classifier's
    state dict; its encoder reloads with ``load_pretrained_encoder(path, encoder, prefix="encoder.")``).

    The optimiser defaults to Adam(lr=1e-3) over the trainable parameters, as in the reference (for a frozen
    encoder that is the head only). A network with a ``prepare_head`` method whose head still ``needs_data``
    gets one pass over ``train_loader`` first (:meth:`~monai_ilm.evaluation.DownstreamClassifier.prepare_head`:
    standardisation statistics and the prevalence start); the seed is set after that pass, which draws its own
    training augmentations. Progress goes to MONAI ``StatsHandler`` on the ``log_name`` logger: the
    validation metric every epoch, the training loss every ``log_interval`` iterations (0 = never).

    Args:
        network: e.g. a :class:`DownstreamClassifier`; moved to ``device``.
        train_loader: batches ``{"image": (B, C, ...), "label": ...}`` (a ``DataLoader`` or any iterable).
        val_loader: validation batches of the same form.
        task: task preset name or :class:`DownstreamTask`.
        max_epochs: number of epochs.
        lr: Adam learning rate (ignored when ``optimizer`` is given).
        weight_decay: Adam weight decay (ignored when ``optimizer`` is given).
        optimizer: a ready optimiser over ``network``'s parameters.
        device: where to train (default: CUDA if available).
        seed: passed to ``monai.utils.set_determinism`` before training (None = leave the RNGs alone).
        select: ``"best"`` (best validation epoch, default) or ``"last"`` (the reference's behaviour).
        ckpt_dir: directory for the best checkpoint, or None to keep it in memory only.
        amp: automatic mixed precision (CUDA).
        log_name: logger name for ``StatsHandler``; None disables logging handlers.
        log_interval: log the training loss every that many iterations (0 = never).
        train_handlers: extra handlers for the trainer.
        val_handlers: extra handlers for the validation evaluator.
        epoch_length: iterations per epoch for loaders without a length.

    Returns:
        A :class:`FitResult`; ``network`` holds the selected weights.

    Raises:
        ValueError: for an unknown ``select``, ``max_epochs < 1``, or a network without trainable parameters.
    """
    task = get_task(task)
    if select not in SELECTIONS:
        raise ValueError(f"select: expected one of {SELECTIONS}, got {select!r}.")
    if max_epochs < 1:
        raise ValueError(f"max_epochs: expected at least one epoch, got {max_epochs}.")
    dev = _default_device(device)
    network.to(dev)
    params = _trainable(network)
    head = getattr(network, "head", network)
    if callable(getattr(network, "prepare_head", None)) and getattr(head, "needs_data", False):
        # one epoch's worth: a loader without a length (epoch_length given) may never end
        batches = train_loader if epoch_length is None else itertools.islice(train_loader, epoch_length)
        network.prepare_head(batches, task, dev)
    if seed is not None:
        set_determinism(seed=seed)
    optimizer = optimizer or torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    metric_name = f"val_{task.metric}"
    best = BestWeights(network, metric_name)
    handlers_val: list[Any] = [best, *(val_handlers or [])]
    counts = _LabelCounts(task.multilabel)
    handlers_train: list[Any] = [counts, *(train_handlers or [])]
    if ckpt_dir is not None:
        handlers_val.append(
            CheckpointSaver(
                save_dir=os.fspath(ckpt_dir),
                save_dict={"network": network},
                save_key_metric=True,
                key_metric_n_saved=1,
                key_metric_filename="model.pt",
            )
        )
    if log_name is not None:
        handlers_val.append(StatsHandler(name=log_name, iteration_log=False))
        iteration_log = partial(_every, interval=log_interval) if log_interval > 0 else False
        handlers_train.append(
            StatsHandler(
                name=log_name,
                iteration_log=iteration_log,
                epoch_log=False,
                tag_name="train_loss",
                output_transform=_loss_value,
            )
        )
    evaluator = SupervisedEvaluator(
        device=dev,
        val_data_loader=val_loader,
        network=network,
        key_val_metric={metric_name: task_metric(task)},
        val_handlers=handlers_val,
        amp=amp,
        decollate=False,
    )
    trainer = SupervisedTrainer(
        device=dev,
        max_epochs=max_epochs,
        train_data_loader=train_loader,
        network=network,
        optimizer=optimizer,
        loss_function=task.loss_function(),
        epoch_length=epoch_length,
        train_handlers=[ValidationHandler(interval=1, validator=evaluator, epoch_level=True), *handlers_train],
        amp=amp,
        decollate=False,
    )
    trainer.run()
    selected = trainer.state.epoch
    if select == "best":
        best.restore()
        selected = int(best.best_epoch)  # restore() raised if there was none
    return FitResult(
        metric_name,
        best.history,
        best.best_epoch,
        best.best_metric,
        selected,
        select,
        train_samples=counts.samples,
        train_label_counts=counts.counts,
        multilabel=task.multilabel,
    )
