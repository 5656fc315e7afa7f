"""Epoch means of every loss part, written into ``engine.state.metrics``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from ignite.engine import Engine, Events

from monai_ilm.distributed import average_over_ranks
from monai_ilm.handlers.utils import attach_once

__all__ = ["LossPartsHandler", "loss_entries"]


def loss_entries(output: Any) -> dict[str, torch.Tensor]:
    """The tensor entries of a dict output whose key starts with ``loss`` (``loss``, ``loss_infonce``, ...).

    Raises:
        TypeError: when ``output`` is not a mapping.
    """
    if not isinstance(output, Mapping):
        raise TypeError(
            f"engine.state.output: expected a dict with loss entries (or an output_transform giving one), "
            f"got {type(output).__name__}."
        )
    return {key: value for key, value in output.items() if str(key).startswith("loss") and torch.is_tensor(value)}


class LossPartsHandler:
    """Averages every ``loss*`` scalar of ``engine.state.output`` (or what ``output_transform`` picks) over the epoch.

    The sums stay on the device during the epoch (no host synchronisation per iteration) and the
    means are written as ``engine.state.metrics[prefix + key]`` on ``EPOCH_COMPLETED``, where
    ``StatsHandler``, ``TensorBoardStatsHandler``, ``CheckpointSaver(key_metric_name=...)`` and
    the dashboard's training curves find them. Attach it before handlers that read those metrics.

    In a distributed run the means are taken over the iterations of all ranks (one all-reduce at
    epoch end), so every rank, and rank 0's logs and checkpoint selection, see the global value.
    Attach it on every rank (it is not a rank-0-only handler).

    Args:
        prefix: prepended to each metric name, e.g. ``"val_"`` on an evaluator.
        output_transform: maps ``engine.state.output`` to the ``{name: scalar tensor}`` averaged, as the
            ``output_transform`` of MONAI's handlers; the default, :func:`loss_entries`, takes the ``loss*`` tensors
            of a dict output.
    """

    def __init__(
        self, prefix: str = "", output_transform: Callable[[Any], Mapping[str, torch.Tensor]] = loss_entries
    ) -> None:
        self.prefix = prefix
        self.output_transform = output_transform
        self._sums: dict[str, torch.Tensor] = {}
        self._count = 0

    def attach(self, engine: Engine) -> None:
        attach_once(engine, Events.EPOCH_STARTED, self.reset)
        attach_once(engine, Events.ITERATION_COMPLETED, self.update)
        attach_once(engine, Events.EPOCH_COMPLETED, self.compute)

    def reset(self, engine: Engine) -> None:
        self._sums, self._count = {}, 0

    def update(self, engine: Engine) -> None:
        for key, value in self.output_transform(engine.state.output).items():
            value = torch.as_tensor(value).detach().float()
            self._sums[key] = self._sums[key] + value if key in self._sums else value.clone()
        self._count += 1

    def compute(self, engine: Engine) -> None:
        for key, mean in average_over_ranks(self._sums, self._count).items():
            engine.state.metrics[self.prefix + key] = mean
