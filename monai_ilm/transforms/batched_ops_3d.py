"""Batched volume kernels with parameters per sample, for the 3D device augmentation stage.

Each function takes a float batch ``(N, C, D, H, W)`` and per-sample parameters, and computes for
every sample at once what the ``volume`` preset's MONAI transform computes for one volume
(:func:`monai_ilm.transforms.presets.pretrain_transforms` with ``"volume"``):

* :func:`resized_crop_3d`: ``RandScaleCropd`` then ``Resized(mode="trilinear")``;
* :func:`affine_3d`: ``RandAffined`` (rotation and scaling about the centre, trilinear, zero padding);
* :func:`gaussian_smooth_3d`: ``RandGaussianSmoothd`` (MONAI's ``erf`` kernel, one σ per axis, zero padding);
* :func:`adjust_gamma`: ``RandAdjustContrastd`` (gamma on the volume's own min-max range).

``tests/transforms/test_batched_ops_3d.py`` compares them with MONAI volume by volume. Plain tensor
ops only (``affine_grid`` / ``grid_sample``, ``conv3d``), so they run on any device torch supports.
Spatial axes are in tensor order ``(D, H, W)``, MONAI's spatial axes 0, 1, 2; ``grid_sample`` orders
its coordinates the other way round ``(W, H, D)``, which :func:`_grid_theta` takes care of.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from monai_ilm.transforms.batched_ops import to_device

__all__ = [
    "adjust_gamma",
    "affine_3d",
    "erf_kernel_tail",
    "gaussian_smooth_3d",
    "resized_crop_3d",
    "rotation_scale_matrices",
]

_GAMMA_EPSILON = 1e-7  # MONAI's AdjustContrast divides by (max - min + 1e-7)


def _grid_theta(matrices: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """``affine_grid``'s ``(N, 3, 4)`` theta from a linear map and offsets in ``(D, H, W)`` order."""
    theta = torch.cat((matrices, offsets.unsqueeze(-1)), dim=-1)  # rows and columns in (D, H, W) order
    return theta[:, [2, 1, 0]][:, :, [2, 1, 0, 3]]  # grid_sample's (x, y, z) is (W, H, D)


