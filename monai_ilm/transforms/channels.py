"""Giving every image the channel count the network expects (1 for grey, 3 for RGB-style stems)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from monai.utils import convert_to_tensor

LUMA_WEIGHTS = (0.299, 0.587, 0.114)
"""ITU-R 601-2 luma weights, the ones PIL's ``convert("L")`` uses."""


def to_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """``image`` (channel-first) with exactly ``channels`` channels (1 or 3).

    Alpha (a 4th or 2nd channel) is dropped; grey becomes 3 identical channels (as the reference's
    ``convert("RGB")``); RGB becomes grey with the ITU-R 601-2 luma weights.

    Raises:
        ValueError: when ``channels`` is not 1 or 3, or the image has an unsupported channel count.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels: expected 1 or 3, got {channels}.")
    image = convert_to_tensor(image, track_meta=False)
    count = image.shape[0]
    if count in (2, 4):  # grey + alpha, RGB + alpha
        image, count = image[: count - 1], count - 1
    if count not in (1, 3):
        raise ValueError(f"image: expected 1, 2, 3 or 4 channels (to make {channels}), got {count}.")
    if count == channels:
        return image
    if channels == 3:
        return image.expand(3, *image.shape[1:]).clone()
    weights = torch.tensor(LUMA_WEIGHTS, dtype=image.dtype).reshape(3, *([1] * (image.ndim - 1)))
    return (image * weights).sum(dim=0, keepdim=True)


class EnsureChannelsd(MapTransform):
    """Dictionary transform: give each image exactly ``channels`` channels (see :func:`to_channels`).

    Args:
        keys: the keys holding channel-first images.
        channels: 1 or 3; ``None`` keeps the image's own channels.
        allow_missing_keys: ignore keys that are not in the data.

    Raises:
        ValueError: when ``channels`` is not 1, 3 or ``None``.
    """

    def __init__(self, keys: KeysCollection, channels: int | None = 3, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)
        if channels not in (1, 3, None):
            raise ValueError(f"channels: expected 1, 3 or None, got {channels}.")
        self.channels = channels

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        if self.channels is None:
            return d
        for key in self.key_iterator(d):
            d[key] = to_channels(d[key], self.channels)
        return d
