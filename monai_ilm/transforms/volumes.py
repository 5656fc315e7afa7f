"""Loading volumes for the ``volume`` preset: NIfTI files made uniform from their header, MedMNIST 3D arrays kept.

A CT or MR volume only means something together with its header: the affine says which way the voxel axes
point and how far apart the voxels are. The deterministic steps of the ``volume`` preset
(:func:`volume_loading_steps`) are therefore MONAI's usual ones:

1. :class:`LoadVolumed`: ``LoadImaged`` (nibabel) and ``EnsureChannelFirstd``, then ``Orientationd`` (e.g.
   ``"RAS"``) and ``Spacingd`` (a target voxel spacing in mm, or None to keep the file's), which read the
   affine; an in-memory MedMNIST 3D array (no header) only gets its channel axis;
2. the intensity setting (:data:`VOLUME_INTENSITIES`): a CT window in Hounsfield units
   (``ScaleIntensityRanged`` clipped to ``window``), percentiles for MR (``ScaleIntensityRangePercentilesd``),
   min-max, or ``"auto"`` (integer arrays by their type's range, e.g. uint8 / 255, anything else min-max);
3. then the preset resizes to its size (trilinear).

Every output is in [0, 1], channel first ``(C, X, Y, Z)``.

The settings arrive as one mapping, the ``volume`` argument of the presets (a bundle's ``volume`` setting),
checked by :func:`check_volume_options`::

    {"orientation": "RAS", "pixdim": [1.5, 1.5, 2.0], "intensity": "window", "window": [-1000, 400]}
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import (
    EnsureChannelFirstd,
    LoadImaged,
    MapTransform,
    Orientationd,
    ScaleIntensityd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    Transform,
)

from monai_ilm.data.integrity import UnreadableImageError

__all__ = [
    "VOLUME_INTENSITIES",
    "VOLUME_OPTIONS",
    "LoadVolumed",
    "ScaleByTyped",
    "check_volume_options",
    "volume_loading_steps",
]

VOLUME_INTENSITIES: tuple[str, ...] = ("auto", "minmax", "window", "percentiles")
"""The intensity settings of volumes: by type (``auto``), min-max, a CT window in HU, MR percentiles."""

VOLUME_OPTIONS: dict[str, object] = {
    "orientation": "RAS",
    "pixdim": None,
    "intensity": "auto",
    "window": None,
    "percentiles": (1.0, 99.0),
}
"""The ``volume`` settings and their defaults."""

_AXES = {"L", "R", "P", "A", "I", "S"}


def _fail(setting: str, expected: str, got: object) -> ValueError:
    return ValueError(f"volume.{setting}: expected {expected}, got {got!r}.")


def _pair(setting: str, value: object, low: float = -math.inf, high: float = math.inf) -> tuple[float, float]:
    """Two finite increasing numbers within [low, high]."""
    expected = f"two finite numbers [low, high] with low < high within [{low:g}, {high:g}]"
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise _fail(setting, expected, value)
    try:
        a, b = (float(v) for v in value)
    except (TypeError, ValueError):
        raise _fail(setting, expected, value) from None
    if any(isinstance(v, bool) for v in value) or not (math.isfinite(a) and math.isfinite(b)):
        raise _fail(setting, expected, value)
    if not low <= a < b <= high:
        raise _fail(setting, expected, value)
    return a, b


def _orientation(value: object) -> str | None:
    expected = "None or three axis codes, one of L/R, P/A and I/S each (e.g. 'RAS')"
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 3 or not set(value.upper()) <= _AXES:
        raise _fail("orientation", expected, value)
    codes = value.upper()
    if len({c.translate(str.maketrans("LRPAIS", "XXYYZZ")) for c in codes}) != 3:
        raise _fail("orientation", expected, value)
    return codes


def _pixdim(value: object) -> tuple[float, float, float] | None:
    expected = "None (keep each file's spacing) or three positive finite voxel sizes in mm, e.g. [1.5, 1.5, 2.0]"
    if value is None:
        return None
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 3:
        raise _fail("pixdim", expected, value)
    try:
        sizes = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise _fail("pixdim", expected, value) from None
    if any(isinstance(v, bool) for v in value) or not all(math.isfinite(s) and s > 0 for s in sizes):
        raise _fail("pixdim", expected, value)
    return sizes  # type: ignore[return-value]


def check_volume_options(options: Mapping | None) -> dict[str, object]:
    """The ``volume`` settings with their defaults filled in, checked.

    Args:
        options: a mapping of some of :data:`VOLUME_OPTIONS` (``orientation``: axis codes or None;
            ``pixdim``: the target voxel spacing in mm or None; ``intensity``: one of
            :data:`VOLUME_INTENSITIES`; ``window``: ``[a_min, a_max]`` in HU, required by ``"window"``;
            ``percentiles``: ``[lower, upper]`` in [0, 100] for ``"percentiles"``), or None for the defaults.

    Returns:
        Every setting of :data:`VOLUME_OPTIONS`, normalised (tuples of floats, upper-case axis codes).

    Raises:
        ValueError: ``"volume.<setting>: expected ..., got ..."`` for an unknown or bad setting.
    """
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        raise ValueError(f"volume: expected a mapping of {sorted(VOLUME_OPTIONS)}, got {options!r}.")
    unknown = sorted(str(k) for k in options if k not in VOLUME_OPTIONS)
    if unknown:
        raise ValueError(f"volume: expected settings among {sorted(VOLUME_OPTIONS)}, got {unknown}.")
    merged = {**VOLUME_OPTIONS, **options}
    intensity = merged["intensity"]
    if intensity not in VOLUME_INTENSITIES:
        raise _fail("intensity", f"one of {list(VOLUME_INTENSITIES)}", intensity)
    window = merged["window"]
    if intensity == "window" and window is None:
        raise _fail("window", "[a_min, a_max] in HU with intensity 'window' (e.g. [-1000, 400])", window)
    return {
        "orientation": _orientation(merged["orientation"]),
        "pixdim": _pixdim(merged["pixdim"]),
        "intensity": intensity,
        "window": None if window is None else _pair("window", window),
        "percentiles": _pair("percentiles", merged["percentiles"], 0.0, 100.0),
    }


def _array_channel_first(array: np.ndarray | torch.Tensor) -> torch.Tensor:
    """A header-less volume ``(D, H, W)`` or ``(D, H, W, C)`` (MedMNIST 3D) as ``(C, D, H, W)``, its dtype kept."""
    tensor = torch.as_tensor(np.asarray(array) if not isinstance(array, torch.Tensor) else array.detach().cpu())
    if tensor.ndim == 3:
        return tensor[None].contiguous()
    if tensor.ndim == 4:
        return tensor.movedim(-1, 0).contiguous()
    raise ValueError(f"expected an in-memory volume of shape (D, H, W) or (D, H, W, C), got {tuple(tensor.shape)}")


class LoadVolumed(MapTransform):
    """Dictionary transform: a NIfTI path or an in-memory array as a channel-first volume, uniform in orientation and
    spacing where a header says what they are.

    A path goes through MONAI's ``LoadImaged`` (nibabel reader, float32) and ``EnsureChannelFirstd``, then
    ``Orientationd`` and ``Spacingd`` (bilinear) when ``orientation`` / ``pixdim`` are set; the result keeps its
    affine (a ``MetaTensor``). An array (a MedMNIST 3D row) has no header: it only gains its channel axis and
    keeps its dtype, so :class:`ScaleByTyped` can scale it by its type.

    Args:
        keys: the keys holding volume paths or arrays.
        orientation: axis codes, e.g. ``"RAS"``, or None to keep each file's.
        pixdim: the target voxel spacing in mm, or None to keep each file's.
        allow_missing_keys: ignore keys that are not in the data.

    Raises:
        ValueError: for a bad ``orientation`` or ``pixdim`` (see :func:`check_volume_options`).
    """

    def __init__(
        self,
        keys: KeysCollection = "image",
        orientation: str | None = "RAS",
        pixdim: Sequence[float] | None = None,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.orientation = _orientation(orientation)
        self.pixdim = _pixdim(pixdim)

    def _load(self, key: Hashable, path: str) -> torch.Tensor:
        steps: list[Transform] = [
            LoadImaged(key, reader="NibabelReader", dtype=np.float32, image_only=True),
            EnsureChannelFirstd(key),
        ]
        if self.orientation is not None:
            steps.append(Orientationd(key, axcodes=self.orientation))
        if self.pixdim is not None:
            steps.append(Spacingd(key, pixdim=self.pixdim, mode="bilinear"))
        data: dict = {key: path}
        for step in steps:
            data = step(data)
        return data[key]

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """Load every key of ``data``.

        Raises:
            FileNotFoundError: when a volume file is missing (names the file and key).
            UnreadableImageError: when a file cannot be read or resampled (names the file and key).
            ValueError: for an array that is not ``(D, H, W)`` or ``(D, H, W, C)`` (names the key).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            value = d[key]
            if not isinstance(value, (str, os.PathLike)):
                try:
                    d[key] = _array_channel_first(value)
                except ValueError as error:
                    raise ValueError(f"{key}: {error}.") from error
                continue
            path = os.fspath(value)
            if not os.path.isfile(path):
                raise FileNotFoundError(f"image file '{path}' does not exist (key '{key}').")
            try:
                d[key] = self._load(key, path)
            except Exception as error:  # any reader or resampling failure means the same thing to the user
                raise UnreadableImageError(
                    f"image file '{path}' cannot be read as a volume ({type(error).__name__}: {error}) (key '{key}')."
                ) from error
        return d


