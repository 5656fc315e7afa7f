"""Per-dataset transform presets reproducing the paper's augmentations (docs/method.md §3).

Three stages, each a function returning a flat MONAI ``Compose`` usable as ``_target_`` in a bundle
config:

* :func:`pretrain_transforms`: two views (``view1``, ``view2``) for MoCo, each through its own
  independently seeded copy of the preset's random pipeline (``augment=False`` gives the reference's
  un-augmented validation views);
* :func:`finetune_transforms`: one augmented ``image`` and its ``label``;
* :func:`eval_transforms`: the un-augmented ``image`` and ``label``.

The supervised pipelines keep the row's ``image_id`` (a string set by :func:`monai_ilm.data.load_datalist`)
so that predictions and features can be named by image.

Every pipeline starts with the deterministic steps (load, channels, resize, centre crop, plain
tensor) **flat at the front**, so ``CacheDataset`` / ``PersistentDataset`` cache them (see
:func:`monai_ilm.data.cache_boundary`), and ends with float32, channel-first tensors without MONAI metadata
(``EnsureTyped(track_meta=False)``), in [0, 1] unless ``normalize=True`` (ImageNet statistics; the
reference normalises nothing).

=========  ======  ====================================  =========================================
preset     size    pretrain view (each of the two)       fine-tune
=========  ======  ====================================  =========================================
``nih``    512     CJ, Gray, Blur, Rot30                 CJ, Gray, Blur, Rot30
``idc``    255     RRC(0.4-1), CJ, Gray, Blur, HFlip     RRC(0.2-1), CJ, Gray, Blur, Rot30, HFlip
``dr``     299     CJ, Gray, Blur, Rot30, HFlip          CJ(contrast 0.4, hue 0.1), HFlip, VFlip
``volume`` 96      RRC3D, 3D flips, affine, blur,        3D flips, affine
                   gamma, intensity, noise
=========  ======  ====================================  =========================================

CJ = ColorJitter(0.4, 0.4, 0.4, 0.1) with p 0.8; Gray = RandomGrayscale(0.2); Blur = Gaussian blur
σ ~ U(0.1, 2) with p 0.5; Rot30 = rotation U(-30°, 30°), nearest, zero fill; RRC = RandomResizedCrop.
IDC patches are first resized to 256/255 of the size and centre-cropped (the reference's
Resize(256) + CenterCrop(255)); its pretraining validation views are Resize(287) + CenterCrop(255).
Unlike the reference, the IDC fine-tune augmentation is used at every label fraction (D6).
``image_size`` overrides the size (the quick CPU configs use 64); crop and resize ratios scale with it,
blur σ stays in pixels.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
from monai.transforms import (
    CenterSpatialCropd,
    Compose,
    EnsureTyped,
    NormalizeIntensityd,
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleCropd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    SelectItemsd,
    ThresholdIntensityd,
    Transform,
)

from monai_ilm.checks import check_choice, check_int, checks_arguments
from monai_ilm.datasets import DATASETS
from monai_ilm.transforms.channels import EnsureChannelsd
from monai_ilm.transforms.color import RandColorJitterd, RandGaussianBlurd, RandGrayscaled
from monai_ilm.transforms.io import LoadImageWithPathd
from monai_ilm.transforms.labels import LabelToTensord
from monai_ilm.transforms.spatial import RandResizedCropd, RandRotationd, ResizeShortSided
from monai_ilm.transforms.views import VIEW_KEYS, CopyViewsd
from monai_ilm.transforms.volumes import volume_loading_steps

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
# grey images: the luma-weighted mean and std of the three ImageNet channels
IMAGENET_GREY_MEAN, IMAGENET_GREY_STD = 0.449, 0.226
MAX_IMAGE_SIZE = 16384  # pixels per side; larger is a typo (or a units mix-up), not a chest X-ray
CHANNELS = (1, 3)  # grey or RGB images
IMAGE_CHECKS = {
    "image_size": partial(check_int, maximum=MAX_IMAGE_SIZE),
    "channels": partial(check_choice, allowed=CHANNELS),
}
"""The checks of ``image_size`` and ``channels``, which every pipeline of a preset declares."""

Steps = Callable[[str, int], list[Transform]]


def _colour_jitter(key: str) -> Transform:
    return RandColorJitterd(key, brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1, prob=0.8)


def _moco_colour(key: str) -> list[Transform]:
    """CJ -> Gray -> Blur, the colour part shared by every 2D preset."""
    return [_colour_jitter(key), RandGrayscaled(key, prob=0.2), RandGaussianBlurd(key, sigma=(0.1, 2.0), prob=0.5)]


def _rotate30(key: str) -> Transform:
    return RandRotationd(key, degrees=30.0)


def _hflip(key: str) -> Transform:
    return RandFlipd(key, prob=0.5, spatial_axis=1)  # (C, H, W): spatial axis 1 is the width


def _vflip(key: str) -> Transform:
    return RandFlipd(key, prob=0.5, spatial_axis=0)


def _resize_crop(key: str, shorter_side: int, crop: int) -> list[Transform]:
    return [ResizeShortSided(key, shorter_side), CenterSpatialCropd(key, roi_size=(crop, crop))]


def _no_steps(key: str, size: int) -> list[Transform]:
    return []


def _volume_flips_affine(key: str) -> list[Transform]:
    """Flips on each axis (p 0.5 each), then (p 0.8) a rotation U(-15°, 15°) and a scaling U(0.85, 1.15) per axis."""
    return [
        RandFlipd(key, prob=0.5, spatial_axis=0),
        RandFlipd(key, prob=0.5, spatial_axis=1),
        RandFlipd(key, prob=0.5, spatial_axis=2),
        RandAffined(key, prob=0.8, rotate_range=(math.pi / 12,) * 3, scale_range=(0.15,) * 3, padding_mode="zeros"),
    ]


def _volume_view(key: str, size: int) -> list[Transform]:
    """One pretraining view of a volume; the device stage draws each step's parameters from the same distribution.

    RRC3D: each side of the crop 70-100 % of the volume's (a volume fraction of 0.34-1, aspect ratios within
    0.7-1.43), resized back trilinearly. Blur σ ~ U(0.25, 1) voxels per axis (p 0.5), gamma U(0.7, 1.5) (p 0.5),
    intensity x (1 + U(-0.25, 0.25)) and + U(-0.1, 0.1) (p 0.8 each), Gaussian noise σ ~ U(0, 0.05) (p 0.5).
    """
    return [
        RandScaleCropd(key, roi_scale=0.7, max_roi_scale=1.0, random_size=True),
        Resized(key, spatial_size=(size,) * 3, mode="trilinear"),
        *_volume_flips_affine(key),
        RandGaussianSmoothd(key, prob=0.5, sigma_x=(0.25, 1.0), sigma_y=(0.25, 1.0), sigma_z=(0.25, 1.0)),
        RandAdjustContrastd(key, prob=0.5, gamma=(0.7, 1.5)),
        RandScaleIntensityd(key, factors=0.25, prob=0.8),
        RandShiftIntensityd(key, offsets=0.1, prob=0.8),
        RandGaussianNoised(key, prob=0.5, mean=0.0, std=0.05),
        *_clamp_to_unit(key),
    ]


def _volume_finetune(key: str, size: int) -> list[Transform]:
    return _volume_flips_affine(key) + _clamp_to_unit(key)


def _clamp_to_unit(key: str) -> list[Transform]:
    """Clip to [0, 1]: the affine's interpolation and the intensity shifts can leave that range."""
    return [
        ThresholdIntensityd(key, threshold=0.0, above=True, cval=0.0),
        ThresholdIntensityd(key, threshold=1.0, above=False, cval=1.0),
    ]


