from __future__ import annotations

import copy
from math import comb

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from scipy.stats import ks_2samp

from monai_ilm.evaluation.ks import ks_distance, ks_rows
from monai_ilm.results import validate


def test_matches_scipy_per_class():
    gen = np.random.default_rng(0)
    a = gen.dirichlet(np.ones(4), size=90)
    b = np.round(gen.dirichlet(np.ones(4) * 2, size=130), 2)  # unequal sizes, ties
    res = ks_distance(a, b)
    assert res.classes == (0, 1, 2, 3)
    for c in range(4):
        ref = ks_2samp(a[:, c], b[:, c])
        assert res.statistic[c] == pytest.approx(ref.statistic, abs=1e-12)
        assert res.pvalue[c] == pytest.approx(ref.pvalue, rel=1e-9)
    assert res.mean_statistic == pytest.approx(np.mean([ks_2samp(a[:, c], b[:, c]).statistic for c in range(4)]))


def test_disjoint_supports_closed_form():
    a = np.array([0.01, 0.02, 0.03, 0.04, 0.05])
    b = np.array([0.6, 0.7, 0.8, 0.9, 0.95])
    res = ks_distance(a, b, method="exact")
    assert res.statistic[0] == 1.0
    # exact two-sided p-value: only 2 of the C(10, 5) orderings separate the samples completely
    assert res.pvalue[0] == pytest.approx(2 / comb(10, 5), rel=1e-9)


def test_identical_and_hand_computed():
    x = np.array([0.1, 0.5, 0.9])
    assert ks_distance(x, x).statistic[0] == 0.0
    # F_a jumps at 1, 2, 3; F_b at 2.5, 4: largest gap is at t = 2 (2/3 - 0)
    assert ks_distance(np.array([1.0, 2.0, 3.0]), np.array([2.5, 4.0])).statistic[0] == pytest.approx(2 / 3)


def test_binary_uses_positive_class():
    gen = np.random.default_rng(1)
    p1a, p1b = gen.random(40), gen.random(50) ** 2
    a, b = np.stack([1 - p1a, p1a], 1), np.stack([1 - p1b, p1b], 1)
    res = ks_distance(a, b, binary=True)
    assert res.classes == (1,)
    assert res.statistic[0] == pytest.approx(ks_2samp(p1a, p1b).statistic, abs=1e-12)
    assert ks_distance(p1a, p1b).statistic[0] == pytest.approx(res.statistic[0], abs=1e-12)


def test_validation():
    with pytest.raises(ValueError, match="probs_a and probs_b: expected the same number of classes"):
        ks_distance(np.zeros((4, 3)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"probs_a: expected shape \(n,\) or \(n, 2\) with binary=True, got \(4, 3\)"):
        ks_distance(np.zeros((4, 3)), np.zeros((4, 3)), binary=True)
    with pytest.raises(ValueError, match="probs_b: expected finite values"):
        ks_distance(np.zeros(3), np.array([0.1, np.nan]))


def test_ks_rows_match_scipy(random_classifier_outputs):
    a = random_classifier_outputs["binary_auc"]
    b = copy.copy(a)
    b.probabilities = softmax(2.0 * a.logits + 0.3, axis=1)
    ks = ks_distance(a.probabilities, b.probabilities, binary=True, ids_a=a.ids, ids_b=b.ids)
    assert ks.classes == (1,)
    expected = ks_2samp(a.probabilities[:, 1], b.probabilities[:, 1]).statistic
    assert ks.mean_statistic == pytest.approx(expected)
    rows = ks_rows(ks, a.n, "dr", "moco", 0.01, 0, "run-3")
    assert validate(pd.DataFrame(rows)).loc[0, "protocol"] == "ks"
    c = copy.copy(a)
    c.ids = [f"other{i}" for i in range(a.n)]
    with pytest.raises(ValueError, match="same test samples"):
        ks_distance(a.probabilities, c.probabilities, binary=True, ids_a=a.ids, ids_b=c.ids)
