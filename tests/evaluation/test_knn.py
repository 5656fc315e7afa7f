"""WeightedKNNScore: scikit-learn's weighted kNN classifier scored with scikit-learn's metrics, batch by batch."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, roc_auc_score
from sklearn.neighbors import KNeighborsClassifier

from monai_ilm.evaluation.knn import UndefinedScoreError, WeightedKNNScore

T = 0.07


def sklearn_probs(bank: np.ndarray, labels: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    knn = KNeighborsClassifier(n_neighbors=k, metric="cosine", weights=lambda d: np.exp((1.0 - d) / T))
    return knn.fit(bank, labels).predict_proba(queries)


def _data(seed: int, n_bank: int = 60, n_queries: int = 25, d: int = 6):
    rng = np.random.default_rng(seed)
    return rng, rng.normal(size=(n_bank, d)), rng.normal(size=(n_queries, d))


def _in_batches(score: WeightedKNNScore, bank, bank_labels, queries, labels, size: int = 7) -> float:
    """Feed the metric in batches of ``size`` rows, queries first for some, as a handler embedding loaders would."""
    for start in range(0, len(queries), size):
        score.update(
            queries=torch.tensor(queries[start : start + size]), labels=torch.tensor(labels[start : start + size])
        )
    for start in range(0, len(bank), size):
        score.update(
            bank=torch.tensor(bank[start : start + size]), bank_labels=torch.tensor(bank_labels[start : start + size])
        )
    return score.compute()


def test_binary_auc_equals_scikit_learn():
    rng, bank, queries = _data(0)
    bank_labels, labels = rng.integers(0, 2, len(bank)), rng.integers(0, 2, len(queries))
    expected = roc_auc_score(labels, sklearn_probs(bank, bank_labels, queries, 10)[:, 1])
    # the ranks of the float32 scores against scikit-learn's float64 ones: equal unless two queries nearly tie
    assert _in_batches(WeightedKNNScore("auc", k=10), bank, bank_labels, queries, labels) == pytest.approx(expected)


def test_multi_label_auc_is_the_mean_over_findings_present():
    rng, bank, queries = _data(1)
    bank_labels = (rng.random((len(bank), 4)) < 0.4).astype(np.float32)
    labels = (rng.random((len(queries), 4)) < 0.4).astype(np.float32)
    labels[:, 3] = 0  # a finding absent from the queries is skipped, not an error
    probs = np.stack([sklearn_probs(bank, bank_labels[:, f], queries, 10)[:, 1] for f in range(3)], axis=1)
    expected = np.mean([roc_auc_score(labels[:, f], probs[:, f]) for f in range(3)])
    assert _in_batches(WeightedKNNScore("auc", k=10), bank, bank_labels, queries, labels) == pytest.approx(expected)


def test_f1_of_three_classes_equals_scikit_learn():
    rng, bank, queries = _data(2)
    bank_labels, labels = rng.integers(0, 3, len(bank)), rng.integers(0, 3, len(queries))
    expected = f1_score(labels, sklearn_probs(bank, bank_labels, queries, 5).argmax(1), average="macro")
    assert _in_batches(WeightedKNNScore("f1", k=5), bank, bank_labels, queries, labels) == pytest.approx(expected)


def test_reset_forgets_the_rows():
    rng, bank, queries = _data(3)
    bank_labels, labels = rng.integers(0, 2, len(bank)), rng.integers(0, 2, len(queries))
    score = WeightedKNNScore("auc", k=10)
    _in_batches(score, bank[::-1].copy(), 1 - bank_labels[::-1], queries, labels)
    score.reset()
    expected = roc_auc_score(labels, sklearn_probs(bank, bank_labels, queries, 10)[:, 1])
    assert _in_batches(score, bank, bank_labels, queries, labels) == pytest.approx(expected)


def test_undefined_metric_and_bad_input():
    score = WeightedKNNScore()
    with pytest.raises(ValueError, match="bank, queries: expected at least one batch from update"):
        score.compute()
    with pytest.raises(ValueError, match="queries, labels: expected features and labels together"):
        score.update(queries=torch.zeros(2, 3))
    score.update(bank=torch.randn(5, 3), bank_labels=torch.tensor([0, 1, 0, 1, 1]))
    score.update(queries=torch.randn(4, 3), labels=torch.zeros(4, dtype=torch.long))  # one class: no ROC-AUC
    with pytest.raises(UndefinedScoreError, match="y_true: expected both classes 0 and 1"):
        score.compute()
    for kwargs, match in (
        ({"metric": "accuracy"}, "metric: expected one of"),
        ({"k": 0}, "k: expected a positive integer, got 0"),
        ({"temperature": 0.0}, "temperature: expected a positive number, got 0.0"),
    ):
        with pytest.raises(ValueError, match=match):
            WeightedKNNScore(**kwargs)
