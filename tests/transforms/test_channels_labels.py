"""Channel conversion and label tensors."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import default_collate

from monai_ilm.transforms import EnsureChannelsd, LabelToTensord, label_to_tensor, to_channels


def test_grey_to_rgb_and_back():
    grey = torch.rand(1, 4, 5)
    rgb = to_channels(grey, 3)
    assert rgb.shape == (3, 4, 5) and torch.equal(rgb[0], rgb[2])
    torch.testing.assert_close(to_channels(rgb, 1), grey)


def test_luma_weights_and_alpha():
    red = torch.zeros(4, 2, 2)
    red[0] = 1.0
    red[3] = 0.5  # alpha
    torch.testing.assert_close(to_channels(red, 1), torch.full((1, 2, 2), 0.299))
    assert to_channels(red, 3).shape == (3, 2, 2)


def test_bad_channels():
    with pytest.raises(ValueError, match=r"^channels: expected 1 or 3, got "):
        to_channels(torch.rand(1, 2, 2), 2)
    with pytest.raises(ValueError, match=r"^image: expected 1, 2, 3 or 4 channels \(to make 3\), got 5\.$"):
        to_channels(torch.rand(5, 2, 2), 3)
    with pytest.raises(ValueError, match=r"^channels: expected 1, 3 or None, got "):
        EnsureChannelsd("image", channels=4)
    assert EnsureChannelsd("image", channels=None)({"image": torch.rand(4, 2, 2)})["image"].shape[0] == 4


def test_labels_batch_into_one_tensor():
    multi = [LabelToTensord()({"label": [0.0, 1.0, 1.0]}) for _ in range(4)]
    assert default_collate(multi)["label"].shape == (4, 3)
    assert default_collate(multi)["label"].dtype == torch.float32
    single = label_to_tensor(2)
    assert single.dtype == torch.int64 and single.ndim == 0
    assert LabelToTensord()({"image": 1}) == {"image": 1}  # no label: nothing to do
    with pytest.raises(ValueError, match="integer class index"):
        label_to_tensor(0.5)
