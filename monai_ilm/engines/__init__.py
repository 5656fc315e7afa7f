"""Engines: the MoCo trainer and its validation evaluator."""

from __future__ import annotations

from monai_ilm.utils import lazy_package

# each name is loaded from its module on first use: importing one module of the package loads only what it needs
__all__ = lazy_package(
    __name__,
    {
        "checkpoints": ("latest_checkpoint", "training_state"),
        "moco_evaluator": ("MoCoEvaluator",),
        "moco_trainer": ("MoCoTrainer",),
        "rng_state": ("RNGState",),
        "sampler": ("ResumableSampler",),
        "utils": ("VIEW_KEYS", "to_channels_last"),
    },
)