def resized_crop_3d(images: torch.Tensor, boxes: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Crop each volume to its own box and resize it trilinearly to ``size``, like MONAI's crop then ``Resized``.

    ``Resized`` (``F.interpolate``, ``align_corners=False``) samples output voxel ``i`` of a crop of
    ``s`` voxels starting at ``a`` at ``a + (i + 0.5) s / S - 0.5``, clamped to the crop's first and last
    voxel centres; this is the same map in ``grid_sample``'s normalised coordinates, with the same clamp.

    Args:
        images: ``(N, C, D, H, W)`` float volumes.
        boxes: ``(N, 6)`` integer boxes ``(start_d, start_h, start_w, size_d, size_h, size_w)`` in voxels.
        size: the output's ``(D, H, W)``.
    """
    shape = torch.tensor(images.shape[2:], dtype=torch.float64)
    boxes = boxes.to(torch.float64)
    start, extent = boxes[:, :3], boxes[:, 3:]
    scale = extent / shape
    centre = (2.0 * start + extent) / shape - 1.0
    lower = (2.0 * start + 1.0) / shape - 1.0  # the box's outer voxel centres, normalised
    upper = (2.0 * (start + extent) - 1.0) / shape - 1.0
    theta = _grid_theta(torch.diag_embed(scale), centre)
    n, c = images.shape[:2]
    theta = to_device(theta.to(images.dtype), images.device)
    grid = F.affine_grid(theta, [n, c, *(int(s) for s in size)], align_corners=False)
    lower, upper = (
        to_device(v.flip(-1).to(images.dtype), images.device).reshape(n, 1, 1, 1, 3) for v in (lower, upper)
    )
    grid = torch.maximum(torch.minimum(grid, upper), lower)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)


def rotation_scale_matrices(angles: torch.Tensor, scales: torch.Tensor) -> torch.Tensor:
    """MONAI's ``RandAffine`` matrices ``Rx(a0) Ry(a1) Rz(a2) diag(scales)`` (intrinsic ``"XYZ"``), one per sample.

    Rotation about axis 0 turns the plane of axes 1 and 2, and so on, with the signs of
    ``monai.transforms.utils.create_rotate``; the matrix maps an output voxel's centred coordinates to
    where it samples the input.

    Args:
        angles: ``(N, 3)`` radians about spatial axes 0, 1, 2.
        scales: ``(N, 3)`` scale factors along spatial axes 0, 1, 2.
    """
    angles = angles.to(torch.float64)
    cos, sin = torch.cos(angles), torch.sin(angles)
    n = angles.shape[0]
    rotations = []
    for axis in range(3):
        first, second = [a for a in range(3) if a != axis]  # the turned plane
        r = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        sign = -1.0 if axis == 1 else 1.0  # create_rotate's y rotation has +sin above the diagonal
        r[:, first, first], r[:, second, second] = cos[:, axis], cos[:, axis]
        r[:, first, second], r[:, second, first] = -sign * sin[:, axis], sign * sin[:, axis]
        rotations.append(r)
    return rotations[0] @ rotations[1] @ rotations[2] @ torch.diag_embed(scales.to(torch.float64))


def affine_3d(images: torch.Tensor, matrices: torch.Tensor) -> torch.Tensor:
    """Resample each volume through its own linear map about the centre: trilinear, zero outside, same size.

    MONAI's ``Resample`` samples output voxel ``c`` (centred voxel coordinates) at ``M c`` and
    normalises by ``2 / size`` per axis; in ``grid_sample``'s coordinates that is ``M_ij size_j / size_i``.

    Args:
        images: ``(N, C, D, H, W)`` float volumes.
        matrices: ``(N, 3, 3)`` maps in spatial-axis order (:func:`rotation_scale_matrices`).
    """
    shape = torch.tensor(images.shape[2:], dtype=torch.float64)
    normalised = matrices.to(torch.float64) * shape.reshape(1, 1, 3) / shape.reshape(1, 3, 1)
    theta = _grid_theta(normalised, torch.zeros(matrices.shape[0], 3, dtype=torch.float64))
    theta = to_device(theta.to(images.dtype), images.device)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def erf_kernel_tail(sigma: float, truncated: float = 4.0) -> int:
    """Half-width of MONAI's Gaussian kernel for ``sigma`` (``monai.networks.layers.gaussian_1d``)."""
    return int(max(float(sigma) * truncated, 0.5) + 0.5)


def _erf_kernels(sigmas: torch.Tensor, tails: torch.Tensor, radius: int) -> torch.Tensor:
    """``(N, 2 radius + 1)`` unnormalised ``erf`` kernels (the mass of N(0, σ²) on each voxel), zero beyond each
    tail."""
    offsets = torch.arange(-radius, radius + 1, dtype=sigmas.dtype, device=sigmas.device)
    t = (1.0 / (math.sqrt(2.0) * sigmas.abs())).unsqueeze(1)
    weights = (0.5 * (torch.erf(t * (offsets + 0.5)) - torch.erf(t * (offsets - 0.5)))).clamp_(min=0.0)
    return torch.where(offsets.abs() <= tails.to(sigmas.dtype).unsqueeze(1), weights, torch.zeros_like(weights))


def gaussian_smooth_3d(images: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """Smooth each volume with its own σ per axis: MONAI's separable ``erf`` kernel, zero padding, unnormalised.

    One depthwise convolution per axis serves the batch: every sample's kernel is padded with zero taps
    to the largest tail on that axis, which leaves its result unchanged under zero padding.

    Args:
        images: ``(N, C, D, H, W)`` float volumes.
        sigmas: ``(N, 3)`` standard deviations in voxels along ``(D, H, W)`` (on the host).
    """
    n, c = images.shape[:2]
    tails = torch.tensor([[erf_kernel_tail(s) for s in row] for row in sigmas.tolist()], dtype=torch.int64)
    x = images.reshape(1, n * c, *images.shape[2:])
    for axis in range(3):
        radius = int(tails[:, axis].max()) if n else 0
        weights = _erf_kernels(sigmas[:, axis].to(torch.float64), tails[:, axis], radius)
        weights = to_device(weights.to(images.dtype), images.device).repeat_interleave(c, dim=0)
        shape = [n * c, 1, 1, 1, 1]
        shape[2 + axis] = 2 * radius + 1
        padding = [0, 0, 0]
        padding[axis] = radius
        x = F.conv3d(x, weights.reshape(shape), padding=tuple(padding), groups=n * c)
    return x.reshape(images.shape)


def adjust_gamma(images: torch.Tensor, gammas: torch.Tensor) -> torch.Tensor:
    """``((x - min) / (max - min + 1e-7)) ** gamma * (max - min) + min`` per volume, min and max over the volume.

    Args:
        images: ``(N, C, D, H, W)`` float volumes.
        gammas: ``(N,)`` exponents (on the host or the volumes' device).
    """
    low = images.amin(dim=(1, 2, 3, 4), keepdim=True)
    spread = images.amax(dim=(1, 2, 3, 4), keepdim=True) - low
    gammas = to_device(gammas.to(images.dtype), images.device).reshape(-1, 1, 1, 1, 1)
    return ((images - low) / (spread + _GAMMA_EPSILON)).pow(gammas) * spread + low
