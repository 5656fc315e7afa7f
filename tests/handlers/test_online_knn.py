"""Online weighted kNN: scores equal scikit-learn's KNeighborsClassifier; MoCo's state and the RNG are untouched."""

from __future__ import annotations

import copy
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from monai_ilm.evaluation.knn import weighted_knn_scores
from monai_ilm.handlers import OnlineKNNHandler, knn_metric_for
from tests.helpers import tiny_moco

T = 0.07


def sklearn_knn(bank: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int = 20) -> np.ndarray:
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights=lambda d: np.exp((1.0 - d) / T))
    return knn.fit(bank, labels).predict_proba(queries)


@pytest.mark.parametrize("n_classes", [2, 3])
def test_scores_equal_scikit_learn_for_classes(n_classes):
    rng = np.random.default_rng(n_classes)
    bank, queries = rng.normal(size=(80, 8)), rng.normal(size=(30, 8))
    labels = rng.integers(0, n_classes, size=80)
    ours = weighted_knn_scores(torch.tensor(bank), torch.tensor(labels), torch.tensor(queries), k=20, temperature=T)
    np.testing.assert_allclose(ours.numpy(), sklearn_knn(bank, labels, queries), rtol=1e-4, atol=1e-6)


def test_multi_label_scores_are_one_weighted_vote_per_finding():
    rng = np.random.default_rng(7)
    bank, queries = rng.normal(size=(80, 8)), rng.normal(size=(30, 8))
    multi_hot = (rng.random((80, 5)) < 0.3).astype(np.float32)
    ours = weighted_knn_scores(torch.tensor(bank), torch.tensor(multi_hot), torch.tensor(queries), k=20, temperature=T)
    expected = np.stack([sklearn_knn(bank, multi_hot[:, f], queries)[:, 1] for f in range(5)], axis=1)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_dataset_metrics():
    assert (knn_metric_for("nih"), knn_metric_for("dr"), knn_metric_for("idc")) == ("auc", "auc", "f1")
    with pytest.raises(ValueError, match="metric: expected one of"):
        OnlineKNNHandler([], [], transform=lambda d: d, metric="accuracy")


def _images(n: int, labels: list, seed: int) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(3, 32, 32, generator=g), "label": torch.as_tensor(y)} for y in labels]


def _rng_states() -> tuple:
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


@pytest.mark.parametrize("multi_label", [False, True])
def test_handler_metric_and_untouched_moco_state(multi_label):
    rng = np.random.default_rng(0)
    if multi_label:

        def make(n):
            return (rng.random((n, 3)) < 0.5).astype(np.float32)
    else:

        def make(n):
            return rng.integers(0, 2, n)

    train_labels, val_labels = make(40), make(24)
    train, val = _images(40, list(train_labels), 1), _images(24, list(val_labels), 2)
    handler = OnlineKNNHandler(train, val, transform=lambda d: d, bank_size=40, val_size=24, batch_size=16)
    network = tiny_moco()
    network.train()
    network.encoder_q.net.layer2.eval()  # a mixed mode must come back as it was
    engine = SimpleNamespace(network=network, state=SimpleNamespace(epoch=1, max_epochs=3, device="cpu", metrics={}))
    before, modes = copy.deepcopy(network.state_dict()), [m.training for m in network.modules()]
    rng_before = _rng_states()

    handler(engine)

    rng_after = _rng_states()
    assert torch.equal(rng_before[0], rng_after[0]) and np.array_equal(rng_before[1], rng_after[1])
    assert rng_before[2] == rng_after[2]
    assert [m.training for m in network.modules()] == modes
    for name, value in network.state_dict().items():  # queue, key encoder, BatchNorm statistics, counters
        assert torch.equal(value, before[name]), name

    # the reference: the encoder's eval-mode features, scikit-learn's kNN and ROC-AUC
    with torch.no_grad():
        network.eval()
        features = [network.encoder_q(torch.stack([d["image"] for d in data])).numpy() for data in (train, val)]
    if multi_label:
        probs = np.stack([sklearn_knn(features[0], train_labels[:, f], features[1])[:, 1] for f in range(3)], axis=1)
        expected = np.mean([roc_auc_score(val_labels[:, f], probs[:, f]) for f in range(3)])
    else:
        expected = roc_auc_score(val_labels, sklearn_knn(*features[:1], train_labels, features[1])[:, 1])
    assert engine.state.metrics["knn/val_auc"] == pytest.approx(expected, abs=1e-6)


def test_f1_and_interval():
    labels = [0, 1] * 10
    train, val = _images(20, labels, 3), _images(20, labels, 4)
    handler = OnlineKNNHandler(train, val, transform=lambda d: d, metric="f1", interval=2, k=5)
    network = tiny_moco()
    engine = SimpleNamespace(network=network, state=SimpleNamespace(epoch=1, max_epochs=3, device="cpu", metrics={}))
    handler(engine)
    assert engine.state.metrics == {}  # epoch 1 of interval 2: skipped
    engine.state.epoch = 3  # the last epoch is always scored
    handler(engine)
    with torch.no_grad():
        network.eval()
        bank, queries = (network.encoder_q(torch.stack([d["image"] for d in data])).numpy() for data in (train, val))
    knn = KNeighborsClassifier(n_neighbors=5, metric="cosine", weights=lambda d: np.exp((1.0 - d) / T))
    expected = f1_score(labels, knn.fit(bank, labels).predict_proba(queries).argmax(1), average="macro")
    assert engine.state.metrics["knn/val_f1"] == pytest.approx(expected)
