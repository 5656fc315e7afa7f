from __future__ import annotations

import math

import pytest
import torch

from monai_ilm.engines import MoCoTrainer
from monai_ilm.handlers import MomentumUpdateHandler, momentum_at
from tests.helpers import pattern_batches, tiny_moco


def test_constant_schedule():
    assert momentum_at(5, 10, 0.999) == 0.999


def test_cosine_schedule_closed_form():
    assert momentum_at(0, 100, 0.99, 1.0, "cosine") == pytest.approx(0.99)
    assert momentum_at(50, 100, 0.99, 1.0, "cosine") == pytest.approx(0.995)
    assert momentum_at(100, 100, 0.99, 1.0, "cosine") == pytest.approx(1.0)
    assert momentum_at(25, 100, 0.99, 1.0, "cosine") == pytest.approx(1 - 0.01 * (math.cos(math.pi / 4) + 1) / 2)


def test_handler_follows_the_schedule_over_a_run():
    net = tiny_moco()
    trainer = MoCoTrainer(
        "cpu",
        2,
        pattern_batches(2, 4),
        net,
        torch.optim.SGD(net.parameters(), lr=0.01),
        train_handlers=[MomentumUpdateHandler(0.9, schedule="cosine")],
    )
    seen = []
    from ignite.engine import Events

    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: seen.append(e.state.moco_momentum))
    trainer.run()
    assert seen == pytest.approx([momentum_at(i, 4, 0.9, 1.0, "cosine") for i in range(4)])


def test_errors():
    with pytest.raises(ValueError, match="momentum"):
        MomentumUpdateHandler(1.2)
    with pytest.raises(ValueError, match="schedule"):
        MomentumUpdateHandler(0.99, schedule="linear")