@dataclass(frozen=True)
class Preset:
    """What a data set's pipelines are made of.

    Attributes:
        image_size: the reference's network input size.
        spatial_dims: 2 for images, 3 for volumes.
        resize_ratio: deterministic pre-resize: shorter side ``round(size * ratio)``, then a centre crop of ``size``.
        pretrain_view: random steps applied to one pretraining view.
        pretrain_val: deterministic steps of the pretraining validation views.
        finetune: random steps of supervised fine-tuning.
        evaluate: deterministic steps of evaluation.
    """

    image_size: int
    spatial_dims: int
    resize_ratio: float
    pretrain_view: Steps
    pretrain_val: Steps
    finetune: Steps
    evaluate: Steps


def _nih_augment(key: str, size: int) -> list[Transform]:
    """NIH, pretraining view and fine-tuning alike: CJ, Gray, Blur, Rot30 (no crop, no flip)."""
    return _moco_colour(key) + [_rotate30(key)]


def _idc_pretrain_view(key: str, size: int) -> list[Transform]:
    return [RandResizedCropd(key, size, scale=(0.4, 1.0))] + _moco_colour(key) + [_hflip(key)]


def _idc_pretrain_val(key: str, size: int) -> list[Transform]:
    """Resize(287) + CenterCrop(255) at the reference size: a slight, fixed zoom-in."""
    return _resize_crop(key, round(size * 287.0 / 255.0), size)


