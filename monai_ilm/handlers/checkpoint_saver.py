"""MONAI's CheckpointSaver, writing every checkpoint atomically."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from ignite.engine import Engine
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointSaver

__all__ = ["AtomicCheckpointSaver"]


class _AtomicDiskSaver(DiskSaver):
    """Ignite's DiskSaver in atomic mode (temporary file, then ``os.replace``), with an optional fixed name."""

    def __init__(self, dirname: str, filename: str | None = None) -> None:
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename

    def __call__(self, checkpoint: Mapping, filename: str, metadata: Mapping | None = None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)

    def remove(self, filename: str) -> None:
        super().remove(self.filename or filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """``monai.handlers.CheckpointSaver`` whose files are never seen half-written.

    MONAI's saver writes checkpoints in place (ignite's ``atomic=False``), so a process killed or
    a disk that fills up during ``torch.save`` leaves a truncated file that a resumed run then
    fails to read. Here every checkpoint is serialised to a temporary file in the same folder and
    renamed into place; if writing fails, the temporary file is removed and the previous checkpoint
    is untouched. The arguments are those of ``CheckpointSaver``.
    """

    rank_zero_only: ClassVar[bool] = True  # in a distributed run, one process writes the files
    _CHECKPOINTS = ("_final_checkpoint", "_key_metric_checkpoint", "_interval_checkpoint")

    def __init__(self, save_dir: str, save_dict: dict, **kwargs) -> None:
        super().__init__(save_dir, save_dict, **kwargs)
        for name in self._CHECKPOINTS:
            checkpoint = getattr(self, name, None)
            if checkpoint is not None:
                fixed_name = getattr(checkpoint.save_handler, "filename", None)
                checkpoint.save_handler = _AtomicDiskSaver(self.save_dir, fixed_name)

    def attach(self, engine: Engine) -> None:
        """Register the saver as MONAI's does; a second ``attach`` of this instance to ``engine`` is a no-op.

        Args:
            engine: the trainer or evaluator whose state is saved.
        """
        callbacks = (self.completed, self.metrics_completed, self.interval_completed)
        if not any(engine.has_event_handler(callback) for callback in callbacks):
            super().attach(engine)
