"""Small helpers shared by several modules."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch import nn

__all__ = ["as_tuple", "available_memory", "unwrap_network"]


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


def available_memory(meminfo: str | os.PathLike = "/proc/meminfo") -> int:
    """Bytes of memory a new allocation can get without swapping: Linux's ``MemAvailable``.

    ``MemAvailable`` counts the page cache the kernel can drop; the free pages alone (``SC_AVPHYS_PAGES``) can be
    a small fraction of it on a machine that has read many files, and would make a cache that fits look too big.

    Args:
        meminfo: the kernel's memory report; where it is missing or has no ``MemAvailable`` line (not Linux, old
            kernels), the free pages are used, and 1 GiB where even those are unknown.
    """
    try:
        with open(meminfo, encoding="ascii") as report:
            for line in report:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 2**30
