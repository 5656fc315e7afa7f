"""Downstream training: best-epoch selection against per-epoch weight snapshots, checkpoints, arguments."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from ignite.engine import Events
from scipy.special import softmax
from sklearn.metrics import roc_auc_score

from monai_ilm.evaluation import (
    DownstreamClassifier,
    FeatureBatches,
    evaluate_downstream,
    fit_downstream,
    load_pretrained_encoder,
)
from tests.evaluation._downstream import brightness_items, loader, states_equal, tiny_encoder


class WeightSnapshots:
    """Test handler: a copy of the network weights after every validation epoch."""

    def __init__(self, network: torch.nn.Module) -> None:
        self.network, self.states = network, {}

    def attach(self, engine) -> None:
        engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine) -> None:
        self.states[engine.state.epoch] = copy.deepcopy(self.network.state_dict())


def diverging_problem(seed: int = 0):
    """A head that starts perfect on validation, trained on *inverted* labels, so validation gets worse."""
    g = torch.Generator().manual_seed(seed)

    def split(n: int, invert: bool):
        x = torch.randn(n, 2, generator=g)
        y = (x[:, 0] > 0).float()
        return x, (1 - y) if invert else y

    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = split(64, True), split(32, False), split(40, False)
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        head.bias.zero_()
    loaders = (
        FeatureBatches(x_tr, y_tr, 16, shuffle=True),
        FeatureBatches(x_va, y_va, 16),
        FeatureBatches(x_te, y_te, 16, ids=[f"t{i}" for i in range(40)]),
    )
    return head, loaders, (x_te, y_te)


def test_test_evaluation_uses_the_best_validation_weights(tmp_path):
    head, (train, val, test), (x_te, y_te) = diverging_problem()
    snapshots = WeightSnapshots(head)
    fit = fit_downstream(
        head,
        train,
        val,
        "binary_auc",
        max_epochs=4,
        lr=0.05,
        device="cpu",
        val_handlers=[snapshots],
        ckpt_dir=tmp_path,
    )
    assert len(fit.history) == 4 and fit.history[-1] < max(fit.history)
    assert fit.best_epoch == int(np.argmax(fit.history)) + 1 < 4
    assert fit.selected_epoch == fit.best_epoch
    assert states_equal(head.state_dict(), snapshots.states[fit.best_epoch])
    saved = torch.load(tmp_path / "model.pt", map_location="cpu", weights_only=True)
    assert states_equal(saved, snapshots.states[fit.best_epoch])

    result = evaluate_downstream(head, test, "binary_auc", device="cpu", n_resamples=0, id_key="id")

    def test_auc(state: dict) -> tuple[np.ndarray, float]:
        ref = torch.nn.Linear(2, 2)
        ref.load_state_dict(state)
        with torch.no_grad():
            logits = ref(x_te).numpy()
        return logits, roc_auc_score(y_te.numpy(), softmax(logits, axis=1)[:, 1])

    best_logits, best_auc = test_auc(snapshots.states[fit.best_epoch])
    _, last_auc = test_auc(snapshots.states[4])
    np.testing.assert_allclose(result.logits, best_logits, rtol=1e-6)
    assert result.value == pytest.approx(best_auc) and best_auc > last_auc
    assert result.ids == [f"t{i}" for i in range(40)]


def test_select_last_reproduces_the_reference():
    head, (train, val, _), _ = diverging_problem()
    snapshots = WeightSnapshots(head)
    fit = fit_downstream(
        head, train, val, "binary_auc", max_epochs=4, lr=0.05, device="cpu", val_handlers=[snapshots], select="last"
    )
    assert fit.selected_epoch == 4 and fit.best_epoch < 4
    assert states_equal(head.state_dict(), snapshots.states[4])


def test_fit_arguments_are_checked():
    head, (train, val, _), _ = diverging_problem()
    with pytest.raises(ValueError, match="select"):
        fit_downstream(head, train, val, "binary_auc", select="worst")
    with pytest.raises(ValueError, match="task"):
        fit_downstream(head, train, val, "segmentation")
    frozen = DownstreamClassifier(tiny_encoder(), 2, freeze_encoder=True)
    frozen.head.requires_grad_(False)
    with pytest.raises(ValueError, match="trainable"):
        fit_downstream(frozen, train, val, "binary_auc", max_epochs=1, device="cpu")


def test_fine_tuned_encoder_reloads_from_the_saved_classifier(tmp_path):
    net = DownstreamClassifier(tiny_encoder(), 2)
    items = brightness_items(8, seed=1)
    fit_downstream(net, loader(items), loader(items), "binary_auc", max_epochs=1, device="cpu", ckpt_dir=tmp_path)
    encoder = load_pretrained_encoder(tmp_path / "model.pt", tiny_encoder(seed=3), prefix="encoder.")
    assert states_equal(encoder.state_dict(), net.encoder.state_dict())


@pytest.mark.filterwarnings("ignore:y_true. no AUC")  # the validation labels are as degenerate
def test_training_labels_are_counted_and_untrained_findings_named():
    """Finding 1 has no positive and finding 2 no negative training label; both are untrained."""
    y = np.array([[1, 0, 1], [0, 0, 1], [1, 0, 1], [0, 0, 1], [1, 0, 1]], dtype=np.float32)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    head = torch.nn.Linear(4, 3)
    fit = fit_downstream(
        head, FeatureBatches(x, y, 2, shuffle=True), FeatureBatches(x, y, 2), "multilabel", max_epochs=2, device="cpu"
    )
    assert fit.train_samples == 10 and fit.multilabel
    np.testing.assert_array_equal(fit.train_label_counts, [6, 0, 10])
    assert fit.untrained_classes == (1, 2)
    labels = np.array([0, 0, 0, 0, 0])
    single = fit_downstream(
        torch.nn.Linear(4, 2),
        FeatureBatches(x, labels, 2),
        FeatureBatches(x, labels, 2),
        "f1",
        max_epochs=1,
        device="cpu",
    )
    np.testing.assert_array_equal(single.train_label_counts, [5, 0])
    assert single.untrained_classes == (1,) and not single.multilabel
