"""A compact cache of decoded, resized images: one uint8 array, in memory when it fits, else memory-mapped on disk.

``CacheDataset`` keeps every cached sample as its own float32 tensor (4 bytes a value, plus a Python
object each), so a full NIH run (112,120 X-rays at 512 px) would need 350 GiB at 3 channels. With
the device augmentation stage (:func:`monai_ilm.transforms.pretrain_pipeline` with
``augment_on="device"``) the loader's deterministic steps end in one uint8 image per sample, which
this dataset stores in a single ``(N, C, H, W)`` uint8 array: in memory when it fits
(``memory_limit``), otherwise as a ``.npy`` file memory-mapped from ``cache_dir``, which the page
cache shares between loader workers and which a later run (or a run resumed after a kill) reuses.
:func:`cache_bytes` gives the size before anything is decoded. :func:`training_dataset` is what the
bundles call with their ``cache`` setting (one of :data:`CACHE_MODES`): this dataset when the loader
gives uint8 images, MONAI's ``CacheDataset`` with ``cache_rate`` otherwise.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from functools import partial
from pathlib import Path

import numpy as np
import torch
from monai.data import CacheDataset
from monai.transforms import Compose, RandomizableTrait, Transform, apply_transform
from tqdm import tqdm

from monai_ilm.checks import check_choice, check_real, check_writable_dir, checks_arguments
from monai_ilm.data.identity import array_digest, row_entry
from monai_ilm.utils import available_memory as _available_memory  # a module name the tests can replace

__all__ = [
    "CACHE_MODES",
    "STORAGES",
    "CompactCacheDataset",
    "cache_boundary",
    "cache_bytes",
    "describe_steps",
    "format_bytes",
    "training_dataset",
]

STORAGES = ("auto", "memory", "disk")
"""Where :class:`CompactCacheDataset` keeps its array: ``"auto"`` (memory when it fits, else disk), memory, disk."""

CACHE_MODES = (*STORAGES, "cache_rate")
"""The bundles' ``cache`` setting: a storage of the compact uint8 cache, or ``CacheDataset`` with ``cache_rate``."""


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


def cache_boundary(transform: Compose) -> int:
    """Index of the first step that ``CacheDataset`` / ``PersistentDataset`` will not cache.

    MONAI caches the leading steps up to the first one that is random (``RandomizableTrait``,
    which includes any nested ``Compose``) or not a MONAI ``Transform``; :class:`CompactCacheDataset`
    splits a pipeline at the same step.
    """
    for index, step in enumerate(transform.transforms):
        if isinstance(step, RandomizableTrait) or not isinstance(step, Transform):
            return index
    return len(transform.transforms)


def format_bytes(count: int) -> str:
    """``count`` bytes in GiB or MiB, e.g. ``"88.2 GiB"``."""
    return f"{count / 2**30:.1f} GiB" if count >= 2**30 else f"{count / 2**20:.1f} MiB"


