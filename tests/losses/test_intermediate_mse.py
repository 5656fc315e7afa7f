from __future__ import annotations

import pytest
import torch

from monai_ilm.losses import IntermediateMSELoss, pool_to


def reference_inputs():
    # docs/method.md §10.2
    a = [
        torch.arange(2 * 256 * 16 * 16, dtype=torch.float32).reshape(2, 256, 16, 16) / 1e5,
        torch.ones(2, 512, 16, 16),
        2 * torch.ones(2, 1024, 4, 4),
        torch.zeros(2, 2048, 4, 4),
    ]
    b = [
        torch.zeros(2, 256, 16, 16),
        torch.zeros(2, 512, 16, 16),
        torch.ones(2, 1024, 4, 4),
        0.5 * torch.ones(2, 2048, 4, 4),
    ]
    return a, b


def test_reference_values():
    a, b = reference_inputs()
    loss = IntermediateMSELoss()
    terms = [t.item() for t in loss.layer_losses(a, b)]
    # stage 1 in closed form: 0.25 · mean((i / 1e5)²) over i < n = 0.25 · (n − 1)(2n − 1) / (6 · 1e10) ≈ 0.14316394
    n = 2 * 256 * 16 * 16
    stage1 = 0.25 * (n - 1) * (2 * n - 1) / 6 / 1e10
    # float32 sums 131072 squares: the error bound of its blocked summation is ~log2(n) · 6e-8 ≈ 1e-6 relative,
    # whatever the CPU's SIMD width or thread count; rel=2e-6 allows that, a wrong mean or pooling moves it by > 1e-2
    assert terms == pytest.approx([stage1, 0.25, 0.25, 0.0625], rel=2e-6)
    assert loss(a, b).item() == pytest.approx(stage1 + 0.5625, rel=2e-6)


def test_pooling_is_exact_block_mean_when_divisible():
    x = torch.rand(2, 3, 128, 128)
    expected = x.reshape(2, 3, 16, 8, 16, 8).mean(dim=(3, 5))
    torch.testing.assert_close(pool_to(x, 16), expected)


def test_pooling_overlapping_bins_75_to_16():
    # adaptive bins are [floor(i*75/16), ceil((i+1)*75/16)): they overlap for 75 -> 16
    x = torch.rand(1, 1, 75, 75)
    pooled = pool_to(x, 16)
    i, j = 3, 7
    rows = slice((i * 75) // 16, -((-(i + 1) * 75) // 16))
    cols = slice((j * 75) // 16, -((-(j + 1) * 75) // 16))
    assert pooled[0, 0, i, j].item() == pytest.approx(x[0, 0, rows, cols].mean().item(), rel=1e-6)


def test_global_pooling_variant_and_3d():
    loss = IntermediateMSELoss(weights=1.0, pool_sizes=1, num_layers=1)
    q, k = torch.rand(2, 4, 6, 6, 6), torch.rand(2, 4, 6, 6, 6)
    expected = ((q.mean(dim=(2, 3, 4)) - k.mean(dim=(2, 3, 4))) ** 2).mean()
    assert loss([q], [k]).item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_pooling():
    q, k = torch.rand(2, 3, 5, 5), torch.rand(2, 3, 5, 5)
    loss = IntermediateMSELoss(weights=[2.0], pool_sizes=[None])
    assert loss([q], [k]).item() == pytest.approx(2 * ((q - k) ** 2).mean().item(), rel=1e-6)


def test_errors():
    with pytest.raises(ValueError, match="pool_sizes"):
        IntermediateMSELoss(weights=(1, 1), pool_sizes=(1, 1, 1))
    loss = IntermediateMSELoss()
    a, b = reference_inputs()
    with pytest.raises(ValueError, match="q_feats and k_feats"):
        loss(a[:3], b[:3])
    with pytest.raises(ValueError, match=r"q_feats\[1\]"):
        loss(a, [b[0], b[1][:, :10], b[2], b[3]])
