"""Two-view augmentation on the training device, batched, with per-sample random parameters.

The loader pipeline (:func:`~monai_ilm.transforms.pretrain_transforms`) makes MoCo's two views per
sample in Python on the loader's cores, which costs a third of an epoch on two cores and, at 512 px,
one core per ~20 samples/s. With ``augment_on="device"`` the loader instead yields the cached, resized
image once, as uint8 (:class:`ToUint8d`: a quarter of the bytes of float32 and one copy, not two),
and :class:`DeviceAugment` makes both views of the whole batch on the training device, before the
forward (docs/method.md §3 lists the augmentations).

The device steps are compiled from the preset's own loader steps (:func:`device_steps`), so both
ways run the same augmentations with the same parameters: colour jitter (random order of brightness,
contrast, saturation, hue), grayscale, Gaussian blur, rotation, flips and random resized crop. Every
parameter is drawn per sample and per view from the distribution its loader transform draws from;
the kernels (:mod:`monai_ilm.transforms.batched_ops`) reproduce torchvision's per image. For the 3D
``volume`` preset the steps are its MONAI steps, batched (:mod:`monai_ilm.transforms.device_augment_3d`).

Plain tensor ops rather than kornia: the kernels are a few lines each on ``conv2d`` and
``grid_sample``, they must equal the loader's torchvision kernels image for image
(``tests/transforms/test_batched_ops.py``), and every parameter must come from one checkpointable
generator whose draws the tests compare with the loader's; a new dependency would buy neither.

The uint8 cache rounds the resized image to 8 bits, as the reference's PIL pipeline holds it; sources
with more bits (16-bit PNGs) keep 8 of them on this path.

All parameters come from one CPU ``torch.Generator`` seeded by ``seed`` (a few numbers per sample),
so the same seed gives the same views on every device, the host knows every sample's choices without
reading the device back, and :meth:`DeviceAugment.state_dict` is what a checkpoint needs for a
bitwise resume (:class:`~monai_ilm.engines.MoCoTrainer` saves it with its own state).
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Mapping, Sequence
from functools import partial

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Compose, MapTransform, RandFlipd, SelectItemsd, Transform
from monai.utils import convert_to_tensor

from monai_ilm.checks import check_choice, checks_arguments
from monai_ilm.transforms import batched_ops as ops
from monai_ilm.transforms.color import RandColorJitterd, RandGaussianBlurd, RandGrayscaled
from monai_ilm.transforms.device_augment_3d import volume_device_steps
from monai_ilm.transforms.presets import (
    IMAGE_CHECKS,
    IMAGENET_GREY_MEAN,
    IMAGENET_GREY_STD,
    IMAGENET_MEAN,
    IMAGENET_STD,
    deterministic_transforms,
    get_preset,
    pretrain_transforms,
)
from monai_ilm.transforms.spatial import RandResizedCropd, RandRotationd, centre_crop_box
from monai_ilm.transforms.views import VIEW_KEYS

__all__ = ["AUGMENT_ON", "DeviceAugment", "ToUint8d", "device_steps", "pretrain_pipeline"]

AUGMENT_ON: tuple[str, str] = ("device", "loader")
"""Where the two pretraining views are made: on the training device, batched, or per sample in the loader."""

_GREY_PRESETS = ("nih",)  # grey data sets: a 3-channel view repeats one grey channel
_JITTER_ORDER = ("brightness", "contrast", "saturation", "hue")  # RandColorJitterd.ranges' order


class ToUint8d(MapTransform):
    """Dictionary transform: a [0, 1] float image as uint8 (``round(255 x)``), the compact form the device stage reads.

    Deterministic, so ``CacheDataset`` caches its output: one uint8 copy per image.

    Args:
        keys: the keys holding float images in [0, 1].
        allow_missing_keys: ignore keys that are not in the data.
    """

    def __init__(self, keys: KeysCollection, allow_missing_keys: bool = False):
        super().__init__(keys, allow_missing_keys)

    def __call__(self, data: Mapping[Hashable, torch.Tensor]) -> dict[Hashable, torch.Tensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            image = convert_to_tensor(d[key], track_meta=False)
            d[key] = image if image.dtype == torch.uint8 else (image * 255.0).round_().clamp_(0, 255).to(torch.uint8)
        return d


def _to_float(images: torch.Tensor) -> torch.Tensor:
    """A uint8 batch in [0, 1] as float32 (a float batch as float32)."""
    return images.float().div_(255.0) if images.dtype == torch.uint8 else images.float()


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64).mul_(high - low).add_(low)


def _coin(n: int, prob: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, dtype=torch.float64) < prob


def _where(mask: torch.Tensor) -> list[int]:
    return torch.nonzero(mask).flatten().tolist()


def _on_subset(images: torch.Tensor, rows: list[int], kernel, *args) -> torch.Tensor:
    """Apply ``kernel(images[rows], *args)`` to the listed samples only (the rows are known on the host)."""
    if not rows:
        return images
    if len(rows) == images.shape[0]:
        return kernel(images, *args)
    index = ops.to_device(torch.tensor(rows), images.device)
    return images.index_copy(0, index, kernel(images.index_select(0, index), *args))


class _ColourJitter:
    """:class:`RandColorJitterd` per sample: with ``prob``, the four adjustments in a random order."""

    def __init__(self, step: RandColorJitterd) -> None:
        self.prob, self.ranges = float(step.prob), [step.ranges[name] for name in _JITTER_ORDER]

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        order = torch.argsort(torch.rand(n, 4, generator=generator), dim=1)  # a uniform random permutation per sample
        factors = torch.stack([_uniform(n, *(r or (0.0, 0.0)), generator) for r in self.ranges], dim=1)
        return {"apply": _coin(n, self.prob, generator), "order": order, "factors": factors}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        colour = images.shape[1] == 3
        for position in range(4):
            for op, value_range in enumerate(self.ranges):
                if value_range is None or (op >= 2 and not colour):  # saturation and hue need colour
                    continue
                rows = _where(p["apply"] & (p["order"][:, position] == op))
                values = ops.to_device(p["factors"][rows, op].to(images.dtype), images.device)
                images = _on_subset(images, rows, _ADJUST[op], values)
        return images


def _brightness(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return ops.blend(images, 0.0, factors)


def _contrast(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return ops.blend(images, ops.grey(images).mean(dim=(1, 2, 3), keepdim=True), factors)


def _saturation(images: torch.Tensor, factors: torch.Tensor) -> torch.Tensor:
    return ops.blend(images, ops.grey(images), factors)


_ADJUST = (_brightness, _contrast, _saturation, ops.adjust_hue)


class _Grayscale:
    """:class:`RandGrayscaled` per sample (RGB images only)."""

    def __init__(self, step: RandGrayscaled) -> None:
        self.prob = float(step.prob)

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        if images.shape[1] != 3:
            return images
        return _on_subset(images, _where(p["apply"]), lambda x: ops.grey(x).expand_as(x).contiguous())


class _Blur:
    """:class:`RandGaussianBlurd` per sample: with ``prob``, one isotropic σ ~ U(sigma) in pixels."""

    def __init__(self, step: RandGaussianBlurd) -> None:
        self.prob, self.sigma = float(step.prob), step.sigma

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator), "sigma": _uniform(n, *self.sigma, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        radius = {r: ops.blur_radius(float(p["sigma"][r]), images.shape[-2:]) for r in _where(p["apply"])}
        rows = [r for r, k in radius.items() if k > 0]
        sigmas = ops.to_device(p["sigma"][rows].to(images.dtype), images.device)
        return _on_subset(images, rows, ops.gaussian_blur, sigmas, [radius[r] for r in rows])


class _Rotate:
    """:class:`RandRotationd` per sample: with ``prob``, an angle ~ U(-degrees, degrees), nearest, zero fill."""

    def __init__(self, step: RandRotationd) -> None:
        self.prob, self.degrees = float(step.prob), step.degrees

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator), "angle": _uniform(n, -self.degrees, self.degrees, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        rows = _where(p["apply"])
        return _on_subset(images, rows, ops.rotate, ops.to_device(p["angle"][rows], images.device))


class _Flip:
    """MONAI's ``RandFlipd`` per sample: with ``prob``, mirror along one spatial axis."""

    def __init__(self, step: RandFlipd) -> None:
        axis = step.flipper.spatial_axis
        axes = axis if isinstance(axis, Sequence) else (axis,)
        self.prob, self.dims = float(step.prob), tuple(int(a) + 2 for a in axes)  # (C, H, W) axes -> (N, C, H, W)

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        return {"apply": _coin(n, self.prob, generator)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        return _on_subset(images, _where(p["apply"]), lambda x: x.flip(self.dims))


class _ResizedCrop:
    """:class:`RandResizedCropd` per sample: torchvision's ten tries of area and log-aspect, else a centre crop."""

    tries = 10

    def __init__(self, step: RandResizedCropd) -> None:
        self.size, self.scale, self.ratio = step.size, step.scale, step.ratio

    def draw(self, n: int, generator: torch.Generator, shape: Sequence[int]) -> dict:
        height, width = int(shape[-2]), int(shape[-1])
        area = _uniform(n * self.tries, *self.scale, generator).reshape(n, self.tries) * (height * width)
        log_ratio = _uniform(n * self.tries, *np.log(self.ratio), generator).reshape(n, self.tries)
        where = torch.rand(n, self.tries, 2, generator=generator, dtype=torch.float64)
        crop_w = torch.round(torch.sqrt(area * torch.exp(log_ratio)))
        crop_h = torch.round(torch.sqrt(area / torch.exp(log_ratio)))
        fits = (crop_w > 0) & (crop_w <= width) & (crop_h > 0) & (crop_h <= height)
        first = torch.argmax(fits.to(torch.int8), dim=1)  # the first try that fits (0 when none does)
        pick = torch.arange(n)
        crop_h, crop_w, where = crop_h[pick, first], crop_w[pick, first], where[pick, first]
        top = torch.floor(where[:, 0] * (height - crop_h + 1))  # randint(0, height - crop_h + 1)
        left = torch.floor(where[:, 1] * (width - crop_w + 1))
        boxes = torch.stack((top, left, crop_h, crop_w), dim=1)
        fallback = torch.tensor(centre_crop_box(height, width, self.ratio), dtype=boxes.dtype)
        boxes = torch.where(fits.any(dim=1, keepdim=True), boxes, fallback)
        return {"boxes": boxes.to(torch.int64)}

    def apply(self, images: torch.Tensor, p: dict) -> torch.Tensor:
        return ops.resized_crop(images, p["boxes"], self.size)


_DEVICE_STEPS = {
    RandResizedCropd: _ResizedCrop,
    RandColorJitterd: _ColourJitter,
    RandGrayscaled: _Grayscale,
    RandGaussianBlurd: _Blur,
    RandRotationd: _Rotate,
    RandFlipd: _Flip,
}


def device_steps(preset: str, image_size: int | None = None) -> list:
    """The device versions of ``preset``'s pretraining view steps, in the loader's order and with its parameters.

    A 3D preset's steps are compiled by :func:`~monai_ilm.transforms.device_augment_3d.volume_device_steps`.

    Raises:
        ValueError: for an unknown preset, or one with a step that has no device version.
    """
    spec = get_preset(preset)
    view = spec.pretrain_view("image", spec.image_size if image_size is None else int(image_size))
    if spec.spatial_dims == 3:
        return volume_device_steps(view, preset)
    steps = []
    for step in view:
        if type(step) not in _DEVICE_STEPS or spec.spatial_dims != 2:
            raise ValueError(
                f"augment_on: expected 'loader' for preset '{preset}' ({type(step).__name__} has no device "
                "version), got 'device'."
            )
        steps.append(_DEVICE_STEPS[type(step)](step))
    return steps


class DeviceAugment:
    """Make MoCo's two views of a batch on its device, each sample and view with its own random parameters.

    Call it on the loader's ``(N, C, H, W)`` batch, or ``(N, C, D, H, W)`` with ``spatial_dims=3`` (uint8
    in [0, 255] or float in [0, 1]), already on the training device; it returns the two float32 views in [0, 1]
    (ImageNet-normalised when ``normalize``), the same shapes the loader pipeline would have
    given. For every view the steps run
    in the preset's order, each drawing its parameters for all samples from the stage's generator.

    Args:
        steps: device steps (:func:`device_steps`), applied to each view in order.
        normalize: apply the ImageNet mean and std at the end, as ``pretrain_transforms(normalize=True)``.
        channels: the views' channels: 3 repeats a 1-channel batch (a grey cache) into 3, as the loader's
            ``EnsureChannelsd`` would have; None keeps the batch's own. The steps run on the one grey channel
            first, a third of the work: on grey RGB the loader's hue is the identity and its saturation,
            grayscale and contrast weigh the channels 0.2989 + 0.587 + 0.114 = 0.9999, so the views differ
            from three-channel processing by a few 1e-4 at most (a tenth of one uint8 step).
        seed: seeds the parameter generator (give each distributed rank its own, e.g. ``seed + rank``).
        image_key: the batch key of the loader's image.
        view_keys: the batch keys of the two views it makes.
        spatial_dims: 2 for images, 3 for volumes (the ``volume`` preset's steps).

    Raises:
        ValueError: when ``view_keys`` does not name two distinct keys or ``spatial_dims`` is not 2 or 3.
    """

    def __init__(
        self,
        steps: Sequence,
        normalize: bool = False,
        channels: int | None = None,
        seed: int = 0,
        image_key: str = "image",
        view_keys: Sequence[str] = VIEW_KEYS,
        spatial_dims: int = 2,
    ) -> None:
        if len(view_keys) != 2 or view_keys[0] == view_keys[1]:
            raise ValueError(f"view_keys: expected two distinct keys, got {list(view_keys)}.")
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims: expected 2 or 3, got {spatial_dims!r}.")
        self.spatial_dims = int(spatial_dims)
        self.steps, self.normalize, self.channels = list(steps), bool(normalize), channels
        self.image_key, self.view_keys = image_key, tuple(view_keys)
        self.generator = torch.Generator(device="cpu")
        self.generator.manual_seed(int(seed))

    @classmethod
    def from_preset(
        cls,
        preset: str = "nih",
        image_size: int | None = None,
        normalize: bool = False,
        channels: int | None = None,
        seed: int = 0,
        image_key: str = "image",
        view_keys: Sequence[str] = VIEW_KEYS,
    ) -> DeviceAugment:
        """The stage making ``preset``'s pretraining views (see :func:`device_steps`).

        Raises:
            ValueError: for an unknown preset or one without a device version.
        """
        spatial_dims = get_preset(preset).spatial_dims
        return cls(device_steps(preset, image_size), normalize, channels, seed, image_key, view_keys, spatial_dims)

    def draw(self, shape: Sequence[int]) -> list[list[dict]]:
        """The parameters of both views of a batch of ``shape`` (on the host): one list of step parameters per view."""
        return [[step.draw(int(shape[0]), self.generator, shape) for step in self.steps] for _ in range(2)]

    def apply(self, images: torch.Tensor, params: list[dict]) -> torch.Tensor:
        """One view of ``images`` with the drawn ``params`` of its steps."""
        x = _to_float(images)
        for step, p in zip(self.steps, params):
            x = step.apply(x, p)
        if self.channels == 3 and x.shape[1] == 1:
            x = x.expand(-1, 3, *x.shape[2:])
        if self.normalize:
            mean, std = (
                (IMAGENET_MEAN, IMAGENET_STD) if x.shape[1] == 3 else ((IMAGENET_GREY_MEAN,), (IMAGENET_GREY_STD,))
            )
            mean, std = (
                ops.to_device(torch.tensor(v, dtype=x.dtype), x.device).reshape(1, -1, *[1] * self.spatial_dims)
                for v in (mean, std)
            )
            x = (x - mean) / std
        return x.contiguous()

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The two views of ``images`` ``(N, C, H, W)`` (``(N, C, D, H, W)`` for volumes).

        Raises:
            ValueError: when ``images`` is not a batch of ``spatial_dims`` dimensions.
        """
        if images.ndim != 2 + self.spatial_dims:
            layout = "(N, C, H, W)" if self.spatial_dims == 2 else "(N, C, D, H, W)"
            raise ValueError(f"{self.image_key}: expected a {layout} batch, got shape {tuple(images.shape)}.")
        first, second = self.draw(images.shape)
        images = _to_float(images)  # once for both views: no step writes into its input
        return self.apply(images, first), self.apply(images, second)

    def views(self, batch: Mapping, device: torch.device | str, non_blocking: bool = False) -> dict[str, torch.Tensor]:
        """Move the batch's image to ``device`` (one uint8 copy) and return ``{view_keys[0]: ..., view_keys[1]: ...}``.

        Raises:
            ValueError: when the batch has no ``image_key``.
        """
        if not isinstance(batch, Mapping) or self.image_key not in batch:
            found = sorted(batch) if isinstance(batch, Mapping) else type(batch).__name__
            raise ValueError(f"{self.image_key}: expected a batch dict holding the loader's image, got {found}.")
        image = batch[self.image_key]
        image = image.as_tensor() if hasattr(image, "as_tensor") else torch.as_tensor(image)
        return dict(zip(self.view_keys, self(image.to(device, non_blocking=non_blocking))))

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The parameter generator's state (a uint8 tensor: checkpoints stay ``weights_only``-loadable)."""
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: Mapping, rank: int = 0) -> None:
        """Restore the generator from :meth:`state_dict` output.

        Args:
            state: :meth:`state_dict` output.
            rank: the distributed rank restoring it. Only rank 0's state is checkpointed, so every other rank
                derives its own generator from that state and its rank: restoring rank 0's state on every
                rank would give all ranks the same views. Rank 0 (and a single process) resumes bitwise.
        """
        saved = torch.as_tensor(state["generator"]).cpu().to(torch.uint8)
        self.generator.set_state(saved)
        if rank:
            digest = hashlib.sha256(saved.numpy().tobytes() + int(rank).to_bytes(4, "little")).digest()
            self.generator.manual_seed(int.from_bytes(digest[:8], "little"))


