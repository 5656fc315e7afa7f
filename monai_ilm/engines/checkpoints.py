"""Finding the checkpoint to resume from."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["latest_checkpoint", "training_state"]


def latest_checkpoint(ckpt_dir: str | os.PathLike, pattern: str = "checkpoint*.pt") -> str | None:
    """The most recently written checkpoint in ``ckpt_dir`` matching ``pattern``, or None.

    Ignite's ``DiskSaver`` writes atomically (a temporary file renamed into place), so every file
    that matches is complete; the newest one is the state the interrupted run last reached.
    Bundles resume from it: ``"resume_path": "$monai_ilm.engines.latest_checkpoint(@ckpt_dir)"``.
    """
    folder = Path(ckpt_dir)
    if not folder.is_dir():
        return None
    candidates = [p for p in folder.glob(pattern) if p.is_file()]
    if not candidates:
        return None
    return str(max(candidates, key=lambda p: (p.stat().st_mtime_ns, p.name)))


def training_state(**objects: object) -> dict[str, object]:
    """The ``save_dict`` of a resumable checkpoint: every given object that is not None.

    Bundles pass the network, the optimiser, the trainer and the intermediate loss (None for plain
    MoCo, which has no projectors), so one recipe serves the three methods.
    With an :class:`~monai_ilm.engines.RNGState` (``rng``) and a
    :class:`~monai_ilm.engines.ResumableSampler` for the training data, a resumed run ends with the
    same weights, bit for bit, as an uninterrupted one (``tests/reliability/test_resume.py``).
    """
    return {name: obj for name, obj in objects.items() if obj is not None}
