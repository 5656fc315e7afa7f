from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from monai_ilm.evaluation.intervals import (
    bootstrap_ci,
    percentile_interval,
    resample_indices,
    standard_error_interval,
)


@pytest.fixture
def binary_data():
    gen = np.random.default_rng(42)
    y = np.array([0, 1] * 40)
    score = y * 0.8 + gen.normal(size=80)
    return y, score


def sample_mean(y_true, y_score):
    return float(np.mean(y_score))


class TestPaperFormula:
    def test_section_10_5_value(self):
        mean, low, high = standard_error_interval([0.70, 0.72, 0.74])
        assert mean == pytest.approx(0.72, abs=1e-12)
        # closed form: sd = sqrt(0.0008 / 3), half-width = 1.96 sd / sqrt(3) = 0.01847906; the spec prints
        # 0.0184792 (rounded from its 7-digit sd), hence the 2e-7 tolerance against the spec's number
        exact = 1.96 * np.sqrt(0.0008 / 3) / np.sqrt(3)
        assert high - mean == pytest.approx(exact, abs=1e-15)
        assert mean - low == pytest.approx(exact, abs=1e-15)
        assert high - mean == pytest.approx(0.0184792, abs=2e-7)

    def test_section_10_5_through_bootstrap_ci_with_fixed_indices(self):
        y_score = np.array([0.70, 0.72, 0.74])
        indices = np.array([[0, 0, 0], [1, 1, 1], [2, 2, 2]])  # resample means 0.70, 0.72, 0.74
        res = bootstrap_ci(sample_mean, np.zeros(3), y_score, method="standard_error", indices=indices)
        assert res.bootstrap_mean == pytest.approx(0.72, abs=1e-12)
        assert res.bootstrap_sd == pytest.approx(0.0163299, abs=5e-8)
        assert res.ci_high - res.bootstrap_mean == pytest.approx(0.0184792, abs=2e-7)
        assert (res.resamples, res.failed, res.n, res.method) == (3, 0, 3, "standard_error")

    def test_other_confidence_uses_normal_quantile(self):
        scores = np.array([0.1, 0.4, 0.35, 0.2])
        mean, low, high = standard_error_interval(scores, confidence=0.9)
        assert high - mean == pytest.approx(1.6448536269514722 * scores.std() / 2.0, rel=1e-12)

    def test_pooled_chest_variant_on_fixed_index_matrix(self):
        gen = np.random.default_rng(3)
        n, c, b = 40, 3, 6
        y = (gen.random((n, c)) < 0.5).astype(int)
        probs = np.clip(0.3 * y + gen.random((n, c)) * 0.7, 0, 1)
        indices = gen.integers(0, n, size=(b, n))
        # hand computation of method_spec section 7.2 (chest): pool all B x C per-class AUCs
        a = np.array([[roc_auc_score(y[i, k], probs[i, k]) for k in range(c)] for i in indices])
        mu, sd = a.mean(), a.std()

        def per_class_auc(yt, p):
            return [roc_auc_score(yt[:, k], p[:, k]) for k in range(yt.shape[1])]

        res = bootstrap_ci(per_class_auc, y, probs, method="standard_error", per_class=True, indices=indices)
        assert res.bootstrap_mean == pytest.approx(mu, abs=1e-12)
        assert res.bootstrap_sd == pytest.approx(sd, abs=1e-12)
        assert res.ci_low == pytest.approx(mu - 1.96 * sd / np.sqrt(b), abs=1e-12)
        assert res.ci_high == pytest.approx(mu + 1.96 * sd / np.sqrt(b), abs=1e-12)
        assert res.value == pytest.approx(np.mean([roc_auc_score(y[:, k], probs[:, k]) for k in range(c)]), abs=1e-12)

        pct = bootstrap_ci(per_class_auc, y, probs, per_class=True, indices=indices)
        macro = a.mean(axis=1)
        assert (pct.ci_low, pct.ci_high) == pytest.approx(tuple(np.percentile(macro, [2.5, 97.5])), abs=1e-12)


