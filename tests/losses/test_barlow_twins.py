from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_ilm.losses import IntermediateBarlowTwinsLoss, barlow_twins_loss

# method_spec §10.3
Z1 = torch.tensor([[1, 2, 0], [0, 1, 1], [2, 0, 1], [1, 1, 3]], dtype=torch.float32)
Z2 = torch.tensor([[1, 1, 0], [0, 2, 1], [3, 0, 0], [1, 0, 2]], dtype=torch.float32)
LAMBDA = 5e-5 / 32


def test_reference_core_value():
    assert barlow_twins_loss(Z1, Z2, LAMBDA, LAMBDA).item() == pytest.approx(2.98001e-06, rel=1e-5)


def test_on_and_off_diagonal_parts_against_numpy():
    # an independent NumPy computation of the cross-correlation, checked against the spec's C matrix
    def standardise(z):
        return (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5)

    c = standardise(Z1.numpy().astype(np.float64)).T @ standardise(Z2.numpy().astype(np.float64)) / 4
    assert c[0].tolist() == pytest.approx([0.973315, -0.852788, -0.426394], abs=1e-5)
    on = ((1 - np.diag(c)) ** 2).sum()
    off = (c**2).sum() - (np.diag(c) ** 2).sum()
    assert (on, off) == pytest.approx((0.33989280, 1.56731415), rel=1e-5)
    assert barlow_twins_loss(Z1, Z2, 1.0, 0.0).item() == pytest.approx(on, rel=1e-5)
    assert barlow_twins_loss(Z1, Z2, 0.0, 1.0).item() == pytest.approx(off, rel=1e-5)


def test_reference_full_module_value():
    loss = IntermediateBarlowTwinsLoss(in_channels=[8])
    with torch.no_grad():
        for layer in loss.projectors[0]:
            if isinstance(layer, torch.nn.Linear):
                out_dim, in_dim = layer.weight.shape
                layer.weight.copy_(torch.cos(torch.arange(out_dim * in_dim, dtype=torch.float32)).reshape(out_dim, in_dim) / math.sqrt(in_dim))
    y1 = torch.sin(torch.arange(32, dtype=torch.float32)).reshape(4, 8)
    y2 = torch.cos(0.7 * torch.arange(32, dtype=torch.float32)).reshape(4, 8)
    assert loss([y1], [y2]).item() == pytest.approx(1.6760619, rel=1e-6)


def test_projector_shape_matches_reference_parameter_count():
    loss = IntermediateBarlowTwinsLoss()
    counts = [sum(p.numel() for p in projector.parameters()) for projector in loss.projectors]
    # method_spec §5.2: 8.9M / 9.4M / 10.5M / 12.6M
    assert [round(c / 1e6, 1) for c in counts] == [8.9, 9.4, 10.5, 12.6]


def test_standard_weighting_is_one_argument_away():
    loss = IntermediateBarlowTwinsLoss(in_channels=[3], weights=1.0, scale=1.0, offdiag_weight=5e-3, projector_dims=[3])
    with torch.no_grad():
        loss.projectors[0][0].weight.copy_(torch.eye(3))
    expected = barlow_twins_loss(Z1, Z2, 1.0, 5e-3)
    assert loss([Z1], [Z2]).item() == pytest.approx(expected.item(), rel=1e-6)


def test_feature_maps_are_globally_pooled():
    loss = IntermediateBarlowTwinsLoss(in_channels=[3], projector_dims=[3])
    maps1, maps2 = torch.rand(4, 3, 5, 5), torch.rand(4, 3, 5, 5)
    assert loss([maps1], [maps2]).item() == pytest.approx(loss([maps1.mean((2, 3))], [maps2.mean((2, 3))]).item(), rel=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="batch size"):
        barlow_twins_loss(Z1[:1], Z2[:1])
    with pytest.raises(ValueError, match="z1 and z2"):
        barlow_twins_loss(Z1, Z2[:, :2])
    with pytest.raises(ValueError, match="weights"):
        IntermediateBarlowTwinsLoss(in_channels=[8, 16], weights=[1.0])
    with pytest.raises(ValueError, match=r"in_channels\[0\]"):
        IntermediateBarlowTwinsLoss(in_channels=[8], projector_dims=[4])([torch.rand(4, 5)], [torch.rand(4, 5)])


def test_cross_correlation_stays_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    z1, z2 = torch.randn(16, 64, generator=g), torch.randn(16, 64, generator=g)
    expected = barlow_twins_loss(z1, z2, 1.0, 5e-3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = barlow_twins_loss(z1, z2, 1.0, 5e-3)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
