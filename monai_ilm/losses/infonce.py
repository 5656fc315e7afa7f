"""InfoNCE against a queue of negative keys (MoCo)."""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch.nn.modules.loss import _Loss

from monai_ilm.checks import check_real, checks_arguments

__all__ = ["InfoNCELoss"]


@checks_arguments(temperature=partial(check_real, low=0.0, low_open=True))
class InfoNCELoss(_Loss):
    """MoCo's InfoNCE loss with the positive key at index 0 and the queue as negatives.

    With q̂, k̂ the row-wise L2-normalised queries and keys and Q (C × K) the queue of unit keys,
    the logits of sample n are ℓ_n = [q̂_n·k̂_n, q̂_nᵀQ] / T and the loss is the mean cross-entropy
    with target 0: L = (1/N) Σ_n (−ℓ_{n,0} + log Σ_j exp ℓ_{n,j}) (He et al., CVPR 2020;
    docs/method.md §4 and §10.1, where it gives 4.6304379).

    The logits are computed in float32 even under autocast: with T = 0.07 they reach ±14.3 and
    a half-precision log-sum-exp over 65,537 terms loses the positive's contribution.

    Args:
        temperature: T (0.07 as the reference; MoCo v2 uses 0.2).

    Raises:
        ValueError: for a non-positive temperature, or inputs of mismatched shapes.
    """

    def __init__(self, temperature: float = 0.07) -> None:
        super().__init__()
        self.temperature = temperature

    def logits(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        """The (N, 1 + K) logits, positive first."""
        if q.dim() != 2 or q.shape != k.shape:
            raise ValueError(
                f"q and k: expected two (N, C) tensors of the same shape, got {tuple(q.shape)} and {tuple(k.shape)}."
            )
        if queue.dim() != 2 or queue.shape[0] != q.shape[1]:
            raise ValueError(f"queue: expected shape ({q.shape[1]}, K), got {tuple(queue.shape)}.")
        with torch.autocast(q.device.type, enabled=False):  # autocast would run q @ queue in half precision
            q = F.normalize(q.float(), dim=1)
            k = F.normalize(k.float(), dim=1)
            positive = (q * k).sum(dim=1, keepdim=True)
            negative = q @ queue.float()
            return torch.cat([positive, negative], dim=1) / self.temperature

    def forward(self, q: torch.Tensor, k: torch.Tensor, queue: torch.Tensor) -> torch.Tensor:
        logits = self.logits(q, k, queue)
        target = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        return F.cross_entropy(logits, target)
