"""The share of each training epoch spent waiting for the data loader.

A trainer that waits for its loader is loader-bound: more loader workers, a compact cache or device
augmentation (``augment_on="device"``) would make it faster, a faster accelerator would not. Ignite fires
``GET_BATCH_STARTED`` / ``GET_BATCH_COMPLETED`` around every ``next(loader)``; the time between them is the
wait. The share is that wait over the epoch's iteration loop (from ``EPOCH_STARTED`` to the last
``ITERATION_COMPLETED``, so epoch-end work such as validation is not counted).

On an accelerator the forward and backward run asynchronously: the host measures the wait for the loader,
which is the time the step could not start, so the share is a lower bound of the idle time of the device.
"""

from __future__ import annotations

import time

from ignite.engine import Engine, Events

from monai_ilm.handlers.utils import attach_once

__all__ = ["DataWaitHandler"]


class DataWaitHandler:
    """Writes ``engine.state.metrics["data_wait_share"]`` (0-1) at the end of every epoch.

    ``TensorBoardStatsHandler`` and ``StatsHandler`` log it with the epoch's other metrics; the dashboard's
    throughput view reads it. Attach it before those handlers.

    Args:
        metric_name: the key written into ``engine.state.metrics``.
    """

    def __init__(self, metric_name: str = "data_wait_share") -> None:
        self.metric_name = metric_name
        self._wait = 0.0
        self._epoch_start = 0.0
        self._last_iteration_end = 0.0
        self._batch_start = 0.0

    def attach(self, engine: Engine) -> None:
        attach_once(engine, Events.EPOCH_STARTED, self._start_epoch)
        attach_once(engine, Events.GET_BATCH_STARTED, self._start_batch)
        attach_once(engine, Events.GET_BATCH_COMPLETED, self._end_batch)
        attach_once(engine, Events.ITERATION_COMPLETED, self._end_iteration)
        attach_once(engine, Events.EPOCH_COMPLETED, self._end_epoch)

    def _start_epoch(self, engine: Engine) -> None:
        self._wait = 0.0
        self._epoch_start = self._last_iteration_end = time.perf_counter()

    def _start_batch(self, engine: Engine) -> None:
        self._batch_start = time.perf_counter()

    def _end_batch(self, engine: Engine) -> None:
        self._wait += time.perf_counter() - self._batch_start

    def _end_iteration(self, engine: Engine) -> None:
        self._last_iteration_end = time.perf_counter()

    def _end_epoch(self, engine: Engine) -> None:
        loop = self._last_iteration_end - self._epoch_start
        engine.state.metrics[self.metric_name] = self._wait / loop if loop > 0 else float("nan")
