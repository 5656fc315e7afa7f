"""Small helpers shared by several modules."""

from __future__ import annotations

import importlib
import os
import sys
import types
from collections.abc import Mapping, Sequence
from typing import Any

from torch import nn

__all__ = ["as_tuple", "available_memory", "lazy_package", "unwrap_network"]


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


class _LazyPackage(types.ModuleType):
    """A package whose public names are loaded from their submodules on first use (see :func:`lazy_package`)."""

    _exports: dict[str, str]

    def __getattr__(self, name: str) -> Any:
        module = self.__dict__.get("_exports", {}).get(name)
        if module is None:
            raise AttributeError(f"module {self.__name__!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{self.__name__}.{module}"), name)
        self.__dict__[name] = value  # later look-ups find it without this method
        return value

    def __dir__(self) -> list[str]:
        return sorted({*self.__dict__, *self._exports})

    def __setattr__(self, name: str, value: Any) -> None:
        # importing a submodule binds it on its package; an exported name of the same spelling (a function
        # ``cka`` in module ``cka``) keeps the exported object, as the package's own eager import gave it
        if isinstance(value, types.ModuleType) and name in self.__dict__.get("_exports", {}):
            return
        super().__setattr__(name, value)


def lazy_package(name: str, exports: Mapping[str, Sequence[str]]) -> list[str]:
    """Make package ``name`` load each public name from its submodule only when it is first used (PEP 562).

    ``import monai_ilm.evaluation.knn`` runs ``monai_ilm/evaluation/__init__.py`` first; with eager imports
    there, every user of one small module loaded the whole package and all it imports (the results tables,
    the data readers). ``from package import name``, ``package.name`` and a bundle's ``"_target_"`` work
    as before; ``dir`` lists the exported names.

    Args:
        name: the package's ``__name__`` (call this from its ``__init__``).
        exports: ``{submodule: names it gives the package}``.

    Returns:
        The package's ``__all__``: the exported names, sorted.

    Raises:
        ValueError: naming a name exported by two submodules.
    """
    owner: dict[str, str] = {}
    for module, names in exports.items():
        for export in names:
            if owner.setdefault(export, module) != module:
                raise ValueError(
                    f"exports: expected each name from one submodule, got {export!r} from {owner[export]} and {module}."
                )
    package = sys.modules[name]
    package.__class__ = _LazyPackage
    package.__dict__["_exports"] = owner
    return sorted(owner)
