"""Representation health: closed forms, scipy references, the collapse stop, and training left bitwise unchanged."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist
from scipy.stats import entropy

from monai_ilm.engines import MoCoTrainer
from monai_ilm.handlers import (
    MomentumUpdateHandler,
    OnlineKNNHandler,
    RepresentationCollapseError,
    RepresentationHealthHandler,
)
from monai_ilm.handlers.representation_health import alignment, effective_rank, embedding_std, uniformity
from tests.helpers import pattern_batches, tiny_moco


def test_effective_rank_closed_forms():
    g = torch.Generator().manual_seed(0)
    rank_one = torch.randn(200, 1, generator=g) * torch.randn(1, 32, generator=g)
    assert effective_rank(rank_one) == pytest.approx(1.0, abs=1e-3)
    isotropic = torch.randn(20000, 16, generator=g)  # n >> d: the 16 singular values are nearly equal
    assert 15.8 < effective_rank(isotropic) <= 16.0
    x = torch.randn(50, 10, generator=g) @ torch.diag(torch.linspace(0.1, 3.0, 10))
    centred = (x - x.mean(0)).double().numpy()
    expected = np.exp(entropy(np.linalg.svd(centred, compute_uv=False)))  # scipy normalises the spectrum
    assert effective_rank(x) == pytest.approx(expected, rel=1e-4)


def test_std_alignment_uniformity_closed_forms():
    g = torch.Generator().manual_seed(1)
    collapsed = torch.randn(1, 64, generator=g).repeat(100, 1)
    assert embedding_std(collapsed) == pytest.approx(0.0, abs=1e-6)
    assert uniformity(collapsed) == pytest.approx(0.0, abs=1e-6)
    assert embedding_std(torch.randn(5000, 64, generator=g)) == pytest.approx(1 / 8, rel=0.02)  # 1/sqrt(d)
    x = torch.randn(30, 8, generator=g)
    assert alignment(x, 3 * x) == pytest.approx(0.0, abs=1e-6)  # normalised first
    assert alignment(x, -x) == pytest.approx(4.0)
    assert uniformity(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])) == pytest.approx(-8.0)  # log exp(-2 * 2²)
    unit = (x / x.norm(dim=1, keepdim=True)).double().numpy()
    assert uniformity(x) == pytest.approx(np.log(np.mean(np.exp(-2 * pdist(unit, "sqeuclidean")))), rel=1e-5)


def _fake_engine(query: torch.Tensor, epoch: int = 1) -> SimpleNamespace:
    stages = [torch.randn(len(query), c, 2, 2) for c in (64, 128, 256, 512)]
    pred = {"query": query, "key": query + 0.01, "query_stages": stages}
    state = SimpleNamespace(output={"pred": pred}, iteration=epoch, epoch=epoch, epoch_length=1, metrics={})
    return SimpleNamespace(network=tiny_moco(queue_size=8), state=state)


def test_collapse_stops_after_patience_with_a_clear_message():
    handler = RepresentationHealthHandler(samples=64, collapse_rank=2.0, collapse_patience=2)
    rank_one = torch.randn(64, 1) * torch.randn(1, 16)
    engine = _fake_engine(torch.randn(64, 16))
    handler.collect(engine)
    handler(engine)  # healthy
    assert set(engine.state.metrics) == {
        "health/effective_rank",
        "health/embedding_std",
        "health/alignment",
        "health/uniformity",
        "health/effective_rank_layer1",
        "health/effective_rank_layer2",
        "health/effective_rank_layer3",
        "health/effective_rank_layer4",
    }
    for epoch in (2, 3):
        engine = _fake_engine(rank_one, epoch)
        handler.collect(engine)
        if epoch == 2:
            handler(engine)
            continue
        with pytest.raises(
            RepresentationCollapseError,
            match=r"health/effective_rank: expected at least collapse_rank = 2\.0 within "
            r"collapse_patience = 2 epoch\(s\), got 1\.000, below it for 2 epoch\(s\) since epoch 2 ",
        ):
            handler(engine)


def _train(with_handlers: bool, tmp_labels: list) -> dict:
    torch.manual_seed(0)
    network = tiny_moco(queue_size=32)
    optimizer = torch.optim.SGD(network.query_parameters(), lr=0.1, momentum=0.9)
    handlers = [MomentumUpdateHandler(0.9)]
    if with_handlers:
        data = [{"image": torch.rand(3, 32, 32), "label": torch.tensor(y)} for y in tmp_labels]
        handlers += [
            OnlineKNNHandler(data, data, transform=lambda d: d, k=3, batch_size=8),
            RepresentationHealthHandler(samples=8),
        ]
    torch.manual_seed(1)
    trainer = MoCoTrainer("cpu", 2, pattern_batches(3, batch_size=4), network, optimizer, train_handlers=handlers)
    trainer.run()
    return {"metrics": dict(trainer.state.metrics), "rng": torch.get_rng_state(), **copy.deepcopy(network.state_dict())}


def test_training_is_bitwise_unchanged_by_the_handlers():
    plain, watched = _train(False, []), _train(True, [0, 1] * 6)
    assert {"knn/val_auc", "health/effective_rank", "health/effective_rank_layer4"} <= set(watched["metrics"])
    for name in plain:
        if name != "metrics":  # weights, queue, key encoder, BatchNorm statistics and the RNG after the run
            assert torch.equal(plain[name], watched[name]), name


def test_output_transform_reads_embeddings_stored_elsewhere():
    g = torch.Generator().manual_seed(3)
    query = torch.randn(40, 6, generator=g)
    engine = _fake_engine(query)
    engine.state.output = {"embeddings": {"query": query, "key": -query}}  # no "pred": the default finds nothing
    RepresentationHealthHandler(samples=40).collect(engine)
    handler = RepresentationHealthHandler(samples=40, output_transform=lambda output: output["embeddings"])
    handler.collect(engine)
    handler(engine)
    unit = (query / query.norm(dim=1, keepdim=True)).double().numpy()
    assert engine.state.metrics["health/alignment"] == pytest.approx(4.0)  # opposite views
    assert engine.state.metrics["health/embedding_std"] == pytest.approx(unit.std(axis=0, ddof=1).mean(), rel=1e-5)
    assert not any(name.startswith("health/effective_rank_") for name in engine.state.metrics)  # no stages given
