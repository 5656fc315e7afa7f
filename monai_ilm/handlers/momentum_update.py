"""The momentum (EMA) update of MoCo's key encoder."""

from __future__ import annotations

import math
from functools import partial

from ignite.engine import Engine, Events

from monai_ilm.checks import check_choice, check_real, checks_arguments
from monai_ilm.utils import unwrap_network

__all__ = ["MomentumUpdateHandler", "momentum_at"]

SCHEDULES = ("constant", "cosine")


def momentum_at(step: int, total_steps: int, base: float, final: float = 1.0, schedule: str = "constant") -> float:
    """Momentum after ``step`` optimiser steps (0-based) out of ``total_steps``.

    ``constant`` gives ``base`` (MoCo, the reference); ``cosine`` rises from ``base`` to ``final``
    as m = final − (final − base)·(cos(π·step/total) + 1)/2 (BYOL, Grill et al. 2020).
    """
    if schedule == "constant":
        return base
    progress = min(step / max(total_steps, 1), 1.0)
    return final - (final - base) * (math.cos(math.pi * progress) + 1.0) / 2.0


_FRACTION = partial(check_real, low=0.0, high=1.0)


@checks_arguments(momentum=_FRACTION, final_momentum=_FRACTION, schedule=partial(check_choice, allowed=SCHEDULES))
class MomentumUpdateHandler:
    """Updates the key encoder as θ_k ← m·θ_k + (1 − m)·θ_q after every optimiser step.

    Attach it to the :class:`~monai_ilm.engines.MoCoTrainer` only (never to an evaluator), on
    ``ITERATION_COMPLETED``. The momentum of the step is stored as ``engine.state.moco_momentum``
    for ``StatsHandler(state_attributes=["moco_momentum"])``. The schedule position is the engine's
    iteration count, so a resumed run continues the schedule where it stopped.

    Args:
        momentum: base momentum m (0.999 as the reference).
        schedule: ``"constant"`` or ``"cosine"`` (see :func:`momentum_at`).
        final_momentum: the value the cosine schedule reaches at the last iteration.

    Raises:
        ValueError: for a momentum outside [0, 1] or an unknown schedule.
    """

    def __init__(self, momentum: float = 0.999, schedule: str = "constant", final_momentum: float = 1.0) -> None:
        self.momentum = momentum
        self.schedule = schedule
        self.final_momentum = final_momentum

    def attach(self, engine: Engine) -> None:
        if engine.has_event_handler(self, Events.ITERATION_COMPLETED):
            return  # attached already: one update per step, and the momentum of a running schedule is kept
        engine.state.moco_momentum = self.momentum
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        total = (engine.state.epoch_length or 0) * (engine.state.max_epochs or 0)
        m = momentum_at(engine.state.iteration - 1, total, self.momentum, self.final_momentum, self.schedule)
        unwrap_network(engine.network).momentum_update(m)
        engine.state.moco_momentum = m
