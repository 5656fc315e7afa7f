"""NaNGuard's output_transform: the loss parts can come from any engine output."""

from __future__ import annotations

import pytest
import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents

from monai_ilm.handlers import NaNGuard, NonFiniteLossError


def _engine(outputs: list) -> Engine:
    def step(engine: Engine, batch: int):
        engine.state.output = outputs[batch]
        engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
        return engine.state.output

    engine = Engine(step)
    engine.register_events(*IterationEvents)
    return engine


def test_output_transform_maps_a_tuple_output_to_named_parts():
    outputs = [(torch.tensor(1.0), torch.tensor(0.5)), (torch.tensor(2.0), torch.tensor(float("inf")))]
    engine = _engine(outputs)
    NaNGuard(output_transform=lambda output: {"loss": output[0], "loss_aux": output[1]}).attach(engine)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss at iteration 2 .*: loss_aux = inf\."):
        engine.run([0, 1], max_epochs=1)


def test_default_reads_the_loss_entries_of_a_dict_output():
    engine = _engine([{"loss": torch.tensor(float("nan")), "other": torch.tensor(1.0)}])
    NaNGuard().attach(engine)
    with pytest.raises(NonFiniteLossError, match=r"iteration 1 .*: loss = nan\."):
        engine.run([0], max_epochs=1)
    engine = _engine([{"loss": torch.tensor(1.0), "other": torch.tensor(float("nan"))}])  # not a loss part
    NaNGuard().attach(engine)
    engine.run([0], max_epochs=1)
