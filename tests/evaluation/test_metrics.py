from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.special import softmax
from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

from monai_ilm.evaluation.metrics import binary_auc, f1, mean_auc, roc_auc


@pytest.fixture
def gen():
    return np.random.default_rng(7)


class TestRocAuc:
    def test_matches_sklearn_with_ties(self, gen):
        y = gen.integers(0, 2, 200)
        score = np.round(gen.normal(size=200) + y, 1)  # many ties
        assert roc_auc(y, score) == pytest.approx(roc_auc_score(y, score), abs=1e-12)

    def test_single_class(self):
        with pytest.raises(
            ValueError, match=r"y_true: expected both classes 0 and 1, got only class [01] \(the ROC-AUC is undefined\)"
        ):
            roc_auc(np.ones(4), np.arange(4.0))

    def test_non_binary_labels(self):
        with pytest.raises(ValueError, match=r"y_true: expected binary labels in \{0, 1\}, got \[2"):
            roc_auc(np.array([0, 1, 2]), np.arange(3.0))


class TestMeanAuc:
    def test_matches_sklearn_and_skips_constant_findings(self, gen):
        y = (gen.random((60, 14)) < 0.3).astype(int)
        y[:, 4] = 0  # a finding without positives: no AUC
        y[:, 9] = 1  # a finding without negatives
        probs = 1 / (1 + np.exp(-(gen.normal(size=(60, 14)) + y)))
        with pytest.warns(UserWarning, match=r"#4 \(column 4: no positive label\), #9 \(column 9: no negative"):
            res = mean_auc(y, torch.tensor(probs))
        defined = [c for c in range(14) if c not in (4, 9)]
        expected = [roc_auc_score(y[:, c], probs[:, c]) for c in defined]
        assert res.skipped == (4, 9)
        assert np.isnan(res.per_class[[4, 9]]).all()
        np.testing.assert_allclose(res.per_class[defined], expected, atol=1e-12)
        assert res.mean == pytest.approx(np.mean(expected), abs=1e-12)
        assert res.mean == pytest.approx(roc_auc_score(y[:, defined], probs[:, defined], average="macro"), abs=1e-12)

    def test_absent_finding_is_skipped_with_a_warning_naming_it(self, gen):
        y = (gen.random((40, 4)) < 0.4).astype(int)
        y[:, 1] = 0  # no positive in this split
        y[:, 3] = 1  # no negative in this split
        logits = gen.normal(size=(40, 4)) + y
        names = ["Atelectasis", "Cardiomegaly", "Effusion", "Hernia"]
        with pytest.warns(
            UserWarning,
            match=r"y_true: .*'Cardiomegaly' \(column 1: no positive label\).*'Hernia' "
            r"\(column 3: no negative label\).*over the 2 other findings",
        ):
            res = mean_auc(y, logits, class_names=names)
        expected = [roc_auc_score(y[:, c], logits[:, c]) for c in (0, 2)]
        assert res.skipped == (1, 3)
        assert res.mean == pytest.approx(np.mean(expected), abs=1e-12)

    def test_no_warning_when_every_finding_is_defined(self, gen, recwarn):
        y = np.tile([[0, 1], [1, 0]], (5, 1))
        mean_auc(y, gen.normal(size=(10, 2)))
        assert len(recwarn) == 0

    def test_saturated_sigmoid_logits_are_ranked_as_logits(self):
        # expit(37) == expit(45) == 1.0 in float64: ranking the logits keeps the order the probabilities lose
        y = np.array([[0], [1], [0], [1]])
        logits = np.array([[38.0], [39.0], [40.0], [45.0]])
        assert mean_auc(y, logits).mean == pytest.approx(roc_auc_score(y[:, 0], logits[:, 0])) == 0.75

    def test_all_findings_constant(self):
        with pytest.raises(
            ValueError,
            match="y_true: expected a finding with both label values, got a single label value for every finding",
        ):
            mean_auc(np.zeros((5, 3)), np.random.default_rng(0).random((5, 3)))

    def test_shape_mismatch(self):
        with pytest.raises(ValueError, match="y_true and probs: expected the same shape"):
            mean_auc(np.zeros((5, 3)), np.zeros((5, 2)))


