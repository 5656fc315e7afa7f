"""Helpers shared by the handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ignite.engine import Engine

__all__ = ["attach_once"]


def attach_once(engine: Engine, event: Any, handler: Callable) -> None:
    """Register ``handler`` on ``event`` unless ``engine`` already has it there.

    MONAI's handlers guard each registration with ``engine.has_event_handler`` so that attaching one handler
    instance twice (e.g. listed in ``train_handlers`` and attached again in a bundle's ``run``) runs it once
    per event rather than twice. Ignite compares callbacks by equality: a bound method of the same instance
    matches, another instance's does not; a filtered event (``Events.EPOCH_COMPLETED(every=n)``) matches
    through the wrapper ignite puts around the callback.

    Args:
        engine: the engine to attach to.
        event: an ignite event, filtered or not, or one registered by the engine (MONAI's ``IterationEvents``).
        handler: the callback.
    """
    if not engine.has_event_handler(handler, event):
        engine.add_event_handler(event, handler)
