from __future__ import annotations

import math

import pytest
import torch

from monai_ilm.losses import InfoNCELoss

# docs/method.md §10.1
Q = torch.tensor([[1, 0, 0], [0, 2, 0], [0, 0, 3], [1, 1, 0]], dtype=torch.float64)
K = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float64)
QUEUE = torch.tensor(
    [[1, 0, 0, 1, 0, 1, 1, -1], [0, 1, 0, 1, 1, 0, 1, 0], [0, 0, 1, 0, 1, 1, 1, 0]], dtype=torch.float64
)
QUEUE = QUEUE / QUEUE.norm(dim=0, keepdim=True)


# docs/method.md §10.1: L in float64. Evaluated in float32, each logit (up to 1/T ≈ 14.3) carries a rounding error
# of a few float32 ulps (~1e-6 absolute), which the log-sum-exp passes on unamplified: up to ~1e-6 relative in L on
# any CPU. rel=5e-6 allows that; a wrong temperature, a missing normalisation or the wrong positive moves L by > 1e-2.
REFERENCE_LOSS = 4.630437877822105
REFERENCE_REL = 5e-6


def test_reference_value_float32():
    loss = InfoNCELoss(0.07)(Q.float(), K.float(), QUEUE.float())
    assert loss.item() == pytest.approx(REFERENCE_LOSS, rel=REFERENCE_REL)


def test_reference_logits_row0():
    logits = InfoNCELoss(0.07).logits(Q, K, QUEUE)
    expected = [14.2857, 14.2857, 0, 0, 10.10153, 0, 10.10153, 8.24786, -14.2857]
    assert logits[0].tolist() == pytest.approx(expected, abs=1e-4)


def test_matches_closed_form_per_sample():
    # closed form: -l0 + log sum exp l, with the reference's per-sample values
    logits = InfoNCELoss(0.07).logits(Q, K, QUEUE).double()
    per_sample = [-row[0].item() + math.log(sum(math.exp(v) for v in row.tolist())) for row in logits]
    assert per_sample == pytest.approx([0.7094, 0.7094, 14.3180, 2.7848], abs=1e-4)


def test_scale_invariance_of_inputs():
    loss = InfoNCELoss()
    assert loss(3 * Q.float(), 0.5 * K.float(), QUEUE.float()).item() == pytest.approx(
        REFERENCE_LOSS, rel=REFERENCE_REL
    )


@pytest.mark.parametrize(
    "q, k, queue",
    [(Q, K[:3], QUEUE), (Q, K, QUEUE[:2]), (Q[0], K[0], QUEUE)],
)
def test_shape_errors(q, k, queue):
    with pytest.raises(ValueError, match="q and k|queue"):
        InfoNCELoss()(q, k, queue)


def test_bad_temperature():
    with pytest.raises(ValueError, match="temperature"):
        InfoNCELoss(0.0)


def test_logits_stay_float32_under_autocast():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(8, 16, generator=g), torch.randn(8, 16, generator=g)
    queue = torch.nn.functional.normalize(torch.randn(16, 4096, generator=g), dim=0)
    expected = InfoNCELoss()(q, k, queue)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = InfoNCELoss()(q, k, queue)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)
