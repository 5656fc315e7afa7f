"""Checks of every user-facing bundle setting, run before anything is built or trained.

A wrong setting otherwise surfaces late and far from its cause: a typo in ``layers`` as a shape
error inside the loss after the data has been cached, ``queue_size < batch_size`` at the first
enqueue, an unwritable ``output_dir`` when the first checkpoint is saved. The functions here check
the settings one by one and raise on the first bad one with a message that starts with the
setting's name **as the bundle spells it** (``mse_weights``, ``queue_size``...) and says what is
allowed. Bundles call them first in ``initialize``::

    "initialize": ["$monai_ilm.validation.validate_pretrain_settings(method=@method, layers=@layers, ...)", ...]

Only ``ValueError`` and ``FileNotFoundError`` are raised, whatever the input.
"""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Sequence
from pathlib import Path

from monai_ilm.methods import METHODS
from monai_ilm.networks.backbones import STAGE_NAMES

__all__ = ["validate_evaluation_settings", "validate_pretrain_settings"]

MAX_SEED = 2**32 - 1  # numpy's global seed, which MONAI's set_determinism sets, must fit in 32 bits
MAX_IMAGE_SIZE = 16384  # pixels per side; larger is a typo (or a units mix-up), not a chest X-ray
CHANNELS = (1, 3)
HEADS = ("linear", "mlp")
BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
EVALUATION_METHODS = (*METHODS, "supervised")
AMP_DTYPES = ("bfloat16", "float16")
NIH_SPLITS = ("official", "chexnet", "seeded")
_MAX_SHOWN = 80


