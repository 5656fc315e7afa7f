from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from monai_ilm.statistics.intervals import (
    bootstrap_ci,
    percentile_interval,
    resample_indices,
    seed_mean_standard_error_interval,
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
        # hand computation of docs/method.md §7.2 (chest): pool all B x C per-class AUCs
        a = np.array([[roc_auc_score(y[i, k], probs[i, k]) for k in range(c)] for i in indices])
        mu, sd = a.mean(), a.std()

        def per_class_auc(yt, p):
            return [roc_auc_score(yt[:, k], p[:, k]) for k in range(yt.shape[1])]

        res = bootstrap_ci(per_class_auc, y, probs, method="standard_error", per_class=True, indices=indices)
        assert res.bootstrap_mean == pytest.approx(mu, abs=1e-12)
        assert res.bootstrap_sd == pytest.approx(sd, abs=1e-12)
        full = np.mean([roc_auc_score(y[:, k], probs[:, k]) for k in range(c)])
        # the paper's pooled half-width, around the full-set value (the value column's promise)
        assert res.ci_low == pytest.approx(full - 1.96 * sd / np.sqrt(b), abs=1e-12)
        assert res.ci_high == pytest.approx(full + 1.96 * sd / np.sqrt(b), abs=1e-12)
        assert res.value == res.full_value == pytest.approx(full, abs=1e-12)

        pct = bootstrap_ci(per_class_auc, y, probs, per_class=True, indices=indices)
        macro = a.mean(axis=1)
        assert (pct.ci_low, pct.ci_high) == pytest.approx(tuple(np.percentile(macro, [2.5, 97.5])), abs=1e-12)


class TestStandardErrorValue:
    def test_value_is_the_full_set_metric_with_the_papers_half_width_around_it(self):
        # the plug-in variance is biased on resamples, so the bootstrap mean differs from the full-set value; the
        # value column promises the full-set metric, and the paper's half-width 1.96 sd / sqrt(B) sits around it
        def variance(y_true, y_score):
            return float(np.var(y_score))

        for k in range(20):
            score = np.random.default_rng(100 + k).normal(size=30)
            res = bootstrap_ci(variance, np.zeros(30), score, n_resamples=200, seed=k, method="standard_error")
            idx = np.random.default_rng(k).integers(0, 30, size=(200, 30))  # the documented draw, done here
            boot = np.array([np.var(score[i]) for i in idx])
            half = 1.96 * boot.std() / np.sqrt(200)
            assert res.value == res.full_value == pytest.approx(np.var(score), abs=1e-12), k
            assert (res.ci_low, res.ci_high) == pytest.approx((np.var(score) - half, np.var(score) + half), abs=1e-12)
            assert res.bootstrap_mean == pytest.approx(boot.mean(), abs=1e-12), k  # the paper's printed number

    def test_percentile_value_is_the_full_set_metric(self, binary_data):
        y, score = binary_data
        res = bootstrap_ci(roc_auc_score, y, score, n_resamples=50, seed=2)
        assert res.value == res.full_value == pytest.approx(roc_auc_score(y, score), abs=1e-12)

    @pytest.mark.parametrize("ci_method", ["percentile", "standard_error"])
    def test_results_row_value_is_sklearns_metric_on_the_full_test_set(self, ci_method):
        from monai_ilm.evaluation.downstream_rows import downstream_rows
        from monai_ilm.evaluation.prediction import Predictions, score_predictions

        # a test set (seed 8) whose full-set AUC lies outside the paper's mean +/- 1.96 sd / sqrt(B) interval
        y = np.array([0, 1] * 12)
        logits = np.stack([np.zeros(24), 0.8 * y + np.random.default_rng(8).normal(size=24)], axis=1)
        full = roc_auc_score(y, logits[:, 1])
        res = score_predictions(
            Predictions(logits, y.astype(float), [str(i) for i in range(24)]),
            "binary_auc",
            n_resamples=300,
            ci_method=ci_method,
            seed=8,
        )
        boot = []
        for i in np.random.default_rng(8).integers(0, 24, size=(300, 24)):
            pos, neg = logits[i, 1][y[i] == 1], logits[i, 1][y[i] == 0]
            boot.append(stats.mannwhitneyu(pos, neg).statistic / (pos.size * neg.size))
        boot = np.array(boot)
        row = downstream_rows(res, "linear", "dr", "moco", 1.0, 8, "r")[0]
        assert row["value"] == res.value == pytest.approx(full, abs=1e-12)
        if ci_method == "standard_error":
            half = 1.96 * boot.std() / np.sqrt(300)
            assert not abs(boot.mean() - full) < half  # the paper's interval would not contain the value
            expected = (full - half, full + half)
        else:
            expected = tuple(np.percentile(boot, [2.5, 97.5]))
        assert (row["ci_low"], row["ci_high"]) == pytest.approx(expected, abs=1e-12)


class TestSeedMeanStandardError:
    def test_closed_form_and_one_seed(self):
        v, se = np.array([0.81, 0.78, 0.86, 0.80]), np.array([0.004, 0.002, 0.003, 0.001])
        mean, low, high = seed_mean_standard_error_interval(v, se)
        half = 1.96 * np.sqrt(np.var(v, ddof=1) / 4 + np.sum(se**2) / 16)  # across-seed + within-seed variance
        assert (mean, low, high) == pytest.approx((v.mean(), v.mean() - half, v.mean() + half), abs=1e-15)
        assert seed_mean_standard_error_interval([0.7], [0.01]) == pytest.approx((0.7, 0.7 - 0.0196, 0.7 + 0.0196))
        _, low90, high90 = seed_mean_standard_error_interval(v, se, confidence=0.9)
        assert high90 - low90 == pytest.approx(2 * stats.norm.ppf(0.95) * half / 1.96, rel=1e-12)

    def test_bad_input_names_the_arguments(self):
        with pytest.raises(ValueError, match="values and standard_errors: expected one value"):
            seed_mean_standard_error_interval([0.7, 0.8], [0.01])
        with pytest.raises(ValueError, match="standard errors >= 0"):
            seed_mean_standard_error_interval([0.7], [-0.01])


class TestReplicates:
    def test_one_score_per_resample_in_draw_order(self, binary_data):
        y, score = binary_data
        res = bootstrap_ci(roc_auc_score, y, score, n_resamples=40, seed=9)
        idx = np.random.default_rng(9).integers(0, len(y), size=(40, len(y)))
        assert res.replicates.shape == (40,)
        for b in (0, 17, 39):
            assert res.replicates[b] == pytest.approx(roc_auc_score(y[idx[b]], score[idx[b]]), abs=1e-12)
        assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.percentile(res.replicates, [2.5, 97.5])), abs=1e-12)

    @pytest.mark.filterwarnings("ignore:Only one class is present:UserWarning")
    def test_undefined_resamples_are_nan_in_place(self):
        y = np.array([1, 0, 0, 0, 0, 0])
        res = bootstrap_ci(roc_auc_score, y, np.arange(6.0), n_resamples=100, max_failed_fraction=0.5)
        single_class = resample_indices(6, 100, 0)
        single_class = y[single_class].sum(axis=1) == 0
        assert res.replicates.shape == (100,)
        np.testing.assert_array_equal(np.isnan(res.replicates), single_class)
        assert res.failed == single_class.sum()

    @pytest.mark.filterwarnings("ignore:Only one class is present:UserWarning")
    def test_per_class_replicates_are_the_macro_mean_of_each_resample(self):
        gen = np.random.default_rng(4)
        y = (gen.random((30, 3)) < 0.5).astype(int)
        y[:3, 2], y[3:, 2] = 1, 0  # a rare class, absent from some resamples
        probs = gen.random((30, 3)) + 0.3 * y
        indices = gen.integers(0, 30, size=(25, 30))

        def per_class_auc(yt, p):
            return [roc_auc_score(yt[:, k], p[:, k]) if 0 < yt[:, k].sum() < len(yt) else np.nan for k in range(3)]

        res = bootstrap_ci(per_class_auc, y, probs, per_class=True, indices=indices, method="standard_error")
        for b, i in enumerate(indices):
            defined = [roc_auc_score(y[i, k], probs[i, k]) for k in range(3) if 0 < y[i, k].sum() < 30]
            assert res.replicates[b] == pytest.approx(np.mean(defined), abs=1e-12)

    def test_paired_differences_share_the_resamples(self, binary_data):
        y, score = binary_data
        other = score + np.random.default_rng(1).normal(size=len(y))
        a = bootstrap_ci(roc_auc_score, y, score, n_resamples=30, seed=3)
        b = bootstrap_ci(roc_auc_score, y, other, n_resamples=30, seed=3)
        idx = resample_indices(len(y), 30, 3)
        diff = [roc_auc_score(y[i], score[i]) - roc_auc_score(y[i], other[i]) for i in idx]
        np.testing.assert_allclose(a.replicates - b.replicates, diff, atol=1e-12)


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
        with pytest.raises(ValueError, match="y_true: expected at least 2 resamples .*, got the metric undefined on"):
            bootstrap_ci(roc_auc_score, y, np.arange(6.0), n_resamples=100)

    def test_undefined_on_full_set(self):
        with pytest.raises(
            ValueError,
            match="y_true: expected labels on which the metric is defined .*, got an undefined metric on the full data",
        ):
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
