"""The two augmented views of MoCo: keys and the copy step that creates them.

MONAI random dictionary transforms draw **one** set of random parameters per call and apply it
to every key they are given, so ``RandFlipd(keys=["view1", "view2"])`` flips both views the same way
(monai_conventions.md §4.1; MONAI issue #7561). The presets therefore copy the image into
:data:`VIEW_KEYS` and give each view its own, separately seeded, instances of every random transform.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import torch
from monai.transforms import MapTransform
from monai.transforms.traits import RandomizableTrait

VIEW_KEYS: tuple[str, str] = ("view1", "view2")
"""Keys of the two views: ``view1`` goes to the query encoder, ``view2`` to the key (momentum) encoder."""


class CopyViewsd(MapTransform, RandomizableTrait):
    """Dictionary transform: copy the image into the view keys (and drop the original key).

    The copy is deterministic, but it is marked :class:`~monai.transforms.traits.RandomizableTrait`
    on purpose: ``CacheDataset`` / ``PersistentDataset`` cache everything before the first such
    transform, so the cache holds one loaded, resized image per sample instead of two identical
    copies (half the memory), and the copies are made per epoch from the cached image.

    Args:
        key: the key holding the loaded image.
        view_keys: the keys to create.

    Raises:
        ValueError: when fewer than two view keys are given or they repeat.
    """

    def __init__(self, key: str = "image", view_keys: Sequence[str] = VIEW_KEYS):
        super().__init__(key)
        if len(view_keys) < 2 or len(set(view_keys)) != len(view_keys):
            raise ValueError(f"view_keys: expected at least two distinct keys, got {tuple(view_keys)}.")
        self.view_keys = tuple(view_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = d.pop(key)
            for view_key in self.view_keys:
                d[view_key] = image.clone() if isinstance(image, torch.Tensor) else image.copy()
        return d
