"""Batched image kernels with one parameter per sample, for the device augmentation stage.

Each function takes a float batch ``(N, C, H, W)`` in [0, 1] and per-sample parameters of length
``N`` on the same device, and reproduces the per-image kernel the loader pipeline uses (torchvision's
functional kernels, see :mod:`monai_ilm.transforms.color` and :mod:`monai_ilm.transforms.spatial`)
for every sample at once: ``tests/transforms/test_batched_ops.py`` compares them image by image.
Plain tensor ops only (``conv2d``, ``affine_grid`` / ``grid_sample``), so they run on any device
torch supports and add no dependency (docs/method.md §3 lists the augmentations).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from monai_ilm.transforms.color import gaussian_kernel_size

__all__ = [
    "GREY_WEIGHTS",
    "adjust_hue",
    "blend",
    "blur_radius",
    "gaussian_blur",
    "grey",
    "resized_crop",
    "rotate",
    "to_device",
]

GREY_WEIGHTS = (0.2989, 0.587, 0.114)
"""The luma weights of torchvision's ``rgb_to_grayscale`` (used by its contrast, saturation and grayscale)."""


def to_device(values: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Copy host parameters to ``device`` without making the host wait for the device.

    A plain host-to-GPU copy blocks the host until every queued kernel has run, and the stage makes a
    few dozen such small copies a batch; a pinned, non-blocking copy lets the host keep queueing.
    """
    device = torch.device(device)
    if device.type == "cuda" and values.device.type == "cpu" and values.numel():
        return values.pin_memory().to(device, non_blocking=True)
    return values.to(device)


def _per_sample(values: torch.Tensor) -> torch.Tensor:
    return values.reshape(-1, 1, 1, 1)


def grey(images: torch.Tensor) -> torch.Tensor:
    """The ``(N, 1, H, W)`` luma of RGB images (the image itself when it has one channel)."""
    if images.shape[1] == 1:
        return images
    r, g, b = images.unbind(dim=1)
    return (r * GREY_WEIGHTS[0] + g * GREY_WEIGHTS[1] + b * GREY_WEIGHTS[2]).unsqueeze(1)


def blend(images: torch.Tensor, other: torch.Tensor | float, factors: torch.Tensor) -> torch.Tensor:
    """``clamp(f * image + (1 - f) * other, 0, 1)`` with one ``f`` per sample (torchvision's ``_blend``).

    Brightness blends with 0, contrast with the mean luma, saturation with the luma image.
    """
    factors = _per_sample(factors)
    return (images * factors + other * (1.0 - factors)).clamp_(0.0, 1.0)


def adjust_hue(images: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Rotate the HSV hue of RGB images by ``shifts`` (fractions of a turn, one per sample).

    The HSV round trip of torchvision's ``adjust_hue`` keeps each pixel's largest and smallest channel,
    so it is computed directly: the hue ``h`` as torchvision computes it, then each channel
    ``min + (max - min) * ramp(h + shift)`` with the piecewise-linear ramps of HSV-to-RGB (a third of the
    work of converting there and back; equal up to float rounding).
    """
    r, g, b = images.unbind(dim=1)
    high, _ = images.max(dim=1)
    low, _ = images.min(dim=1)
    spread = high - low
    divisor = torch.where(spread > 0, spread, torch.ones_like(spread))
    hue6 = torch.where(
        high == r, (g - b) / divisor, torch.where(high == g, (b - r) / divisor + 2.0, (r - g) / divisor + 4.0)
    )
    hue6 = torch.remainder(hue6 + 6.0 * shifts.reshape(-1, 1, 1), 6.0)  # [0, 6): the sector and the position in it
    red = (hue6 - 3.0).abs_().sub_(1.0).clamp_(0.0, 1.0)
    green = (hue6 - 2.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    blue = (hue6 - 4.0).abs_().neg_().add_(2.0).clamp_(0.0, 1.0)
    return torch.stack((red, green, blue), dim=1).mul_(spread.unsqueeze(1)).add_(low.unsqueeze(1))


def blur_radius(sigma: float, spatial_shape: tuple[int, int]) -> int:
    """Half the kernel size of :func:`monai_ilm.transforms.color.gaussian_kernel_size` for ``sigma``."""
    return gaussian_kernel_size(sigma, spatial_shape) // 2


def gaussian_blur(images: torch.Tensor, sigmas: torch.Tensor, radii: list[int]) -> torch.Tensor:
    """Blur each image with its own isotropic σ and kernel radius, reflection-padded (torchvision's kernel).

    One separable depthwise convolution serves the whole batch: every sample's kernel is padded with
    zero taps to the largest radius, which leaves its result unchanged.

    Args:
        images: ``(N, C, H, W)`` float images.
        sigmas: ``(N,)`` standard deviations in pixels.
        radii: the kernel radius of each sample (:func:`blur_radius`), known on the host.
    """
    n, c, height, width = images.shape
    radius = max(radii, default=0)
    if radius == 0:
        return images
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=images.dtype)
    limits = to_device(torch.tensor(radii, dtype=images.dtype), images.device).reshape(-1, 1)
    weights = torch.exp(-(offsets**2) / (2.0 * sigmas.to(images.dtype).reshape(-1, 1) ** 2))
    weights = torch.where(offsets.abs() <= limits, weights, torch.zeros_like(weights))
    weights = (weights / weights.sum(dim=1, keepdim=True)).repeat_interleave(c, dim=0)  # (N*C, K)
    x = F.pad(images.reshape(1, n * c, height, width), (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, weights.reshape(n * c, 1, 1, -1), groups=n * c)
    x = F.conv2d(x, weights.reshape(n * c, 1, -1, 1), groups=n * c)
    return x.reshape(n, c, height, width)


def rotate(images: torch.Tensor, degrees: torch.Tensor) -> torch.Tensor:
    """Turn each image counter-clockwise by its own angle about its centre: nearest neighbour, zero fill.

    Torchvision's and PIL's ``rotate`` (output the size of the input); the rotation is rigid in pixels
    (the normalised coordinates are rescaled by the aspect ratio).
    """
    height, width = images.shape[-2:]
    radians = torch.deg2rad(degrees.to(torch.float32))
    cos, sin = torch.cos(radians), torch.sin(radians)
    theta = torch.zeros(images.shape[0], 2, 3, dtype=torch.float32, device=images.device)
    theta[:, 0, 0], theta[:, 0, 1] = cos, -sin * height / width
    theta[:, 1, 0], theta[:, 1, 1] = sin * width / height, cos
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="nearest", padding_mode="zeros", align_corners=False)


def resized_crop(images: torch.Tensor, boxes: torch.Tensor, size: int) -> torch.Tensor:
    """Crop each image to its own ``(top, left, height, width)`` box and resize it bilinearly to ``size`` x ``size``.

    Output pixel centres land where torchvision's ``resized_crop`` samples them, and sampling is
    clamped to the box's outer pixel centres as a crop-then-resize clamps at the crop's edges. The
    boxes of the presets are never larger than the output, where torchvision's antialiasing does
    nothing; a box larger than the output would be resized without it.
    """
    height, width = images.shape[-2:]
    top, left, crop_h, crop_w = to_device(boxes.to(torch.float32), images.device).unbind(dim=1)
    theta = torch.zeros(images.shape[0], 2, 3, dtype=torch.float32, device=images.device)
    theta[:, 0, 0], theta[:, 0, 2] = crop_w / width, (2.0 * left + crop_w) / width - 1.0
    theta[:, 1, 1], theta[:, 1, 2] = crop_h / height, (2.0 * top + crop_h) / height - 1.0
    grid = F.affine_grid(theta.to(images.dtype), [images.shape[0], images.shape[1], size, size], align_corners=False)
    lower = torch.stack(((2.0 * left + 1.0) / width - 1.0, (2.0 * top + 1.0) / height - 1.0), dim=1)
    upper = torch.stack(
        ((2.0 * (left + crop_w) - 1.0) / width - 1.0, (2.0 * (top + crop_h) - 1.0) / height - 1.0), dim=1
    )
    grid = torch.maximum(torch.minimum(grid, upper[:, None, None].to(grid.dtype)), lower[:, None, None].to(grid.dtype))
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
