"""The batched volume kernels compute, sample by sample, what the volume preset's MONAI transforms compute.

MONAI is the reference: each kernel's batch is compared volume by volume with the MONAI transform given the
same parameters. Tolerances are float32 rounding: the kernels and MONAI compute the sampling coordinates in
different orders (a few ulp of a coordinate, times a voxel-to-voxel difference below 1), far below one uint8
step (1/255 = 3.9e-3), and far below what a wrong parameter or a transposed axis gives (checked alongside).
"""

from __future__ import annotations

import math

import pytest
import torch
from monai.transforms import AdjustContrast, Affine, AffineGrid, GaussianSmooth, RandAffined, Resized

from monai_ilm.transforms import batched_ops_3d as ops3d

SHAPE = (12, 14, 16)  # not a cube: the axes cannot be confused unseen
TOLERANCE = 1e-5


def _volumes(n: int = 4, seed: int = 0) -> torch.Tensor:
    """Smooth random float volumes in [0, 1]."""
    coarse = torch.rand(n, 1, 4, 5, 6, generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.interpolate(coarse, size=SHAPE, mode="trilinear", align_corners=False)


def _difference(a, b) -> float:
    return float((torch.as_tensor(a) - torch.as_tensor(b)).abs().max())


def test_resized_crop_equals_monai_crop_then_resized():
    volumes = _volumes()
    boxes = torch.tensor([[1, 2, 3, 9, 10, 13], [0, 0, 0, 12, 14, 16], [3, 4, 0, 9, 10, 16], [2, 0, 1, 10, 14, 12]])
    out = ops3d.resized_crop_3d(volumes, boxes, SHAPE)
    resize = Resized("image", spatial_size=SHAPE, mode="trilinear")
    for volume, box, mine in zip(volumes, boxes.tolist(), out):
        crop = volume[:, box[0] : box[0] + box[3], box[1] : box[1] + box[4], box[2] : box[2] + box[5]]
        assert _difference(mine, resize({"image": crop})["image"]) < TOLERANCE
    shifted = ops3d.resized_crop_3d(volumes[:1], boxes[:1] + torch.tensor([[1, 0, 0, 0, 0, 0]]), SHAPE)
    assert _difference(shifted, out[:1]) > 1e-2  # a box one voxel off is seen


def test_rotation_scale_matrices_equal_monais_affine():
    angles = torch.tensor([[0.2, -0.1, 0.25], [0.0, 0.3, 0.0], [-0.26, 0.0, 0.1]], dtype=torch.float64)
    scales = torch.tensor([[1.1, 0.9, 1.0], [0.86, 1.14, 1.0], [1.0, 1.0, 0.87]], dtype=torch.float64)
    mine = ops3d.rotation_scale_matrices(angles, scales)
    for a, s, m in zip(angles.tolist(), scales.tolist(), mine):
        _, reference = AffineGrid(rotate_params=a, scale_params=s)(SHAPE)
        assert torch.allclose(m, reference[:3, :3].double(), atol=1e-6)  # MONAI builds it in float32


def test_affine_equals_monai_rand_affine_volume_by_volume():
    volumes = _volumes()
    step = RandAffined(
        "image", prob=1.0, rotate_range=(math.pi / 12,) * 3, scale_range=(0.15,) * 3, padding_mode="zeros"
    )
    matrices, expected = [], []
    for i, volume in enumerate(volumes):
        expected.append(step.set_random_state(i)({"image": volume})["image"])
        matrices.append(step.rand_affine.rand_affine_grid.get_transformation_matrix()[:3, :3].double())
    out = ops3d.affine_3d(volumes, torch.stack(matrices))
    for mine, reference in zip(out, expected):
        assert _difference(mine, reference) < TOLERANCE
    transposed = ops3d.affine_3d(volumes[:1], matrices[0].T[None])
    assert _difference(transposed[0], expected[0]) > 1e-2  # the inverse rotation is seen


def test_affine_identity_and_fixed_parameters_equal_monai():
    volumes = _volumes(1)
    reference = Affine(
        rotate_params=(0.0, 0.2, 0.0), scale_params=(1.1, 1.0, 0.9), padding_mode="zeros", image_only=True
    )
    matrix = ops3d.rotation_scale_matrices(torch.tensor([[0.0, 0.2, 0.0]]), torch.tensor([[1.1, 1.0, 0.9]]))
    assert _difference(ops3d.affine_3d(volumes, matrix)[0], reference(volumes[0])) < TOLERANCE
    identity = ops3d.affine_3d(volumes, torch.eye(3, dtype=torch.float64)[None])
    assert _difference(identity, volumes) < 1e-6


def test_gaussian_smooth_equals_monai_per_axis_sigma():
    volumes = _volumes()
    sigmas = torch.tensor([[0.25, 0.6, 1.0], [1.0, 0.3, 0.7], [0.5, 0.5, 0.5], [0.9, 0.26, 0.4]], dtype=torch.float64)
    out = ops3d.gaussian_smooth_3d(volumes, sigmas)
    for volume, sigma, mine in zip(volumes, sigmas.tolist(), out):
        assert _difference(mine, GaussianSmooth(sigma=sigma)(volume)) < TOLERANCE
    swapped = ops3d.gaussian_smooth_3d(volumes[:1], sigmas[:1].flip(-1))
    assert _difference(swapped[0], out[0]) > 1e-3  # the axes' order is seen


@pytest.mark.parametrize("sigma, tail", [(0.1, 1), (0.25, 1), (0.4, 2), (1.0, 4), (2.0, 8)])
def test_erf_kernel_tail_is_monais(sigma, tail):
    # monai.networks.layers.convutils.gaussian_1d: tail = int(max(sigma * truncated, 0.5) + 0.5), truncated = 4
    assert ops3d.erf_kernel_tail(sigma) == tail


def test_adjust_gamma_equals_monai():
    volumes = _volumes() * 0.8 + 0.1  # min and max inside (0, 1): the per-volume range matters
    gammas = torch.tensor([0.7, 1.0, 1.3, 1.5])
    out = ops3d.adjust_gamma(volumes, gammas)
    for volume, gamma, mine in zip(volumes, gammas.tolist(), out):
        assert _difference(mine, AdjustContrast(gamma)(volume)) < 1e-6
