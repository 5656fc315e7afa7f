"""Epoch means of every loss part, written into ``engine.state.metrics``."""

from __future__ import annotations

import torch
from ignite.engine import Engine, Events

from monai_ilm.distributed import average_over_ranks

__all__ = ["LossPartsHandler"]


class LossPartsHandler:
    """Averages every ``loss*`` scalar of ``engine.state.output`` over the epoch.

    The sums stay on the device during the epoch (no host synchronisation per iteration) and the
    means are written as ``engine.state.metrics[prefix + key]`` on ``EPOCH_COMPLETED``, where
    ``StatsHandler``, ``TensorBoardStatsHandler``, ``CheckpointSaver(key_metric_name=...)`` and
    the dashboard's training curves find them. Attach it before handlers that read those metrics.

    In a distributed run the means are taken over the iterations of all ranks (one all-reduce at
    epoch end), so every rank, and rank 0's logs and checkpoint selection, see the global value.
    Attach it on every rank (it is not a rank-0-only handler).

    Args:
        prefix: prepended to each metric name, e.g. ``"val_"`` on an evaluator.
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.EPOCH_STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.update)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self.compute)

    def reset(self, engine: Engine) -> None:
        self._sums, self._count = {}, 0

    def update(self, engine: Engine) -> None:
        output = engine.state.output
        for key, value in output.items():
            if key.startswith("loss") and torch.is_tensor(value):
                value = value.detach().float()
                self._sums[key] = self._sums[key] + value if key in self._sums else value.clone()
        self._count += 1

    def compute(self, engine: Engine) -> None:
        for key, mean in average_over_ranks(self._sums, self._count).items():
            engine.state.metrics[self.prefix + key] = mean
