"""Test a trained downstream model: predictions, the test metric with a bootstrap interval, end to end.

:func:`predict` runs the network over the test loader with a MONAI ``SupervisedEvaluator`` and keeps every
output; :func:`score_predictions` computes the task's test metric with a bootstrap confidence interval
(:mod:`monai_ilm.evaluation.intervals`); :func:`run_downstream` is the whole linear evaluation or fine-tuning
of one model: :func:`~monai_ilm.evaluation.training.fit_downstream`, then the test of the selected weights.
``ci_method="standard_error"`` gives the paper's interval instead of the percentile one.

A finding the head never saw a positive (or a negative) training example of cannot be ranked by what the head
learnt: its test AUC is reported as NaN with a warning naming it, and left out of the mean and of every
bootstrap resample (the :class:`~monai_ilm.evaluation.training.FitResult` of the training counts the labels).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.engines import SupervisedEvaluator
from monai.utils import CommonKeys as Keys
from torch import nn

from monai_ilm.evaluation.features import _default_device, batch_ids
from monai_ilm.evaluation.tasks import DownstreamTask, class_label, get_task
from monai_ilm.evaluation.training import FitResult, fit_downstream
from monai_ilm.statistics.intervals import METHODS as CI_METHODS
from monai_ilm.statistics.intervals import BootstrapCI, bootstrap_ci

__all__ = ["DownstreamResult", "Predictions", "evaluate_downstream", "predict", "run_downstream", "score_predictions"]


@dataclass
class Predictions:
    """Outputs of :func:`predict`, rows in loader order.

    Attributes:
        logits: raw network outputs, ``(n, n_outputs)`` float64.
        labels: the labels, ``(n,)`` or ``(n, n_classes)``, or None if the batches had none.
        ids: one identifier per sample (see :func:`~monai_ilm.evaluation.features.batch_ids`).
    """

    logits: np.ndarray
    labels: np.ndarray | None
    ids: list[str]


class _Collector:
    """Ignite handler gathering predictions, labels and sample ids of a non-decollated evaluator."""

    def __init__(self, id_key: str | None, image_key: str = Keys.IMAGE) -> None:
        self.id_key, self.image_key = id_key, image_key
        self.logits: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.ids: list[str] = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        pred = engine.state.output[Keys.PRED].detach().double().cpu()
        self.logits.append(pred.reshape(pred.shape[0], -1))
        label = engine.state.output.get(Keys.LABEL)
        if label is not None:
            self.labels.append(torch.as_tensor(label).detach().cpu().double())
        self.ids.extend(batch_ids(engine.state.batch, pred.shape[0], len(self.ids), self.id_key, self.image_key))


def predict(
    network: nn.Module,
    loader: Iterable[Mapping[str, Any]],
    device: str | torch.device | None = None,
    id_key: str | None = None,
    amp: bool = False,
) -> Predictions:
    """Run ``network`` in eval mode over ``loader`` with a ``SupervisedEvaluator`` and keep every output.

    Args:
        network: the classifier.
        loader: batches ``{"image": ..., "label": ...}``; the order of the rows is the loader's.
        device: where to run (default: CUDA if available).
        id_key: key of a per-sample identifier in the batches (see ``batch_ids``).
        amp: automatic mixed precision (CUDA).

    Returns:
        :class:`Predictions` (labels are None when a batch had no ``"label"``).

    Raises:
        ValueError: if the loader yields no batch.
    """
    dev = _default_device(device)
    network.to(dev)
    collector = _Collector(id_key)
    evaluator = SupervisedEvaluator(
        device=dev, val_data_loader=loader, network=network, val_handlers=[collector], amp=amp, decollate=False
    )
    evaluator.run()
    if not collector.logits:
        raise ValueError("loader: expected at least one batch, got none.")
    labels = None
    if len(collector.labels) == len(collector.logits):
        labels = torch.cat([lab.reshape(lab.shape[0], -1) for lab in collector.labels]).numpy()
        labels = labels[:, 0] if labels.shape[1] == 1 else labels
    return Predictions(torch.cat(collector.logits).numpy(), labels, collector.ids)


@dataclass
class DownstreamResult:
    """Test-set performance of a downstream model.

    Attributes:
        task: task preset name.
        metric: results-table metric name (``mean_auc``, ``auc``, ``f1_macro``).
        multilabel: whether the outputs are per-finding sigmoids.
        value: the metric on the full test set (for every ``ci_method``).
        ci: the bootstrap interval (:class:`~monai_ilm.evaluation.BootstrapCI`), or None if not computed.
        per_class: per-class metric (NIH: AUC per finding, NaN where undefined on the test set or where the
            training labels had no positive or no negative example), or None.
        logits: raw test outputs ``(n, n_outputs)``.
        probabilities: sigmoid / softmax of ``logits``.
        labels: test labels, ``(n,)`` class indices or ``(n, n_classes)`` multi-hot.
        ids: test sample identifiers.
        fit: model-selection information when the model was trained here.
    """

    task: str
    metric: str
    multilabel: bool
    value: float
    ci: BootstrapCI | None
    per_class: np.ndarray | None
    logits: np.ndarray
    probabilities: np.ndarray
    labels: np.ndarray
    ids: list[str]
    fit: FitResult | None = field(default=None)

    @property
    def n(self) -> int:
        """Number of test samples."""
        return int(self.labels.shape[0])

    @property
    def ci_low(self) -> float | None:
        return None if self.ci is None else self.ci.ci_low

    @property
    def ci_high(self) -> float | None:
        return None if self.ci is None else self.ci.ci_high


def score_predictions(
    predictions: Predictions,
    task: str | DownstreamTask,
    n_resamples: int = 1000,
    ci_method: str = "percentile",
    confidence: float = 0.95,
    seed: int = 0,
    fit: FitResult | None = None,
) -> DownstreamResult:
    """Test metric of given predictions with a bootstrap confidence interval.

    ``ci_method="percentile"`` (default) is a real 95 % interval; ``"standard_error"`` is the paper's
    ``mean +/- 1.96 sd / sqrt(B)`` (docs/method.md §7.2; the paper used ``n_resamples=500``), pooling the
    per-finding AUCs for the multi-label task as the reference did. The reported ``value`` is the full-test-set
    metric for every ``ci_method`` (``"standard_error"`` centres the paper's half-width on it; the paper's printed
    bootstrap mean is ``ci.bootstrap_mean``), and ``ci.replicates`` the score of every resample, for paired
    comparisons across methods.

    With ``fit``, the classes it found untrained (:attr:`~monai_ilm.evaluation.training.FitResult.untrained_classes`)
    are named in a warning; for a per-class metric they are NaN and left out of the mean and of the interval.

    Args:
        predictions: logits and labels (e.g. from :func:`predict`).
        task: task preset name or :class:`DownstreamTask`.
        n_resamples: bootstrap resamples; 0 skips the interval.
        ci_method: ``"percentile"`` or ``"standard_error"``.
        confidence: confidence level.
        seed: seed of the bootstrap resamples.
        fit: model-selection information to attach to the result (and its training label counts).

    Returns:
        A :class:`DownstreamResult`.

    Raises:
        ValueError: if the predictions have no labels, for an unknown ``ci_method``, if the metric is
            undefined on the test set, or if no finding had both positive and negative training examples.
    """
    task = get_task(task)
    if predictions.labels is None:
        raise ValueError("predictions: expected labels to score the predictions, got none.")
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci_method: expected one of {CI_METHODS}, got {ci_method!r}.")
    labels, logits = task.targets(predictions.labels), predictions.logits
    metric = _trained_only(task, fit, logits.shape[1])
    full = metric(labels, logits)
    per_class = np.asarray(full, dtype=np.float64) if task.per_class else None
    value = float(np.nanmean(per_class)) if per_class is not None else float(full)
    ci = None
    if n_resamples > 0:
        with warnings.catch_warnings():  # the metric's warnings on the full test set were given just above
            warnings.simplefilter("ignore")
            ci = bootstrap_ci(
                metric,
                labels,
                logits,
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
                method=ci_method,
                per_class=task.per_class,
            )
        value = ci.value  # the full-set metric, the centre of a "standard_error" interval
    return DownstreamResult(
        task=task.name,
        metric=task.metric,
        multilabel=task.multilabel,
        value=value,
        ci=ci,
        per_class=per_class,
        logits=logits,
        probabilities=task.probabilities(logits),
        labels=labels,
        ids=predictions.ids,
        fit=fit,
    )


def _trained_only(task: DownstreamTask, fit: FitResult | None, n_outputs: int) -> Callable[..., Any]:
    """The task's test metric, with the classes ``fit`` found untrained set to NaN (per-class metrics), warned of."""
    untrained = () if fit is None else fit.untrained_classes
    if not untrained:
        return task.test_metric
    counts = fit.train_label_counts
    if task.per_class:
        reasons = [
            f"{class_label(c, n_outputs)} (no {'positive' if counts[c] == 0 else 'negative'} training label)"
            for c in untrained
        ]
        if len(untrained) == n_outputs:
            raise ValueError(
                f"train_loader: expected a finding with both positive and negative training labels, got none "
                f"({', '.join(reasons)}): the head learnt nothing to test."
            )
        warnings.warn(
            f"train_loader: no {task.metric} for finding(s) {', '.join(reasons)}; reported as NaN and left out of "
            f"the mean and its interval, which are over the {n_outputs - len(untrained)} other findings.",
            stacklevel=3,
        )
        return partial(_without_classes, task.test_metric, untrained)
    names = ", ".join(str(c) for c in untrained)
    warnings.warn(
        f"train_loader: no training example of class(es) {names}; the {task.metric} is that of a head that never "
        "saw them.",
        stacklevel=3,
    )
    return task.test_metric


