"""The downstream classifier: a (pretrained) stage encoder, global average pooling and a linear head.

Kaku et al. (NeurIPS 2021) judge a self-supervised encoder by training a linear classifier on its globally
pooled last-block features, either with the encoder frozen (*linear evaluation*, Table 1) or with the whole
network trained (*fine-tuning*, Table 2). :class:`DownstreamClassifier` is that network for both.

D11 of the reference code (docs/method.md §9): its "frozen" encoder ran BatchNorm in train mode under
``no_grad``, so its running statistics drifted on the labelled data; :class:`DownstreamClassifier` keeps a
frozen encoder in eval mode (``freeze_bn=False`` brings the original behaviour back for comparison).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from monai_ilm.evaluation.features import load_pretrained_encoder
from monai_ilm.networks.backbones import StageEncoder, global_pool, resnet_encoder

__all__ = ["DownstreamClassifier", "downstream_network"]


class DownstreamClassifier(nn.Module):
    """A stage encoder followed by global average pooling and a linear head.

    This is the reference's ``New_model`` (docs/method.md §7.1): the pretrained ResNet with its ``fc``
    replaced by a new ``Linear(C, num_classes)`` on the pooled features of the last block (or of ``block``).

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
