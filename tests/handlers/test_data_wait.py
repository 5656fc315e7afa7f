"""DataWaitHandler: the loader's share of the iteration loop, on a fake clock (exact, no timing flakiness)."""

from __future__ import annotations

import pytest
from ignite.engine import Engine, Events

from monai_ilm.handlers import DataWaitHandler


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _run(monkeypatch, load_seconds: float, step_seconds: float, epoch_end_seconds: float) -> list[float]:
    clock = _Clock()
    monkeypatch.setattr("monai_ilm.handlers.data_wait.time.perf_counter", clock)

    class _SlowLoader:
        def __iter__(self):
            for i in range(4):
                clock.now += load_seconds
                yield i

    def step(engine, batch):
        clock.now += step_seconds

    engine = Engine(step)
    DataWaitHandler().attach(engine)
    shares = []

    @engine.on(Events.EPOCH_COMPLETED)
    def _record(engine):  # validation-like epoch-end work after the share is computed must not count
        shares.append(engine.state.metrics["data_wait_share"])
        clock.now += epoch_end_seconds

    engine.run(_SlowLoader(), max_epochs=2)
    return shares


def test_share_is_the_loader_time_over_the_iteration_loop(monkeypatch):
    # 4 iterations of 3 s waiting + 1 s computing: 12 / 16 = 0.75, in every epoch, epoch-end work excluded
    assert _run(monkeypatch, load_seconds=3.0, step_seconds=1.0, epoch_end_seconds=100.0) == pytest.approx([0.75, 0.75])


def test_a_loader_that_never_waits_has_share_zero(monkeypatch):
    assert _run(monkeypatch, load_seconds=0.0, step_seconds=1.0, epoch_end_seconds=5.0) == pytest.approx([0.0, 0.0])