def _without_classes(metric: Callable[..., Any], classes: Sequence[int], y_true: Any, logits: Any) -> np.ndarray:
    out = np.array(metric(y_true, logits), dtype=np.float64)
    out[list(classes)] = np.nan
    return out


def evaluate_downstream(
    network: nn.Module,
    test_loader: Iterable[Mapping[str, Any]],
    task: str | DownstreamTask,
    device: str | torch.device | None = None,
    n_resamples: int = 1000,
    ci_method: str = "percentile",
    confidence: float = 0.95,
    seed: int = 0,
    id_key: str | None = None,
    amp: bool = False,
    fit: FitResult | None = None,
) -> DownstreamResult:
    """Evaluate ``network`` (as it is now) on the test set: :func:`predict` then :func:`score_predictions`.

    Args:
        network: the classifier holding the weights to test (after :func:`fit_downstream`: the selected ones).
        test_loader: test batches; keep the order fixed (no shuffling) to pair results across models.
        task: task preset name or :class:`DownstreamTask`.
        device: where to run (default: CUDA if available).
        n_resamples, ci_method, confidence, seed: see :func:`score_predictions`.
        id_key: key of a per-sample identifier in the batches.
        amp: automatic mixed precision (CUDA).
        fit: model-selection information to attach to the result.

    Returns:
        A :class:`DownstreamResult`.

    Raises:
        ValueError: see :func:`score_predictions`.
    """
    predictions = predict(network, test_loader, device=device, id_key=id_key, amp=amp)
    return score_predictions(predictions, task, n_resamples, ci_method, confidence, seed, fit)