def _describe(value: object, depth: int = 0) -> object:
    """A JSON-able description of a transform's settings that is the same in every process (no addresses)."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return {"array": array_digest(value)}
    if isinstance(value, (np.generic, torch.dtype, torch.device, np.dtype)) or isinstance(value, Enum):
        return str(value)
    if depth > 6:
        return type(value).__qualname__
    if isinstance(value, (list, tuple)):
        return [_describe(v, depth + 1) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted(json.dumps(_describe(v, depth + 1), sort_keys=True) for v in value)
    if isinstance(value, dict):
        return {str(k): _describe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (np.random.RandomState, np.random.Generator, torch.Generator)):
        return type(value).__qualname__  # the cached steps are deterministic: their random state changes nothing
    name = f"{type(value).__module__}.{type(value).__qualname__}"
    if hasattr(value, "__dict__") and not callable(getattr(value, "__code__", None)):
        return {"class": name, **{k: _describe(v, depth + 1) for k, v in sorted(vars(value).items())}}
    return f"{getattr(value, '__module__', '')}.{getattr(value, '__qualname__', name)}"


def describe_steps(steps: Sequence[Callable]) -> list:
    """Each step's class and settings (its attributes, nested), e.g. the loader's ``intensity`` or a resize size.

    Two pipelines with the same description give the same items, so this is what the compact cache file
    is keyed by (besides the data); random states are left out, as the cached steps draw nothing.
    """
    return [_describe(step) for step in steps]


class CompactCacheDataset(torch.utils.data.Dataset):
    """Dataset whose deterministic steps run once per sample, their uint8 image kept in one compact array.

    ``transform`` is split where ``CacheDataset`` would split it (the first random step,
    :func:`cache_boundary`): the steps before it run once per sample when the
    dataset is built, and must give ``image_key`` as a uint8 tensor of one shape for every sample
    (:class:`monai_ilm.transforms.ToUint8d` does that); the other keys they give are kept as they are.
    The steps after the boundary run on every access.

    Args:
        data: the datalist.
        transform: the loader pipeline (e.g. ``pretrain_pipeline(..., augment_on="device")[0]``).
        image_key: the key of the uint8 image.
        storage: ``"auto"`` (memory when the array fits in ``memory_limit``, else disk), ``"memory"`` or ``"disk"``.
        cache_dir: folder of the memory-mapped array (needed for disk storage), reused by later runs while
            nothing that changes its items changed: the file name is a digest of the datalist (image files by
            size and modification time, arrays by their bytes, the other values by content), the cached
            steps and their settings (:func:`describe_steps`), the shape and ``cache_key``.
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
        if len(data) == 0:
            raise ValueError("data: expected a non-empty datalist, got 0 rows.")
        if storage not in STORAGES:
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
        """The cache file's key: everything that changes its items.

        The rows in order (each image file by path, size and modification time, each in-memory array by
        its bytes, the other values by content: :func:`monai_ilm.data.identity.row_entry`), every cached
        step with its settings (:func:`describe_steps`, e.g. the loader's ``intensity``), the shape and
        ``cache_key``. Another key fills another file.
        """
        rows = [
            [os.fspath(row[self.image_key]) if isinstance(row.get(self.image_key), (str, os.PathLike)) else None]
            + [row_entry(row, self.image_key)]
            for row in self.data
        ]
        text = json.dumps([rows, describe_steps(self.cached.transforms), list(self.shape), cache_key])
        return hashlib.sha1(text.encode()).hexdigest()[:16]

    def _open(self, first: dict) -> None:
        """Reuse a complete cache file, else fill the array.

        A file is filled under a name of this process's own (removed if filling fails) and renamed when
        complete (the extras first, the array last, whose presence marks the pair complete), so a run
        stopped while filling leaves no half-written cache, and the ranks of a multi-GPU run, each filling
        the same file, never write into one another's.
        """
        shape = (len(self.data), *self.shape)
        if self.path is not None:
            extras = self.path.with_suffix(".extras.pt")
            if self.path.is_file() and extras.is_file():
                self.images = np.load(self.path, mmap_mode="r")
                self.extras = torch.load(extras, weights_only=True)
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            partial = self.path.with_name(f"{self.path.stem}.{os.getpid()}.partial.npy")
            self.images = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=shape)
        else:
            self.images = np.empty(shape, dtype=np.uint8)
        self.extras = [{} for _ in range(len(self.data))]
        self._store(0, first)
        try:
            self._fill(self._num_workers)
        except BaseException:
            if self.path is not None:
                del self.images
                partial.unlink(missing_ok=True)
            raise
        if self.path is not None:
            self.images.flush()
            torch.save(self.extras, partial.with_suffix(".extras.pt"))
            os.replace(partial.with_suffix(".extras.pt"), extras)
            os.replace(partial, self.path)
            self.images = np.load(self.path, mmap_mode="r")

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
        # filling a full-size cache decodes every image once (minutes), so it shows progress as CacheDataset does
        progress = tqdm(total=len(self.data), initial=1, desc="Loading compact cache", unit="image", leave=False)
        with progress:
            if num_workers > 0 and len(rest) > 1:
                with ThreadPoolExecutor(num_workers) as pool:
                    for index, item in zip(rest, pool.map(self._prepare, rest)):
                        self._store(index, item)
                        progress.update()
            else:
                for index in rest:
                    self._store(index, self._prepare(index))
                    progress.update()

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


