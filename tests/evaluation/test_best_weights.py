"""BestWeights: the weights of the best finite validation metric, ties keeping the earlier epoch."""

from __future__ import annotations

import math

import pytest
import torch
from ignite.engine import Engine, Events

from monai_ilm.evaluation.best_weights import BestWeights


def validation_run(network: torch.nn.Linear, scores: list[float]) -> BestWeights:
    """Run an engine for ``len(scores)`` epochs; epoch ``e`` sets the weight to ``e`` and reports ``scores[e-1]``."""
    engine = Engine(lambda engine, batch: None)

    @engine.on(Events.EPOCH_COMPLETED)
    def score(engine: Engine) -> None:  # registered before BestWeights, as a key metric is
        with torch.no_grad():
            network.weight.fill_(float(engine.state.epoch))
        engine.state.metrics["val_auc"] = scores[engine.state.epoch - 1]

    best = BestWeights(network, "val_auc")
    best.attach(engine)
    engine.run([0], max_epochs=len(scores))
    return best


def test_restores_the_best_epoch_ties_keep_the_earlier_and_nan_never_wins():
    network = torch.nn.Linear(1, 1, bias=False)
    best = validation_run(network, [0.6, math.nan, 0.8, 0.8, 0.7])
    assert best.best_epoch == 3 and best.best_metric == 0.8
    assert best.history[0] == 0.6 and math.isnan(best.history[1]) and best.history[2:] == [0.8, 0.8, 0.7]
    assert network.weight.item() == 5.0
    best.restore()
    assert network.weight.item() == 3.0


def test_restore_without_a_finite_metric_raises():
    best = validation_run(torch.nn.Linear(1, 1, bias=False), [math.nan, math.nan])
    assert best.best_epoch is None
    with pytest.raises(
        RuntimeError,
        match=r"val_auc: expected a finite metric from a validation epoch, got none \(nothing to restore\)",
    ):
        best.restore()
