from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.stats import ortho_group

from monai_ilm.evaluation.cka import (
    StreamingLinearCKA,
    cka,
    linear_cka,
    rbf_cka,
)

# docs/method.md §10.4 inputs and expected values (computed with the original CKA.py)
X_REF = np.array([[0, 0], [1, 0], [0, 1], [1, 1], [0.5, 0.2]])
Y_REF = np.array([[0, 1], [1, 2], [0.2, 0], [2, 2], [0.1, 0.4]])


def reference_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Independent reference: feature-space formula on float64 centred data (Kornblith et al. 2019, eq. 4)."""
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    yc = y.astype(np.float64) - y.astype(np.float64).mean(0)
    return np.linalg.norm(xc.T @ yc) ** 2 / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc))


def reference_rbf_gram(x: np.ndarray, sigma: float) -> np.ndarray:
    """K_ij = exp(-|x_i - x_j|^2 / (2 sigma^2)) from SciPy's pairwise distances."""
    return np.exp(-cdist(x, x, "sqeuclidean") / (2 * sigma**2))


def reference_rbf_cka(x: np.ndarray, y: np.ndarray, sigma: float, sigma_y: float | None = None) -> float:
    """Independent reference: HSIC = tr(K H L H) with the explicit centring matrix H (Kornblith et al. 2019)."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = reference_rbf_gram(x, sigma), reference_rbf_gram(y, sigma if sigma_y is None else sigma_y)

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, l_) / np.sqrt(hsic(k, k) * hsic(l_, l_))


def song_unbiased_hsic(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """Unbiased HSIC of Song et al. (2012), eq. (5), written out with explicit loops over i, j."""
    n = gram_x.shape[0]
    gx0, gy0 = gram_x.copy(), gram_y.copy()
    np.fill_diagonal(gx0, 0.0)
    np.fill_diagonal(gy0, 0.0)
    trace = sum(gx0[i, j] * gy0[j, i] for i in range(n) for j in range(n))
    sum_k, sum_l = gx0.sum(), gy0.sum()
    ones_kl = sum(gx0[i, :].sum() * gy0[i, :].sum() for i in range(n))  # 1^T K L 1 for symmetric K, L
    return (trace + sum_k * sum_l / ((n - 1) * (n - 2)) - 2.0 / (n - 2) * ones_kl) / (n * (n - 3))


def u_statistic_hsic(gram_x: np.ndarray, gram_y: np.ndarray) -> float:
    """HSIC_1 by its definition as a U-statistic over ordered 4-tuples of distinct indices (Song et al. 2012)."""
    n = gram_x.shape[0]
    total, count = 0.0, 0
    for i, j, q, r in itertools.permutations(range(n), 4):
        total += gram_x[i, j] * gram_y[i, j] + gram_x[i, j] * gram_y[q, r] - 2.0 * gram_x[i, j] * gram_y[i, q]
        count += 1
    return total / count


def debiased_from(hsic, gram_x, gram_y) -> float:
    return hsic(gram_x, gram_y) / np.sqrt(hsic(gram_x, gram_x) * hsic(gram_y, gram_y))


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


class TestReferenceValues:
    def test_linear(self):
        assert linear_cka(X_REF, Y_REF) == pytest.approx(0.59320305, abs=5e-9)

    def test_rbf_absolute_sigma(self):
        assert rbf_cka(X_REF, Y_REF, sigma=0.8) == pytest.approx(0.74221866, abs=5e-9)

    def test_rbf_median_heuristic(self):
        assert rbf_cka(X_REF, Y_REF, sigma=None) == pytest.approx(0.65342218, abs=5e-9)

    def test_rbf_reference_kernel_first_row(self):
        # guards the test's own RBF CKA (below) on the original CKA.py's kernel
        expected = [1.0, 0.45783336, 0.45783336, 0.20961139, 0.79726951]
        np.testing.assert_allclose(reference_rbf_gram(X_REF, 0.8)[0], expected, atol=5e-9)
        assert reference_rbf_cka(X_REF, Y_REF, 0.8) == pytest.approx(0.74221866, abs=5e-9)

    def test_rbf_cka_against_scipy_distances(self, rng):
        x, y = rng.normal(size=(12, 5)), rng.normal(size=(12, 3))
        assert rbf_cka(x, y, sigma=1.7) == pytest.approx(reference_rbf_cka(x, y, 1.7), abs=1e-12)
        assert rbf_cka(x + 1e4, y, sigma=1.7) == pytest.approx(reference_rbf_cka(x, y, 1.7), abs=1e-9)

    def test_median_bandwidth(self, rng):
        # sigma=None: each input's bandwidth is sqrt(median of its squared pairwise distances)
        x, y = rng.normal(size=(15, 3)), 3.0 * rng.normal(size=(15, 4))

        def median(z):
            return np.sqrt(np.median(cdist(z, z, "sqeuclidean")[np.triu_indices(15, 1)]))

        assert rbf_cka(x, y, sigma=None) == pytest.approx(reference_rbf_cka(x, y, median(x), median(y)), rel=1e-12)

    def test_torch_input(self):
        assert linear_cka(torch.tensor(X_REF, dtype=torch.float32), torch.tensor(Y_REF)) == pytest.approx(
            0.59320305, abs=5e-8
        )

    def test_bfloat16_tensor_input(self):
        x = torch.tensor(X_REF, dtype=torch.bfloat16)  # no numpy bfloat16: must be upcast, not fail
        expected = linear_cka(x.float().numpy(), Y_REF)
        assert linear_cka(x, Y_REF) == pytest.approx(expected, abs=1e-12)


class TestProperties:
    @pytest.mark.parametrize("kernel", ["linear", "linear_debiased", "rbf"])
    def test_self_similarity_is_one(self, rng, kernel):
        x = rng.normal(size=(40, 9))
        assert cka(x, x, kernel=kernel) == pytest.approx(1.0, abs=1e-12)

    def test_linear_invariances(self, rng):
        x, y = rng.normal(size=(50, 8)), rng.normal(size=(50, 6))
        q = ortho_group.rvs(8, random_state=3)
        base = reference_linear_cka(x, y)
        assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-12)
        assert linear_cka(7.5 * x, y) == pytest.approx(base, abs=1e-12)
        assert linear_cka(x + 3.0, y) == pytest.approx(base, abs=1e-12)
        # not invariant to an arbitrary invertible linear map
        a = np.diag(np.arange(1.0, 9.0) ** 2)
        assert abs(linear_cka(x @ a, y) - base) > 1e-3

    def test_flattens_trailing_dims(self, rng):
        x, y = rng.normal(size=(20, 2, 3, 3)), rng.normal(size=(20, 5))
        assert linear_cka(x, y) == pytest.approx(reference_linear_cka(x.reshape(20, -1), y), abs=1e-12)

    def test_feature_route_for_many_samples(self, rng):
        # n >> d takes the d x d feature-space route; compare with the n x n Gram formula written here
        x = rng.normal(size=(400, 3))
        y = x @ rng.normal(size=(3, 2)) + rng.normal(size=(400, 2))
        xc, yc = x - x.mean(0), y - y.mean(0)
        gram_x, gram_y = xc @ xc.T, yc @ yc.T
        assert linear_cka(x, y) == pytest.approx(
            (gram_x * gram_y).sum() / np.sqrt((gram_x * gram_x).sum() * (gram_y * gram_y).sum()), abs=1e-12
        )

    def test_degenerate_absolute_sigma(self):
        # docs/method.md D9: independent 200 x 2048 U[0,1) matrices give kernel CKA(sigma=0.8) = 1.0
        gen = np.random.default_rng(0)
        u, v = gen.random((200, 2048)), gen.random((200, 2048))
        assert rbf_cka(u, v, sigma=0.8) == pytest.approx(1.0, abs=1e-9)
        assert rbf_cka(u, v, sigma=None) < 0.99
        assert linear_cka(u, v) < 0.99


class TestNumericalAccuracy:
    def test_large_offset_post_relu_features(self, rng):
        n, d = 300, 64
        x = (np.maximum(rng.standard_normal((n, d)), 0) + 1000).astype(np.float32)
        mixed = 0.7 * (x - 1000) + np.maximum(rng.standard_normal((n, d)), 0)
        y = (mixed + 1000).astype(np.float32)
        exact = reference_linear_cka(x, y)
        assert linear_cka(x, y) == pytest.approx(exact, abs=1e-10)

        # the textbook formula K = X X^T, HKH in float32 on uncentred data loses the signal entirely
        h = np.eye(n, dtype=np.float32) - np.full((n, n), 1.0 / n, dtype=np.float32)
        kc, lc = h @ (x @ x.T) @ h, h @ (y @ y.T) @ h
        naive = float((kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum()))
        assert not (abs(naive - exact) < 0.05)  # NaN or far off

    def test_rbf_with_large_offset(self, rng):
        base = np.maximum(rng.standard_normal((60, 16)), 0)
        x32 = (base + 1000).astype(np.float32)
        shifted = x32.astype(np.float64) - 1000.0  # the same points, without the offset
        y = rng.normal(size=(60, 4)) + shifted[:, :4]
        sigma = 2.0
        gram_x = np.exp(-cdist(shifted, shifted, "sqeuclidean") / (2 * sigma**2))
        gram_y = np.exp(-cdist(y, y, "sqeuclidean") / (2 * sigma**2))
        h = np.eye(60) - 1.0 / 60
        kc, lc = h @ gram_x @ h, h @ gram_y @ h
        expected = (kc * lc).sum() / np.sqrt((kc * kc).sum() * (lc * lc).sum())
        assert rbf_cka(x32, y, sigma=sigma) == pytest.approx(expected, abs=1e-9)


class TestDebiased:
    def test_against_song_formula_and_u_statistic(self, rng):
        x = rng.normal(size=(7, 3)) + 2.0
        y = x[:, :2] ** 2 + rng.normal(size=(7, 2))
        gram_x, gram_y = x @ x.T, y @ y.T  # raw (uncentred) linear kernels
        song = debiased_from(song_unbiased_hsic, gram_x, gram_y)
        assert debiased_from(u_statistic_hsic, gram_x, gram_y) == pytest.approx(song, abs=1e-10)
        assert linear_cka(x, y, debiased=True) == pytest.approx(song, abs=1e-10)
        assert cka(x, y, kernel="linear_debiased") == pytest.approx(song, abs=1e-10)

    def test_rbf_debiased_against_song(self, rng):
        x, y = rng.normal(size=(9, 4)), rng.normal(size=(9, 3))
        gram_x = np.exp(-cdist(x, x, "sqeuclidean") / (2 * 1.5**2))
        gram_y = np.exp(-cdist(y, y, "sqeuclidean") / (2 * 1.5**2))
        assert rbf_cka(x, y, sigma=1.5, debiased=True) == pytest.approx(
            debiased_from(song_unbiased_hsic, gram_x, gram_y), abs=1e-10
        )

    def test_needs_four_rows(self):
        with pytest.raises(ValueError, match="x: expected at least 4 rows"):
            linear_cka(X_REF[:3], Y_REF[:3], debiased=True)


class TestStreaming:
    SPLITS = [0, 1, 8, 10, 43, 44, 97, 150]  # uneven batch sizes 1, 7, 2, 33, 1, 53, 53

    def _data(self, rng):
        x = np.maximum(rng.normal(size=(150, 12)), 0) + 50.0
        y = x[:, :5] @ rng.normal(size=(5, 9)) + rng.normal(size=(150, 9))
        return x, y

    @pytest.mark.parametrize("debiased", [False, True])
    def test_equals_full_batch(self, rng, debiased):
        x, y = self._data(rng)
        acc = StreamingLinearCKA(debiased=debiased)
        for a, b in zip(self.SPLITS[:-1], self.SPLITS[1:]):
            acc.update(x[a:b], y[a:b])
        assert acc.n_samples == 150
        if debiased:
            # Song's formula on raw x (offset 50) cancels catastrophically even in float64, so the reference uses
            # centred features; the estimator's translation invariance is checked in TestDebiased on raw data.
            xc, yc = x - x.mean(0), y - y.mean(0)
            expected = debiased_from(song_unbiased_hsic, xc @ xc.T, yc @ yc.T)
        else:
            expected = reference_linear_cka(x, y)
        assert acc.compute() == pytest.approx(expected, abs=1e-9)
        assert acc.compute() == pytest.approx(linear_cka(x, y, debiased=debiased), abs=1e-9)

    @pytest.mark.parametrize("debiased", [False, True])
    def test_torch_batches_accumulate_in_float64_on_device(self, rng, debiased):
        x, y = self._data(rng)
        device = "cuda" if torch.cuda.is_available() else "cpu"
        acc = StreamingLinearCKA(debiased=debiased)
        for a, b in zip(self.SPLITS[:-1], self.SPLITS[1:]):
            acc.update(torch.tensor(x[a:b], dtype=torch.float32, device=device), torch.tensor(y[a:b], device=device))
        assert acc._acc["xy"].dtype == torch.float64 and acc._acc["xy"].device.type == device
        expected = linear_cka(x.astype(np.float32), y, debiased=debiased)
        assert acc.compute() == pytest.approx(expected, abs=1e-9)

    def test_reset_and_errors(self, rng):
        x, y = self._data(rng)
        acc = StreamingLinearCKA().update(x[:10], y[:10])
        with pytest.raises(ValueError, match="x_batch: expected 12 features"):
            acc.update(x[:5, :4], y[:5])
        with pytest.raises(ValueError, match="x_batch and y_batch"):
            acc.update(x[:5], y[:4])
        acc.reset()
        with pytest.raises(ValueError, match="at least 2 paired rows"):
            acc.compute()


class TestValidation:
    def test_row_mismatch_names_both(self):
        with pytest.raises(ValueError, match="x and y: expected the same number of rows"):
            linear_cka(X_REF, Y_REF[:4])

    def test_one_dimensional_input(self):
        with pytest.raises(ValueError, match=r"x: expected an array of shape \(n_samples, n_features"):
            rbf_cka(X_REF[:, 0], Y_REF)

    def test_non_finite(self):
        bad = X_REF.copy()
        bad[0, 0] = np.nan
        with pytest.raises(ValueError, match="y: expected finite values"):
            linear_cka(X_REF, bad)

    @pytest.mark.parametrize("sigma", [0.0, -1.0, float("inf")])
    def test_bad_sigma(self, sigma):
        with pytest.raises(ValueError, match="sigma"):
            rbf_cka(X_REF, Y_REF, sigma=sigma)

    def test_sigma_with_linear_kernel_and_unknown_kernel(self):
        with pytest.raises(ValueError, match="sigma"):
            cka(X_REF, Y_REF, kernel="linear", sigma=1.0)
        with pytest.raises(ValueError, match="kernel"):
            cka(X_REF, Y_REF, kernel="cosine")

    def test_constant_features(self):
        with pytest.raises(
            ValueError,
            match=r"y: expected features that vary across samples \(self-similarity HSIC > 0\), got HSIC = 0",
        ):
            linear_cka(X_REF, np.ones((5, 3)))
        with pytest.raises(ValueError, match="x: expected at least two distinct rows .*, got identical rows"):
            rbf_cka(np.ones((5, 3)), Y_REF)