@checks_arguments(augment_on=partial(check_choice, allowed=AUGMENT_ON), **IMAGE_CHECKS)
def pretrain_pipeline(
    preset: str = "nih",
    image_size: int | None = None,
    channels: int | None = 3,
    augment_on: str = "device",
    normalize: bool = False,
    seed: int = 0,
    image_key: str = "image",
    intensity: str = "auto",
    cache_channels: int | None = None,
    volume: Mapping | None = None,
) -> tuple[Compose, DeviceAugment | None]:
    """The pretraining data pipeline for ``augment_on``: the loader transform and the device stage (or None).

    ``"loader"`` gives :func:`~monai_ilm.transforms.pretrain_transforms` (two float views per sample)
    and no stage; ``"device"`` gives the cacheable loader steps ending in one uint8 image, and the
    :class:`DeviceAugment` the trainer applies to each batch (``MoCoTrainer(augment=...)``). In a bundle::

        "pipeline": {"_target_": "monai_ilm.transforms.pretrain_pipeline", "preset": "@dataset_name",
                     "image_size": "@image_size", "channels": "@channels", "augment_on": "@augment_on",
                     "seed": "$@seed + monai_ilm.distributed.rank()"},
        "preprocessing": "$@train#pipeline[0]",   ...   "augment": "$@train#pipeline[1]"

    Args:
        preset: ``"nih"``, ``"idc"``, ``"dr"`` or ``"volume"`` (a 3D stage, ``spatial_dims=3``).
        image_size: output side (default: the preset's size).
        channels: 1 or 3 output channels (``None`` keeps the image's own).
        augment_on: one of :data:`AUGMENT_ON`.
        normalize: apply ImageNet mean/std to the views.
        seed: seeds the device stage's generator (the loader transforms are seeded by ``set_determinism``).
        image_key: the key holding the image path or array.
        intensity: ``"auto"`` (scale by bit depth) or ``"minmax"``.
        cache_channels: with ``"device"``, the channels of the loader's image (what a cache holds): by
            default 1 for the grey NIH X-rays when ``channels`` is 3 (a third of the bytes; the device
            stage repeats the grey channel, as the reference's ``convert("RGB")``), else ``channels``.
        volume: a 3D preset's ``volume`` settings (orientation, spacing, intensity; see
            :func:`~monai_ilm.transforms.volumes.check_volume_options`), None for the defaults; None for 2D.

    Raises:
        ValueError: for an ``augment_on`` outside :data:`AUGMENT_ON`, an unknown preset, or ``"device"``
            with a preset that has no device version.
    """
    if augment_on == "loader":
        return pretrain_transforms(preset, image_size, channels, True, normalize, image_key, intensity, volume), None
    if cache_channels is None:
        cache_channels = 1 if preset in _GREY_PRESETS and channels == 3 else channels
    stage = DeviceAugment.from_preset(preset, image_size, normalize, channels, seed, image_key)
    steps: list[Transform] = deterministic_transforms(preset, image_size, cache_channels, image_key, intensity, volume)
    return Compose([*steps, ToUint8d(image_key), SelectItemsd([image_key])]), stage