def _idc_finetune(key: str, size: int) -> list[Transform]:
    return [RandResizedCropd(key, size, scale=(0.2, 1.0))] + _moco_colour(key) + [_rotate30(key), _hflip(key)]


def _dr_pretrain_view(key: str, size: int) -> list[Transform]:
    return _moco_colour(key) + [_rotate30(key), _hflip(key)]


def _dr_finetune(key: str, size: int) -> list[Transform]:
    contrast_hue = RandColorJitterd(key, brightness=0.0, contrast=0.4, saturation=0.0, hue=0.1, prob=0.8)
    return [contrast_hue, _hflip(key), _vflip(key)]


PRESETS: dict[str, Preset] = {
    "nih": Preset(512, 2, 1.0, _nih_augment, _no_steps, _nih_augment, _no_steps),
    "idc": Preset(255, 2, 256.0 / 255.0, _idc_pretrain_view, _idc_pretrain_val, _idc_finetune, _no_steps),
    "dr": Preset(299, 2, 1.0, _dr_pretrain_view, _no_steps, _dr_finetune, _no_steps),
    "volume": Preset(96, 3, 1.0, _volume_view, _no_steps, _volume_finetune, _no_steps),
}
"""The presets by name."""


def get_preset(preset: str) -> Preset:
    """The :class:`Preset` called ``preset``, or the preset of the data set called so.

    A data set of :data:`monai_ilm.datasets.DATASETS` names its preset, so the bundles pass ``dataset_name``.

    Raises:
        ValueError: listing the known presets when ``preset`` is not one of them.
    """
    dataset = DATASETS.get(preset) if isinstance(preset, str) else None
    if dataset is not None and dataset.preset is not None:
        preset = dataset.preset
    if preset not in PRESETS:
        raise ValueError(f"preset: expected one of {list(PRESETS)}, got '{preset}'.")
    return PRESETS[preset]


def _resolve_size(spec: Preset, image_size: int | None) -> int:
    return spec.image_size if image_size is None else check_int("image_size", image_size, maximum=MAX_IMAGE_SIZE)


def _load_steps(spec: Preset, preset: str, image_key: str, intensity: str, volume: Mapping | None) -> list[Transform]:
    """The loading steps: volumes made uniform from their header and scaled by the ``volume`` settings, else images."""
    if spec.spatial_dims == 3:
        options = {"intensity": intensity, **(volume or {})}
        return volume_loading_steps(image_key, options)
    if volume is not None:
        raise ValueError(
            f"volume: expected None for the 2D preset '{preset}' (volume settings are for 3D), got {volume!r}."
        )
    return [LoadImageWithPathd(image_key, intensity=intensity)]


