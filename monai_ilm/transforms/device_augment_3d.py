"""Device steps for volumes: the ``volume`` preset's per-sample MONAI view steps, batched on the training device.

:class:`~monai_ilm.transforms.DeviceAugment` makes MoCo's two views of a batch on the training device;
for the 2D presets its steps are the torchvision-like kernels of :mod:`monai_ilm.transforms.device_augment`,
for the ``volume`` preset they are compiled here, one per MONAI step of the loader's view pipeline
(:func:`volume_device_steps`), so both ways draw from the same distributions with the same settings:

=============================  ==================================================================
loader step (per volume)       device step (per batch, parameters per sample)
=============================  ==================================================================
``RandScaleCropd`` + Resized   side per axis ~ U{ceil(lo S) .. ceil(hi S)}, corner ~ U{0 .. S - side},
                               trilinear resize back (:func:`~.batched_ops_3d.resized_crop_3d`)
``RandFlipd``                  with ``prob``, mirror one axis
``RandAffined``                with ``prob``, angle per axis ~ U(-r, r), scale per axis 1 + U(-s, s)
``RandGaussianSmoothd``        with ``prob``, σ per axis ~ U(σ range), MONAI's erf kernel
``RandAdjustContrastd``        with ``prob``, gamma ~ U(gamma range) on the volume's min-max range
``RandScaleIntensityd``        with ``prob``, ``x (1 + f)``, f ~ U(factors)
``RandShiftIntensityd``        with ``prob``, ``x + o``, o ~ U(offsets)
``RandGaussianNoised``         with ``prob``, ``x + N(mean, σ²)`` per voxel, σ ~ U(0, std)
``ThresholdIntensityd``        the same clip (deterministic)
=============================  ==================================================================

Every step draws its parameters for the whole batch from the stage's one CPU generator, so the host
knows every sample's choices and the generator's state is all a resume needs. The noise field itself
is too large to draw on the host: its step draws a seed from that generator and the field comes from
a generator on the volumes' device seeded with it, so a resumed run draws the same field, and the same
seed gives the same views on every device except for that field (CPU and CUDA generators differ).

A setting of a loader step that the device step does not reproduce (a shear, a translation, another
interpolation mode, channel-wise intensity changes) is an error when the stage is built, never a
silently different view.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from monai.transforms import (
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandScaleCropd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
    ThresholdIntensityd,
    Transform,
)
from monai.utils import ensure_tuple_rep

from monai_ilm.transforms import batched_ops_3d as ops3d
from monai_ilm.transforms.batched_ops import to_device

__all__ = ["VOLUME_STEPS", "volume_device_steps"]

_SPATIAL_DIMS = 3


def _uniform(shape: Sequence[int] | int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    size = (shape,) if isinstance(shape, int) else tuple(shape)
    return torch.rand(size, generator=generator, dtype=torch.float64).mul_(high - low).add_(low)


def _coin(n: int, prob: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) < prob


def _per_sample(values: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Host values ``(N,)`` on the volumes' device and dtype, shaped to broadcast over ``(N, C, D, H, W)``."""
    return to_device(values.to(images.dtype), images.device).reshape(-1, 1, 1, 1, 1)


def _on_rows(images: torch.Tensor, rows: torch.Tensor, kernel, *args) -> torch.Tensor:
    """``kernel(images[rows], *(a[rows] for a in args))`` written back into the batch (``args`` on the host).

    The other samples stay bitwise as they were: an identity resample or blur would round them.
    """
    index = torch.nonzero(rows).flatten()
    if index.numel() == 0:
        return images
    if index.numel() == images.shape[0]:
        return kernel(images, *(a[index] for a in args))
    on_device = to_device(index, images.device)
    return images.index_copy(0, on_device, kernel(images.index_select(0, on_device), *(a[index] for a in args)))


def _check(condition: bool, step: Transform, setting: str, expected: str, got: object) -> None:
    if not condition:
        raise ValueError(f"{type(step).__name__}.{setting}: expected {expected} on the device, got {got!r}.")


def _ranges(values, centre: float = 0.0) -> list[tuple[float, float]]:
    """MONAI's random ranges per axis: a pair is (low, high), a number ``f`` is (-f, f); missing axes draw 0."""
    values = list(values) if isinstance(values, Sequence) else [values]
    out = []
    for value in (values + [None] * _SPATIAL_DIMS)[:_SPATIAL_DIMS]:
        if value is None:
            out.append((0.0, 0.0))
        elif isinstance(value, Sequence):
            out.append((float(value[0]), float(value[1])))
        else:
            out.append((-float(value), float(value)))
    return [(low + centre, high + centre) for low, high in out]


def _draw_per_axis(n: int, ranges: list[tuple[float, float]], generator: torch.Generator) -> torch.Tensor:
    columns = [_uniform(n, low, high, generator) for low, high in ranges]
    return torch.stack(columns, dim=1)


