"""CKA summaries: the block-by-block matrix and the paper's subsampling protocol."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from monai_ilm.evaluation.cka_summaries import bootstrap_cka, cka_matrix


def reference_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: feature-space formula on float64 centred data (Kornblith et al. 2019, eq. 4)."""
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    yc = y.astype(np.float64) - y.astype(np.float64).mean(0)
    return np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


class TestMatrixAndBootstrap:
    def test_cka_matrix(self, rng):
        feats = [rng.normal(size=(30, d)) for d in (4, 6, 8)]
        other = [f @ rng.normal(size=(f.shape[1], 5)) + rng.normal(size=(30, 5)) for f in feats]
        m = cka_matrix(feats, other)
        assert m.shape == (3, 3)
        for i, j in itertools.product(range(3), range(3)):
            assert m[i, j] == pytest.approx(reference_linear_cka(feats[i], other[j]), abs=1e-12)
        self_m = cka_matrix(feats, feats, kernel="rbf")
        np.testing.assert_allclose(np.diag(self_m), 1.0, atol=1e-12)
        np.testing.assert_allclose(self_m, self_m.T, atol=1e-12)

    def test_cka_matrix_row_mismatch(self, rng):
        with pytest.raises(ValueError, match=r"feats_a\[0\] and feats_b\[1\]"):
            cka_matrix([rng.normal(size=(10, 3))], [rng.normal(size=(10, 3)), rng.normal(size=(9, 3))])

    def test_bootstrap_protocol(self, rng):
        x = rng.normal(size=(80, 5))
        y = x @ rng.normal(size=(5, 4)) + 2 * rng.normal(size=(80, 4))
        res = bootstrap_cka(x, y, n_sets=6, subset_size=30, seed=7)
        gen = np.random.default_rng(7)
        expected = []
        for _ in range(6):
            idx = gen.permutation(80)[:30]
            expected.append(reference_linear_cka(x[idx], y[idx]))
        np.testing.assert_allclose(res.values, expected, atol=1e-12)
        assert res.mean == pytest.approx(np.mean(expected), abs=1e-12)
        assert res.std == pytest.approx(np.std(expected, ddof=0), abs=1e-12)
        again = bootstrap_cka(x, y, n_sets=6, subset_size=30, seed=7)
        np.testing.assert_array_equal(again.values, res.values)

    def test_bootstrap_validation(self, rng):
        x = rng.normal(size=(20, 3))
        with pytest.raises(ValueError, match="subset_size"):
            bootstrap_cka(x, x, subset_size=21)
        with pytest.raises(ValueError, match="n_sets"):
            bootstrap_cka(x, x, n_sets=0, subset_size=10)
