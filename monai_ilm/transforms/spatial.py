"""Resizing, cropping and rotation for 2D images: the deterministic pre-resize and seeded random steps.

MONAI 1.6.1 has no RandomResizedCrop with aspect-ratio control (monai_conventions.md §4.2), and
``RandTorchVisiond`` draws from torch's global generator instead of the transform's own
``self.R``, so it is neither seeded by ``set_random_state`` nor per view. These transforms draw all
parameters from ``self.R`` and resize with torchvision's antialiased bilinear kernel, which is
close to PIL's bilinear resize that the reference uses.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_tensor
from torchvision.transforms.v2 import functional as tvf


def resize_shorter_side(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a ``(C, H, W)`` image so its shorter side is ``size`` (torchvision ``Resize(int)`` semantics).

    Raises:
        ValueError: for a non-positive ``size`` or an image that is not ``(C, H, W)``.
    """
    if size <= 0:
        raise ValueError(f"size: expected a positive integer, got {size}.")
    image = convert_to_tensor(image, track_meta=False)
    if image.ndim != 3:
        raise ValueError(f"image: expected a (C, H, W) image, got shape {tuple(image.shape)}.")
    if min(image.shape[-2:]) == size:
        return image
    return tvf.resize(image, [size], antialias=True)


def centre_crop_box(height: int, width: int, ratio: tuple[float, float]) -> tuple[int, int, int, int]:
    """``(top, left, crop_h, crop_w)`` of the largest centred crop whose aspect ratio lies in ``ratio``.

    The fallback of a random resized crop when no drawn box fits the image (torchvision's rule).
    """
    aspect = width / height
    if aspect < ratio[0]:
        crop_w, crop_h = width, int(round(width / ratio[0]))
    elif aspect > ratio[1]:
        crop_w, crop_h = int(round(height * ratio[1])), height
    else:
        crop_w, crop_h = width, height
    return ((height - crop_h) // 2, (width - crop_w) // 2, crop_h, crop_w)


class ResizeShortSided(MapTransform):
    """Dictionary transform: resize 2D images so their shorter side is ``size`` (keeps the aspect ratio).

    Args:
        keys: the keys holding ``(C, H, W)`` images.
        size: the target length of the shorter side.
        allow_missing_keys: ignore keys that are not in the data.
    """

    def __init__(self, keys: KeysCollection, size: int, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if size <= 0:
            raise ValueError(f"size: expected a positive integer, got {size}.")
        self.size = int(size)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = resize_shorter_side(d[key], self.size)
        return d


class RandResizedCropd(RandomizableTransform, MapTransform):
    """Dictionary transform: crop a random area and aspect ratio, then resize to ``size`` x ``size``.

    The crop follows torchvision's ``RandomResizedCrop``: up to 10 tries of an area fraction
    ``U(scale)`` and a log-uniform aspect ratio in ``ratio``; if none fits, a centre crop clamped to
    ``ratio``. One crop is drawn per call and applied to all keys, so give each view its own instance.

    Args:
        keys: the keys holding ``(C, H, W)`` images.
        size: output side in pixels.
        scale: range of the cropped area as a fraction of the image area.
        ratio: range of the crop's aspect ratio (width / height).
        allow_missing_keys: ignore keys that are not in the data.

    Raises:
        ValueError: for a non-positive size or an invalid scale or ratio range.
    """

    def __init__(
        self,
        keys: KeysCollection,
        size: int,
        scale: Sequence[float] = (0.08, 1.0),
        ratio: Sequence[float] = (3.0 / 4.0, 4.0 / 3.0),
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=1.0)
        if size <= 0:
            raise ValueError(f"size: expected a positive integer, got {size}.")
        if not 0.0 < scale[0] <= scale[1] <= 1.0:
            raise ValueError(f"scale: expected 0 < scale[0] <= scale[1] <= 1, got {tuple(scale)}.")
        if not 0.0 < ratio[0] <= ratio[1]:
            raise ValueError(f"ratio: expected 0 < ratio[0] <= ratio[1], got {tuple(ratio)}.")
        self.size, self.scale, self.ratio = int(size), tuple(scale), tuple(ratio)
        self._box: tuple[int, int, int, int] = (0, 0, 1, 1)

    def randomize(self, shape: Sequence[int]) -> None:
        """Draw the crop box ``(top, left, height, width)`` for an image of spatial ``shape`` (H, W)."""
        height, width = int(shape[0]), int(shape[1])
        area = height * width
        log_ratio = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target_area = area * self.R.uniform(*self.scale)
            aspect = math.exp(self.R.uniform(*log_ratio))
            crop_w = int(round(math.sqrt(target_area * aspect)))
            crop_h = int(round(math.sqrt(target_area / aspect)))
            if 0 < crop_w <= width and 0 < crop_h <= height:
                top = int(self.R.randint(0, height - crop_h + 1))
                left = int(self.R.randint(0, width - crop_w + 1))
                self._box = (top, left, crop_h, crop_w)
                return
        self._box = centre_crop_box(height, width, self.ratio)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        first = next(self.key_iterator(d), None)
        if first is None:
            return d
        self.randomize(d[first].shape[-2:])
        top, left, crop_h, crop_w = self._box
        for key in self.key_iterator(d):
            image = convert_to_tensor(d[key], track_meta=False)
            d[key] = tvf.resized_crop(image, top, left, crop_h, crop_w, [self.size, self.size], antialias=True)
        return d


class RandRotationd(RandomizableTransform, MapTransform):
    """Dictionary transform: rotate 2D images by an angle drawn from ``U(-degrees, degrees)``.

    The reference's ``RandomRotation(30)`` (docs/method.md §3): nearest-neighbour, centre of rotation
    at the image centre, output the size of the input, zero fill. PIL's convention (a positive angle
    turns the image counter-clockwise) is kept, and the result equals PIL's ``Image.rotate`` up to
    pixels whose source lands on a rounding tie. The angle comes from ``self.R``, so the transform is
    seeded by ``set_random_state`` like every MONAI transform. torchvision's tensor kernel is used
    because it is 1.7x (512 px) to 10x (64 px) faster than MONAI's ``RandRotated`` for this, which
    was the two-view pipeline's most expensive step (benchmarks/RESULTS.md). One angle is drawn per
    call and applied to all keys, so give each view its own instance.

    Args:
        keys: the keys holding ``(C, H, W)`` images.
        degrees: the largest rotation in degrees, either way.
        prob: probability of rotating at all.
        allow_missing_keys: ignore keys that are not in the data.

    Raises:
        ValueError: for a negative ``degrees``, or an image that is not ``(C, H, W)``.
    """

    def __init__(self, keys: KeysCollection, degrees: float, prob: float = 1.0, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob=prob)
        if degrees < 0:
            raise ValueError(f"degrees: expected a non-negative number, got {degrees}.")
        self.degrees = float(degrees)
        self.angle = 0.0

    def randomize(self, data: object = None) -> None:
        super().randomize(None)
        self.angle = float(self.R.uniform(-self.degrees, self.degrees)) if self._do_transform else 0.0

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        for key in self.key_iterator(d):
            image = convert_to_tensor(d[key], track_meta=False)
            if image.ndim != 3:
                raise ValueError(f"{key}: expected a (C, H, W) image, got shape {tuple(image.shape)}.")
            if self._do_transform:
                # no fill argument: grid_sample already pads with zeros; fill=0 would blend a mask (2x slower)
                image = tvf.rotate(image, self.angle, interpolation=tvf.InterpolationMode.NEAREST)
            d[key] = image
        return d
