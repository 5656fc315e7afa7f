"""Labels as tensors that batch correctly."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform


def label_to_tensor(label: object) -> torch.Tensor:
    """An int class index as an int64 scalar tensor, a multi-hot list as a float32 vector.

    Without this, PyTorch's default collate turns a batch of 14-long Python lists into 14 tensors
    of batch length (one per position) instead of one ``(batch, 14)`` tensor.

    Raises:
        ValueError: for a non-integer scalar label.
    """
    array = np.asarray(label.cpu() if isinstance(label, torch.Tensor) else label)
    if array.ndim == 0:
        if not float(array).is_integer():
            raise ValueError(f"label: expected an integer class index (or a multi-hot list), got {label!r}.")
        return torch.tensor(int(array), dtype=torch.int64)
    return torch.as_tensor(array.astype(np.float32))


class LabelToTensord(MapTransform):
    """Dictionary transform applying :func:`label_to_tensor` to each key (missing keys allowed by default).

    Args:
        keys: the keys holding labels.
        allow_missing_keys: ignore keys that are not in the data (unlabelled inference data).
    """

    def __init__(self, keys: KeysCollection = "label", allow_missing_keys: bool = True):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = label_to_tensor(d[key])
        return d
