"""MoCo: a query encoder, a momentum key encoder and a queue of negative keys.

He et al., "Momentum Contrast for Unsupervised Visual Representation Learning", CVPR 2020, as used
by Kaku et al., NeurIPS 2021 (docs/method.md §4): linear 128-d head, K = 65,536 keys, m = 0.999.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from monai_ilm.checks import check_choice, check_int, checks_arguments
from monai_ilm.distributed import (
    convert_to_global_batch_norm,
    gather_from_all_ranks,
    shuffle_across_ranks,
    unshuffle_across_ranks,
    world_size,
)
from monai_ilm.networks.backbones import StageEncoder, global_pool

__all__ = ["BATCH_NORM_MODES", "HEADS", "MoCo", "check_head", "projection_head"]

BATCH_NORM_MODES: tuple[str, ...] = ("shuffle", "sync", "local")
HEADS: tuple[str, ...] = ("linear", "mlp")
check_head = partial(check_choice, allowed=HEADS)


@checks_arguments(head=check_head, hidden_dim=check_int)
def projection_head(in_dim: int, out_dim: int = 128, head: str = "linear", hidden_dim: int | None = None) -> nn.Module:
    """The projection from the pooled representation to the contrastive embedding.

    Args:
        in_dim: size of the pooled representation.
        out_dim: size of the embedding compared by InfoNCE.
        head: ``"linear"`` (MoCo v1 and the reference code, docs/method.md D20) or ``"mlp"``
            (MoCo v2: Linear, ReLU, Linear).
        hidden_dim: hidden width of the MLP head (default: ``in_dim``).

    Raises:
        ValueError: for an unknown ``head``.
    """
    if head == "mlp":
        hidden = hidden_dim or in_dim
        return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
    return nn.Linear(in_dim, out_dim)


@checks_arguments(
    embedding_dim=check_int,
    queue_size=check_int,
    head=check_head,
    batch_norm=partial(check_choice, allowed=BATCH_NORM_MODES),
)
class MoCo(nn.Module):
    """Momentum Contrast with access to the stage outputs of both encoders.

    ``forward(x1, x2)`` runs view 1 through the query encoder and view 2 through the key encoder
    (without gradient) and returns a dict with the query and key embeddings and the stage outputs
    of both encoders (``query_stages``, ``key_stages``), which the intermediate-layer loss compares.
    ``forward(x)`` with a single input returns the pooled representation of the query encoder, so
    the network can be exported and checked by ``verify_net_in_out``.

    The key encoder is only changed by :meth:`momentum_update` (an EMA over parameters, as the
    reference; BatchNorm buffers keep their own running statistics), and the queue only by
    :meth:`enqueue`. Neither happens inside ``forward``: the trainer calls them after the
    optimiser step, so validation can never alter MoCo's state (docs/method.md D10), and the queue
    used for the logits is always the one before the current keys are added without any copy.

    With ``symmetric=True`` both directions are computed in one batch of 2N: queries of
    ``[x1, x2]`` against keys of ``[x2, x1]``. Pairs stay aligned by row, so the InfoNCE and the
    intermediate-layer loss average both directions; only the keys of view 2 are enqueued.

    BatchNorm in a distributed (DDP) run is chosen by ``batch_norm``; with one process the three
    modes give identical results (per-batch statistics, the reference):

    * ``"shuffle"`` (default): MoCo's shuffle-BN (He et al., CVPR 2020, §3.3). The query encoder
      normalises each rank's batch on its own; for the key encoder the key views of all ranks are
      permuted at random (one permutation drawn on rank 0), each rank encodes its shard of the
      shuffled batch, and the key embeddings **and every stage output** in ``key_stages`` are sent
      back to the rank and row of their sample. Per-rank statistics then differ between the two
      encoders, so BatchNorm cannot leak which key belongs to which query. Needs the same batch
      size on every rank; only in training mode (eval mode uses running statistics).
    * ``"sync"``: every BatchNorm of both encoders is a
      :class:`~monai_ilm.distributed.GlobalBatchNorm` (SyncBatchNorm semantics that also run on
      CPU/gloo): W ranks with B samples each compute exactly what one process computes with W·B.
    * ``"local"``: per-rank statistics for both encoders (what plain DDP does).

    Args:
        encoder: a :class:`~monai_ilm.networks.backbones.StageEncoder`; it is deep-copied for the key encoder.
        embedding_dim: size of the contrastive embedding (128).
        queue_size: number of negative keys K (65,536).
        head: ``"linear"`` or ``"mlp"``, see :func:`projection_head`.
        head_hidden_dim: hidden width of the MLP head.
        symmetric: compute both directions (see above).
        batch_norm: ``"shuffle"``, ``"sync"`` or ``"local"`` (see above).

    Raises:
        ValueError: when ``encoder`` exposes no stages, sizes are not positive, or ``batch_norm``
            is unknown.
    """

    def __init__(
        self,
        encoder: StageEncoder,
        embedding_dim: int = 128,
        queue_size: int = 65536,
        head: str = "linear",
        head_hidden_dim: int | None = None,
        symmetric: bool = False,
        batch_norm: str = "shuffle",
    ) -> None:
        super().__init__()
        if not hasattr(encoder, "forward_stages") or not getattr(encoder, "stage_channels", ()):
            raise ValueError(
                "encoder: expected a StageEncoder with forward_stages() and stage_channels, "
                f"got {type(encoder).__name__}."
            )
        if batch_norm == "sync":
            encoder = convert_to_global_batch_norm(encoder)
        self.symmetric = symmetric
        self.batch_norm = batch_norm
        self.encoder_q = encoder
        self.projector_q = projection_head(encoder.feature_dim, embedding_dim, head, head_hidden_dim)
        self.encoder_k = copy.deepcopy(encoder)
        self.projector_k = copy.deepcopy(self.projector_q)
        for param in self.key_parameters():
            param.requires_grad_(False)
        self.register_buffer("queue", F.normalize(torch.randn(embedding_dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))

    @property
    def stage_names(self) -> tuple[str, ...]:
        return self.encoder_q.stage_names

    @property
    def stage_channels(self) -> tuple[int, ...]:
        return self.encoder_q.stage_channels

    @property
    def queue_size(self) -> int:
        return self.queue.shape[1]

    def query_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder_q.parameters(), *self.projector_q.parameters()]

    def key_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder_k.parameters(), *self.projector_k.parameters()]

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None) -> torch.Tensor | dict[str, object]:
        if x2 is None:
            return self.encoder_q(x1)
        if x1.shape != x2.shape:
            raise ValueError(
                f"x1 and x2: expected two views of the same shape, got {tuple(x1.shape)} and {tuple(x2.shape)}."
            )
        if self.symmetric:
            x1, x2 = torch.cat([x1, x2]), torch.cat([x2, x1])
        query_stages = self.encoder_q.forward_stages(x1)
        query = self.projector_q(global_pool(query_stages[-1]))
        key, key_stages = self._forward_key(x2)
        return {"query": query, "key": key, "query_stages": query_stages, "key_stages": key_stages}

    @torch.no_grad()
    def _encode_key(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        stages = self.encoder_k.forward_stages(x)
        return self.projector_k(global_pool(stages[-1])), stages

    @torch.no_grad()
    def _forward_key(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The key embedding and stage outputs of ``x``, through shuffle-BN when it applies."""
        if self.batch_norm != "shuffle" or not self.training or world_size() == 1:
            return self._encode_key(x)
        shard, order = shuffle_across_ranks(x)
        key, stages = self._encode_key(shard)
        return unshuffle_across_ranks(key, order), [unshuffle_across_ranks(s, order) for s in stages]

    @torch.no_grad()
    def momentum_update(self, momentum: float) -> None:
        """θ_k ← m·θ_k + (1 − m)·θ_q over the parameters of the encoder and the projection head."""
        if not 0.0 <= momentum <= 1.0:
            raise ValueError(f"momentum: expected a value in [0, 1], got {momentum}.")
        key_params, query_params = self.key_parameters(), self.query_parameters()
        torch._foreach_mul_(key_params, momentum)
        torch._foreach_add_(key_params, query_params, alpha=1.0 - momentum)

    @torch.no_grad()
    def enqueue(self, keys: torch.Tensor) -> None:
        """Write L2-normalised ``keys`` (N, C) into the queue at its pointer, wrapping around.

        Any batch size up to K works; the reference required K to be a multiple of N. In a
        distributed run the keys of all ranks are gathered first, so every rank holds the same queue.

        Raises:
            ValueError: when the keys' width differs from the queue's or N exceeds K.
        """
        if keys.dim() != 2 or keys.shape[1] != self.queue.shape[0]:
            raise ValueError(f"keys: expected shape (N, {self.queue.shape[0]}), got {tuple(keys.shape)}.")
        if self.symmetric:
            keys = keys[: keys.shape[0] // 2]
        keys = gather_from_all_ranks(keys.detach())
        n = keys.shape[0]
        if n > self.queue_size:
            raise ValueError(
                f"queue_size: expected at least the {n} keys of one batch over all ranks, got {self.queue_size}."
            )
        index = (self.queue_ptr + torch.arange(n, device=keys.device)) % self.queue_size
        self.queue.index_copy_(1, index, F.normalize(keys, dim=1).to(self.queue.dtype).t())
        self.queue_ptr.add_(n).remainder_(self.queue_size)
