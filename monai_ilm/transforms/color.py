"""Colour augmentations of the paper (docs/method.md §3), drawing every parameter from MONAI's ``self.R``.

MONAI 1.6.1 has no ColorJitter or RandomGrayscale, and its ``RandGaussianSmoothd`` draws a
separate sigma per axis, whereas the reference blurs with one sigma (PIL ``GaussianBlur(radius=σ)``,
σ ~ U(0.1, 2.0)). ``RandTorchVisiond`` could wrap torchvision's classes but draws from torch's global
generator, so it would not be seeded by ``set_random_state`` (monai_conventions.md §4.2). These
transforms use torchvision's functional kernels with parameters drawn from ``self.R``.

Each draws one set of parameters per call, shared by all its keys: the presets give each view its
own instance (see :mod:`monai_ilm.transforms.views`).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_tensor
from torchvision.transforms.v2 import functional as tvf


def _factor_range(value: float, name: str) -> tuple[float, float] | None:
    if value < 0:
        raise ValueError(f"{name}: expected a non-negative number, got {value}.")
    return (max(0.0, 1.0 - value), 1.0 + value) if value > 0 else None


class RandColorJitterd(RandomizableTransform, MapTransform):
    """Dictionary transform: torchvision-style ColorJitter applied with probability ``prob``.

    Brightness, contrast and saturation factors are drawn from ``U(max(0, 1 - v), 1 + v)``, the hue
    shift from ``U(-hue, hue)``, and the four adjustments are applied in a random order. A value of
    0 disables that adjustment. Saturation and hue do nothing on 1-channel images (as on the
    reference's grey-as-RGB X-rays). The paper uses ``(0.4, 0.4, 0.4, 0.1)`` with ``prob=0.8``.

    Args:
        keys: the keys holding ``(C, H, W)`` float images in [0, 1].
        brightness: brightness jitter strength.
        contrast: contrast jitter strength.
        saturation: saturation jitter strength.
        hue: hue jitter, in [0, 0.5].
        prob: probability of jittering at all.
        allow_missing_keys: ignore keys that are not in the data.

    Raises:
        ValueError: for negative strengths or a hue outside [0, 0.5].
    """

    def __init__(
        self,
        keys: KeysCollection,
        brightness: float = 0.4,
        contrast: float = 0.4,
        saturation: float = 0.4,
        hue: float = 0.1,
        prob: float = 0.8,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue: expected a number in [0, 0.5], got {hue}.")
        self.ranges = {
            "brightness": _factor_range(brightness, "brightness"),
            "contrast": _factor_range(contrast, "contrast"),
            "saturation": _factor_range(saturation, "saturation"),
            "hue": (-hue, hue) if hue > 0 else None,
        }
        self._steps: list[tuple[str, float]] = []

    def randomize(self, data: object = None) -> None:
        """Decide whether to jitter; if so, draw the factors and their order."""
        super().randomize(None)
        self._steps = []
        if not self._do_transform:
            return
        names = list(self.ranges)
        for index in self.R.permutation(len(names)):
            name = names[int(index)]
            if self.ranges[name] is not None:
                self._steps.append((name, float(self.R.uniform(*self.ranges[name]))))

    @staticmethod
    def _adjust(image: torch.Tensor, name: str, value: float) -> torch.Tensor:
        if name == "brightness":
            return tvf.adjust_brightness(image, value)
        if name == "contrast":
            return tvf.adjust_contrast(image, value)
        if image.shape[0] != 3:  # saturation and hue need colour
            return image
        if name == "saturation":
            return tvf.adjust_saturation(image, value)
        return tvf.adjust_hue(image, value)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            image = convert_to_tensor(d[key], track_meta=False)
            for name, value in self._steps:
                image = self._adjust(image, name, value)
            d[key] = image
        return d


class RandGrayscaled(RandomizableTransform, MapTransform):
    """Dictionary transform: with probability ``prob``, turn an RGB image grey while keeping 3 channels.

    Matches torchvision's ``RandomGrayscale`` (luma weights 0.299 / 0.587 / 0.114). 1-channel images
    are left as they are. The paper uses ``prob=0.2``.

    Args:
        keys: the keys holding ``(C, H, W)`` images.
        prob: probability of the conversion.
        allow_missing_keys: ignore keys that are not in the data.
    """

    def __init__(self, keys: KeysCollection, prob: float = 0.2, allow_missing_keys: bool = False):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            image = convert_to_tensor(d[key], track_meta=False)
            if image.shape[0] == 3:
                d[key] = tvf.rgb_to_grayscale(image, num_output_channels=3)
        return d


def gaussian_kernel_size(sigma: float, spatial_shape: Sequence[int]) -> int:
    """An odd kernel size covering ±3σ, capped so reflection padding fits inside the image."""
    size = 2 * math.ceil(3.0 * sigma) + 1
    largest = 2 * min(int(s) for s in spatial_shape) - 1
    return max(1, min(size, largest if largest % 2 else largest - 1))


class RandGaussianBlurd(RandomizableTransform, MapTransform):
    """Dictionary transform: with probability ``prob``, blur with one isotropic σ ~ U(sigma).

    This is the MoCo-v2 blur of the reference (``GaussianBlur`` with σ ~ U(0.1, 2.0) applied with
    p = 0.5); σ is in pixels of the image it is applied to.

    Args:
        keys: the keys holding ``(C, H, W)`` images.
        sigma: range of the standard deviation in pixels.
        prob: probability of blurring.
        allow_missing_keys: ignore keys that are not in the data.

    Raises:
        ValueError: for an invalid sigma range.
    """

    def __init__(
        self,
        keys: KeysCollection,
        sigma: Sequence[float] = (0.1, 2.0),
        prob: float = 0.5,
        allow_missing_keys: bool = False,
    ):
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        if not 0.0 < sigma[0] <= sigma[1]:
            raise ValueError(f"sigma: expected 0 < sigma[0] <= sigma[1], got {tuple(sigma)}.")
        self.sigma = (float(sigma[0]), float(sigma[1]))
        self._value = self.sigma[0]

    def randomize(self, data: object = None) -> None:
        """Decide whether to blur and draw σ."""
        super().randomize(None)
        if self._do_transform:
            self._value = float(self.R.uniform(*self.sigma))

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        self.randomize()
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            image = convert_to_tensor(d[key], track_meta=False)
            size = gaussian_kernel_size(self._value, image.shape[-2:])
            if size > 1:
                d[key] = tvf.gaussian_blur(image, [size, size], [self._value, self._value])
        return d
