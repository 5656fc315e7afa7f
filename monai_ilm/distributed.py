"""Helpers for runs launched with torchrun (DistributedDataParallel)."""

from __future__ import annotations

import torch
import torch.distributed as dist

__all__ = ["average_gradients", "gather_from_all_ranks", "rank", "rank_zero_only", "world_size"]


def world_size() -> int:
    """Number of processes in the default group (1 outside a distributed run)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def gather_from_all_ranks(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0, in rank order (no gradient).

    Every rank must call it with a tensor of the same shape.
    """
    if world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts)


def rank() -> int:
    """Rank of this process (0 outside a distributed run)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def average_gradients(parameters) -> None:
    """All-reduce and average the gradients of ``parameters`` over ranks (no-op with one process).

    For trainable modules outside the DDP-wrapped network, such as the Barlow Twins projectors.
    """
    size = world_size()
    if size == 1:
        return
    for param in parameters:
        if param.grad is not None:
            dist.all_reduce(param.grad)
            param.grad.div_(size)


RANK_ZERO_HANDLERS = ("StatsHandler", "TensorBoardStatsHandler", "ProgressBar", "CheckpointSaver", "AtomicCheckpointSaver", "EmbeddingSaver")


def rank_zero_only(handlers: list, names: tuple[str, ...] = RANK_ZERO_HANDLERS) -> list:
    """Drop logging and saving handlers on every rank but 0, so logs and checkpoints are written once."""
    if rank() == 0:
        return list(handlers)
    return [h for h in handlers if type(h).__name__ not in names]
