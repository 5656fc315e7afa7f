"""What the intermediate-layer losses share: one weighted term per compared stage, summed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.nn.modules.loss import _Loss

__all__ = ["LayerwiseLoss", "check_pairs"]


def check_pairs(q_feats: Sequence[torch.Tensor], k_feats: Sequence[torch.Tensor], num_layers: int) -> None:
    """Check that both branches give ``num_layers`` stage tensors of matching shapes.

    Raises:
        ValueError: naming the argument (and the stage) that does not fit.
    """
    if len(q_feats) != num_layers or len(k_feats) != num_layers:
        raise ValueError(
            f"q_feats and k_feats: expected {num_layers} stage tensors each, got {len(q_feats)} and {len(k_feats)}."
        )
    for i, (q, k) in enumerate(zip(q_feats, k_feats)):
        if q.shape != k.shape:
            raise ValueError(
                f"q_feats[{i}] and k_feats[{i}]: expected the same shape, got {tuple(q.shape)} and {tuple(k.shape)}."
            )


class LayerwiseLoss(_Loss):
    """Base class of losses between the stage outputs of the query and the key encoder.

    Subclasses give :meth:`layer_losses`, the weighted term of every stage in order (which
    :class:`~monai_ilm.handlers.IntermediateLayerLossHandler` logs one by one), and
    :attr:`num_layers`; the loss is their sum.
    """

    @property
    def num_layers(self) -> int:
        raise NotImplementedError

    def layer_losses(self, q_feats: Sequence[torch.Tensor], k_feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        raise NotImplementedError

    def forward(self, q_feats: Sequence[torch.Tensor], k_feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.stack(self.layer_losses(q_feats, k_feats)).sum()
