"""A compact cache of decoded, resized images: one uint8 array, in memory when it fits, else memory-mapped on disk.

``CacheDataset`` keeps every cached sample as its own float32 tensor (4 bytes a value, plus a Python
object each), so a full NIH run (112,120 X-rays at 512 px) would need 350 GiB at 3 channels. With
the device augmentation stage (:func:`monai_ilm.transforms.pretrain_pipeline` with
``augment_on="device"``) the loader's deterministic steps end in one uint8 image per sample, which
this dataset stores in a single ``(N, C, H, W)`` uint8 array: in memory when it fits
(``memory_limit``), otherwise as a ``.npy`` file memory-mapped from ``cache_dir``, which the page
cache shares between loader workers and which a later run (or a run resumed after a kill) reuses.
:func:`cache_bytes` gives the size before anything is decoded.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from monai.transforms import Compose, apply_transform

__all__ = ["CompactCacheDataset", "cache_bytes", "format_bytes"]


def cache_bytes(num_images: int, image_size: int, channels: int = 3, spatial_dims: int = 2) -> int:
    """Bytes of the uint8 cache of ``num_images`` images of side ``image_size`` with ``channels`` channels.

    Raises:
        ValueError: for a negative count or a non-positive size, channel count or dimension.
    """
    if num_images < 0 or image_size <= 0 or channels <= 0 or spatial_dims <= 0:
        raise ValueError(
            "num_images, image_size, channels, spatial_dims: expected a count >= 0 and positive sizes, "
            f"got {(num_images, image_size, channels, spatial_dims)}."
        )
    return int(num_images) * int(channels) * int(image_size) ** int(spatial_dims)


def format_bytes(count: int) -> str:
    """``count`` bytes in GiB or MiB, e.g. ``"88.2 GiB"``."""
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def _available_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not on Linux
        return 2**30


class CompactCacheDataset(torch.utils.data.Dataset):
    """Dataset whose deterministic steps run once per sample, their uint8 image kept in one compact array.

    ``transform`` is split where ``CacheDataset`` would split it (the first random step,
    :func:`monai_ilm.transforms.cache_boundary`): the steps before it run once per sample when the
    dataset is built, and must give ``image_key`` as a uint8 tensor of one shape for every sample
    (:class:`monai_ilm.transforms.ToUint8d` does that); the other keys they give are kept as they are.
    The steps after the boundary run on every access.

    Args:
        data: the datalist.
        transform: the loader pipeline (e.g. ``pretrain_pipeline(..., augment_on="device")[0]``).
        image_key: the key of the uint8 image.
        storage: ``"auto"`` (memory when the array fits in ``memory_limit``, else disk), ``"memory"`` or ``"disk"``.
        cache_dir: folder of the memory-mapped array (needed for disk storage), reused by later runs: the
            file name is a digest of the datalist's images, the cached steps' classes and shape, and ``cache_key``.
        memory_limit: bytes the in-memory array may take (default: half the memory available now).
        num_workers: threads decoding and resizing while the cache fills.
        cache_key: anything else the cached images depend on (e.g. the intensity scaling), for the file name.

    Raises:
        ValueError: for an empty datalist, an unknown ``storage``, disk storage without ``cache_dir``, or
            cached steps that do not give a uint8 image of one shape.
    """

    def __init__(
        self,
        data: Sequence,
        transform: Callable,
        image_key: str = "image",
        storage: str = "auto",
        cache_dir: str | os.PathLike | None = None,
        memory_limit: int | None = None,
        num_workers: int = 0,
        cache_key: str = "",
    ) -> None:
        from monai_ilm.transforms import cache_boundary  # the data package is imported by the transforms' users

        if len(data) == 0:
            raise ValueError("data: expected a non-empty datalist, got 0 rows.")
        if storage not in ("auto", "memory", "disk"):
            raise ValueError(f"storage: expected 'auto', 'memory' or 'disk', got {storage!r}.")
        self.data, self.image_key = list(data), image_key
        steps = list(transform.transforms) if isinstance(transform, Compose) else [transform]
        boundary = cache_boundary(Compose(steps))
        self.cached, self.rest = Compose(steps[:boundary]), Compose(steps[boundary:]) if boundary < len(steps) else None
        first = self._prepare(0)
        self.shape = tuple(first[image_key].shape)
        size = len(self.data) * math.prod(self.shape)
        limit = _available_memory() // 2 if memory_limit is None else int(memory_limit)
        self.on_disk = storage == "disk" or (storage == "auto" and size > limit)
        self.path: Path | None = None
        self._num_workers = int(num_workers)
        if self.on_disk:
            if cache_dir is None:
                raise ValueError(
                    f"cache_dir: expected a folder for the {format_bytes(size)} cache (over the memory limit of "
                    f"{format_bytes(limit)}), got None."
                )
            self.path = Path(cache_dir) / f"compact_{self._digest(cache_key)}.npy"
        self._open(first)

    def _digest(self, cache_key: str) -> str:
        rows = json.dumps([str(row.get(self.image_key, row)) for row in self.data]).encode()
        steps = [type(step).__qualname__ for step in self.cached.transforms]
        return hashlib.sha1(rows + repr((self.shape, steps, cache_key)).encode()).hexdigest()[:16]

    def _open(self, first: dict) -> None:
        """Reuse a complete cache file, else fill the array (the extras file, written last, marks it complete)."""
        shape = (len(self.data), *self.shape)
        if self.path is not None:
            extras = self.path.with_suffix(".extras.pt")
            if self.path.is_file() and extras.is_file():
                self.images = np.load(self.path, mmap_mode="r")
                self.extras = torch.load(extras, weights_only=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.images = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.uint8, shape=shape)
        else:
            self.images = np.empty(shape, dtype=np.uint8)
        self.extras = [{} for _ in range(len(self.data))]
        self._store(0, first)
        self._fill(self._num_workers)
        if self.path is not None:
            self.images.flush()
            torch.save(self.extras, extras)

    def _prepare(self, index: int) -> dict:
        item = apply_transform(self.cached, self.data[index])
        image = item.get(self.image_key) if isinstance(item, dict) else None
        if not isinstance(image, torch.Tensor) or image.dtype != torch.uint8:
            found = type(image).__name__ if not isinstance(image, torch.Tensor) else image.dtype
            raise ValueError(f"{self.image_key}: expected the cached steps to give a uint8 tensor, got {found}.")
        if index and tuple(image.shape) != self.shape:
            raise ValueError(
                f"{self.image_key}: expected every cached image of shape {self.shape}, got {tuple(image.shape)}."
            )
        return item

    def _store(self, index: int, item: dict) -> None:
        self.images[index] = item[self.image_key].numpy()
        self.extras[index] = {k: v for k, v in item.items() if k != self.image_key}

    def _fill(self, num_workers: int) -> None:
        rest = range(1, len(self.data))
        if num_workers > 0 and len(rest) > 1:
            with ThreadPoolExecutor(num_workers) as pool:
                for index, item in zip(rest, pool.map(self._prepare, rest)):
                    self._store(index, item)
        else:
            for index in rest:
                self._store(index, self._prepare(index))

    def nbytes(self) -> int:
        """Bytes of the image array."""
        return int(self.images.nbytes)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.extras[index])
        item[self.image_key] = torch.from_numpy(np.array(self.images[index]))
        return apply_transform(self.rest, item) if self.rest is not None else item

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.on_disk:  # workers started by spawn reopen the file instead of copying the array
            state["images"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self.on_disk:
            self.images = np.load(self.path, mmap_mode="r")