def _gives_uint8(transform: Callable, row: dict, image_key: str) -> bool:
    """Whether the steps ``CacheDataset`` would cache turn ``row`` into the uint8 image the compact cache keeps.

    Decided by running them on the row rather than by looking for a uint8 step: the compact cache's
    contract is the dtype, and one decoded image costs nothing beside the cache it decides on.
    """
    steps = list(transform.transforms) if isinstance(transform, Compose) else [transform]
    item = apply_transform(Compose(steps[: cache_boundary(Compose(steps))]), row)
    image = item.get(image_key) if isinstance(item, dict) else None
    return isinstance(image, torch.Tensor) and image.dtype == torch.uint8


@checks_arguments(
    cache=partial(check_choice, allowed=CACHE_MODES),
    cache_rate=partial(check_real, low=0.0, high=1.0),
    cache_dir=check_writable_dir,
)
def training_dataset(
    data: Sequence,
    transform: Callable,
    cache: str = "auto",
    cache_rate: float = 1.0,
    cache_dir: str | os.PathLike | None = None,
    num_workers: int = 0,
    image_key: str = "image",
) -> torch.utils.data.Dataset:
    """The training dataset of the ``cache`` setting: the compact uint8 cache where it applies, else ``CacheDataset``.

    In a bundle (``augment_on="device"`` gives the uint8 loader steps)::

        "dataset": {"_target_": "monai_ilm.data.training_dataset", "data": "@train#datalist",
                    "transform": "@train#preprocessing", "cache": "@cache", "cache_rate": "@cache_rate",
                    "cache_dir": "@cache_dir", "num_workers": "@num_workers"}

    The items are the same either way (cache placement never changes a number).

    Args:
        data: the datalist.
        transform: the loader pipeline.
        cache: one of :data:`CACHE_MODES`. ``"auto"``, ``"memory"``, ``"disk"``: a :class:`CompactCacheDataset`
            of that storage (``"auto"``: memory when the array fits in half the available memory, shared
            by the ranks of the machine), where the cached steps give a uint8 image (they end in
            :class:`~monai_ilm.transforms.ToUint8d` with ``augment_on="device"``; ``"auto"`` runs them on the
            first row to see); ``"auto"`` falls back to ``CacheDataset`` otherwise (the loader's float views
            with ``augment_on="loader"``). ``"cache_rate"``: MONAI's ``CacheDataset``.
        cache_rate: share of the samples ``CacheDataset`` keeps (unused by the compact cache, which keeps all).
        cache_dir: folder of the compact cache's memory-mapped file (disk storage).
        num_workers: threads that fill either cache.
        image_key: the key of the image.

    Raises:
        ValueError: for a ``cache`` outside :data:`CACHE_MODES`, an empty datalist with a ``cache`` other than
            ``"cache_rate"``, or ``"memory"`` / ``"disk"`` with loader steps that do not end in a uint8 image.
    """
    if cache == "cache_rate" or (cache == "auto" and len(data) and not _gives_uint8(transform, data[0], image_key)):
        return CacheDataset(data, transform, cache_rate=cache_rate, num_workers=num_workers)
    # the ranks of a multi-GPU run on one machine each keep a copy: they share its memory
    memory_limit = _available_memory() // (2 * max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1"))))
    return CompactCacheDataset(data, transform, image_key, cache, cache_dir, memory_limit, num_workers)
