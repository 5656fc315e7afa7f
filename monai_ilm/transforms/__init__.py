"""MONAI dictionary transforms and per-dataset presets for two-view MoCo pretraining and evaluation.

The presets (:func:`pretrain_transforms`, :func:`finetune_transforms`, :func:`eval_transforms`)
reproduce the paper's augmentations for NIH (``"nih"``), breast histopathology (``"idc"``) and
diabetic retinopathy (``"dr"``), plus a 3D ``"volume"`` preset. Two-view outputs use
:data:`VIEW_KEYS`: ``view1`` for the query encoder, ``view2`` for the key encoder.
"""

from __future__ import annotations

from monai_ilm.transforms.channels import EnsureChannelsd, to_channels
from monai_ilm.transforms.color import RandColorJitterd, RandGaussianBlurd, RandGrayscaled
from monai_ilm.transforms.device_augment import AUGMENT_ON, DeviceAugment, ToUint8d, pretrain_pipeline
from monai_ilm.transforms.io import LoadImageWithPathd, array_to_channel_first, load_image
from monai_ilm.transforms.labels import LabelToTensord, label_to_tensor
from monai_ilm.transforms.presets import (
    PRESETS,
    Preset,
    cache_boundary,
    deterministic_transforms,
    eval_transforms,
    finetune_transforms,
    get_preset,
    pretrain_transforms,
    view_transforms,
)
from monai_ilm.transforms.spatial import RandResizedCropd, RandRotationd, ResizeShortSided, resize_shorter_side
from monai_ilm.transforms.views import VIEW_KEYS, CopyViewsd

__all__ = [
    "AUGMENT_ON",
    "DeviceAugment",
    "ToUint8d",
    "pretrain_pipeline",
    "PRESETS",
    "VIEW_KEYS",
    "CopyViewsd",
    "EnsureChannelsd",
    "LabelToTensord",
    "LoadImageWithPathd",
    "Preset",
    "RandColorJitterd",
    "RandGaussianBlurd",
    "RandGrayscaled",
    "RandResizedCropd",
    "RandRotationd",
    "ResizeShortSided",
    "array_to_channel_first",
    "cache_boundary",
    "deterministic_transforms",
    "eval_transforms",
    "finetune_transforms",
    "get_preset",
    "label_to_tensor",
    "load_image",
    "pretrain_transforms",
    "resize_shorter_side",
    "to_channels",
    "view_transforms",
]
