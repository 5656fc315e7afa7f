"""Loading images into channel-first float tensors in [0, 1], with the path in every error.

The reference opens every image with ``PIL.Image.open(path).convert("RGB")``. That silently
saturates 16-bit PNGs (``I;16`` values above 255 become white) and gives no hint of which file of
112k failed when one is truncated. :class:`LoadImageWithPathd` instead

* reads 2D images with Pillow in their native bit depth and scales by it (8-bit / 255, 16-bit /
  65535), so 16-bit X-rays keep their contrast;
* returns ``(C, H, W)`` in the image's own orientation (rows first, as PIL and torchvision show
  it; MONAI's default ``PILReader`` would transpose to ``(C, W, H)``);
* reads NIfTI volumes through MONAI's nibabel reader (``(C, H, W, D)``, min-max scaled);
* accepts in-memory arrays (MedMNIST rows) as well as paths;
* re-raises any failure with the file path and the key.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform

from monai_ilm.data.files import NIFTI_EXTENSIONS, has_suffix
from monai_ilm.data.integrity import UnreadableImageError

INTENSITY_MODES: tuple[str, ...] = ("auto", "minmax")
_EIGHT_BIT_MODES = {"L", "RGB"}
_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


def _min_max(array: np.ndarray) -> np.ndarray:
    array = array.astype(np.float32)
    low, high = float(array.min()), float(array.max())
    return (array - low) / (high - low) if high > low else np.zeros_like(array)


def _scale_by_dtype(array: np.ndarray) -> np.ndarray:
    """Float32 in [0, 1] from an array of any dtype: integers by their type's range, floats as given or min-max."""
    if array.dtype == np.bool_:
        return array.astype(np.float32)
    if np.issubdtype(array.dtype, np.unsignedinteger) and array.dtype.itemsize <= 2:
        return array.astype(np.float32) / float(np.iinfo(array.dtype).max)
    if np.issubdtype(array.dtype, np.floating) and array.size and array.min() >= 0.0 and array.max() <= 1.0:
        return array.astype(np.float32)
    return _min_max(array)


def _read_picture(path: str, intensity: str) -> np.ndarray:
    """A 2D image file as float32 ``(C, H, W)`` in [0, 1]."""
    from PIL import Image

    with Image.open(path) as image:
        image.load()
        mode = image.mode
        if mode in ("LA", "1"):
            image, mode = image.convert("L"), "L"
        elif mode not in _EIGHT_BIT_MODES | _SIXTEEN_BIT_MODES | {"F"}:
            image, mode = image.convert("RGB"), "RGB"  # palette, RGBA, CMYK...: drop alpha as the reference does
        array = np.asarray(image)
    if intensity == "minmax" or mode == "F":
        scaled = _min_max(array)
    elif mode in _SIXTEEN_BIT_MODES:
        scaled = np.clip(array.astype(np.float32) / 65535.0, 0.0, 1.0)
    else:
        scaled = array.astype(np.float32) / 255.0
    return scaled[None] if scaled.ndim == 2 else np.moveaxis(scaled, -1, 0)


def _read_volume(path: str) -> np.ndarray:
    """A NIfTI volume as float32 ``(C, H, W, D)``, min-max scaled to [0, 1]."""
    from monai.data import NibabelReader
    from monai.transforms import LoadImage

    volume = LoadImage(reader=NibabelReader(), image_only=True, ensure_channel_first=True, dtype=np.float32)(path)
    return _min_max(np.asarray(volume))


def array_to_channel_first(array: np.ndarray | torch.Tensor, intensity: str = "auto") -> torch.Tensor:
    """An in-memory image as a float32 channel-first tensor in [0, 1].

    ``(H, W)`` gains a channel; ``(H, W, C)`` with C in 1, 3 or 4 (MedMNIST, PIL) is moved to
    ``(C, H, W)``; anything else is taken as already channel-first.

    Args:
        array: the image.
        intensity: ``"auto"`` (scale integers by their type, keep floats in [0, 1], else min-max) or ``"minmax"``.
    """
    array = array.detach().cpu().numpy() if isinstance(array, torch.Tensor) else np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    elif array.ndim == 3 and array.shape[-1] in (1, 3, 4) and array.shape[0] not in (1, 3, 4):
        array = np.moveaxis(array, -1, 0)
    scaled = _min_max(array) if intensity == "minmax" else _scale_by_dtype(array)
    return torch.from_numpy(np.ascontiguousarray(scaled, dtype=np.float32))


def load_image(value: str | os.PathLike | np.ndarray | torch.Tensor, intensity: str = "auto") -> torch.Tensor:
    """Load a path (2D image or NIfTI volume) or convert an array into a float32 channel-first tensor in [0, 1].

    Args:
        value: a file path or an in-memory image.
        intensity: ``"auto"`` (scale by bit depth; NIfTI and float images min-max) or ``"minmax"``.

    Raises:
        FileNotFoundError: when the path does not exist (the message names it).
        UnreadableImageError: when the file cannot be decoded (the message names it).
        ValueError: for an unknown ``intensity``.
    """
    if intensity not in INTENSITY_MODES:
        raise ValueError(f"intensity: expected one of {list(INTENSITY_MODES)}, got '{intensity}'.")
    if not isinstance(value, (str, os.PathLike)):
        return array_to_channel_first(value, intensity)
    path = os.fspath(value)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"image file '{path}' does not exist.")
    try:
        array = _read_volume(path) if has_suffix(path, NIFTI_EXTENSIONS) else _read_picture(path, intensity)
    except Exception as error:
        raise UnreadableImageError(f"image file '{path}' cannot be read ({type(error).__name__}: {error}).") from error
    return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))


class LoadImageWithPathd(MapTransform):
    """Dictionary transform: load each key's image (path or array) as a float32 ``(C, spatial...)`` tensor in [0, 1].

    Unlike ``monai.transforms.LoadImaged`` it keeps 16-bit precision, returns rows-first 2D images,
    accepts in-memory arrays, and names the file and key in every error (see the module docstring).

    Args:
        keys: the keys holding images.
        intensity: ``"auto"`` (scale 2D images by bit depth; NIfTI and float images min-max) or ``"minmax"``.
        allow_missing_keys: ignore keys that are not in the data.

    Raises:
        ValueError: for an unknown ``intensity``.
    """

    def __init__(self, keys: KeysCollection = "image", intensity: str = "auto", allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if intensity not in INTENSITY_MODES:
            raise ValueError(f"intensity: expected one of {list(INTENSITY_MODES)}, got '{intensity}'.")
        self.intensity = intensity

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        """Load every key of ``data``.

        Raises:
            FileNotFoundError: when an image file is missing (names the file and key).
            UnreadableImageError: when an image cannot be decoded (names the file and key).
        """
        d = dict(data)
        for key in self.key_iterator(d):
            try:
                d[key] = load_image(d[key], self.intensity)
            except FileNotFoundError as error:
                raise FileNotFoundError(f"{error} (key '{key}')") from error
            except UnreadableImageError as error:
                raise UnreadableImageError(f"{error} (key '{key}')") from error
        return d
