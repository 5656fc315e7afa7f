"""Downstream task presets: the loss, the labels and the metrics of each of the paper's data sets.

Three task presets (:data:`TASKS`) cover the paper's data sets:

===============  ============================  ======================  ===================================
preset           data set (paper)              loss                    metric (results name)
===============  ============================  ======================  ===================================
``multilabel``   NIH ChestX-ray14, 14 findings BCE with logits         mean ROC-AUC over findings (``mean_auc``)
``binary_auc``   diabetic retinopathy          2-class cross-entropy   ROC-AUC of softmax p1 (``auc``)
``f1``           breast histopathology (IDC)   2-class cross-entropy   macro-F1 of the argmax (``f1_macro``)
===============  ============================  ======================  ===================================

Defects of the reference code (docs/method.md §9) that live in the metrics; ``paper_faithful=True`` in
:func:`get_task` (:data:`PAPER_TASKS`) brings the original behaviour back for comparison:

* D12: the DR AUC ranked the raw class-1 logit; here it is the AUC of ``softmax(logits)[1]``, computed by
  ranking ``l_1 - l_0`` (the same order, without the ties of probabilities that round to 1.0).
* D13: the IDC model was *selected* on micro-F1 (accuracy) but *tested* on macro-F1; here both are macro-F1.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from scipy.special import expit, softmax
from torch import nn

from monai_ilm.data.nih import NIH_FINDINGS
from monai_ilm.evaluation.metrics import binary_auc, f1, mean_auc

__all__ = ["PAPER_TASKS", "TASKS", "DownstreamTask", "class_label", "get_task"]


def _finding_names(logits: np.ndarray) -> Sequence[str] | None:
    return NIH_FINDINGS if logits.ndim == 2 and logits.shape[1] == len(NIH_FINDINGS) else None


def class_label(c: int, n_outputs: int) -> str:
    """How messages name output ``c`` of ``n_outputs``: the NIH finding's name for 14 outputs, else its column."""
    return repr(NIH_FINDINGS[c]) + f" (column {c})" if n_outputs == len(NIH_FINDINGS) else f"column {c}"


def _mean_auc(y_true: np.ndarray, logits: np.ndarray) -> float:
    return mean_auc(y_true, logits, class_names=_finding_names(logits)).mean


def _per_finding_auc(y_true: np.ndarray, logits: np.ndarray) -> np.ndarray:
    return mean_auc(y_true, logits, class_names=_finding_names(logits)).per_class


def _auc_probability(y_true: np.ndarray, logits: np.ndarray) -> float:
    return binary_auc(y_true, logits, score="probability")


def _auc_raw_logit(y_true: np.ndarray, logits: np.ndarray) -> float:
    return binary_auc(y_true, logits, score="raw_logit")


def _f1_macro(y_true: np.ndarray, logits: np.ndarray) -> float:
    return f1(y_true, logits, average="macro")


def _f1_micro(y_true: np.ndarray, logits: np.ndarray) -> float:
    return f1(y_true, logits, average="micro")


class _SingleLabelCrossEntropy(nn.CrossEntropyLoss):
    """Cross-entropy on raw logits that accepts integer class labels of shape ``(N,)`` or ``(N, 1)``, any dtype."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input, target.reshape(-1).long())


class _MultiLabelBCE(nn.BCEWithLogitsLoss):
    """``BCEWithLogitsLoss`` (the reference's sigmoid + ``BCELoss``, fused for stability) on multi-hot labels."""

    def forward(self, input: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return super().forward(input, target.reshape(input.shape).to(input.dtype))


@dataclass(frozen=True)
class DownstreamTask:
    """How one downstream task is trained and scored.

    Every metric is called as ``metric(y_true, logits)`` on numpy arrays of raw logits; all of them depend on
    the logits only through an order-preserving map (sigmoid, softmax, argmax), except ``raw_logit`` AUC.

    Attributes:
        name: preset name (a key of :data:`TASKS`).
        metric: name of the test metric in the results table (``mean_auc``, ``auc``, ``f1_macro``).
        multilabel: labels are multi-hot vectors (sigmoid outputs) instead of class indices (softmax outputs).
        num_classes: the fixed number of outputs, or None when it comes from the data (NIH: 14 findings).
        val_metric: model-selection metric, returns a float.
        test_metric: test metric, a float or (``per_class``) one value per class, NaN where undefined.
        per_class: ``test_metric`` returns per-class values; the reported value is their mean over the
            defined classes, and the paper's standard-error interval pools them (docs/method.md §7.2).
    """

    name: str
    metric: str
    multilabel: bool
    num_classes: int | None
    val_metric: Callable[[np.ndarray, np.ndarray], float]
    test_metric: Callable[[np.ndarray, np.ndarray], Any]
    per_class: bool = False

    def loss_function(self) -> nn.Module:
        """A fresh loss module for ``SupervisedTrainer`` (``loss(logits, labels)``)."""
        return _MultiLabelBCE() if self.multilabel else _SingleLabelCrossEntropy()

    def targets(self, labels: Any) -> np.ndarray:
        """Labels as the metrics expect them: ``(n, n_classes)`` multi-hot or ``(n,)`` class indices."""
        arr = np.asarray(labels.detach().cpu() if isinstance(labels, torch.Tensor) else labels, dtype=np.float64)
        if self.multilabel:
            return arr.reshape(arr.shape[0], -1)
        return arr.reshape(-1)

    def probabilities(self, logits: np.ndarray) -> np.ndarray:
        """Sigmoid (multi-label) or softmax (single-label) of the logits."""
        return expit(logits) if self.multilabel else softmax(logits, axis=1)


TASKS: dict[str, DownstreamTask] = {
    "multilabel": DownstreamTask("multilabel", "mean_auc", True, None, _mean_auc, _per_finding_auc, per_class=True),
    "binary_auc": DownstreamTask("binary_auc", "auc", False, 2, _auc_probability, _auc_probability),
    "f1": DownstreamTask("f1", "f1_macro", False, 2, _f1_macro, _f1_macro),
}
"""The corrected task presets (the defaults)."""

PAPER_TASKS: dict[str, DownstreamTask] = {
    "multilabel": TASKS["multilabel"],
    "binary_auc": replace(TASKS["binary_auc"], val_metric=_auc_raw_logit, test_metric=_auc_raw_logit),  # D12
    "f1": replace(TASKS["f1"], val_metric=_f1_micro),  # D13: selected on micro-F1 (accuracy), tested on macro-F1
}
"""The reference code's behaviour, for reproducing the paper's numbers."""


def get_task(task: str | DownstreamTask, paper_faithful: bool = False) -> DownstreamTask:
    """Look up a task preset.

    Args:
        task: ``"multilabel"``, ``"binary_auc"`` or ``"f1"``, or a :class:`DownstreamTask` (returned as is).
        paper_faithful: use the reference code's metrics (:data:`PAPER_TASKS`) instead of the fixed ones.

    Returns:
        The :class:`DownstreamTask`.

    Raises:
        ValueError: for an unknown preset name.
    """
    if isinstance(task, DownstreamTask):
        return task
    table = PAPER_TASKS if paper_faithful else TASKS
    if task not in table:
        raise ValueError(f"task: expected one of {list(table)}, got {task!r}.")
    return table[task]
