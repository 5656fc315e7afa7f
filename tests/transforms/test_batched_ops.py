"""The batched per-sample kernels equal torchvision's per-image kernels (the loader pipeline's), image by image."""

from __future__ import annotations

import pytest
import torch
from torchvision.transforms.v2 import functional as tvf

from monai_ilm.transforms import RandColorJitterd, batched_ops
from monai_ilm.transforms.color import gaussian_kernel_size
from monai_ilm.transforms.device_augment import _ColourJitter


def _batch(n: int = 6, shape=(3, 20, 24), seed: int = 0) -> torch.Tensor:
    images = torch.rand((n, *shape), generator=torch.Generator().manual_seed(seed))
    images[0] = images[0, :1]  # a grey image among the colour ones
    images[1, :, :5] = 0.5  # flat patches: max == min
    return images


def test_hue_equals_torchvision_per_image_and_keeps_grey_exactly():
    images = _batch()
    shifts = torch.tensor([0.1, -0.1, 0.05, 0.5, -0.5, 0.0])
    expected = torch.stack([tvf.adjust_hue(image, float(s)) for image, s in zip(images, shifts)])
    torch.testing.assert_close(batched_ops.adjust_hue(images, shifts), expected, atol=1e-5, rtol=0)
    assert torch.equal(batched_ops.adjust_hue(images[:1], shifts[:1]), images[:1])


@pytest.mark.parametrize("shape", [(3, 20, 24), (1, 5, 9)])  # 5 rows: the kernel is capped to fit the reflection
def test_blur_equals_torchvision_with_the_loader_kernel_size(shape):
    images = _batch(shape=shape)
    sigmas = torch.tensor([0.1, 0.3, 0.9, 1.4, 2.0, 1.7])
    radii = [batched_ops.blur_radius(float(s), shape[1:]) for s in sigmas]
    expected = []
    for image, sigma in zip(images, sigmas.tolist()):
        size = gaussian_kernel_size(sigma, shape[1:])
        expected.append(tvf.gaussian_blur(image, [size, size], [sigma, sigma]) if size > 1 else image)
    torch.testing.assert_close(batched_ops.gaussian_blur(images, sigmas, radii), torch.stack(expected))
    assert radii[0] == 1 and max(radii) == min(6, min(shape[1:]) - 1)


def test_rotation_equals_torchvision_nearest_zero_fill():
    images = _batch(shape=(3, 20, 24))
    degrees = torch.tensor([10.0, -25.0, 30.0, 0.0, -30.0, 7.3])
    expected = [
        tvf.rotate(image, float(d), interpolation=tvf.InterpolationMode.NEAREST) for image, d in zip(images, degrees)
    ]
    assert torch.equal(batched_ops.rotate(images, degrees), torch.stack(expected))


def test_resized_crop_equals_torchvision_crop_then_resize():
    images = _batch(shape=(3, 16, 16))
    boxes = torch.tensor([[0, 0, 16, 16], [2, 3, 10, 12], [5, 1, 11, 15], [0, 4, 16, 12], [7, 7, 9, 9], [3, 0, 13, 16]])
    expected = [tvf.resized_crop(image, *box.tolist(), [16, 16], antialias=True) for image, box in zip(images, boxes)]
    torch.testing.assert_close(batched_ops.resized_crop(images, boxes, 16), torch.stack(expected), atol=1e-5, rtol=0)


def test_colour_jitter_with_the_loaders_parameters_gives_the_loaders_images():
    images = _batch(n=12)
    loader = RandColorJitterd("image", prob=0.8).set_random_state(1)
    names = ["brightness", "contrast", "saturation", "hue"]
    expected, apply, order, factors = [], [], [], []
    for image in images:
        expected.append(loader({"image": image})["image"])
        steps = dict(loader._steps)
        apply.append(loader._do_transform)
        order.append([names.index(name) for name, _ in loader._steps] if loader._steps else [0, 1, 2, 3])
        factors.append([steps.get(name, 0.0) for name in names])
    params = {"apply": torch.tensor(apply), "order": torch.tensor(order), "factors": torch.tensor(factors)}
    assert 0 < sum(apply) < len(apply)
    out = _ColourJitter(loader).apply(images, params)
    torch.testing.assert_close(out, torch.stack(expected), atol=1e-5, rtol=0)
