"""Attaching one handler instance twice to one engine registers its callbacks once (MONAI's convention)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents

from monai_ilm.evaluation.best_weights import BestWeights
from monai_ilm.handlers import (
    AtomicCheckpointSaver,
    DataWaitHandler,
    EmbeddingSaver,
    IntermediateLayerLossHandler,
    LossPartsHandler,
    MomentumUpdateHandler,
    NaNGuard,
    OnlineKNNHandler,
    RepresentationHealthHandler,
)
from monai_ilm.handlers.utils import attach_once
from monai_ilm.losses import IntermediateMSELoss

HANDLERS = {
    "AtomicCheckpointSaver": lambda tmp: AtomicCheckpointSaver(
        str(tmp), {"net": torch.nn.Linear(1, 1)}, save_final=True, save_key_metric=True, save_interval=1
    ),
    "BestWeights": lambda tmp: BestWeights(torch.nn.Linear(1, 1), "val_auc"),
    "DataWaitHandler": lambda tmp: DataWaitHandler(),
    "EmbeddingSaver": lambda tmp: EmbeddingSaver(tmp / "embeddings.npz"),
    "IntermediateLayerLossHandler": lambda tmp: IntermediateLayerLossHandler(IntermediateMSELoss()),
    "LossPartsHandler": lambda tmp: LossPartsHandler(),
    "MomentumUpdateHandler": lambda tmp: MomentumUpdateHandler(),
    "NaNGuard": lambda tmp: NaNGuard(),
    "OnlineKNNHandler": lambda tmp: OnlineKNNHandler([], [], transform=lambda d: d),
    "RepresentationHealthHandler": lambda tmp: RepresentationHealthHandler(),
}


def _engine() -> Engine:
    engine = Engine(lambda e, batch: batch)
    engine.register_events(*IterationEvents)  # as MONAI's Workflow does
    engine.state.device = "cpu"
    return engine


def _registered(engine: Engine) -> int:
    """How many callbacks the engine holds over all events (ignite has no public count)."""
    return sum(len(handlers) for handlers in engine._event_handlers.values())


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_attaching_twice_registers_once(tmp_path: Path, name: str) -> None:
    handler, engine = HANDLERS[name](tmp_path), _engine()
    handler.attach(engine)
    once = _registered(engine)
    assert once > 0
    handler.attach(engine)
    assert _registered(engine) == once


@pytest.mark.parametrize("name", sorted(HANDLERS))
def test_two_instances_each_register(tmp_path: Path, name: str) -> None:
    engine = _engine()
    HANDLERS[name](tmp_path).attach(engine)
    once = _registered(engine)
    HANDLERS[name](tmp_path).attach(engine)
    assert _registered(engine) > once  # the guard is per instance, not per class


def test_attach_once_skips_a_callback_already_on_the_event() -> None:
    engine, calls = Engine(lambda e, batch: None), []

    def callback(engine: Engine) -> None:
        calls.append(engine.state.iteration)

    attach_once(engine, Events.ITERATION_COMPLETED, callback)
    attach_once(engine, Events.ITERATION_COMPLETED, callback)
    attach_once(engine, Events.EPOCH_COMPLETED, callback)  # another event: registered
    engine.run([0, 1], max_epochs=1)
    assert calls == [1, 2, 2]


def test_attach_once_sees_a_filtered_event() -> None:
    engine, calls = Engine(lambda e, batch: None), []
    handler = SimpleNamespace(record=lambda engine: calls.append(engine.state.iteration))
    attach_once(engine, Events.ITERATION_COMPLETED(every=2), handler.record)
    attach_once(engine, Events.ITERATION_COMPLETED(every=2), handler.record)
    engine.run([0, 1, 2, 3], max_epochs=1)
    assert calls == [2, 4]


def test_momentum_update_runs_once_per_step_when_attached_twice() -> None:
    steps = []
    engine = Engine(lambda e, batch: None)
    engine.network = SimpleNamespace(momentum_update=steps.append)
    handler = MomentumUpdateHandler(0.9)
    handler.attach(engine)
    handler.attach(engine)
    engine.run([0, 1, 2], max_epochs=1)
    assert steps == [0.9, 0.9, 0.9]


def test_embedding_saver_keeps_each_row_once_when_attached_twice(tmp_path: Path) -> None:
    engine = Engine(lambda e, batch: batch)
    saver = EmbeddingSaver(tmp_path / "embeddings.npz", ids=["a", "b", "c"])
    saver.attach(engine)
    saver.attach(engine)
    engine.run([{"pred": torch.zeros(2, 4)}, {"pred": torch.ones(1, 4)}], max_epochs=1)
    with np.load(tmp_path / "embeddings.npz") as data:
        assert data["embeddings"].shape == (3, 4)