def _show(value: object) -> str:
    """``repr(value)``, shortened for the message."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not hide the real error
        text = f"<{type(value).__name__}>"
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 3] + "..."


def _fail(key: str, expected: str, value: object) -> ValueError:
    return ValueError(f"{key}: expected {expected}, got {_show(value)}.")


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value: object) -> bool:
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(float(value))
    except (OverflowError, ValueError):  # an integer too large for a float
        return False


def check_int(key: str, value: object, minimum: int = 1, maximum: int | None = None) -> int:
    """``value`` if it is an integer in ``[minimum, maximum]``.

    Raises:
        ValueError: naming ``key`` and the allowed range.
    """
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum}" if maximum is not None else ""
        raise _fail(key, f"an integer of at least {minimum}{upper}", value)
    return int(value)


def check_real(
    key: str,
    value: object,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """``value`` if it is a finite real number in the interval from ``low`` to ``high``.

    Raises:
        ValueError: naming ``key`` and the interval.
    """
    ok = _is_real(value)
    if ok:
        x = float(value)
        ok = (x > low if low_open else x >= low) and (x < high if high_open else x <= high)
    if not ok:
        if math.isinf(high):
            interval = f"{'>' if low_open else '>='} {low:g}"
        else:
            interval = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise _fail(key, f"a finite number {interval}", value)
    return float(value)


def check_bool(key: str, value: object) -> bool:
    """``value`` if it is ``true`` or ``false`` (not 0, 1 or a string).

    Raises:
        ValueError: naming ``key``.
    """
    if not isinstance(value, bool):
        raise _fail(key, "true or false", value)
    return value


def check_choice(key: str, value: object, allowed: Sequence) -> object:
    """``value`` if it is one of ``allowed``.

    Raises:
        ValueError: naming ``key`` and listing the allowed values.
    """

    def same(a: object) -> bool:
        same_kind = type(value) is type(a) or (_is_int(value) and _is_int(a))
        return same_kind and bool(value == a)

    try:
        known = any(same(a) for a in allowed)
    except Exception:  # noqa: BLE001 - an exotic __eq__ (arrays...)
        known = False
    if not known:
        raise _fail(key, f"one of {list(allowed)}", value)
    return value


def _as_list(key: str, value: object, what: str) -> list:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise _fail(key, f"a list of {what}", value)
    return list(value)


def check_layers(key: str, value: object) -> list[str]:
    """A non-empty list of distinct stage names from ``layer1`` ... ``layer4``.

    Raises:
        ValueError: naming ``key`` and the allowed names.
    """
    layers = [value] if isinstance(value, str) else _as_list(key, value, f"distinct names from {list(STAGE_NAMES)}")
    unknown = [layer for layer in layers if not (isinstance(layer, str) and layer in STAGE_NAMES)]
    if not layers or unknown or len(set(layers)) != len(layers):
        raise _fail(key, f"a non-empty list of distinct names from {list(STAGE_NAMES)}", value)
    return layers


def check_weights(key: str, value: object, num_layers: int) -> list[float]:
    """One finite, non-negative weight, or a list of one per layer.

    Raises:
        ValueError: naming ``key``, the expected length and the allowed values.
    """
    if _is_real(value):
        return [check_real(key, value, low=0.0)] * num_layers
    what = f"{num_layers} finite weights >= 0 (one per entry of layers) or a single one"
    weights = _as_list(key, value, what)
    if len(weights) != num_layers or not all(_is_real(w) and float(w) >= 0.0 for w in weights):
        raise _fail(key, what, value)
    return [float(w) for w in weights]


def check_pool_sizes(key: str, value: object, num_layers: int) -> list[int | None]:
    """``"reference"``, one size or null, or a list with one positive size (or null: no pooling) per layer.

    Raises:
        ValueError: naming ``key``, the expected length and the allowed values.
    """
    if isinstance(value, str) and value == "reference":
        return ["reference"] * num_layers
    if value is None or _is_int(value):
        value = [value] * num_layers
    what = f"'reference', or {num_layers} positive integers or nulls (one per entry of layers)"
    sizes = _as_list(key, value, what)
    if len(sizes) != num_layers or not all(s is None or (_is_int(s) and s >= 1) for s in sizes):
        raise _fail(key, what, value)
    return sizes


def check_data_settings(
    dataset_name: object = None,
    nih_split: object = None,
    val_fraction: object = None,
    require_all_classes: object = None,
) -> None:
    """Check the settings that choose the split of the data (a setting left out, None, is not checked).

    Args:
        dataset_name: the data set; ``nih_split`` other than ``"official"`` is refused for any but ``"nih"``.
        nih_split: one of :data:`NIH_SPLITS`.
        val_fraction: null (each reader's own) or a number in (0, 1).
        require_all_classes: true or false.

    Raises:
        ValueError: naming the first bad setting and the allowed values.
    """
    if nih_split is not None:
        check_choice("nih_split", nih_split, NIH_SPLITS)
        if isinstance(dataset_name, str) and dataset_name != "nih" and nih_split != NIH_SPLITS[0]:
            raise _fail(
                "nih_split",
                f"'{NIH_SPLITS[0]}' (it applies to dataset_name 'nih' only, not {dataset_name!r})",
                nih_split,
            )
    if val_fraction is not None:
        if not _is_real(val_fraction) or not 0.0 < float(val_fraction) < 1.0:
            raise _fail("val_fraction", "null (each data set's own) or a finite number in (0, 1)", val_fraction)
    if require_all_classes is not None:
        check_bool("require_all_classes", require_all_classes)


def check_existing_path(key: str, value: object, expected: str = "an existing file or folder") -> Path:
    """``value`` as a path that exists.

    Raises:
        ValueError: when ``value`` is not a path.
        FileNotFoundError: naming ``key``, the path and what it should hold.
    """
    path = _as_path(key, value)
    if not _exists(key, path):
        raise FileNotFoundError(f"{key}: '{path}' does not exist; expected {expected}.")
    return path


def check_writable_dir(key: str, value: object) -> Path:
    """``value`` as a folder that exists and is writable, or can be created.

    Raises:
        ValueError: naming ``key`` when the path is a file, or neither it nor its nearest existing parent
            folder is writable.
    """
    path = _as_path(key, value)
    existing = path
    while not _exists(key, existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ValueError(f"{key}: '{existing}' is a file; expected a folder for the run's outputs.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{key}: '{existing}' is not writable; expected a folder where the run can write.")
    return path


def _exists(key: str, path: Path) -> bool:
    try:
        return path.exists()
    except OSError as error:  # a name too long, a folder that cannot be listed...
        shown = str(path) if len(str(path)) <= _MAX_SHOWN else str(path)[: _MAX_SHOWN - 3] + "..."
        raise ValueError(f"{key}: '{shown}' cannot be checked ({error.strerror or error}).") from None


def _as_path(key: str, value: object) -> Path:
    if not isinstance(value, (str, os.PathLike)) or not str(value).strip() or "\0" in str(value):
        raise _fail(key, "a path", value)
    try:
        return Path(value).expanduser().absolute()
    except (OSError, RuntimeError, ValueError) as error:  # e.g. '~unknown_user'
        raise _fail(key, f"a path ({error})", value) from None


def _check_model(
    backbone: object, channels: object, image_size: object, embedding_dim: object, head: object, batch_size: object
) -> None:
    if backbone is not None:
        check_choice("backbone", backbone, BACKBONES)
    if channels is not None:
        check_choice("channels", channels, CHANNELS)
    if image_size is not None:
        check_int("image_size", image_size, maximum=MAX_IMAGE_SIZE)
    if embedding_dim is not None:
        check_int("embedding_dim", embedding_dim)
    if head is not None:
        check_choice("head", head, HEADS)
    if batch_size is not None:
        check_int("batch_size", batch_size)


def _check_intermediate_loss(method: str, layers: object, settings: dict) -> None:
    """The settings of the intermediate-layer loss that ``method`` uses (none for plain MoCo)."""
    if method == "moco":
        return
    num_layers = len(check_layers("layers", layers)) if layers is not None else len(STAGE_NAMES)
    if method == "mse":
        if settings["mse_weights"] is not None:
            check_weights("mse_weights", settings["mse_weights"], num_layers)
        if settings["mse_pool_sizes"] is not None:
            check_pool_sizes("mse_pool_sizes", settings["mse_pool_sizes"], num_layers)
        return
    if settings["barlow_weights"] is not None:
        check_weights("barlow_weights", settings["barlow_weights"], num_layers)
    if settings["barlow_scale"] is not None:
        check_real("barlow_scale", settings["barlow_scale"], low=0.0, low_open=True)
    if settings["barlow_offdiag_weight"] is not None:
        check_real("barlow_offdiag_weight", settings["barlow_offdiag_weight"], low=0.0)
    dims = settings["barlow_projector_dims"]
    if dims is not None:
        listed = _as_list("barlow_projector_dims", dims, "positive layer widths")
        if not listed or not all(_is_int(d) and d >= 1 for d in listed):
            raise _fail("barlow_projector_dims", "a non-empty list of positive layer widths", dims)


def validate_pretrain_settings(
    *,
    method: object = None,
    layers: object = None,
    mse_weights: object = None,
    mse_pool_sizes: object = None,
    barlow_weights: object = None,
    barlow_scale: object = None,
    barlow_offdiag_weight: object = None,
    barlow_projector_dims: object = None,
    seed: object = None,
    dataset_name: object = None,
    dataset_dir: object = None,
    output_dir: object = None,
    backbone: object = None,
    channels: object = None,
    image_size: object = None,
    batch_size: object = None,
    num_workers: object = None,
    cache_rate: object = None,
    max_epochs: object = None,
    epoch_length: object = None,
    val_interval: object = None,
    learning_rate: object = None,
    weight_decay: object = None,
    embedding_dim: object = None,
    head: object = None,
    queue_size: object = None,
    temperature: object = None,
    momentum: object = None,
    momentum_schedule: object = None,
    amp: object = None,
    amp_dtype: object = None,
    channels_last: object = None,
    compile: object = None,
    log_interval: object = None,
    nan_check_interval: object = None,
    checkpoint_iterations: object = None,
    knn_interval: object = None,
    knn_bank_size: object = None,
    knn_val_size: object = None,
    knn_cache_rate: object = None,
    health_samples: object = None,
    collapse_rank: object = None,
    collapse_patience: object = None,
    nih_split: object = None,
    val_fraction: object = None,
    require_all_classes: object = None,
    skip_unreadable: object = None,
) -> None:
    """Check the settings of a pretraining recipe (``pretrain.json``); a setting left out (None) is not checked.

    Args:
        method: one of :data:`monai_ilm.methods.METHODS`.
        layers: distinct stage names, a subset of ``layer1`` ... ``layer4`` (for ``mse`` and ``barlow``).
        mse_weights, barlow_weights: one finite weight >= 0, or one per entry of ``layers``.
        mse_pool_sizes: ``"reference"``, or a positive size or null (no pooling) per entry of ``layers``.
        barlow_scale: > 0. barlow_offdiag_weight: >= 0. barlow_projector_dims: positive widths.
        seed: an integer in [0, 2**32 - 1].
        dataset_name: one of :data:`monai_ilm.data.DATASETS`.
        dataset_dir: an existing file or folder. output_dir: a writable (or creatable) folder.
        backbone: a torchvision ResNet name. channels: 1 or 3. head: ``"linear"`` or ``"mlp"``.
        image_size: a positive integer up to 16384.
        batch_size, max_epochs, val_interval, embedding_dim: positive integers.
        num_workers: an integer >= 0. epoch_length: null or a positive integer.
        cache_rate: in [0, 1]. learning_rate: > 0. weight_decay: >= 0. temperature: > 0.
        queue_size: an integer >= batch_size (a batch of keys must fit in the queue).
        momentum: in [0, 1]. momentum_schedule: ``"constant"`` or ``"cosine"``.
        amp, channels_last, compile: true or false.
        amp_dtype: ``"bfloat16"`` or ``"float16"`` (the latter with a gradient scaler on CUDA).
        log_interval, nan_check_interval: positive integers (iterations).
        checkpoint_iterations: an integer >= 0 (0: no iteration checkpoints); with ``nan_check_interval``
            above 1, a multiple of it, so every iteration checkpoint follows a NaN check.
        knn_interval: an integer >= 0 (epochs between online kNN scores; 0: off).
        knn_bank_size, knn_val_size: positive integers. knn_cache_rate: in [0, 1].
        health_samples: an integer >= 2. collapse_rank: a number >= 0. collapse_patience: an integer >= 0 (0: off).
        nih_split: ``"official"``, ``"chexnet"`` or ``"seeded"``; used by ``dataset_name`` ``"nih"`` only
            (other data sets accept only the default ``"official"``, which they ignore).
        val_fraction: null (each data set's own default) or a number in (0, 1): the share of the
            train+val patients that form val, wherever a validation split is drawn.
        require_all_classes: true or false (raise, rather than warn, when a class misses a split).
        skip_unreadable: true or false (drop missing and unreadable images with a logged count, rather than stop).

    Raises:
        ValueError: for the first bad setting, naming it and the allowed values.
        FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
    """
    from monai_ilm.data.dispatch import DATASET_LAYOUTS
    from monai_ilm.handlers.momentum_update import SCHEDULES

    if method is not None:
        check_choice("method", method, METHODS)
    if layers is not None:
        check_layers("layers", layers)
    if method is not None:
        _check_intermediate_loss(method, layers, locals())
    if seed is not None:
        check_int("seed", seed, minimum=0, maximum=MAX_SEED)
    if dataset_name is not None:
        check_choice("dataset_name", dataset_name, tuple(DATASET_LAYOUTS))
    if dataset_dir is not None:
        layout = DATASET_LAYOUTS.get(dataset_name, "the data set's files") if isinstance(dataset_name, str) else None
        check_existing_path("dataset_dir", dataset_dir, layout or "the data set's files")
    if output_dir is not None:
        check_writable_dir("output_dir", output_dir)
    _check_model(backbone, channels, image_size, embedding_dim, head, batch_size)
    _check_schedule(num_workers, cache_rate, max_epochs, epoch_length, val_interval, learning_rate, weight_decay)
    if queue_size is not None:
        minimum = batch_size if _is_int(batch_size) else 1
        if not _is_int(queue_size) or queue_size < minimum:
            raise _fail(
                "queue_size", f"an integer of at least batch_size ({minimum}): a batch of keys must fit", queue_size
            )
    if temperature is not None:
        check_real("temperature", temperature, low=0.0, low_open=True)
    if momentum is not None:
        check_real("momentum", momentum, low=0.0, high=1.0)
    if momentum_schedule is not None:
        check_choice("momentum_schedule", momentum_schedule, SCHEDULES)
    _check_speed(amp, amp_dtype, channels_last, compile, log_interval)
    _check_nan_checks(nan_check_interval, checkpoint_iterations)
    _check_monitoring(
        knn_interval, knn_bank_size, knn_val_size, knn_cache_rate, health_samples, collapse_rank, collapse_patience
    )
    check_data_settings(dataset_name, nih_split, val_fraction, require_all_classes)
    if skip_unreadable is not None:
        check_bool("skip_unreadable", skip_unreadable)


def _check_speed(amp: object, amp_dtype: object, channels_last: object, compile: object, log_interval: object) -> None:
    for key, value in (("amp", amp), ("channels_last", channels_last), ("compile", compile)):
        if value is not None:
            check_bool(key, value)
    if amp_dtype is not None:
        check_choice("amp_dtype", amp_dtype, AMP_DTYPES)
    if log_interval is not None:
        check_int("log_interval", log_interval)


def _check_nan_checks(nan_check_interval: object, checkpoint_iterations: object) -> None:
    every = 1 if nan_check_interval is None else check_int("nan_check_interval", nan_check_interval)
    if checkpoint_iterations is not None:
        check_int("checkpoint_iterations", checkpoint_iterations, minimum=0)
        if checkpoint_iterations % every:
            raise _fail(
                "checkpoint_iterations",
                f"0 or a multiple of nan_check_interval ({every}), so no checkpoint holds an unchecked step",
                checkpoint_iterations,
            )


def _check_monitoring(
    knn_interval: object,
    knn_bank_size: object,
    knn_val_size: object,
    knn_cache_rate: object,
    health_samples: object,
    collapse_rank: object,
    collapse_patience: object,
) -> None:
    """The settings of ``OnlineKNNHandler`` and ``RepresentationHealthHandler``."""
    for key, value, minimum in (
        ("knn_interval", knn_interval, 0),
        ("knn_bank_size", knn_bank_size, 1),
        ("knn_val_size", knn_val_size, 1),
        ("health_samples", health_samples, 2),
        ("collapse_patience", collapse_patience, 0),
    ):
        if value is not None:
            check_int(key, value, minimum=minimum)
    if knn_cache_rate is not None:
        check_real("knn_cache_rate", knn_cache_rate, low=0.0, high=1.0)
    if collapse_rank is not None:
        check_real("collapse_rank", collapse_rank, low=0.0)


def _check_schedule(
    num_workers: object,
    cache_rate: object,
    max_epochs: object,
    epoch_length: object,
    val_interval: object,
    learning_rate: object,
    weight_decay: object,
) -> None:
    if num_workers is not None:
        check_int("num_workers", num_workers, minimum=0)
    if cache_rate is not None:
        check_real("cache_rate", cache_rate, low=0.0, high=1.0)
    if max_epochs is not None:
        check_int("max_epochs", max_epochs)
    if epoch_length is not None:
        check_int("epoch_length", epoch_length)
    if val_interval is not None:
        check_int("val_interval", val_interval)
    if learning_rate is not None:
        check_real("learning_rate", learning_rate, low=0.0, low_open=True)
    if weight_decay is not None:
        check_real("weight_decay", weight_decay, low=0.0)


def validate_evaluation_settings(
    *,
    protocol: object = None,
    method: object = None,
    label_fraction: object = None,
    seed: object = None,
    evaluation_epochs: object = None,
    evaluation_batch_size: object = None,
    evaluation_lr: object = None,
    n_resamples: object = None,
    ci_method: object = None,
    cka_kernel: object = None,
) -> None:
    """Check the settings of an evaluation recipe (``finetune.json``, ``linear_probe.json``...).

    Args:
        protocol: one of :data:`monai_ilm.evaluation.EVALUATION_PROTOCOLS`.
        method: a pretraining method or ``"supervised"`` (no pretraining).
        label_fraction: the labelled fraction, in (0, 1].
        seed: an integer in [0, 2**32 - 1].
        evaluation_epochs, evaluation_batch_size, n_resamples: positive integers.
        evaluation_lr: > 0.
        ci_method: one of the interval methods; cka_kernel: one of the CKA kernels.

    Raises:
        ValueError: for the first bad setting, naming it and the allowed values.
    """
    from monai_ilm.evaluation import EVALUATION_PROTOCOLS, KERNELS
    from monai_ilm.evaluation.intervals import METHODS as CI_METHODS

    if protocol is not None:
        check_choice("protocol", protocol, EVALUATION_PROTOCOLS)
    if method is not None:
        check_choice("method", method, EVALUATION_METHODS)
    if label_fraction is not None:
        check_real("label_fraction", label_fraction, low=0.0, high=1.0, low_open=True)
    if seed is not None:
        check_int("seed", seed, minimum=0, maximum=MAX_SEED)
    for key, value in (
        ("evaluation_epochs", evaluation_epochs),
        ("evaluation_batch_size", evaluation_batch_size),
        ("n_resamples", n_resamples),
    ):
        if value is not None:
            check_int(key, value)
    if evaluation_lr is not None:
        check_real("evaluation_lr", evaluation_lr, low=0.0, low_open=True)
    if ci_method is not None:
        check_choice("ci_method", ci_method, CI_METHODS)
    if cka_kernel is not None:
        check_choice("cka_kernel", cka_kernel, KERNELS)
