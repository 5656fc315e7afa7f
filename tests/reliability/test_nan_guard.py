"""A NaN or infinite loss stops training before the optimiser step, naming the iteration and the bad part."""

from __future__ import annotations

import logging

import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from monai_ilm.handlers import AtomicCheckpointSaver, NaNGuard, NonFiniteLossError
from monai_ilm.losses import IntermediateBarlowTwinsLoss, IntermediateMSELoss
from tests.reliability._training import build, weights


def poisoned(loss_class: type, **kwargs):
    """An intermediate loss whose ``layer3`` term is NaN while its ``poisoned`` flag is set."""

    class Poisoned(loss_class):
        poisoned = False

        def layer_losses(self, q_feats, k_feats):
            terms = list(super().layer_losses(q_feats, k_feats))
            if self.poisoned:
                terms[2] = terms[2] * float("nan")
            return terms

    return Poisoned(**kwargs)


LOSSES = {
    "mse": (IntermediateMSELoss, {"pool_sizes": (4, 4, 2, 1)}),
    # projectors with BatchNorm: NaNGuard(modules=loss) rolls their running statistics back too
    "barlow": (IntermediateBarlowTwinsLoss, {"in_channels": (4, 8, 8, 8), "projector_dims": (8, 8), "weights": 1e-3}),
}


@pytest.mark.parametrize("method", sorted(LOSSES))
def test_nan_in_one_loss_part_stops_before_the_step_and_keeps_the_last_good_checkpoint(tmp_path, caplog, method):
    loss = poisoned(LOSSES[method][0], **LOSSES[method][1])
    guard = NaNGuard(modules=loss)
    trainer, network, _ = build(tmp_path, max_epochs=2, intermediate_loss=loss, extra_handlers=(guard,))
    # a final-checkpoint saver too: NaNGuard re-raises first, so it does not save the failed iteration
    AtomicCheckpointSaver(str(tmp_path), {"network": network}, save_final=True, final_filename="final.pt").attach(
        trainer
    )
    snapshots = {}
    trainer.add_event_handler(
        Events.ITERATION_COMPLETED(once=2), lambda _: snapshots.update(good=weights(network), loss=weights(loss))
    )
    trainer.add_event_handler(Events.ITERATION_STARTED(once=3), lambda _: setattr(loss, "poisoned", True))

    with caplog.at_level(logging.ERROR), pytest.raises(NonFiniteLossError) as error:
        trainer.run()

    message = str(error.value)
    assert "iteration 3 (epoch 1, iteration 3 of 5 in the epoch)" in message
    assert "loss_layer3 = nan" in message and "loss = nan" in message
    assert "loss_infonce" not in message and "loss_layer2" not in message  # only the parts that went bad
    assert "weights are those after iteration 2" in message and message in caplog.text
    # the network in memory (encoders, heads, BatchNorm statistics, queue, pointer) is that of the last good step
    after = weights(network)
    assert all(torch.equal(after[k], snapshots["good"][k]) for k in after)
    assert all(torch.equal(v, snapshots["loss"][k]) for k, v in weights(loss).items())
    # the last good checkpoint is intact and nothing of iteration 3 was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint_iteration=2.pt"]
    saved = torch.load(tmp_path / "checkpoint_iteration=2.pt", map_location="cpu", weights_only=True)
    assert saved["trainer"]["iteration"] == 2
    assert all(torch.equal(saved["network"][k], snapshots["good"][k]) for k in after)


def scalar_engine(losses: list[dict[str, float]], guard: NaNGuard, epoch_length: int | None = None) -> Engine:
    """An engine whose iteration outputs the given loss values and fires BACKWARD_COMPLETED as a trainer does."""

    def step(engine, batch):
        engine.state.output = {k: torch.tensor(v) for k, v in batch.items()}
        engine.state.output["pred"] = torch.zeros(3)  # not a loss: never checked
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        return engine.state.output

    engine = Engine(step)
    engine.register_events(*IterationEvents)
    guard.attach(engine)
    engine.state.epoch_length = epoch_length
    return engine


def test_finite_losses_pass():
    engine = scalar_engine([], NaNGuard())
    engine.run([{"loss": 1.0, "loss_a": 0.5}] * 4, max_epochs=2)
    assert engine.state.iteration == 8


def test_overflowed_total_is_named_as_such():
    data = [{"loss": float("inf"), "loss_infonce": 1e38, "loss_layer1": 1e38}]
    with pytest.raises(NonFiniteLossError, match=r"loss = inf, while every part is finite \(their sum overflowed\)"):
        scalar_engine(data, NaNGuard()).run(data)


def test_check_every_reports_the_first_bad_iteration_and_the_lag():
    data = [{"loss": 1.0}, {"loss": float("nan")}, {"loss": 1.0}, {"loss": 1.0}]
    with pytest.raises(NonFiniteLossError, match=r"iteration 2 \(epoch 1.*Detected at iteration 3 \(check_every=3\)"):
        scalar_engine(data, NaNGuard(check_every=3)).run(data)


def test_check_every_still_checks_at_every_epoch_end():
    data = [{"loss": 1.0}, {"loss": float("-inf")}]
    with pytest.raises(NonFiniteLossError, match="iteration 2 .*loss = -inf.*Detected at iteration 2"):
        scalar_engine(data, NaNGuard(check_every=100)).run(data)


@pytest.mark.parametrize("value", [0, -1, 1.5, True, "2"])
def test_bad_check_every(value):
    with pytest.raises(ValueError, match="check_every: expected an integer of at least 1"):
        NaNGuard(check_every=value)