class TestPercentile:
    def test_matches_scipy_bootstrap(self, binary_data):
        y, score = binary_data
        res = bootstrap_ci(roc_auc_score, y, score, n_resamples=300, seed=11)
        ref = stats.bootstrap(
            (y, score),
            roc_auc_score,
            paired=True,
            vectorized=False,
            n_resamples=300,
            method="percentile",
            rng=np.random.default_rng(11),
        )
        assert res.ci_low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
        assert res.ci_high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
        assert res.value == pytest.approx(roc_auc_score(y, score), abs=1e-12)
        assert res.bootstrap_sd == pytest.approx(np.std(ref.bootstrap_distribution), abs=1e-12)

    def test_matches_hand_rolled_percentiles(self, binary_data):
        y, score = binary_data
        gen = np.random.default_rng(5)
        idx = gen.integers(0, len(y), size=(200, len(y)))  # independent draw with the documented recipe
        boot = np.array([roc_auc_score(y[i], score[i]) for i in idx])
        res = bootstrap_ci(roc_auc_score, y, score, n_resamples=200, seed=5, confidence=0.9)
        assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.percentile(boot, [5, 95])), abs=1e-12)
        np.testing.assert_array_equal(resample_indices(len(y), 200, 5), idx)

    def test_seeded(self, binary_data):
        y, score = binary_data
        a = bootstrap_ci(roc_auc_score, y, score, n_resamples=50, seed=1)
        b = bootstrap_ci(roc_auc_score, y, score, n_resamples=50, seed=1)
        assert a == b

    def test_percentile_interval(self):
        assert percentile_interval(np.arange(101.0), 0.9) == pytest.approx((5.0, 95.0))


@pytest.mark.filterwarnings("ignore:Only one class is present:UserWarning")
class TestUndefinedResamples:
    def test_skipped_and_counted(self):
        y = np.array([1, 0, 0, 0, 0, 0])
        score = np.arange(6.0)
        idx = resample_indices(6, 100, 0)
        expected_failed = int(np.sum(y[idx].sum(axis=1) == 0))
        assert 10 < expected_failed < 50
        res = bootstrap_ci(roc_auc_score, y, score, n_resamples=100, max_failed_fraction=0.5)
        assert res.failed == expected_failed
        assert res.resamples == 100 - expected_failed

    def test_too_many_failures_raise(self):
        y = np.array([1, 0, 0, 0, 0, 0])
        with pytest.raises(ValueError, match="y_true: the metric was undefined on"):
            bootstrap_ci(roc_auc_score, y, np.arange(6.0), n_resamples=100)

    def test_undefined_on_full_set(self):
        with pytest.raises(ValueError, match="y_true: the metric is undefined on the full data set"):
            bootstrap_ci(roc_auc_score, np.zeros(10), np.arange(10.0))


def test_resample_warnings_are_silenced(recwarn):
    y = np.array([1, 0, 0, 0, 0, 0])
    bootstrap_ci(roc_auc_score, y, np.arange(6.0), n_resamples=100, max_failed_fraction=0.5)
    assert len(recwarn) == 0


class TestValidation:
    def test_bad_method(self, binary_data):
        with pytest.raises(ValueError, match="method: expected one of"):
            bootstrap_ci(roc_auc_score, *binary_data, method="bca")

    def test_mismatched_rows(self):
        with pytest.raises(ValueError, match="y_true and y_score"):
            bootstrap_ci(roc_auc_score, np.zeros(5), np.zeros(4))

    def test_vector_metric_without_per_class(self, binary_data):
        with pytest.raises(ValueError, match="metric_fn: expected a scalar"):
            bootstrap_ci(lambda a, b: [1.0, 2.0], *binary_data, n_resamples=5)

    def test_bad_indices(self, binary_data):
        with pytest.raises(ValueError, match=r"indices: expected values in \[0, 80\)"):
            bootstrap_ci(roc_auc_score, *binary_data, indices=np.full((3, 80), 80))

    @pytest.mark.parametrize("confidence", [0.0, 1.0, 1.5])
    def test_bad_confidence(self, confidence):
        with pytest.raises(ValueError, match="confidence"):
            percentile_interval([0.1, 0.2], confidence)

    def test_resample_indices_arguments(self):
        with pytest.raises(ValueError, match="n_resamples"):
            resample_indices(5, 0)