class TestBinaryAuc:
    def test_probability_matches_sklearn(self, gen):
        y = gen.integers(0, 2, 100)
        logits = gen.normal(size=(100, 2)) + np.stack([-y, y], axis=1)
        expected = roc_auc_score(y, softmax(logits, axis=1)[:, 1])
        assert binary_auc(y, logits) == pytest.approx(expected, abs=1e-12)
        assert binary_auc(y, logits, score="raw_logit") == pytest.approx(roc_auc_score(y, logits[:, 1]), abs=1e-12)

    def test_raw_logit_is_not_rank_equivalent(self):
        # docs/method.md D12: l_1 ranks the negative first, softmax(l)_1 ranks the positive first
        y = np.array([0, 1])
        logits = np.array([[5.0, 4.0], [0.0, 1.0]])
        assert binary_auc(y, logits, score="raw_logit") == pytest.approx(roc_auc_score(y, logits[:, 1])) == 0.0
        assert binary_auc(y, logits) == pytest.approx(roc_auc_score(y, softmax(logits, axis=1)[:, 1])) == 1.0

    def test_confident_cases_do_not_tie(self):
        # l1 - l0 = 40, 39, 38, 45: the softmax probability of class 1 is exactly 1.0 in float64 for all four
        y = np.array([0, 1, 0, 1])
        logits = np.array([[0.0, 40.0], [0.0, 39.0], [0.0, 38.0], [0.0, 45.0]])
        expected = roc_auc_score(y, logits[:, 1] - logits[:, 0])
        assert expected == 0.75
        assert binary_auc(y, logits) == pytest.approx(expected, abs=1e-12)

    def test_one_dimensional_score(self, gen):
        y = gen.integers(0, 2, 50)
        s = gen.normal(size=50) + y
        assert binary_auc(y, s) == pytest.approx(roc_auc_score(y, s), abs=1e-12)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="score: expected one of"):
            binary_auc([0, 1], [[0, 1], [1, 0]], score="margin")
        with pytest.raises(ValueError, match=r"logits: expected shape \(n, 2\)"):
            binary_auc([0, 1], np.zeros((2, 3)))


class TestF1:
    @pytest.mark.parametrize("n_classes", [2, 4])
    def test_macro_and_micro_match_sklearn(self, gen, n_classes):
        y = gen.integers(0, n_classes, 120)
        logits = gen.normal(size=(120, n_classes))
        logits[np.arange(120), y] += 0.8
        pred = logits.argmax(1)
        labels = list(range(n_classes))
        assert f1(y, logits) == pytest.approx(f1_score(y, pred, average="macro", labels=labels), abs=1e-12)
        assert f1(y, logits, average="micro") == pytest.approx(f1_score(y, pred, average="micro"), abs=1e-12)
        assert f1(y, logits, average="micro") == pytest.approx(accuracy_score(y, pred), abs=1e-12)

    def test_binary_and_log_probabilities(self, gen):
        y = gen.integers(0, 2, 80)
        logp = np.log(softmax(gen.normal(size=(80, 2)) + np.stack([-y, y], 1), axis=1))
        assert f1(y, logp, average="binary") == pytest.approx(f1_score(y, logp.argmax(1)), abs=1e-12)

    def test_class_never_predicted_counts_as_zero(self):
        y = np.array([0, 1, 1, 0])
        logits = np.array([[1.0, 0.0]] * 4)  # always class 0
        expected = f1_score(y, np.zeros(4, int), average="macro", labels=[0, 1], zero_division=0)
        assert f1(y, logits) == pytest.approx(expected, abs=1e-12)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="average: expected one of"):
            f1([0, 1], np.eye(2), average="weighted")
        with pytest.raises(ValueError, match=r"y_true: expected integer class labels in \[0, 2\)"):
            f1([0, 2], np.eye(2))
        with pytest.raises(ValueError, match="y_true: expected shape"):
            f1([0, 1, 1], np.eye(2))
        with pytest.raises(ValueError, match="logits: expected 2 class columns"):
            f1([0, 1, 2], np.eye(3), average="binary")


class TestIndependentReferences:
    """Besides scikit-learn (above): MONAI's ROC-AUC, SciPy's Mann-Whitney U and the F1 closed form."""

    def test_mean_auc_matches_monai_on_multilabel_data_with_ties(self, gen):
        from monai.metrics import compute_roc_auc

        y = (gen.random((80, 5)) < 0.4).astype(int)
        logits = np.round(gen.normal(size=(80, 5)) + y, 1)  # many ties
        res = mean_auc(y, logits)
        expected = compute_roc_auc(torch.as_tensor(logits), torch.as_tensor(y), average="none")
        np.testing.assert_allclose(res.per_class, expected, atol=1e-12)
        assert res.mean == pytest.approx(compute_roc_auc(torch.as_tensor(logits), torch.as_tensor(y)), abs=1e-12)

    def test_roc_auc_is_the_mann_whitney_statistic(self, gen):
        from scipy.stats import mannwhitneyu

        y = gen.integers(0, 2, 150)
        score = np.round(gen.normal(size=150) + y, 1)
        pos, neg = score[y == 1], score[y == 0]
        assert roc_auc(y, score) == pytest.approx(mannwhitneyu(pos, neg).statistic / (pos.size * neg.size), abs=1e-12)

    def test_f1_matches_the_closed_form_on_counts(self, gen):
        y = gen.integers(0, 3, 90)
        logits = gen.normal(size=(90, 4))  # class 3 never in y_true: its F1 is 0 (or undefined -> 0)
        pred = logits.argmax(1)
        per_class = []
        for c in range(4):
            tp, fp, fn = np.sum((pred == c) & (y == c)), np.sum((pred == c) & (y != c)), np.sum((pred != c) & (y == c))
            per_class.append(2 * tp / (2 * tp + fp + fn) if 2 * tp + fp + fn else 0.0)
        assert f1(y, logits) == pytest.approx(np.mean(per_class), abs=1e-12)
        assert f1(y, logits, average="micro") == pytest.approx(np.mean(pred == y), abs=1e-12)
