"""Mean squared error between the stage outputs of the query and key encoders."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from monai_ilm.losses.layerwise import LayerwiseLoss, check_pairs
from monai_ilm.utils import as_tuple

__all__ = ["IntermediateMSELoss", "pool_to"]


def pool_to(feature: torch.Tensor, size: int | None) -> torch.Tensor:
    """Adaptive average pooling of a (N, C, *spatial) map to ``size`` per spatial axis; None keeps it.

    Adaptive pooling matches the reference at every resolution, including sizes that do not divide
    evenly (a 75×75 map pooled to 16×16 uses overlapping bins, docs/method.md §10.2).

    Raises:
        ValueError: when the map has no or more than three spatial axes.
    """
    if size is None:
        return feature
    if feature.dim() == 2 and size == 1:  # already a pooled vector
        return feature
    pools = {3: F.adaptive_avg_pool1d, 4: F.adaptive_avg_pool2d, 5: F.adaptive_avg_pool3d}
    if feature.dim() not in pools:
        raise ValueError(
            f"feature: expected a map of shape (N, C, *spatial) with 1-3 spatial axes, got {tuple(feature.shape)}."
        )
    return pools[feature.dim()](feature, size)


class IntermediateMSELoss(LayerwiseLoss):
    """The MSE intermediate-layer loss of Kaku et al. (NeurIPS 2021, docs/method.md §5.1).

    For each stage l, both feature maps are average-pooled to ``pool_sizes[l]`` and
    L_l = w_l · mean_{n,c,...}((q_l − k_l)²); the loss is Σ_l L_l. The reference pools chest and
    DR maps to 16×16 (layers 1-2) and 4×4 (layers 3-4), and breast maps globally (size 1): both
    are one argument away. Raw post-ReLU activations are compared, without normalisation.

    Args:
        weights: λ per stage (0.25 each as the reference), or one value for all.
        pool_sizes: spatial size per stage after pooling; None = no pooling, 1 = global average.
        num_layers: number of stages when ``weights`` and ``pool_sizes`` are scalars.

    Raises:
        ValueError: when ``weights`` and ``pool_sizes`` disagree in length, or inputs mismatch.
    """

    def __init__(
        self,
        weights: Sequence[float] | float = (0.25, 0.25, 0.25, 0.25),
        pool_sizes: Sequence[int | None] | int | None = (16, 16, 4, 4),
        num_layers: int = 4,
    ) -> None:
        super().__init__()
        if isinstance(weights, Sequence):
            num_layers = len(weights)
        elif isinstance(pool_sizes, Sequence):
            num_layers = len(pool_sizes)
        self.weights = as_tuple(weights, num_layers, "weights")
        self.pool_sizes = as_tuple(pool_sizes, num_layers, "pool_sizes")

    @property
    def num_layers(self) -> int:
        return len(self.weights)

    def layer_losses(self, q_feats: Sequence[torch.Tensor], k_feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """The weighted term of every stage, in order."""
        check_pairs(q_feats, k_feats, self.num_layers)
        losses = []
        for q, k, weight, size in zip(q_feats, k_feats, self.weights, self.pool_sizes):
            q, k = pool_to(q, size), pool_to(k, size)
            losses.append(weight * F.mse_loss(q.float(), k.float()))
        return losses