class _ScaleCropResize:
    """``RandScaleCropd(random_size=True)`` then ``Resized``: a random box per sample, resized trilinearly.

    MONAI draws each side independently, ``randint(ceil(roi_scale S), ceil(max_roi_scale S) + 1)``, and
    the box's corner ``randint(0, S - side + 1)`` on each axis.
    """

    def __init__(self, crop: RandScaleCropd, resize: Resized) -> None:
        cropper = crop.cropper
        _check(cropper.random_size, crop, "random_size", "True", cropper.random_size)
        _check(cropper.random_center, crop, "random_center", "True", cropper.random_center)
        mode = resize.mode[0]
        _check(str(mode) == "trilinear", resize, "mode", "'trilinear'", mode)
        _check(not resize.anti_aliasing[0], resize, "anti_aliasing", "False", resize.anti_aliasing[0])
        _check(resize.align_corners[0] in (None, False), resize, "align_corners", "False", resize.align_corners[0])
        size = resize.resizer.spatial_size
        self.size = tuple(int(s) for s in ensure_tuple_rep(size, _SPATIAL_DIMS))
        _check(all(s > 0 for s in self.size), resize, "spatial_size", "positive sides", size)
        self.roi_scale = ensure_tuple_rep(cropper.roi_scale, _SPATIAL_DIMS)
        high = 1.0 if cropper.max_roi_scale is None else cropper.max_roi_scale
        self.max_roi_scale = ensure_tuple_rep(high, _SPATIAL_DIMS)

    def sides(self, shape: Sequence[int]) -> list[tuple[int, int]]:
        """The smallest and largest side on each axis of a ``shape`` volume (MONAI's ``ceil(scale * side)``)."""
        low = [math.ceil(r * s) for r, s in zip(self.roi_scale, shape)]
        high = [math.ceil(r * s) for r, s in zip(self.max_roi_scale, shape)]
        return list(zip(low, high))

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        spatial = [int(s) for s in shape[-_SPATIAL_DIMS:]]
        sides, starts = [], []
        for (low, high), full in zip(self.sides(spatial), spatial):
            if high > full or low > high:
                raise ValueError(
                    f"RandScaleCropd: expected a box inside the {spatial} volume, got sides {low}..{high}."
                )
            side = torch.floor(_uniform(n, 0.0, 1.0, generator) * (high - low + 1)) + low
            sides.append(side)
            starts.append(torch.floor(_uniform(n, 0.0, 1.0, generator) * (full - side + 1)))
        return {"boxes": torch.stack(starts + sides, dim=1).to(torch.int64)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        return ops3d.resized_crop_3d(images, p["boxes"], self.size)


class _Flip:
    """``RandFlipd``: with ``prob``, mirror the listed spatial axes."""

    def __init__(self, step: RandFlipd) -> None:
        axis = step.flipper.spatial_axis
        _check(axis is not None, step, "spatial_axis", "one or more axes", axis)
        axes = axis if isinstance(axis, Sequence) else (axis,)
        self.prob, self.dims = float(step.prob), tuple(int(a) % _SPATIAL_DIMS + 2 for a in axes)

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        return _on_rows(images, p["apply"], lambda x: x.flip(self.dims))


class _Affine:
    """``RandAffined``: with ``prob``, rotate about each axis and scale along each axis, about the centre."""

    def __init__(self, step: RandAffined) -> None:
        grid = step.rand_affine.rand_affine_grid
        for setting in ("shear_range", "translate_range"):
            value = getattr(grid, setting)
            _check(all(v is None or v == 0 for v in value), step, setting, "None", value)
        order = getattr(grid, "rotate_order", "XYZ")
        _check(order == "XYZ", step, "rotate_order", "'XYZ'", order)
        _check(str(step.mode[0]) == "bilinear", step, "mode", "'bilinear'", step.mode[0])
        _check(str(step.padding_mode[0]) == "zeros", step, "padding_mode", "'zeros'", step.padding_mode[0])
        _check(step.rand_affine.spatial_size is None, step, "spatial_size", "None", step.rand_affine.spatial_size)
        self.prob = float(step.prob)
        self.rotate, self.scale = _ranges(grid.rotate_range), _ranges(grid.scale_range, centre=1.0)

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {
            "apply": _coin(n, self.prob, generator),
            "angles": _draw_per_axis(n, self.rotate, generator),
            "scales": _draw_per_axis(n, self.scale, generator),
        }

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        matrices = ops3d.rotation_scale_matrices(p["angles"], p["scales"])
        return _on_rows(images, p["apply"], ops3d.affine_3d, matrices)


class _Smooth:
    """``RandGaussianSmoothd``: with ``prob``, one σ per axis, MONAI's ``erf`` kernel."""

    def __init__(self, step: RandGaussianSmoothd) -> None:
        smooth = step.rand_smooth
        _check(smooth.approx == "erf", step, "approx", "'erf'", smooth.approx)
        self.prob = float(step.prob)
        self.sigma = [tuple(float(v) for v in r) for r in (smooth.sigma_x, smooth.sigma_y, smooth.sigma_z)]

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator), "sigmas": _draw_per_axis(n, self.sigma, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        return _on_rows(images, p["apply"], ops3d.gaussian_smooth_3d, p["sigmas"])


class _Gamma:
    """``RandAdjustContrastd``: with ``prob``, gamma ~ U(gamma range) on each volume's own min-max range."""

    def __init__(self, step: RandAdjustContrastd) -> None:
        adjuster = step.adjuster
        _check(not adjuster.invert_image, step, "invert_image", "False", adjuster.invert_image)
        _check(not adjuster.retain_stats, step, "retain_stats", "False", adjuster.retain_stats)
        self.prob, self.gamma = float(step.prob), tuple(float(g) for g in adjuster.gamma)

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator), "gamma": _uniform(n, *self.gamma, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        return _on_rows(images, p["apply"], ops3d.adjust_gamma, p["gamma"])


class _ScaleIntensity:
    """``RandScaleIntensityd``: with ``prob``, ``x (1 + f)``, one ``f`` per volume."""

    def __init__(self, step: RandScaleIntensityd) -> None:
        _check(not step.scaler.channel_wise, step, "channel_wise", "False", step.scaler.channel_wise)
        self.prob, self.factors = float(step.prob), tuple(float(f) for f in step.scaler.factors)

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator), "factor": _uniform(n, *self.factors, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        factor = torch.where(p["apply"], p["factor"], torch.zeros_like(p["factor"]))  # x (1 + 0) is x exactly
        return images * (1.0 + _per_sample(factor, images))


class _ShiftIntensity:
    """``RandShiftIntensityd``: with ``prob``, ``x + o``, one ``o`` per volume."""

    def __init__(self, step: RandShiftIntensityd) -> None:
        _check(not step.shifter.channel_wise, step, "channel_wise", "False", step.shifter.channel_wise)
        self.prob, self.offsets = float(step.prob), tuple(float(o) for o in step.shifter.offsets)

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator), "offset": _uniform(n, *self.offsets, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        offset = torch.where(p["apply"], p["offset"], torch.zeros_like(p["offset"]))
        return images + _per_sample(offset, images)


class _Noise:
    """``RandGaussianNoised``: with ``prob``, add N(mean, σ²) per voxel, σ ~ U(0, std) per volume (or ``std``)."""

    def __init__(self, step: RandGaussianNoised) -> None:
        noise = step.rand_gaussian_noise
        self.prob, self.mean, self.std, self.sample_std = (
            float(step.prob),
            float(noise.mean),
            float(noise.std),
            bool(noise.sample_std),
        )

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        apply = _coin(n, self.prob, generator)
        std = (
            _uniform(n, 0.0, self.std, generator)
            if self.sample_std
            else torch.full((n,), self.std, dtype=torch.float64)
        )
        seed = torch.randint(0, 2**62, (1,), generator=generator)  # seeds the field's generator on the device
        return {"apply": apply, "std": std, "seed": seed}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        if not bool(p["apply"].any()):
            return images
        field = torch.Generator(device=images.device)
        field.manual_seed(int(p["seed"]))
        noise = torch.randn(images.shape, generator=field, device=images.device, dtype=images.dtype)
        apply = p["apply"].to(torch.float64)
        return images + (noise * _per_sample(p["std"] * apply, images) + _per_sample(self.mean * apply, images))


class _Threshold:
    """``ThresholdIntensityd``: keep the values above (or below) the threshold, set the others to ``cval``."""

    def __init__(self, step: ThresholdIntensityd) -> None:
        self.threshold, self.above, self.cval = float(step.filter.threshold), bool(step.filter.above), step.filter.cval

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        keep = images > self.threshold if self.above else images < self.threshold
        return torch.where(keep, images, torch.full_like(images, float(self.cval)))


VOLUME_STEPS = {
    RandFlipd: _Flip,
    RandAffined: _Affine,
    RandGaussianSmoothd: _Smooth,
    RandAdjustContrastd: _Gamma,
    RandScaleIntensityd: _ScaleIntensity,
    RandShiftIntensityd: _ShiftIntensity,
    RandGaussianNoised: _Noise,
    ThresholdIntensityd: _Threshold,
}
"""The device step of each MONAI view step of the volume preset (``RandScaleCropd`` pairs with the ``Resized``
after it)."""


def volume_device_steps(steps: Sequence[Transform], preset: str = "volume") -> list:
    """The device versions of a volume view pipeline's MONAI ``steps``, in their order and with their settings.

    Args:
        steps: the loader's random view steps (``get_preset(preset).pretrain_view(key, size)``).
        preset: the preset's name, for the error message.

    Raises:
        ValueError: for a step without a device version, a ``RandScaleCropd`` not followed by a ``Resized``,
            or a setting the device step does not reproduce.
    """
    device_steps, index = [], 0
    while index < len(steps):
        step = steps[index]
        if isinstance(step, RandScaleCropd) and index + 1 < len(steps) and isinstance(steps[index + 1], Resized):
            device_steps.append(_ScaleCropResize(step, steps[index + 1]))
            index += 2
            continue
        if type(step) not in VOLUME_STEPS:
            raise ValueError(
                f"augment_on: expected 'loader' for preset '{preset}' ({type(step).__name__} has no device "
                "version), got 'device'."
            )
        device_steps.append(VOLUME_STEPS[type(step)](step))
        index += 1
    return device_steps
