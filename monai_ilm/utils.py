"""Small helpers shared by several modules."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import nn

__all__ = ["as_tuple", "unwrap_network"]


def as_tuple(value: Any, length: int, name: str) -> tuple:
    """Broadcast a scalar to ``length`` items, or check that a sequence has ``length`` items.

    Args:
        value: a scalar (or None) or a sequence.
        length: the number of items expected.
        name: the argument's name, used in the error message.

    Raises:
        ValueError: when a sequence of another length is given.
    """
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != length:
            raise ValueError(f"{name}: expected {length} values, got {len(value)} ({list(value)}).")
        return tuple(value)
    return (value,) * length


def unwrap_network(network: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel and ``torch.compile`` wrappers."""
    while True:
        if hasattr(network, "module") and isinstance(network.module, nn.Module):
            network = network.module
        elif hasattr(network, "_orig_mod"):
            network = network._orig_mod
        else:
            return network
