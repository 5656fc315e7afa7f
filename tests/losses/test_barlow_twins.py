from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from monai_ilm.losses import IntermediateBarlowTwinsLoss, barlow_twins_loss

# docs/method.md §10.3
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


def _reference_full_module_value() -> float:
    """docs/method.md §5.2 and §10.3 evaluated in float64 with NumPy: projector, standardisation, C and both sums."""

    def standardise(x):  # BatchNorm in train mode (affine at γ = 1, β = 0, or affine-free): biased var, ε = 1e-5
        return (x - x.mean(0)) / np.sqrt(x.var(0) + 1e-5)

    def weight(out_dim, in_dim):
        return np.cos(np.arange(out_dim * in_dim, dtype=np.float64)).reshape(out_dim, in_dim) / math.sqrt(in_dim)

    w1, w2, w3 = weight(2048, 8), weight(2048, 2048), weight(2048, 2048)

    def project(y):
        return np.maximum(standardise(np.maximum(standardise(y @ w1.T), 0) @ w2.T), 0) @ w3.T

    y1 = np.sin(np.arange(32, dtype=np.float64)).reshape(4, 8)
    y2 = np.cos(0.7 * np.arange(32, dtype=np.float64)).reshape(4, 8)
    c = standardise(project(y1)).T @ standardise(project(y2)) / 4
    diagonal = np.diag(c)
    return 5e-5 / 32 * (((1 - diagonal) ** 2).sum() + (c**2).sum() - (diagonal**2).sum())


def test_reference_full_module_value():
    loss = IntermediateBarlowTwinsLoss(in_channels=[8])
    with torch.no_grad():
        for layer in loss.projectors[0]:
            if isinstance(layer, torch.nn.Linear):
                out_dim, in_dim = layer.weight.shape
                layer.weight.copy_(
                    torch.cos(torch.arange(out_dim * in_dim, dtype=torch.float32)).reshape(out_dim, in_dim)
                    / math.sqrt(in_dim)
                )
    y1 = torch.sin(torch.arange(32, dtype=torch.float32)).reshape(4, 8)
    y2 = torch.cos(0.7 * torch.arange(32, dtype=torch.float32)).reshape(4, 8)
    expected = _reference_full_module_value()
    assert expected == pytest.approx(1.6760353, rel=1e-7)  # the float64 value, as a guard on the reference itself
    # The value is ill-conditioned (BatchNorm over 4 samples, 2048-wide sums): perturbing the float64 weights by
    # float32's relative rounding (6e-8) moves it by up to 4e-5 relative, and float32 runs differ by that much
    # between CPUs and thread counts (1.6760287 to 1.6760739 seen). rel=2e-4 covers float32 on any CPU or BLAS;
    # a wrong ε (0 instead of 1e-5) moves the value by 5e-2 and an unbiased variance by 4e-1.
    assert loss([y1], [y2]).item() == pytest.approx(expected, rel=2e-4)


def test_projector_shape_matches_reference_parameter_count():
    loss = IntermediateBarlowTwinsLoss()
    counts = [sum(p.numel() for p in projector.parameters()) for projector in loss.projectors]
    # docs/method.md §5.2: 8.9M / 9.4M / 10.5M / 12.6M
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
    assert loss([maps1], [maps2]).item() == pytest.approx(
        loss([maps1.mean((2, 3))], [maps2.mean((2, 3))]).item(), rel=1e-6
    )


def test_errors():
    with pytest.raises(ValueError, match="z1 and z2: expected batches of at least 2 samples"):
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


def _identity_loss(**kwargs) -> IntermediateBarlowTwinsLoss:
    """One 3-d layer whose projector is the identity, so the loss sees its inputs as they are."""
    loss = IntermediateBarlowTwinsLoss(
        in_channels=[3], weights=1.0, scale=1.0, offdiag_weight=5e-3, projector_dims=[3], **kwargs
    )
    with torch.no_grad():
        loss.projectors[0][0].weight.copy_(torch.eye(3))
    return loss


def _reference_loss(bn: torch.nn.BatchNorm1d, z1: torch.Tensor, z2: torch.Tensor) -> torch.Tensor:
    """The reference's formula: C = bn(z1)ᵀ bn(z2) / N with BatchNorm1d(affine=False), z1 standardised first."""
    c = bn(z1).t() @ bn(z2) / z1.shape[0]
    on = (1 - torch.diagonal(c)).pow(2).sum()
    return on + 5e-3 * (c.pow(2).sum() - torch.diagonal(c).pow(2).sum())


def test_output_standardisation_is_batch_norm_without_affine_in_train_and_eval_mode():
    g = torch.Generator().manual_seed(0)
    loss, bn = _identity_loss(), torch.nn.BatchNorm1d(3, affine=False)
    for step in range(3):  # training: batch statistics, running statistics tracked (z1 first, then z2)
        z1, z2 = torch.randn(8, 3, generator=g) * 2 + 1, torch.randn(8, 3, generator=g) - 3
        assert loss([z1], [z2]).item() == pytest.approx(_reference_loss(bn, z1, z2).item(), rel=1e-5), step
    loss.eval(), bn.eval()
    z1, z2 = torch.randn(5, 3, generator=g), torch.randn(5, 3, generator=g) + 2
    with torch.no_grad():  # validation: the running statistics, left unchanged
        assert loss([z1], [z2]).item() == pytest.approx(_reference_loss(bn, z1, z2).item(), rel=1e-5)
        assert loss([z1], [z2]).item() != pytest.approx(barlow_twins_loss(z1, z2, 1.0, 5e-3).item(), rel=1e-3)
    norm = loss.norms[0]
    torch.testing.assert_close(norm.running_mean, bn.running_mean, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(norm.running_var, bn.running_var, rtol=1e-6, atol=1e-6)
    assert int(norm.num_batches_tracked) == int(bn.num_batches_tracked) == 6


def test_checkpoint_without_running_statistics_loads_and_validates_with_batch_statistics():
    old = _identity_loss()
    state = {k: v for k, v in old.state_dict().items() if not k.startswith("norms.")}  # written before tracking
    loss = _identity_loss()
    loss([torch.randn(6, 3)], [torch.randn(6, 3)])  # stale statistics that the load must reset
    with pytest.warns(UserWarning, match="no running statistics"):
        loss.load_state_dict(state)
    assert int(loss.norms[0].num_batches_tracked) == 0
    z1, z2 = torch.randn(6, 3), torch.randn(6, 3)
    loss.eval()
    assert loss([z1], [z2]).item() == pytest.approx(barlow_twins_loss(z1, z2, 1.0, 5e-3).item(), rel=1e-6)
    assert (
        IntermediateBarlowTwinsLoss(in_channels=[3], projector_dims=[3]).state_dict().keys() == old.state_dict().keys()
    )