class ScaleByTyped(MapTransform):
    """Dictionary transform: float32 in [0, 1], integers by their type's range (uint8 / 255), anything else min-max.

    The ``"auto"`` intensity of volumes: MedMNIST 3D arrays are uint8 (their values already mean something
    across volumes), NIfTI volumes are float32 after loading and are min-max scaled, each on its own.

    Args:
        keys: the keys holding volumes.
        allow_missing_keys: ignore keys that are not in the data.
    """

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = _scale_by_type(d[key])
        return d


def _scale_by_type(volume: torch.Tensor) -> torch.Tensor:
    volume = torch.as_tensor(volume)
    if volume.dtype == torch.bool:
        return volume.to(torch.float32)
    if volume.dtype in (torch.uint8, torch.uint16):
        return volume.to(torch.float32) / float(torch.iinfo(volume.dtype).max)
    volume = volume.to(torch.float32)
    low, high = volume.min(), volume.max()
    return (volume - low) / (high - low) if high > low else torch.zeros_like(volume)


def _intensity_steps(key: str, options: Mapping) -> list[Transform]:
    intensity = options["intensity"]
    if intensity == "window":
        a_min, a_max = options["window"]
        return [ScaleIntensityRanged(key, a_min=a_min, a_max=a_max, b_min=0.0, b_max=1.0, clip=True)]
    if intensity == "percentiles":
        lower, upper = options["percentiles"]
        return [ScaleIntensityRangePercentilesd(key, lower=lower, upper=upper, b_min=0.0, b_max=1.0, clip=True)]
    if intensity == "minmax":
        return [ScaleIntensityd(key, minv=0.0, maxv=1.0)]
    return [ScaleByTyped(key)]


def volume_loading_steps(image_key: str = "image", options: Mapping | None = None) -> list[Transform]:
    """Load, orientation and spacing (files only), intensity: the steps before the ``volume`` preset's resize.

    Args:
        image_key: the key holding the volume path or array.
        options: the ``volume`` settings (see :func:`check_volume_options`).

    Raises:
        ValueError: for a bad setting, naming it.
    """
    settings = check_volume_options(options)
    load = LoadVolumed(image_key, orientation=settings["orientation"], pixdim=settings["pixdim"])
    return [load, *_intensity_steps(image_key, settings)]
