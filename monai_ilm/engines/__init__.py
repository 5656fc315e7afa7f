"""Engines: the MoCo trainer and its validation evaluator."""

from __future__ import annotations

from monai_ilm.engines.checkpoints import latest_checkpoint, training_state
from monai_ilm.engines.moco_evaluator import MoCoEvaluator
from monai_ilm.engines.moco_trainer import MoCoTrainer
from monai_ilm.engines.rng_state import RNGState
from monai_ilm.engines.sampler import ResumableSampler
from monai_ilm.engines.utils import VIEW_KEYS, to_channels_last

__all__ = ["MoCoEvaluator", "MoCoTrainer", "VIEW_KEYS", "latest_checkpoint", "training_state"]
__all__ += ["RNGState", "ResumableSampler", "to_channels_last"]