@checks_arguments(**IMAGE_CHECKS)
def deterministic_transforms(
    preset: str = "nih",
    image_size: int | None = None,
    channels: int | None = 3,
    image_key: str = "image",
    intensity: str = "auto",
    volume: Mapping | None = None,
) -> list[Transform]:
    """The cacheable steps every pipeline of ``preset`` starts with: load, channels, resize, crop, plain tensor.

    For a 3D preset the loading is :func:`~monai_ilm.transforms.volumes.volume_loading_steps`: NIfTI files
    re-oriented and resampled from their header (``Orientationd``, ``Spacingd``), MedMNIST 3D arrays as they are,
    then the intensity setting (a CT window, MR percentiles, min-max or by type), then a trilinear resize.

    Args:
        preset: ``"nih"``, ``"idc"``, ``"dr"`` or ``"volume"``.
        image_size: output side (default: the preset's reference size).
        channels: 1 or 3 output channels (``None`` keeps the image's own).
        image_key: the key holding the image path or array.
        intensity: ``"auto"`` (scale by bit depth) or ``"minmax"``; see :class:`LoadImageWithPathd`. For volumes
            the default of ``volume["intensity"]``.
        volume: 3D presets only: the ``volume`` settings (``orientation``, ``pixdim``, ``intensity``, ``window``,
            ``percentiles``; see :func:`~monai_ilm.transforms.volumes.check_volume_options`), None for the defaults.

    Raises:
        ValueError: for an unknown preset, a non-positive size, invalid channels, a bad volume setting, or
            volume settings for a 2D preset.
    """
    spec = get_preset(preset)
    size = _resolve_size(spec, image_size)
    steps = _load_steps(spec, preset, image_key, intensity, volume) + [EnsureChannelsd(image_key, channels)]
    if spec.spatial_dims == 3:
        steps.append(Resized(image_key, spatial_size=(size,) * 3, mode="trilinear"))
    else:
        steps += _resize_crop(image_key, max(size, round(size * spec.resize_ratio)), size)
    steps.append(EnsureTyped(image_key, data_type="tensor", dtype=torch.float32, track_meta=False))
    return steps


def _normalize(keys: Sequence[str], channels: int | None) -> list[Transform]:
    if channels == 1:
        mean, std = [IMAGENET_GREY_MEAN], [IMAGENET_GREY_STD]
    elif channels == 3:
        mean, std = list(IMAGENET_MEAN), list(IMAGENET_STD)
    else:
        raise ValueError(f"channels: expected 1 or 3 with normalize=True (the ImageNet statistics), got {channels}.")
    return [NormalizeIntensityd(list(keys), subtrahend=np.array(mean), divisor=np.array(std), channel_wise=True)]


def _finish(keys: Sequence[str], normalize: bool, channels: int | None) -> list[Transform]:
    steps = _normalize(keys, channels) if normalize else []
    return steps + [EnsureTyped(list(keys), data_type="tensor", dtype=torch.float32, track_meta=False)]


@checks_arguments(**IMAGE_CHECKS)
def pretrain_transforms(
    preset: str = "nih",
    image_size: int | None = None,
    channels: int | None = 3,
    augment: bool = True,
    normalize: bool = False,
    image_key: str = "image",
    intensity: str = "auto",
    volume: Mapping | None = None,
) -> Compose:
    """Two-view MoCo pretraining pipeline: ``{"view1": tensor, "view2": tensor}``.

    The image is loaded and resized once (cacheable), copied into :data:`VIEW_KEYS`, and each view
    goes through its **own** instances of the preset's random transforms, so the two views get
    independent random parameters (a single MONAI transform on both keys would draw one set for
    both). ``set_random_state(seed)`` on the returned ``Compose`` seeds every step, each differently.

    Args:
        preset: ``"nih"``, ``"idc"``, ``"dr"`` or ``"volume"``.
        image_size: output side (default: the preset's size: 512, 255, 299, 96).
        channels: 1 or 3 output channels (``None`` keeps the image's own).
        augment: random views (``True``) or the reference's deterministic validation views (``False``).
        normalize: apply ImageNet mean/std (off by default, as in the reference).
        image_key: the key holding the image path or array.
        intensity: ``"auto"`` (scale by bit depth) or ``"minmax"``.
        volume: the volume settings of a 3D preset (see :func:`deterministic_transforms`).

    Returns:
        A flat ``Compose`` whose output holds only the two views (float32, channel-first).

    Raises:
        ValueError: for an unknown preset, a non-positive size or invalid channels.
    """
    spec = get_preset(preset)
    size = _resolve_size(spec, image_size)
    steps = deterministic_transforms(preset, size, channels, image_key, intensity, volume)
    if not augment:
        steps += spec.pretrain_val(image_key, size)
    steps.append(CopyViewsd(image_key, VIEW_KEYS))
    if augment:
        for view_key in VIEW_KEYS:
            steps += spec.pretrain_view(view_key, size)
    steps.append(SelectItemsd(list(VIEW_KEYS)))
    return Compose(steps + _finish(VIEW_KEYS, normalize, channels))


