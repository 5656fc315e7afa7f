"""Stops training on a NaN or infinite loss before it reaches the weights."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from torch import nn

from monai_ilm.checks import check_int, checks_arguments
from monai_ilm.handlers.utils import attach_once
from monai_ilm.utils import unwrap_network

__all__ = ["NaNGuard", "NonFiniteLossError"]


class NonFiniteLossError(FloatingPointError):
    """A loss (or one of its parts) was NaN or infinite; the message names the iteration and the parts."""


def _loss_parts(output: object, prefix: str) -> dict[str, torch.Tensor]:
    """The scalar tensors of ``output`` whose key starts with ``prefix``."""
    if not isinstance(output, dict):
        return {}
    return {
        str(k): v.detach().reshape(())
        for k, v in output.items()
        if str(k).startswith(prefix) and torch.is_tensor(v) and v.numel() == 1
    }


def _running_statistics(modules: Sequence[nn.Module]) -> list[torch.Tensor]:
    """The buffers that a forward pass in training mode changes: normalisation layers' running statistics."""
    stats = []
    for module in modules:
        for layer in module.modules():
            if torch.is_tensor(getattr(layer, "running_mean", None)):
                stats += [b for b in layer.buffers(recurse=False) if b is not None]
    return stats


@checks_arguments(check_every=check_int)
class NaNGuard:
    """Raises :class:`NonFiniteLossError` when a loss entry of the iteration output is NaN or infinite.

    Attached to a trainer (``MoCoTrainer`` or any MONAI ``SupervisedTrainer``), it looks at every
    scalar entry of ``engine.state.output`` (of ``output_transform(engine.state.output)``) whose key starts with
    ``loss`` (``loss``, ``loss_infonce``, ``loss_layer3``...) on ``BACKWARD_COMPLETED``: after every handler has added
    its term on ``LOSS_COMPLETED`` and **before the optimiser step**, so a bad value never reaches
    the weights, the momentum encoder or the queue, and no checkpoint of this iteration is written.
    The error names the iteration, the epoch and each non-finite part. The forward pass of the
    failed iteration has already updated the BatchNorm running statistics; they are put back to
    their values before it (a device-side copy per iteration, no synchronisation), so the network
    in memory, parameters and buffers, is exactly the state after the last good step. Like MONAI's
    ``StatsHandler`` it also re-raises on ``EXCEPTION_RAISED``, so a ``CheckpointSaver(save_final=True)``
    attached after it does not save a "final" checkpoint of the failed iteration; the last
    periodic checkpoint is the last good state.

    Checking a value on the host synchronises with the device. ``check_every=1`` (the default,
    free on CPU) checks every iteration and stops before the first bad step. On a GPU each check
    costs one small device-to-host copy (``StatsHandler`` logging the loss every iteration already
    pays it); ``check_every=n`` keeps the per-iteration test on the device and reads the result every
    ``n`` iterations and at every epoch end. The error still names the first bad iteration, but up
    to ``n - 1`` steps with non-finite values may have been applied by then, so use it only with
    iteration checkpoints whose interval is a multiple of ``n`` (each checkpoint is then preceded by
    a check) and resume from the last good one.

    Args:
        check_every: read the device-side result every this many iterations (>= 1).
        prefix: the output keys checked are those starting with it.
        output_transform: maps ``engine.state.output`` to the ``{name: scalar tensor}`` mapping whose ``prefix``
            entries are checked, as the ``output_transform`` of MONAI's handlers; the default takes the output as
            it is (a dict output such as MoCoTrainer's). E.g. ``lambda output: {"loss": output[0]}``.
        modules: a module or modules besides ``engine.network`` whose running statistics are rolled back
            (e.g. the Barlow Twins loss, whose projectors hold BatchNorm layers); ``None`` is ignored, so a
            bundle can pass ``@intermediate_loss`` whatever the method.

    Raises:
        ValueError: when ``check_every`` is not a positive integer.
    """

    def __init__(
        self,
        check_every: int = 1,
        prefix: str = "loss",
        modules: nn.Module | Sequence[nn.Module | None] | None = (),
        output_transform: Callable[[Any], Any] = lambda output: output,
    ) -> None:
        self.check_every = check_every
        self.prefix = prefix
        self.output_transform = output_transform
        modules = [modules] if modules is None or isinstance(modules, nn.Module) else list(modules)
        self.modules = [m for m in modules if m is not None]
        self._pending: list[tuple[int, int, dict[str, torch.Tensor], torch.Tensor]] = []
        self._stats: list[torch.Tensor] = []
        self._before: list[torch.Tensor] = []

    def attach(self, engine: Engine) -> None:
        attach_once(engine, Events.STARTED, self._find_statistics)
        attach_once(engine, Events.ITERATION_STARTED, self._save_statistics)
        attach_once(engine, IterationEvents.BACKWARD_COMPLETED, self)
        attach_once(engine, Events.EPOCH_COMPLETED, self.flush)
        attach_once(engine, Events.EXCEPTION_RAISED, self.reraise)  # one re-raise, however many guards

    def _find_statistics(self, engine: Engine) -> None:
        network = getattr(engine, "network", None)
        self._stats = _running_statistics(([unwrap_network(network)] if network is not None else []) + self.modules)

    def _save_statistics(self, engine: Engine) -> None:
        if self.check_every == 1:  # with a lag, the step of the bad iteration is taken anyway
            self._before = [b.detach().clone() for b in self._stats]

    def __call__(self, engine: Engine) -> None:
        parts = _loss_parts(self.output_transform(engine.state.output), self.prefix)
        if parts:
            finite = torch.isfinite(torch.stack([v.float() for v in parts.values()]))
            self._pending.append((engine.state.iteration, engine.state.epoch, parts, finite))
        if engine.state.iteration % self.check_every == 0:
            self.flush(engine, before_step=True)

    def flush(self, engine: Engine, before_step: bool = False) -> None:
        """Check the values recorded since the last check (one host synchronisation); raise on a bad one.

        Args:
            engine: the trainer.
            before_step: whether the current iteration's optimiser step is still to come.

        Raises:
            NonFiniteLossError: naming the first iteration with a non-finite loss part.
        """
        pending, self._pending = self._pending, []
        if not pending or bool(torch.stack([finite.all() for *_, finite in pending]).all()):
            return
        iteration, epoch, parts, finite = next(p for p in pending if not bool(p[3].all()))
        stopped_in_time = before_step and iteration == engine.state.iteration
        if stopped_in_time:
            with torch.no_grad():
                for buffer, value in zip(self._stats, self._before):
                    buffer.copy_(value)
        raise NonFiniteLossError(self.describe(engine, iteration, epoch, parts, finite.tolist(), stopped_in_time))

    def describe(
        self, engine: Engine, iteration: int, epoch: int, parts: dict, finite: list[bool], stopped_in_time: bool
    ) -> str:
        """The error message: where it happened, which parts went bad and what state the weights are in."""
        bad = [f"{name} = {float(value)}" for (name, value), ok in zip(parts.items(), finite) if not ok]
        if len(parts) > 1 and all(ok for name, ok in zip(parts, finite) if name != "loss"):
            bad.append("while every part is finite (their sum overflowed)")
        epoch_length = engine.state.epoch_length
        within = (
            f", iteration {(iteration - 1) % epoch_length + 1} of {epoch_length} in the epoch" if epoch_length else ""
        )
        where = f"non-finite loss at iteration {iteration} (epoch {epoch}{within}): {', '.join(bad)}."
        if stopped_in_time:
            last_good = f"those after iteration {iteration - 1}" if iteration > 1 else "the initial ones"
            return (
                f"{where} Training stopped before the optimiser step: the weights are {last_good}, and no checkpoint "
                "of this iteration was written."
            )
        return (
            f"{where} Detected at iteration {engine.state.iteration} (check_every={self.check_every}): the steps since "
            f"iteration {iteration} used non-finite values; resume from a checkpoint written before iteration "
            f"{iteration}."
        )

    @staticmethod
    def reraise(engine: Engine, error: BaseException) -> None:
        """Re-raise, as MONAI's ``StatsHandler`` does, so later exception handlers do not save the failed state."""
        if isinstance(error, NonFiniteLossError) and not getattr(error, "logged", False):
            error.logged = True  # ignite fires EXCEPTION_RAISED twice for an error inside an iteration
            engine.logger.error("NaNGuard: %s", error)
        raise error
