"""The paper's augmentations as seeded MONAI transforms: parameter ranges, probabilities, reproducibility."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from monai_ilm.transforms import (
    RandColorJitterd,
    RandGaussianBlurd,
    RandGrayscaled,
    RandResizedCropd,
    RandRotationd,
    ResizeShortSided,
)
from monai_ilm.transforms.color import gaussian_kernel_size


def _rgb(seed=0, shape=(3, 24, 32)):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize(
    "make",
    [
        lambda: RandColorJitterd("image", prob=1.0),
        lambda: RandGrayscaled("image", prob=0.5),
        lambda: RandGaussianBlurd("image", prob=1.0),
        lambda: RandResizedCropd("image", 16, scale=(0.2, 1.0)),
        lambda: RandRotationd("image", degrees=30.0),
    ],
)
def test_seeded_reproducible_and_random(make):
    image = _rgb()
    first = [make().set_random_state(5)({"image": image})["image"] for _ in range(2)]
    torch.testing.assert_close(first[0], first[1])
    transform = make().set_random_state(5)
    draws = [transform({"image": image})["image"] for _ in range(6)]
    assert any(not torch.equal(draws[0], d) for d in draws[1:])


def test_colour_jitter_factors_in_range_and_order_random():
    transform = RandColorJitterd("image", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, prob=1.0)
    transform.set_random_state(0)
    orders = set()
    for _ in range(40):
        transform.randomize()
        values = dict(transform._steps)
        assert 0.6 <= values["brightness"] <= 1.4 and 0.6 <= values["contrast"] <= 1.4
        assert 0.6 <= values["saturation"] <= 1.4 and -0.1 <= values["hue"] <= 0.1
        orders.add(tuple(name for name, _ in transform._steps))
    assert len(orders) > 5


def test_colour_jitter_disabled_parts_probability_and_range():
    only_contrast = RandColorJitterd("image", brightness=0, contrast=0.4, saturation=0, hue=0.1, prob=1.0)
    only_contrast.randomize()
    assert {name for name, _ in only_contrast._steps} == {"contrast", "hue"}
    image = _rgb()
    assert torch.equal(RandColorJitterd("image", prob=0.0)({"image": image})["image"], image)
    out = RandColorJitterd("image", brightness=0.9, prob=1.0).set_random_state(1)({"image": image})["image"]
    assert 0.0 <= out.min() and out.max() <= 1.0
    with pytest.raises(ValueError, match=r"^hue: expected a number in \[0, 0.5\], got "):
        RandColorJitterd("image", hue=0.7)


def test_grey_images_ignore_saturation_and_hue():
    grey = torch.rand(1, 8, 8)
    transform = RandColorJitterd("image", brightness=0, contrast=0, saturation=0.9, hue=0.5, prob=1.0)
    assert torch.equal(transform({"image": grey})["image"], grey)


def test_grayscale_keeps_three_equal_channels():
    out = RandGrayscaled("image", prob=1.0)({"image": _rgb()})["image"]
    assert out.shape[0] == 3 and torch.equal(out[0], out[1]) and torch.equal(out[1], out[2])
    grey = torch.rand(1, 4, 4)
    assert torch.equal(RandGrayscaled("image", prob=1.0)({"image": grey})["image"], grey)


def test_blur_sigma_range_and_effect():
    transform = RandGaussianBlurd("image", sigma=(0.1, 2.0), prob=1.0).set_random_state(0)
    sigmas = []
    for _ in range(50):
        transform.randomize()
        sigmas.append(transform._value)
    assert 0.1 <= min(sigmas) and max(sigmas) <= 2.0 and max(sigmas) - min(sigmas) > 1.0
    strong = RandGaussianBlurd("image", sigma=(2.0, 2.0), prob=1.0)({"image": _rgb()})["image"]
    assert strong.std() < _rgb().std() * 0.6
    assert gaussian_kernel_size(2.0, (64, 64)) == 13 and gaussian_kernel_size(2.0, (3, 3)) == 5


def test_resized_crop_box_respects_scale_and_ratio():
    transform = RandResizedCropd("image", size=16, scale=(0.4, 1.0)).set_random_state(3)
    for _ in range(50):
        transform.randomize((60, 80))
        top, left, height, width = transform._box
        assert 0 <= top and top + height <= 60 and 0 <= left and left + width <= 80
        assert 0.4 * 4800 * 0.9 <= height * width <= 4800
        assert 3 / 4 * 0.9 <= width / height <= 4 / 3 * 1.1
    assert transform({"image": torch.rand(3, 60, 80)})["image"].shape == (3, 16, 16)


def test_resized_crop_falls_back_to_a_centre_crop():
    transform = RandResizedCropd("image", size=8, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    transform.randomize((10, 100))  # a full-area square crop cannot fit a 10 x 100 strip
    assert transform._box == (0, 45, 10, 10)
    with pytest.raises(ValueError, match=r"^scale: expected 0 < scale\[0\] <= scale\[1\] <= 1, got "):
        RandResizedCropd("image", 8, scale=(0.0, 1.0))


def test_resize_shorter_side_keeps_aspect():
    out = ResizeShortSided("image", 16)({"image": torch.rand(3, 40, 80)})["image"]
    assert out.shape == (3, 16, 32)
    assert math.isclose(float(out.mean()), 0.5, abs_tol=0.05)


@pytest.mark.parametrize("angle", [-30.0, -12.5, 7.0, 23.3])
def test_rotation_matches_pil_nearest(angle):
    """The reference's RandomRotation(30) rotates the PIL image with NEAREST about its centre, zero fill."""
    pixels = np.random.default_rng(1).integers(0, 256, (41, 56, 3), dtype=np.uint8)
    expected = np.asarray(Image.fromarray(pixels).rotate(angle, resample=Image.NEAREST)).transpose(2, 0, 1) / 255.0
    transform = RandRotationd("image", degrees=30.0)
    transform.randomize = lambda data=None: (
        setattr(transform, "angle", angle) or setattr(transform, "_do_transform", True)
    )
    out = transform({"image": torch.from_numpy(pixels.transpose(2, 0, 1) / 255.0).float()})["image"]
    assert out.shape == (3, 41, 56)
    same = np.isclose(out.numpy(), expected, atol=1e-6).all(axis=0)
    assert same.mean() > 0.995  # only rounding ties of the source coordinate may pick a neighbour
    assert (out[:, 0, 0] == 0).all() == (expected[:, 0, 0] == 0).all()


def test_rotation_angles_uniform_within_range_and_probability():
    transform = RandRotationd("image", degrees=30.0).set_random_state(0)
    angles = []
    for _ in range(2000):
        transform.randomize()
        angles.append(transform.angle)
    assert -30.0 <= min(angles) < -29.0 and 29.0 < max(angles) <= 30.0
    assert abs(np.mean(angles)) < 1.0 and abs(np.std(angles) - 60.0 / math.sqrt(12.0)) < 0.6
    image = _rgb()
    assert torch.equal(RandRotationd("image", degrees=30.0, prob=0.0)({"image": image})["image"], image)
    with pytest.raises(ValueError, match=r"^degrees: expected a non-negative number, got "):
        RandRotationd("image", degrees=-1.0)
    with pytest.raises(ValueError, match="image: expected a \\(C, H, W\\) image"):
        RandRotationd("image", degrees=30.0)({"image": torch.rand(1, 3, 8, 8)})
