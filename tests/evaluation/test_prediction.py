"""Testing a downstream model: test metrics against scikit-learn, intervals, end to end, AMP."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import softmax
from sklearn.metrics import f1_score, roc_auc_score

from monai_ilm.evaluation import (
    PAPER_TASKS,
    FitResult,
    Predictions,
    downstream_network,
    downstream_rows,
    run_downstream,
    score_predictions,
)
from monai_ilm.results import validate
from monai_ilm.statistics.intervals import resample_indices
from tests.evaluation._downstream import brightness_items, loader


def test_binary_auc_matches_sklearn(random_classifier_outputs):
    r = random_classifier_outputs["binary_auc"]
    assert r.value == pytest.approx(roc_auc_score(r.labels, softmax(r.logits, axis=1)[:, 1]))
    np.testing.assert_allclose(r.probabilities, softmax(r.logits, axis=1))
    paper = PAPER_TASKS["binary_auc"].test_metric(r.labels, r.logits)
    assert paper == pytest.approx(roc_auc_score(r.labels, r.logits[:, 1]))  # D12: the raw class-1 logit
    assert r.ci_low <= r.value <= r.ci_high and r.ci.n == 24 and r.metric == "auc"


def test_f1_matches_sklearn(random_classifier_outputs):
    r = random_classifier_outputs["f1"]
    assert r.value == pytest.approx(f1_score(r.labels, r.logits.argmax(1), average="macro"))
    micro = PAPER_TASKS["f1"].val_metric(r.labels, r.logits)  # D13: the reference selected on micro-F1
    assert micro == pytest.approx(f1_score(r.labels, r.logits.argmax(1), average="micro"))
    assert r.metric == "f1_macro"


def test_multilabel_mean_auc_matches_sklearn(random_classifier_outputs):
    r = random_classifier_outputs["multilabel"]
    per_class = [roc_auc_score(r.labels[:, c], r.logits[:, c]) for c in range(3)]
    np.testing.assert_allclose(r.per_class, per_class)
    assert r.value == pytest.approx(np.mean(per_class)) and r.metric == "mean_auc"
    np.testing.assert_allclose(r.probabilities, 1 / (1 + np.exp(-r.logits)))


def test_paper_standard_error_interval_is_narrower(random_classifier_outputs):
    r = random_classifier_outputs["binary_auc"]
    preds = Predictions(r.logits, r.labels, r.ids)
    se = score_predictions(preds, "binary_auc", n_resamples=200, ci_method="standard_error")
    assert se.ci.full_value == r.value and (se.ci_high - se.ci_low) < (r.ci_high - r.ci_low)
    assert se.value == r.value  # the full-set metric for every ci_method (the schema's value column)
    with pytest.raises(ValueError, match="ci_method"):
        score_predictions(preds, "binary_auc", ci_method="bca")


def test_run_downstream_is_reproducible_and_writes_valid_rows():
    items_tr, items_va, items_te = brightness_items(16, 1), brightness_items(12, 2), brightness_items(12, 3)

    def run():
        net = downstream_network(None, 2, freeze_encoder=True, encoder_name="resnet18", seed=0)
        return run_downstream(
            net,
            loader(items_tr, shuffle=True),
            loader(items_va),
            loader(items_te),
            "f1",
            max_epochs=2,
            device="cpu",
            seed=0,
            n_resamples=100,
            id_key="id",
        )

    a, b = run(), run()
    np.testing.assert_array_equal(a.logits, b.logits)
    assert a.fit.history == b.fit.history and a.ci == b.ci
    assert a.ids == [f"s3-{i}" for i in range(12)]
    rows = downstream_rows(a, "linear", "idc", "supervised", 1.0, 0, "run-1", config_hash="abc")
    table = validate(pd.DataFrame(rows))
    assert len(table) == 1 and table.loc[0, "metric"] == "f1_macro" and table.loc[0, "n"] == 12


def test_amp_applies_to_training_only_and_test_predictions_stay_float32(monkeypatch):
    from monai.engines import SupervisedTrainer

    import monai_ilm.evaluation.prediction as prediction

    seen = []
    train, test = SupervisedTrainer.run, prediction.predict
    monkeypatch.setattr(SupervisedTrainer, "run", lambda self: seen.append(("fit", self.amp)) or train(self))
    monkeypatch.setattr(
        prediction, "predict", lambda *a, **k: seen.append(("test", k.get("amp", False))) or test(*a, **k)
    )
    items = brightness_items(8, 1)
    net = downstream_network(None, 2, freeze_encoder=True, encoder_name="resnet18", seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # amp on a machine without CUDA: MONAI's autocast and scaler disable themselves
        result = run_downstream(
            net, loader(items), loader(items), loader(items), "f1", max_epochs=1, device="cpu", n_resamples=0, amp=True
        )
    assert seen == [("fit", True), ("test", False)]
    assert result.logits.dtype == np.float64 and result.fit.selected_epoch == 1


def _fit_with_counts(counts, samples: int, multilabel: bool = True) -> FitResult:
    return FitResult("val_mean_auc", [0.5], 1, 0.5, 1, "best", samples, np.asarray(counts, float), multilabel)


def test_a_finding_the_head_never_saw_is_nan_warned_of_and_left_out_of_the_mean_and_the_interval():
    rng = np.random.default_rng(0)
    labels = (rng.random((60, 14)) < 0.4).astype(float)
    logits = labels + rng.normal(size=(60, 14))
    counts = np.full(14, 3.0)
    counts[[1, 5]] = 0  # no positive training example
    counts[9] = 10  # every training example positive
    trained = [c for c in range(14) if c not in (1, 5, 9)]
    with pytest.warns(UserWarning) as caught:
        result = score_predictions(
            Predictions(logits, labels, [str(i) for i in range(60)]),
            "multilabel",
            n_resamples=100,
            fit=_fit_with_counts(counts, samples=10),
        )
    message = " ".join(str(w.message) for w in caught)
    assert "'Cardiomegaly' (column 1) (no positive training label)" in message
    assert "'Nodule' (column 5) (no positive" in message and "'Edema' (column 9) (no negative" in message
    assert np.isnan(result.per_class[[1, 5, 9]]).all()
    expected = [roc_auc_score(labels[:, c], logits[:, c]) for c in trained]
    np.testing.assert_allclose(result.per_class[trained], expected, rtol=1e-12)
    assert result.value == pytest.approx(np.mean(expected), rel=1e-12)
    # every resample is the mean over the trained findings only
    indices = resample_indices(60, 100, seed=0)
    first = np.mean([roc_auc_score(labels[indices[0], c], logits[indices[0], c]) for c in trained])
    assert result.ci.replicates[0] == pytest.approx(first, rel=1e-12)
    with pytest.raises(ValueError, match="expected a finding with both positive and negative training labels"):
        score_predictions(
            Predictions(logits, labels, []), "multilabel", n_resamples=0, fit=_fit_with_counts(np.zeros(14), 10)
        )


def test_a_class_missing_from_training_is_warned_of_for_single_label_tasks(random_classifier_outputs):
    r = random_classifier_outputs["binary_auc"]
    with pytest.warns(UserWarning, match="no training example of class"):
        result = score_predictions(
            Predictions(r.logits, r.labels, r.ids), "binary_auc", n_resamples=0, fit=_fit_with_counts([8, 0], 8, False)
        )
    assert result.value == pytest.approx(r.value)
