"""Linear evaluation and fine-tuning of a pretrained encoder with MONAI engines (the paper's Tables 1 and 2).

Kaku et al. (NeurIPS 2021) judge a self-supervised encoder by training a linear classifier on its globally
pooled last-block features, either with the encoder frozen (*linear evaluation*, Table 1) or with the whole
network trained (*fine-tuning* at 1, 6 and 100 % of the labels, Table 2). Both are run here with MONAI's
``SupervisedTrainer`` (Adam, lr 1e-3 as in the reference) and a ``SupervisedEvaluator`` that scores the
validation set after every epoch with the task metric; the weights of the best validation epoch are kept and
it is **these** weights that are evaluated on the test set, with a bootstrap confidence interval.

Three task presets (:data:`TASKS`) cover the paper's data sets:

===============  ============================  ======================  ===================================
preset           data set (paper)              loss                    metric (results name)
===============  ============================  ======================  ===================================
``multilabel``   NIH ChestX-ray14, 14 findings BCE with logits         mean ROC-AUC over findings (``mean_auc``)
``binary_auc``   diabetic retinopathy          2-class cross-entropy   ROC-AUC of softmax p1 (``auc``)
``f1``           breast histopathology (IDC)   2-class cross-entropy   macro-F1 of the argmax (``f1_macro``)
===============  ============================  ======================  ===================================

Defects of the reference code (method_spec section 9) and how they are handled; ``paper_faithful=True`` in
:func:`get_task`, ``select="last"``, ``freeze_bn=False`` and ``ci_method="standard_error"`` bring the original
behaviour back for comparison:

* D3: the reference evaluated the last-epoch weights although it named the results after the best checkpoint;
  here the best-validation weights are restored before testing (``select="best"``).
* D11: the reference's "frozen" encoder ran BatchNorm in train mode under ``no_grad``, so its running
  statistics drifted on the labelled data; :class:`DownstreamClassifier` keeps a frozen encoder in eval mode.
* D12: the DR AUC ranked the raw class-1 logit; here it is the AUC of ``softmax(logits)[1]``, computed by
  ranking ``l_1 - l_0`` (the same order, without the ties of probabilities that round to 1.0).
* D13: the IDC model was *selected* on micro-F1 (accuracy) but *tested* on macro-F1; here both are macro-F1.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
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
from scipy.special import expit, softmax
from torch import nn

from monai_ilm.data.nih import NIH_FINDINGS
from monai_ilm.evaluation.features import (
    _default_device,
    batch_ids,
    load_pretrained_encoder,
)
from monai_ilm.evaluation.intervals import METHODS as CI_METHODS
from monai_ilm.evaluation.intervals import BootstrapCI, bootstrap_ci
from monai_ilm.evaluation.ks import KSResult, ks_distance
from monai_ilm.evaluation.metrics import binary_auc, f1, mean_auc
from monai_ilm.networks.backbones import StageEncoder, global_pool, resnet_encoder
from monai_ilm.results.rows import make_row, per_class_metric

__all__ = [
    "PAPER_TASKS",
    "TASKS",
    "BestWeights",
    "DownstreamClassifier",
    "DownstreamResult",
    "DownstreamTask",
    "FitResult",
    "Predictions",
    "downstream_network",
    "downstream_rows",
    "evaluate_downstream",
    "fit_downstream",
    "get_task",
    "ks_rows",
    "output_ks",
    "predict",
    "run_downstream",
    "score_predictions",
    "task_metric",
]

LOGGER_NAME = "monai_ilm.evaluation"
SELECTIONS = ("best", "last")


# --------------------------------------------------------------------------------------------- task presets
def _finding_names(logits: np.ndarray) -> Sequence[str] | None:
    return NIH_FINDINGS if logits.ndim == 2 and logits.shape[1] == len(NIH_FINDINGS) else None


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
            defined classes, and the paper's standard-error interval pools them (method_spec section 7.2).
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
        raise ValueError(f"task: unknown downstream task {task!r}; expected one of {list(table)}.")
    return table[task]


# ------------------------------------------------------------------------------------------------ the model
class DownstreamClassifier(nn.Module):
    """A stage encoder followed by global average pooling and a linear head.

    This is the reference's ``New_model`` (method_spec section 7.1): the pretrained ResNet with its ``fc``
    replaced by a new ``Linear(C, num_classes)`` on the pooled features of the last block (or of ``block``).

    With ``freeze_encoder=True`` (linear evaluation) the encoder's parameters get ``requires_grad=False``, its
    forward runs without autograd, and it stays in eval mode even when the classifier is put in train mode, so
    BatchNorm uses and keeps the pretrained running statistics (fix of method_spec D11). ``freeze_bn=False``
    reproduces the reference, where the frozen encoder's BatchNorm layers used batch statistics and updated
    their running averages on the labelled data.

    Args:
        encoder: a :class:`~monai_ilm.networks.StageEncoder` (pretrained or random).
        num_classes: number of outputs of the linear head.
        freeze_encoder: train only the head (linear evaluation) instead of the whole network.
        block: 1-based block whose pooled output feeds the head; None = the last block.
        freeze_bn: keep a frozen encoder in eval mode during training (ignored when the encoder trains).

    Raises:
        ValueError: for ``num_classes < 1`` or a block outside ``1..len(encoder.stage_channels)``.
    """

    def __init__(
        self,
        encoder: StageEncoder,
        num_classes: int,
        freeze_encoder: bool = False,
        block: int | None = None,
        freeze_bn: bool = True,
    ) -> None:
        super().__init__()
        n_blocks = len(encoder.stage_channels)
        block = n_blocks if block is None else int(block)
        if not 1 <= block <= n_blocks:
            raise ValueError(f"block: expected a block number in 1..{n_blocks}, got {block}.")
        if num_classes < 1:
            raise ValueError(f"num_classes: expected a positive number of outputs, got {num_classes}.")
        self.encoder = encoder
        self.block = block
        self.freeze_encoder = freeze_encoder
        self.freeze_bn = freeze_bn
        self.head = nn.Linear(encoder.stage_channels[block - 1], num_classes)
        if freeze_encoder:
            for p in self.encoder.parameters():
                p.requires_grad_(False)
            if freeze_bn:
                self.encoder.eval()

    def train(self, mode: bool = True) -> DownstreamClassifier:
        """Set the train/eval mode; a frozen encoder stays in eval mode (unless ``freeze_bn=False``)."""
        super().train(mode)
        if self.freeze_encoder and self.freeze_bn:
            self.encoder.eval()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features ``(N, C)`` of the selected block."""
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.freeze_encoder):
            if self.block == len(self.encoder.stage_channels):
                return self.encoder(x)
            return global_pool(self.encoder.forward_stages(x)[self.block - 1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def downstream_network(
    checkpoint_path: str | os.PathLike | None,
    num_classes: int,
    freeze_encoder: bool = False,
    encoder_name: str = "resnet50",
    in_channels: int = 3,
    spatial_dims: int = 2,
    backend: str = "torchvision",
    zero_init_residual: bool = False,
    block: int | None = None,
    freeze_bn: bool = True,
    seed: int = 0,
) -> DownstreamClassifier:
    """Build a :class:`DownstreamClassifier` from a pretraining checkpoint (or at random), seeded.

    The encoder and head are initialised after ``torch.manual_seed(seed)``, so the supervised baseline
    (``checkpoint_path=None``) and the new heads are reproducible; the encoder weights then come from the
    MoCo query encoder of the checkpoint (:func:`~monai_ilm.evaluation.features.load_pretrained_encoder`).

    Args:
        checkpoint_path: MoCo checkpoint, or None for random initialisation (supervised / from scratch).
        num_classes: outputs of the head.
        freeze_encoder: linear evaluation (True) or fine-tuning (False).
        encoder_name, in_channels, spatial_dims, backend, zero_init_residual: see
            :func:`~monai_ilm.networks.resnet_encoder`; must match the pretrained encoder.
        block: block feeding the head (None = last).
        freeze_bn: see :class:`DownstreamClassifier`.
        seed: seed of the random initialisation.

    Returns:
        The classifier (on the CPU).

    Raises:
        ValueError: for a checkpoint that does not match the encoder, or bad arguments.
    """
    torch.manual_seed(seed)
    encoder = resnet_encoder(encoder_name, spatial_dims, in_channels, backend, zero_init_residual)
    encoder = load_pretrained_encoder(checkpoint_path, encoder)
    return DownstreamClassifier(encoder, num_classes, freeze_encoder=freeze_encoder, block=block, freeze_bn=freeze_bn)


# ------------------------------------------------------------------------------------ metric and selection
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


class BestWeights:
    """Ignite handler keeping an in-memory copy of the weights of the best validation epoch.

    Attach it to the validation evaluator: at the end of each validation run it reads
    ``engine.state.metrics[metric_name]`` (higher is better; ties keep the earlier epoch; NaN never wins) and,
    on improvement, copies ``network.state_dict()`` to the CPU. :meth:`restore` loads the copy back, which is
    what fixes method_spec D3 (the reference tested the last-epoch weights).

    Args:
        network: the trained network.
        metric_name: key of the validation metric in ``engine.state.metrics``.

    Attributes:
        history: the metric of every validation run, in order.
        best_metric: the best value so far (None before the first finite one).
        best_epoch: the engine's epoch of ``best_metric`` (the trainer epoch when run by ``ValidationHandler``).
    """

    def __init__(self, network: nn.Module, metric_name: str) -> None:
        self.network = network
        self.metric_name = metric_name
        self.history: list[float] = []
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        value = float(engine.state.metrics[self.metric_name])
        self.history.append(value)
        if math.isfinite(value) and (self.best_metric is None or value > self.best_metric):
            self.best_metric, self.best_epoch = value, int(engine.state.epoch)
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in self.network.state_dict().items()}

    def restore(self) -> None:
        """Load the best weights into the network.

        Raises:
            RuntimeError: if no validation run gave a finite metric.
        """
        if self._state is None:
            raise RuntimeError(f"{self.metric_name}: no validation epoch produced a finite metric; nothing to restore.")
        self.network.load_state_dict(self._state)


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
    """

    metric_name: str
    history: list[float]
    best_epoch: int | None
    best_metric: float | None
    selected_epoch: int
    select: str


def _every(engine: Engine, event: int, interval: int) -> bool:
    return event % interval == 0


def _loss_value(output: Mapping[str, torch.Tensor]) -> float:
    return float(output[Keys.LOSS])


def _trainable(network: nn.Module) -> list[nn.Parameter]:
    params = [p for p in network.parameters() if p.requires_grad]
    if not params:
        raise ValueError("network: has no trainable parameter (requires_grad=True).")
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
    ``select="best"`` they are loaded back into ``network`` at the end (method_spec D3). ``ckpt_dir``
    additionally writes them to ``<ckpt_dir>/model.pt`` with MONAI's ``CheckpointSaver`` (the classifier's
    state dict; its encoder reloads with ``load_pretrained_encoder(path, encoder, prefix="encoder.")``).

    The optimiser defaults to Adam(lr=1e-3) over the trainable parameters, as in the reference (for a frozen
    encoder that is the head only). Progress goes to MONAI ``StatsHandler`` on the ``log_name`` logger: the
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
    if seed is not None:
        set_determinism(seed=seed)
    dev = _default_device(device)
    network.to(dev)
    optimizer = optimizer or torch.optim.Adam(_trainable(network), lr=lr, weight_decay=weight_decay)
    metric_name = f"val_{task.metric}"
    best = BestWeights(network, metric_name)
    handlers_val: list[Any] = [best, *(val_handlers or [])]
    handlers_train: list[Any] = list(train_handlers or [])
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
    return FitResult(metric_name, best.history, best.best_epoch, best.best_metric, selected, select)


# ---------------------------------------------------------------------------------------------- prediction
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
        value: the metric on the full test set, or with ``ci_method="standard_error"`` the bootstrap mean (the
            interval's centre; the full-set metric is then ``ci.full_value``).
        ci: the bootstrap interval (:class:`~monai_ilm.evaluation.BootstrapCI`), or None if not computed.
        per_class: per-class metric (NIH: AUC per finding, NaN where undefined), or None.
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
    ``mean +/- 1.96 sd / sqrt(B)`` (method_spec section 7.2; the paper used ``n_resamples=500``), pooling the
    per-finding AUCs for the multi-label task as the reference did. The reported ``value`` is the full-test-set
    metric with ``"percentile"`` (or without an interval) and the bootstrap mean, the centre of the interval,
    with ``"standard_error"`` (the paper's convention); ``ci.full_value`` keeps the full-set metric and
    ``ci.replicates`` the score of every resample, for paired comparisons across methods.

    Args:
        predictions: logits and labels (e.g. from :func:`predict`).
        task: task preset name or :class:`DownstreamTask`.
        n_resamples: bootstrap resamples; 0 skips the interval.
        ci_method: ``"percentile"`` or ``"standard_error"``.
        confidence: confidence level.
        seed: seed of the bootstrap resamples.
        fit: model-selection information to attach to the result.

    Returns:
        A :class:`DownstreamResult`.

    Raises:
        ValueError: if the predictions have no labels, for an unknown ``ci_method``, or if the metric is
            undefined on the test set.
    """
    task = get_task(task)
    if predictions.labels is None:
        raise ValueError("predictions: expected labels to score the predictions, got none.")
    if ci_method not in CI_METHODS:
        raise ValueError(f"ci_method: expected one of {CI_METHODS}, got {ci_method!r}.")
    labels, logits = task.targets(predictions.labels), predictions.logits
    full = task.test_metric(labels, logits)
    per_class = np.asarray(full, dtype=np.float64) if task.per_class else None
    value = float(np.nanmean(per_class)) if per_class is not None else float(full)
    ci = None
    if n_resamples > 0:
        with warnings.catch_warnings():  # the metric's warnings on the full test set were given just above
            warnings.simplefilter("ignore")
            ci = bootstrap_ci(
                task.test_metric,
                labels,
                logits,
                n_resamples=n_resamples,
                confidence=confidence,
                seed=seed,
                method=ci_method,
                per_class=task.per_class,
            )
        value = ci.value  # the bootstrap mean for "standard_error", so the value lies in its interval
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


# ------------------------------------------------------------------------------------------------- results
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


# ---------------------------------------------------------------------------------------------------- KS
def output_ks(result_a: DownstreamResult, result_b: DownstreamResult) -> KSResult:
    """KS distance between two models' test output probabilities (e.g. fine-tuned with 1 % vs 100 % labels).

    The paper's abstract compares these output distributions (method_spec section 7.6, no reference code).
    Two-class softmax outputs are compared on the positive class only; multi-label outputs per finding.

    Args:
        result_a: test result of the first model.
        result_b: test result of the second model, on the same test set.

    Returns:
        The :class:`~monai_ilm.evaluation.KSResult` (per-class statistics and p-values).

    Raises:
        ValueError: if the two results are of different tasks or on different test samples.
    """
    if result_a.task != result_b.task or result_a.probabilities.shape[1] != result_b.probabilities.shape[1]:
        raise ValueError(
            f"result_b: expected a result of the same task as result_a ({result_a.task!r}, "
            f"{result_a.probabilities.shape[1]} outputs), got {result_b.task!r} ({result_b.probabilities.shape[1]})."
        )
    if sorted(result_a.ids) != sorted(result_b.ids):
        raise ValueError("result_b: expected the same test samples as result_a (their sample ids differ).")
    binary = not result_a.multilabel and result_a.probabilities.shape[1] == 2
    return ks_distance(result_a.probabilities, result_b.probabilities, binary=binary)


def ks_rows(
    result_a: DownstreamResult,
    result_b: DownstreamResult,
    dataset: str,
    method: str,
    label_fraction: float,
    seed: int,
    run_id: str,
    metric: str = "ks",
    per_class_rows: bool = False,
    class_names: Sequence[str] | None = None,
    **fields: Any,
) -> list[dict[str, Any]]:
    """Results rows (protocol ``"ks"``) of :func:`output_ks`: the KS statistic averaged over classes.

    ``label_fraction`` is that of ``result_a`` (the low-label model); ``result_b`` is the reference
    (usually 100 %), which ``metric`` may name, e.g. ``"ks_vs_100"``.

    Args:
        result_a: the low-label model's test result.
        result_b: the reference model's test result.
        dataset, method, label_fraction, seed, run_id: results columns.
        metric: metric name of the mean statistic.
        per_class_rows: add ``"<metric>_<class>"`` rows per finding/class.
        class_names: names of the classes for the per-class rows.
        fields: further columns (``checkpoint``, ``config_hash``, ``timestamp``).

    Returns:
        A list of row dicts.
    """
    ks = output_ks(result_a, result_b)
    common = dict(
        dataset=dataset,
        method=method,
        protocol="ks",
        label_fraction=label_fraction,
        seed=seed,
        run_id=run_id,
        n=result_a.n,
        **fields,
    )
    rows = [make_row(metric=metric, value=ks.mean_statistic, **common)]
    if per_class_rows and len(ks.classes) > 1:
        for c, stat in zip(ks.classes, ks.statistic):
            rows.append(make_row(metric=f"{metric}_{_class_label(class_names, c)}", value=float(stat), **common))
    return rows
