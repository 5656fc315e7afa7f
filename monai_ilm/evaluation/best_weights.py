"""Keep the weights of the best validation epoch in memory and load them back after training.

Part of downstream training (:func:`~monai_ilm.evaluation.fit_downstream`); ``monai_ilm.handlers`` re-exports it
with the other handlers.

Fix of D3 (docs/method.md §9): the reference code evaluated the last-epoch weights although it named its results after
the best checkpoint. Attached to a validation evaluator, :class:`BestWeights` copies the network's weights
whenever the key validation metric improves, and :meth:`BestWeights.restore` puts them back before testing.
"""

from __future__ import annotations

import math

import torch
from ignite.engine import Engine, Events
from torch import nn

__all__ = ["BestWeights"]


class BestWeights:
    """Ignite handler keeping an in-memory copy of the weights of the best validation epoch.

    Attach it to the validation evaluator: at the end of each validation run it reads
    ``engine.state.metrics[metric_name]`` (higher is better; ties keep the earlier epoch; NaN never wins) and,
    on improvement, copies ``network.state_dict()`` to the CPU. :meth:`restore` loads the copy back, which is
    what fixes docs/method.md D3 (the reference tested the last-epoch weights).

    Args:
        network: the trained network.
        metric_name: key of the validation metric in ``engine.state.metrics``.

    Attributes:
        history: the metric of every validation run, in order.
        best_metric: the best value so far (None before the first finite one).
        best_epoch: the engine's epoch of ``best_metric`` (the trainer epoch when run by ``ValidationHandler``).
    """

    def __init__(self, network: nn.Module, metric_name: str) -> None:
        self.network = network
        self.metric_name = metric_name
        self.history: list[float] = []
        self.best_metric: float | None = None
        self.best_epoch: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def attach(self, engine: Engine) -> None:
        """Register the handler on ``engine``'s ``EPOCH_COMPLETED`` event (one validation run of an evaluator).

        Args:
            engine: the validation evaluator whose ``state.metrics`` holds ``metric_name``.
        """
        if not engine.has_event_handler(self, Events.EPOCH_COMPLETED):  # attaching twice records each run once
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        """Record the validation metric and copy the weights when it improves.

        Args:
            engine: the evaluator that has just completed a validation run.
        """
        value = float(engine.state.metrics[self.metric_name])
        self.history.append(value)
        if math.isfinite(value) and (self.best_metric is None or value > self.best_metric):
            self.best_metric, self.best_epoch = value, int(engine.state.epoch)
            self._state = {k: v.detach().to("cpu", copy=True) for k, v in self.network.state_dict().items()}

    def restore(self) -> None:
        """Load the best weights into the network.

        Raises:
            RuntimeError: if no validation run gave a finite metric.
        """
        if self._state is None:
            raise RuntimeError(
                f"{self.metric_name}: expected a finite metric from a validation epoch, got none (nothing to restore)."
            )
        self.network.load_state_dict(self._state)