def _supervised(
    preset: str,
    image_size: int | None,
    channels: int | None,
    normalize: bool,
    image_key: str,
    label_key: str,
    intensity: str,
    stage: str,
    id_key: str,
    volume: Mapping | None = None,
) -> Compose:
    spec = get_preset(preset)
    size = _resolve_size(spec, image_size)
    steps = deterministic_transforms(preset, size, channels, image_key, intensity, volume)
    steps += (spec.finetune if stage == "finetune" else spec.evaluate)(image_key, size)
    steps += [LabelToTensord(label_key), SelectItemsd([image_key, label_key, id_key], allow_missing_keys=True)]
    return Compose(steps + _finish([image_key], normalize, channels))


def finetune_transforms(
    preset: str = "nih",
    image_size: int | None = None,
    channels: int | None = 3,
    normalize: bool = False,
    image_key: str = "image",
    label_key: str = "label",
    intensity: str = "auto",
    id_key: str = "image_id",
    volume: Mapping | None = None,
) -> Compose:
    """Supervised fine-tuning pipeline: ``{"image": augmented tensor, "label": tensor}``.

    Labels become an int64 scalar (class index) or a float32 vector (NIH multi-hot).

    Args:
        preset: ``"nih"``, ``"idc"``, ``"dr"`` or ``"volume"``.
        image_size: output side (default: the preset's size).
        channels: 1 or 3 output channels (``None`` keeps the image's own).
        normalize: apply ImageNet mean/std (off by default).
        image_key: the key holding the image path or array.
        label_key: the key holding the label (may be absent).
        intensity: ``"auto"`` (scale by bit depth) or ``"minmax"``.
        id_key: the key of the row's image id, passed through unchanged (may be absent).
        volume: the volume settings of a 3D preset (see :func:`deterministic_transforms`).

    Raises:
        ValueError: for an unknown preset, a non-positive size or invalid channels.
    """
    return _supervised(
        preset, image_size, channels, normalize, image_key, label_key, intensity, "finetune", id_key, volume
    )


@checks_arguments(**IMAGE_CHECKS)
def eval_transforms(
    preset: str = "nih",
    image_size: int | None = None,
    channels: int | None = 3,
    normalize: bool = False,
    image_key: str = "image",
    label_key: str = "label",
    intensity: str = "auto",
    id_key: str = "image_id",
    volume: Mapping | None = None,
) -> Compose:
    """Evaluation pipeline: ``{"image": tensor, "label": tensor}``, deterministic (no augmentation).

    Args:
        preset: ``"nih"``, ``"idc"``, ``"dr"`` or ``"volume"``.
        image_size: output side (default: the preset's size).
        channels: 1 or 3 output channels (``None`` keeps the image's own).
        normalize: apply ImageNet mean/std (off by default).
        image_key: the key holding the image path or array.
        label_key: the key holding the label (may be absent, e.g. at inference).
        intensity: ``"auto"`` (scale by bit depth) or ``"minmax"``.
        id_key: the key of the row's image id, passed through unchanged (may be absent).
        volume: the volume settings of a 3D preset (see :func:`deterministic_transforms`).

    Raises:
        ValueError: for an unknown preset, a non-positive size or invalid channels.
    """
    return _supervised(
        preset, image_size, channels, normalize, image_key, label_key, intensity, "evaluate", id_key, volume
    )


def view_transforms(preset: str, key: str, image_size: int | None = None, stage: str = "pretrain") -> Compose:
    """The random steps of one view or one image, as a ``Compose``, for hand-built configs.

    Build one per view key (each call makes new, independently seeded instances). Put it after the
    deterministic steps: a nested ``Compose`` is where ``CacheDataset`` stops caching.

    Args:
        preset: ``"nih"``, ``"idc"``, ``"dr"`` or ``"volume"``.
        key: the key the steps apply to (e.g. ``"view1"``).
        image_size: the image side the steps expect (default: the preset's size).
        stage: ``"pretrain"`` or ``"finetune"``.

    Raises:
        ValueError: for an unknown preset or stage.
    """
    spec = get_preset(preset)
    if stage not in ("pretrain", "finetune"):
        raise ValueError(f"stage: expected 'pretrain' or 'finetune', got '{stage}'.")
    steps = (spec.pretrain_view if stage == "pretrain" else spec.finetune)(key, _resolve_size(spec, image_size))
    return Compose(steps)
