"""MONAI dictionary transforms and per-dataset presets for two-view MoCo pretraining and evaluation.

The presets (:func:`pretrain_transforms`, :func:`finetune_transforms`, :func:`eval_transforms`)
reproduce the paper's augmentations for NIH (``"nih"``), breast histopathology (``"idc"``) and
diabetic retinopathy (``"dr"``), plus a 3D ``"volume"`` preset. Two-view outputs use
:data:`VIEW_KEYS`: ``view1`` for the query encoder, ``view2`` for the key encoder.
"""

from __future__ import annotations

from monai_ilm.utils import lazy_package

# each name is loaded from its module on first use: importing one module of the package loads only what it needs
__all__ = lazy_package(
    __name__,
    {
        "channels": ("EnsureChannelsd", "to_channels"),
        "color": ("RandColorJitterd", "RandGaussianBlurd", "RandGrayscaled"),
        "device_augment": ("AUGMENT_ON", "DeviceAugment", "ToUint8d", "pretrain_pipeline"),
        "io": ("LoadImageWithPathd", "array_to_channel_first", "load_image"),
        "labels": ("LabelToTensord", "label_to_tensor"),
        "presets": (
            "PRESETS",
            "Preset",
            "deterministic_transforms",
            "eval_transforms",
            "finetune_transforms",
            "get_preset",
            "pretrain_transforms",
            "view_transforms",
        ),
        "spatial": ("RandResizedCropd", "RandRotationd", "ResizeShortSided", "resize_shorter_side"),
        "views": ("CopyViewsd", "VIEW_KEYS"),
    },
)
