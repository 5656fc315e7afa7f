from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from monai_ilm.networks import MoCo, resnet_encoder
from tests.helpers import tiny_moco


def test_single_input_forward_is_pooled_query_representation():
    net = tiny_moco().eval()
    x = torch.rand(2, 3, 32, 32)
    assert net(x).shape == (2, 512)
    torch.testing.assert_close(net(x), net.encoder_q(x))


def test_two_view_forward_outputs():
    net = tiny_moco()
    out = net(torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32))
    assert out["query"].shape == out["key"].shape == (4, 16)
    assert out["query"].requires_grad and not out["key"].requires_grad
    assert [s.shape[1] for s in out["query_stages"]] == [64, 128, 256, 512]
    assert all(not s.requires_grad for s in out["key_stages"])


def test_key_encoder_starts_as_copy_and_is_frozen():
    net = tiny_moco()
    for q, k in zip(net.query_parameters(), net.key_parameters()):
        torch.testing.assert_close(q, k)
        assert q.requires_grad and not k.requires_grad
    assert net.queue.shape == (16, 32)
    torch.testing.assert_close(net.queue.norm(dim=0), torch.ones(32))


def test_momentum_update_is_ema_of_parameters_only():
    net = tiny_moco()
    with torch.no_grad():
        for p in net.query_parameters():
            p.add_(torch.randn_like(p))
    before_k = [p.clone() for p in net.key_parameters()]
    bn_before = net.encoder_k.net.bn1.running_mean.clone()
    net.momentum_update(0.9)
    for k_old, k_new, q in zip(before_k, net.key_parameters(), net.query_parameters()):
        torch.testing.assert_close(k_new, 0.9 * k_old + 0.1 * q)
    torch.testing.assert_close(net.encoder_k.net.bn1.running_mean, bn_before)
    with pytest.raises(ValueError, match="momentum"):
        net.momentum_update(1.5)


def test_enqueue_wraps_around():
    net = tiny_moco(queue_size=10)
    batches = [torch.randn(4, 16) for _ in range(3)]
    for keys in batches:
        net.enqueue(keys)
    assert net.queue_ptr.item() == 2  # 12 mod 10
    normalised = [F.normalize(b, dim=1).t() for b in batches]
    torch.testing.assert_close(net.queue[:, 2:4], normalised[0][:, 2:4])
    torch.testing.assert_close(net.queue[:, 4:8], normalised[1])
    torch.testing.assert_close(net.queue[:, 8:10], normalised[2][:, :2])
    torch.testing.assert_close(net.queue[:, 0:2], normalised[2][:, 2:])


def test_enqueue_reference_example():
    # docs/method.md §10.1: with ptr = 0, columns 0..3 <- normalised keys, ptr -> 4
    net = MoCo(resnet_encoder("resnet18"), embedding_dim=3, queue_size=8)
    k = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 1, 1]], dtype=torch.float32)
    net.enqueue(k)
    assert net.queue_ptr.item() == 4
    assert net.queue[:, 3].tolist() == pytest.approx([0.57735] * 3, abs=1e-5)


def test_symmetric_pairs_both_directions():
    net = tiny_moco(symmetric=True)
    x1, x2 = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    out = net(x1, x2)
    assert out["query"].shape == (8, 16)
    net.enqueue(out["key"])
    assert net.queue_ptr.item() == 4


def test_errors():
    net = tiny_moco(queue_size=4)
    with pytest.raises(ValueError, match="queue_size"):
        net.enqueue(torch.randn(5, 16))
    with pytest.raises(ValueError, match="keys"):
        net.enqueue(torch.randn(2, 3))
    with pytest.raises(ValueError, match="x1 and x2"):
        net(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 16, 16))
    with pytest.raises(ValueError, match="head"):
        MoCo(resnet_encoder("resnet18"), head="transformer")
    with pytest.raises(ValueError, match="encoder"):
        MoCo(torch.nn.Linear(2, 2))