def run_downstream(
    network: nn.Module,
    train_loader: Iterable[Mapping[str, Any]],
    val_loader: Iterable[Mapping[str, Any]],
    test_loader: Iterable[Mapping[str, Any]],
    task: str | DownstreamTask,
    max_epochs: int = 100,
    lr: float = 1e-3,
    device: str | torch.device | None = None,
    seed: int = 0,
    select: str = "best",
    ckpt_dir: str | os.PathLike | None = None,
    n_resamples: int = 1000,
    ci_method: str = "percentile",
    confidence: float = 0.95,
    id_key: str | None = None,
    **fit_kwargs: Any,
) -> DownstreamResult:
    """Linear evaluation or fine-tuning end to end: :func:`fit_downstream` then :func:`evaluate_downstream`.

    Whether it is a linear probe or fine-tuning is decided by the network
    (``DownstreamClassifier(freeze_encoder=...)``); the label fraction by the training loader.
    ``amp`` (in ``fit_kwargs``) speeds up training and validation only: the test predictions are
    computed in float32, so half-precision ties cannot coarsen the ranking the reported AUC scores.

    Args:
        network: the classifier to train.
        train_loader, val_loader, test_loader: the three splits.
        task: task preset name or :class:`DownstreamTask`.
        max_epochs, lr, device, seed, select, ckpt_dir: see :func:`fit_downstream`.
        n_resamples, ci_method, confidence: see :func:`score_predictions` (the bootstrap uses ``seed`` too).
        id_key: key of a per-sample identifier in the test batches.
        fit_kwargs: further arguments of :func:`fit_downstream`.

    Returns:
        The :class:`DownstreamResult` of the selected weights, with its :class:`FitResult`.
    """
    fit = fit_downstream(
        network,
        train_loader,
        val_loader,
        task,
        max_epochs=max_epochs,
        lr=lr,
        device=device,
        seed=seed,
        select=select,
        ckpt_dir=ckpt_dir,
        **fit_kwargs,
    )
    return evaluate_downstream(
        network,
        test_loader,
        task,
        device=device,
        n_resamples=n_resamples,
        ci_method=ci_method,
        confidence=confidence,
        seed=seed,
        id_key=id_key,
        fit=fit,
    )
