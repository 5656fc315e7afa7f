"""The downstream classifier: a (pretrained) stage encoder, global average pooling and a linear head.

Kaku et al. (NeurIPS 2021) judge a self-supervised encoder by training a linear classifier on its globally
pooled last-block features, either with the encoder frozen (*linear evaluation*, Table 1) or with the whole
network trained (*fine-tuning*, Table 2). :class:`DownstreamClassifier` is that network for both.

D11 of the reference code (docs/method.md §9): its "frozen" encoder ran BatchNorm in train mode under
``no_grad``, so its running statistics drifted on the labelled data; :class:`DownstreamClassifier` keeps a
frozen encoder in eval mode (``freeze_bn=False`` brings the original behaviour back for comparison).

The head (:class:`LinearHead`) standardises its input with the training features' mean and standard deviation,
frozen as buffers, and starts from zero weights with its bias at the training prevalence (docs/method.md §7.1,
D22). Pooled ReLU features are non-negative, large and dominated by one direction; on them the reference's raw
``nn.Linear`` starts at logits of about +-30 and Adam, moving every weight by about the same step, first learns
"minus the feature sum", which scores below chance for every finding. ``standardize_features=False`` with
``head_init="default"`` is the reference's raw head.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np
import torch
from monai.utils import convert_to_tensor
from torch import nn

from monai_ilm.evaluation.features import _default_device, load_pretrained_encoder
from monai_ilm.evaluation.tasks import DownstreamTask, get_task
from monai_ilm.networks.backbones import StageEncoder, global_pool, resnet_encoder

__all__ = ["HEAD_INITS", "DownstreamClassifier", "LinearHead", "downstream_network"]

HEAD_INITS = ("prior", "default")
# a training standard deviation at most this fraction of the feature's magnitude (plus one) is float32 rounding of
# a constant feature (e.g. a ReLU channel that is zero on every image): such a feature is centred, not scaled
_CONSTANT_SPREAD = 1e-6


class LinearHead(nn.Module):
    """A linear classifier on frozen-statistics standardised features, started at the training prevalence.

    ``forward(x) = linear((x - mean) / std)`` where ``mean`` and ``std`` are per-feature statistics of the
    training features, stored as buffers: computed once by :meth:`fit_data` (which
    :func:`~monai_ilm.evaluation.training.fit_downstream` calls before the first epoch) and saved with the
    head, so a reloaded head scores exactly as the trained one. Until then they are 0 and 1 (no change).
    Frozen statistics rather than ``BatchNorm1d(affine=False)`` (MAE's linear probe): they work for a last
    batch of one sample, and the test-time transform does not depend on how many batches were seen.

    With ``init="prior"`` :meth:`fit_data` also sets the weights to zero and the bias to the prevalence
    log-odds (multi-label: ``log(p_c / (1 - p_c))`` per finding; single-label: the log class frequencies), with
    half a count added to every class so that a finding absent from the training labels gets a finite bias.
    The head then starts from the best constant predictor instead of random logits. ``init="default"`` keeps
    PyTorch's initialisation. ``standardize=False, init="default"`` is the reference's raw ``nn.Linear``.

    Args:
        in_features: size of the input features.
        out_features: number of outputs.
        standardize: standardise the input with the training statistics.
        init: ``"prior"`` (zero weights, prevalence bias) or ``"default"`` (PyTorch's).

    Raises:
        ValueError: for non-positive sizes or an unknown ``init``.
    """

    def __init__(self, in_features: int, out_features: int, standardize: bool = True, init: str = "prior") -> None:
        super().__init__()
        if init not in HEAD_INITS:
            raise ValueError(f"head_init: expected one of {HEAD_INITS}, got {init!r}.")
        if in_features < 1 or out_features < 1:
            raise ValueError(
                f"in_features and out_features: expected positive sizes, got {in_features} and {out_features}."
            )
        self.linear = nn.Linear(in_features, out_features)
        self.standardize, self.init = bool(standardize), init
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.register_buffer("n_fitted", torch.zeros((), dtype=torch.long))

    @property
    def in_features(self) -> int:
        return self.linear.in_features

    @property
    def out_features(self) -> int:
        return self.linear.out_features

    @property
    def needs_data(self) -> bool:
        """Whether :meth:`fit_data` has still to see the training data (standardisation or prior start)."""
        return (self.standardize or self.init == "prior") and int(self.n_fitted) == 0

    def fit_data(self, features: Any, targets: Any, multilabel: bool) -> LinearHead:
        """Set the standardisation statistics and (``init="prior"``) the starting weights from training data.

        Args:
            features: ``(n, in_features)`` training features.
            targets: ``(n, out_features)`` multi-hot labels, or ``(n,)`` class indices.
            multilabel: whether ``targets`` are multi-hot (sigmoid outputs) or class indices (softmax outputs).

        Returns:
            ``self``.

        Raises:
            ValueError: for features of the wrong shape or no rows.
        """
        x = np.asarray(features, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] != self.in_features:
            raise ValueError(f"features: expected shape (n > 0, {self.in_features}), got {x.shape}.")
        if self.standardize:
            mean, std = x.mean(axis=0), x.std(axis=0)
            std = np.where(std > _CONSTANT_SPREAD * (np.abs(mean) + 1.0), std, 1.0)
            self.mean.copy_(torch.from_numpy(mean))
            self.std.copy_(torch.from_numpy(std))
        if self.init == "prior":
            with torch.no_grad():
                self.linear.weight.zero_()
                self.linear.bias.copy_(
                    torch.from_numpy(_prior_bias(np.asarray(targets), self.out_features, multilabel))
                )
        self.n_fitted.fill_(x.shape[0])
        return self

    def prepare_head(
        self,
        loader: Iterable[Mapping[str, Any]],
        task: str | DownstreamTask,
        device: str | torch.device | None = None,
    ) -> None:
        """:meth:`fit_data` on the batches of a loader of feature vectors (``{"image": (B, d), "label": ...}``)."""
        _prepare(self, lambda x: x, loader, task, device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.standardize:
            x = (x - self.mean) / self.std
        return self.linear(x)


def _prior_bias(targets: np.ndarray, n_outputs: int, multilabel: bool) -> np.ndarray:
    """The prevalence log-odds (multi-label) or log class frequencies (single-label), with half a count added."""
    n = targets.shape[0]
    if multilabel:
        p = (targets.reshape(n, -1).sum(axis=0) + 0.5) / (n + 1.0)
        return np.log(p / (1.0 - p))
    counts = np.bincount(targets.reshape(-1).astype(np.int64), minlength=n_outputs)[:n_outputs]
    return np.log((counts + 0.5) / (n + 0.5 * n_outputs))


def _prepare(
    head: LinearHead,
    features_of: Callable[[torch.Tensor], torch.Tensor],
    loader: Iterable[Mapping[str, Any]],
    task: str | DownstreamTask,
    device: str | torch.device | None,
    image_key: str = "image",
    label_key: str = "label",
) -> None:
    """One pass over ``loader`` without gradients: the features (through ``features_of``) and labels for ``head``."""
    task, dev = get_task(task), _default_device(device)
    features, labels = [], []
    with torch.no_grad():
        for batch in loader:
            x = convert_to_tensor(batch[image_key], track_meta=False).to(dev)
            features.append(features_of(x).detach().double().cpu())
            labels.append(convert_to_tensor(batch[label_key], track_meta=False).detach().cpu())
    if not features:
        raise ValueError("train_loader: expected at least one batch to prepare the head, got none.")
    head.fit_data(torch.cat(features).numpy(), task.targets(torch.cat(labels)), task.multilabel)


class DownstreamClassifier(nn.Module):
    """A stage encoder followed by global average pooling and a linear head.

    This is the reference's ``New_model`` (docs/method.md §7.1): the pretrained ResNet with its ``fc``
    replaced by a new linear layer on the pooled features of the last block (or of ``block``). The head is a
    :class:`LinearHead`: by default it standardises the pooled features with frozen training statistics and
    starts at the training prevalence (:meth:`prepare_head`, called by ``fit_downstream``);
    ``standardize_features=False, head_init="default"`` is the reference's raw ``Linear(C, num_classes)``.

    With ``freeze_encoder=True`` (linear evaluation) the encoder's parameters get ``requires_grad=False``, its
    forward runs without autograd, and it stays in eval mode even when the classifier is put in train mode, so
    BatchNorm uses and keeps the pretrained running statistics (fix of docs/method.md D11). ``freeze_bn=False``
    reproduces the reference, where the frozen encoder's BatchNorm layers used batch statistics and updated
    their running averages on the labelled data.

    Args:
        encoder: a :class:`~monai_ilm.networks.StageEncoder` (pretrained or random).
        num_classes: number of outputs of the linear head.
        freeze_encoder: train only the head (linear evaluation) instead of the whole network.
        block: 1-based block whose pooled output feeds the head; None = the last block.
        freeze_bn: keep a frozen encoder in eval mode during training (ignored when the encoder trains).
        standardize_features: standardise the pooled features with the training statistics (see
            :class:`LinearHead`).
        head_init: ``"prior"`` (zero weights, prevalence bias) or ``"default"`` (PyTorch's initialisation).

    Raises:
        ValueError: for ``num_classes < 1``, a block outside ``1..len(encoder.stage_channels)`` or an unknown
            ``head_init``.
    """

    def __init__(
        self,
        encoder: StageEncoder,
        num_classes: int,
        freeze_encoder: bool = False,
        block: int | None = None,
        freeze_bn: bool = True,
        standardize_features: bool = True,
        head_init: str = "prior",
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
        self.head = LinearHead(encoder.stage_channels[block - 1], num_classes, standardize_features, head_init)
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

    def prepare_head(
        self,
        loader: Iterable[Mapping[str, Any]],
        task: str | DownstreamTask,
        device: str | torch.device | None = None,
    ) -> None:
        """Set the head's standardisation and starting weights from one pass over the training loader.

        The encoder runs in eval mode without gradients (its weights and BatchNorm statistics stay as they are),
        so the statistics are those of the features the frozen encoder gives; for fine-tuning they are those of
        the pretrained encoder, a fixed affine map in front of the head that the training then adapts to.

        Args:
            loader: training batches ``{"image": ..., "label": ...}``.
            task: task preset name or :class:`~monai_ilm.evaluation.tasks.DownstreamTask`.
            device: where to run (default: CUDA if available).
        """
        mode = self.training
        self.to(_default_device(device)).eval()
        try:
            _prepare(self.head, self.features, loader, task, device)
        finally:
            self.train(mode)


def downstream_network(
    checkpoint_path: str | os.PathLike | None,
    num_classes: int,
    freeze_encoder: bool = False,
    encoder_name: str = "resnet50",
    in_channels: int = 3,
    spatial_dims: int = 2,
    backend: str | None = None,
    zero_init_residual: bool = False,
    block: int | None = None,
    freeze_bn: bool = True,
    seed: int = 0,
    standardize_features: bool = True,
    head_init: str = "prior",
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
        standardize_features, head_init: the head (see :class:`LinearHead`).

    Returns:
        The classifier (on the CPU).

    Raises:
        ValueError: for a checkpoint that does not match the encoder, or bad arguments.
    """
    torch.manual_seed(seed)
    encoder = resnet_encoder(encoder_name, spatial_dims, in_channels, backend, zero_init_residual)
    encoder = load_pretrained_encoder(checkpoint_path, encoder)
    return DownstreamClassifier(
        encoder,
        num_classes,
        freeze_encoder=freeze_encoder,
        block=block,
        freeze_bn=freeze_bn,
        standardize_features=standardize_features,
        head_init=head_init,
    )
