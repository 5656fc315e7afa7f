"""The one check of a bundle recipe's settings, read from its resolved configuration, called first in ``initialize``.

A recipe declares each setting once, as a top-level key of its config (``"queue_size": 65536``), and uses it
by reference (``"@queue_size"``) in the components that need it. Its ``initialize`` list starts with::

    "$monai_ilm.recipe_checks.check_recipe('pretraining')"

which resolves the workflow's settings from the configuration being parsed (the config files merged with the
overrides, as ``monai.bundle run`` merges them) and checks them before anything is built or cached. A wrong
setting otherwise surfaces late and far from its cause: a typo in ``layers`` as a shape error inside the loss
after the data has been cached, ``queue_size < batch_size`` at the first enqueue, an unwritable ``output_dir``
when the first checkpoint is saved. Every message has the form ``"<setting>: expected <what>, got <value>."``
and only ``ValueError`` and ``FileNotFoundError`` are raised, whatever the input; a setting the configuration
leaves out (or sets to null) is not checked. The components check their own arguments again where they are
built (the network, the losses, the handlers, the datalist options).

What each workflow checks (docs/method.md §4-§6 for what the settings mean):

* every workflow (:data:`DATA_SETTINGS`, :data:`MODEL_SETTINGS`): ``seed`` in [0, 2**32 - 1] (numpy's global
  seed, which MONAI's ``set_determinism`` sets); ``dataset_name`` of :data:`monai_ilm.datasets.DATASETS`;
  ``dataset_dir`` an existing file or folder (the error quotes the data set's layout); ``output_dir`` a writable
  (or creatable) folder; ``nih_split`` ``"official"``, ``"chexnet"`` or ``"seeded"``, for ``dataset_name``
  ``"nih"`` only (other data sets accept only the default, which they ignore); ``val_fraction`` null (each data
  set's own default) or in (0, 1); ``require_all_classes`` and ``skip_unreadable`` true or false;
  ``num_workers`` >= 0; ``backbone`` of :data:`monai_ilm.networks.backbones.BACKBONES` (3D data:
  ``MONAI_BACKBONES``); ``channels`` 1 or 3; ``image_size`` a positive integer up to 16384.
* ``pretraining`` (``pretrain.json``, ``multi_gpu.json``): ``method`` of :data:`monai_ilm.methods.METHODS`;
  ``layers`` distinct stage names of ``layer1`` ... ``layer4``; ``mse_weights`` and ``barlow_weights`` one
  finite weight >= 0 or one per layer; ``mse_pool_sizes`` ``"reference"`` or a positive size or null per layer;
  ``barlow_scale`` > 0, ``barlow_offdiag_weight`` >= 0, ``barlow_projector_dims`` positive widths;
  ``zero_init_residual``, ``amp``, ``channels_last``, ``compile`` true or false; ``head`` and ``batch_norm`` of
  :mod:`monai_ilm.networks.moco`; ``embedding_dim``, ``batch_size``, ``max_epochs``, ``val_interval``,
  ``log_interval``, ``nan_check_interval`` positive integers, ``epoch_length`` null or positive; ``cache`` of
  :data:`monai_ilm.data.CACHE_MODES` (``"memory"`` and ``"disk"`` need ``augment_on`` ``"device"``, whose loader
  gives uint8 images), ``cache_dir`` a writable folder, ``cache_rate`` in [0, 1]; ``learning_rate`` > 0,
  ``weight_decay`` >= 0, ``temperature`` > 0, ``momentum`` in [0, 1], ``momentum_schedule`` ``"constant"`` or
  ``"cosine"``; ``queue_size`` at least ``batch_size`` (a batch of keys must fit in the queue);
  ``amp_dtype`` ``"bfloat16"`` or ``"float16"``; ``augment_on`` of :data:`monai_ilm.transforms.AUGMENT_ON`;
  ``checkpoint_iterations`` >= 0 and a multiple of ``nan_check_interval`` (so every iteration checkpoint
  follows a NaN check); ``knn_interval`` >= 0 (0: off), ``knn_bank_size`` and ``knn_val_size`` positive,
  ``knn_cache_rate`` in [0, 1]; ``health_samples`` >= 2, ``collapse_rank`` >= 0, ``collapse_patience`` >= 0.
* every workflow: ``volume`` null for a 2D data set, else
  :func:`~monai_ilm.transforms.volumes.check_volume_options` (orientation, spacing, intensity of volumes).
* ``evaluation`` (``evaluate.json``): ``protocol`` of :data:`monai_ilm.results.schema.PROTOCOLS`; ``method`` a
  pretraining method or ``"supervised"`` (no pretraining); ``label_fraction`` in (0, 1];
  ``evaluation_epochs``, ``evaluation_linear_epochs``, ``evaluation_batch_size``, ``n_resamples`` positive;
  ``evaluation_lr`` > 0; ``evaluation_linear_features`` of :data:`monai_ilm.evaluation.protocols.LINEAR_FEATURES`;
  ``ci_method`` and ``cka_kernel`` of :mod:`monai_ilm.evaluation`; ``amp``, ``standardize_features`` booleans.
* ``inference`` (``inference.json``): ``split`` ``"train"``, ``"val"`` or ``"test"``; ``batch_size`` and
  ``embedding_dim`` positive; ``head`` of :data:`monai_ilm.networks.moco.HEADS`.

Inside ``monai.bundle run``, :func:`check_recipe` first refuses a setting given to the run that the workflow
does not read (:func:`monai_ilm.bundle_usage.check_given_settings_used`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from monai.bundle import ConfigParser

from monai_ilm.bundle_usage import check_given_settings_used
from monai_ilm.checks import (
    as_list,
    check_bool,
    check_choice,
    check_existing_path,
    check_int,
    check_layers,
    check_pool_sizes,
    check_real,
    check_weights,
    check_writable_dir,
    fail,
    is_int,
)
from monai_ilm.data.compact_cache import CACHE_MODES
from monai_ilm.data.dispatch import check_data_settings
from monai_ilm.data.splits import SPLIT_NAMES
from monai_ilm.datasets import DATASETS
from monai_ilm.evaluation.cka import KERNELS
from monai_ilm.evaluation.protocols import LINEAR_FEATURES
from monai_ilm.handlers.momentum_update import SCHEDULES
from monai_ilm.methods import METHODS
from monai_ilm.networks.backbones import BACKBONES, MONAI_BACKBONES, STAGE_NAMES
from monai_ilm.networks.moco import BATCH_NORM_MODES, HEADS
from monai_ilm.results.schema import PROTOCOLS
from monai_ilm.statistics.intervals import METHODS as CI_METHODS
from monai_ilm.transforms.device_augment import AUGMENT_ON
from monai_ilm.transforms.presets import get_preset
from monai_ilm.transforms.volumes import check_volume_options

__all__ = [
    "AMP_DTYPES",
    "CHANNELS",
    "EVALUATION_METHODS",
    "MAX_IMAGE_SIZE",
    "MAX_SEED",
    "WORKFLOW_SETTINGS",
    "check_recipe",
    "check_settings",
    "parsed_settings",
    "recipe_settings",
]

MAX_SEED = 2**32 - 1  # numpy's global seed, which MONAI's set_determinism sets, must fit in 32 bits
MAX_IMAGE_SIZE = 16384  # pixels per side; larger is a typo (or a units mix-up), not a chest X-ray
CHANNELS = (1, 3)
AMP_DTYPES = ("bfloat16", "float16")
EVALUATION_METHODS = (*METHODS, "supervised")

Check = Callable[[str, object], object]

DATA_SETTINGS = ("seed", "dataset_name", "dataset_dir", "output_dir", "nih_split", "val_fraction")
DATA_SETTINGS += ("require_all_classes", "skip_unreadable", "num_workers", "volume")
MODEL_SETTINGS: dict[str, Check] = {
    "channels": partial(check_choice, allowed=CHANNELS),
    "image_size": partial(check_int, maximum=MAX_IMAGE_SIZE),
}
LOSS_SETTINGS = ("method", "layers", "mse_weights", "mse_pool_sizes", "barlow_weights", "barlow_scale")
LOSS_SETTINGS += ("barlow_offdiag_weight", "barlow_projector_dims")
NETWORK_SETTINGS: dict[str, Check] = {
    "zero_init_residual": check_bool,
    "embedding_dim": check_int,
    "head": partial(check_choice, allowed=HEADS),
    "batch_norm": partial(check_choice, allowed=BATCH_NORM_MODES),
    "batch_size": check_int,
}
SCHEDULE_SETTINGS: dict[str, Check] = {
    "cache_rate": partial(check_real, low=0.0, high=1.0),
    "max_epochs": check_int,
    "epoch_length": check_int,
    "val_interval": check_int,
    "learning_rate": partial(check_real, low=0.0, low_open=True),
    "weight_decay": partial(check_real, low=0.0),
}
CONTRAST_SETTINGS: dict[str, Check] = {
    "temperature": partial(check_real, low=0.0, low_open=True),
    "momentum": partial(check_real, low=0.0, high=1.0),
    "momentum_schedule": partial(check_choice, allowed=SCHEDULES),
}
SPEED_SETTINGS: dict[str, Check] = {
    "amp": check_bool,
    "channels_last": check_bool,
    "compile": check_bool,
    "amp_dtype": partial(check_choice, allowed=AMP_DTYPES),
    "augment_on": partial(check_choice, allowed=AUGMENT_ON),
    "log_interval": check_int,
}
MONITORING_SETTINGS: dict[str, Check] = {  # those of OnlineKNNHandler and RepresentationHealthHandler
    "knn_interval": partial(check_int, minimum=0),
    "knn_bank_size": check_int,
    "knn_val_size": check_int,
    "health_samples": partial(check_int, minimum=2),
    "collapse_patience": partial(check_int, minimum=0),
    "knn_cache_rate": partial(check_real, low=0.0, high=1.0),
    "collapse_rank": partial(check_real, low=0.0),
}
EVALUATION_SETTINGS: dict[str, Check] = {
    "protocol": partial(check_choice, allowed=PROTOCOLS),
    "method": partial(check_choice, allowed=EVALUATION_METHODS),
    "label_fraction": partial(check_real, low=0.0, high=1.0, low_open=True),
    "evaluation_epochs": check_int,
    "evaluation_batch_size": check_int,
    "n_resamples": check_int,
    "evaluation_lr": partial(check_real, low=0.0, low_open=True),
    "evaluation_linear_features": partial(check_choice, allowed=LINEAR_FEATURES),
    "evaluation_linear_epochs": check_int,
    "ci_method": partial(check_choice, allowed=CI_METHODS),
    "cka_kernel": partial(check_choice, allowed=KERNELS),
    "amp": check_bool,
    "standardize_features": check_bool,
}
INFERENCE_SETTINGS: dict[str, Check] = {
    "split": partial(check_choice, allowed=SPLIT_NAMES),
    "batch_size": check_int,
    "embedding_dim": check_int,
    "head": partial(check_choice, allowed=HEADS),
}

_SHARED = (*DATA_SETTINGS, "backbone", *MODEL_SETTINGS)
WORKFLOW_SETTINGS: dict[str, tuple[str, ...]] = {
    "pretraining": tuple(
        dict.fromkeys(
            (
                *_SHARED,
                *LOSS_SETTINGS,
                *NETWORK_SETTINGS,
                "cache",
                "cache_dir",
                *SCHEDULE_SETTINGS,
                "queue_size",
                *CONTRAST_SETTINGS,
                *SPEED_SETTINGS,
                "nan_check_interval",
                "checkpoint_iterations",
                *MONITORING_SETTINGS,
            )
        )
    ),
    "evaluation": (*_SHARED, *EVALUATION_SETTINGS),
    "inference": (*_SHARED, *INFERENCE_SETTINGS),
}
"""The settings each workflow checks (and a pretraining run records), by the names the recipes give them."""


def _check_given(settings: Mapping[str, object], checks: Mapping[str, Check]) -> None:
    """Call ``checks[name](name, value)`` for every setting in ``checks`` that is given (not None)."""
    for name, check in checks.items():
        value = settings.get(name)
        if value is not None:
            check(name, value)


def _check_data(s: Mapping[str, object]) -> None:
    """The seed, the data set, its folder, the output folder and the split settings."""
    name = s.get("dataset_name")
    layout = DATASETS[name].expected_layout if isinstance(name, str) and name in DATASETS else "the data set's files"
    _check_given(  # in this order: the data set's name before its folder, whose error quotes its layout
        s,
        {
            "seed": partial(check_int, minimum=0, maximum=MAX_SEED),
            "dataset_name": partial(check_choice, allowed=tuple(DATASETS)),
            "dataset_dir": partial(check_existing_path, expected=layout),
            "output_dir": check_writable_dir,
        },
    )
    check_data_settings(name, s.get("nih_split"), s.get("val_fraction"), s.get("require_all_classes"))
    _check_given(s, {"skip_unreadable": check_bool, "num_workers": partial(check_int, minimum=0)})
    _check_volume(name, s.get("volume"))


def _is_volume_data(dataset_name: object) -> bool:
    """Whether ``dataset_name`` is a data set of 3D volumes (its preset's ``spatial_dims``)."""
    spec = DATASETS.get(dataset_name) if isinstance(dataset_name, str) else None
    return spec is not None and spec.preset is not None and get_preset(spec.preset).spatial_dims == 3


def _check_model(s: Mapping[str, object]) -> None:
    """The backbone (a torchvision ResNet in 2D, a MONAI ``ResNetFeatures`` depth in 3D), channels and size."""
    if s.get("backbone") is not None:
        allowed = MONAI_BACKBONES if _is_volume_data(s.get("dataset_name")) else BACKBONES
        check_choice("backbone", s["backbone"], allowed)
    _check_given(s, MODEL_SETTINGS)


def _check_volume(dataset_name: object, volume: object) -> None:
    """A 3D data set's ``volume`` settings (orientation, spacing, intensity); a 2D data set takes none."""
    if volume is None or not isinstance(dataset_name, str) or dataset_name not in DATASETS:
        return
    if not _is_volume_data(dataset_name):
        raise fail("volume", f"null for the 2D data set '{dataset_name}' (volume settings are for 3D data)", volume)
    check_volume_options(volume)


def _check_intermediate_loss(s: Mapping[str, object]) -> None:
    """The settings of the intermediate-layer loss that ``method`` uses (none for plain MoCo)."""
    method = s.get("method")
    if method is not None:
        check_choice("method", method, METHODS)
    if s.get("layers") is not None:
        check_layers("layers", s["layers"], STAGE_NAMES)
    if method is None or method == "moco":
        return
    layers = STAGE_NAMES if s.get("layers") is None else check_layers("layers", s["layers"], STAGE_NAMES)
    per_layer = partial(check_weights, num_layers=len(layers))
    if method == "mse":
        _check_given(s, {"mse_weights": per_layer, "mse_pool_sizes": partial(check_pool_sizes, num_layers=len(layers))})
        return
    _check_given(
        s,
        {
            "barlow_weights": per_layer,
            "barlow_scale": partial(check_real, low=0.0, low_open=True),
            "barlow_offdiag_weight": partial(check_real, low=0.0),
        },
    )
    dims = s.get("barlow_projector_dims")
    if dims is not None:
        listed = as_list("barlow_projector_dims", dims, "positive layer widths")
        if not listed or not all(is_int(d) and d >= 1 for d in listed):
            raise fail("barlow_projector_dims", "a non-empty list of positive layer widths", dims)


def _check_cache(s: Mapping[str, object]) -> None:
    cache = s.get("cache")
    if cache is not None:
        check_choice("cache", cache, CACHE_MODES)
        if s.get("augment_on") == "loader" and cache in ("memory", "disk"):
            raise fail(
                "cache",
                "'auto' or 'cache_rate' with augment_on 'loader' (its loader gives float views, not uint8 images)",
                cache,
            )
    if s.get("cache_dir") is not None:
        check_writable_dir("cache_dir", s["cache_dir"])


def _check_queue(s: Mapping[str, object]) -> None:
    queue_size, batch_size = s.get("queue_size"), s.get("batch_size")
    if queue_size is not None:
        minimum = batch_size if is_int(batch_size) else 1
        if not is_int(queue_size) or queue_size < minimum:
            raise fail(
                "queue_size", f"an integer of at least batch_size ({minimum}): a batch of keys must fit", queue_size
            )


def _check_nan_checks(s: Mapping[str, object]) -> None:
    every = s.get("nan_check_interval")
    every = 1 if every is None else check_int("nan_check_interval", every)
    iterations = s.get("checkpoint_iterations")
    if iterations is not None:
        check_int("checkpoint_iterations", iterations, minimum=0)
        if iterations % every:
            raise fail(
                "checkpoint_iterations",
                f"0 or a multiple of nan_check_interval ({every}), so no checkpoint holds an unchecked step",
                iterations,
            )


def _check_pretraining(s: Mapping[str, object]) -> None:
    _check_intermediate_loss(s)
    _check_data(s)
    _check_model(s)
    _check_given(s, NETWORK_SETTINGS)
    _check_cache(s)
    _check_given(s, SCHEDULE_SETTINGS)
    _check_queue(s)
    _check_given(s, CONTRAST_SETTINGS)
    _check_given(s, SPEED_SETTINGS)
    _check_nan_checks(s)
    _check_given(s, MONITORING_SETTINGS)


def _check_evaluation(s: Mapping[str, object]) -> None:
    _check_given(s, EVALUATION_SETTINGS)
    _check_data(s)
    _check_model(s)


def _check_inference(s: Mapping[str, object]) -> None:
    _check_given(s, INFERENCE_SETTINGS)
    _check_data(s)
    _check_model(s)


_CHECKS = {"pretraining": _check_pretraining, "evaluation": _check_evaluation, "inference": _check_inference}


def _workflow(workflow: object) -> str:
    if workflow not in WORKFLOW_SETTINGS:
        raise ValueError(f"workflow: expected one of {list(WORKFLOW_SETTINGS)}, got {workflow!r}.")
    return str(workflow)


def check_settings(workflow: str, settings: Mapping[str, object]) -> dict[str, Any]:
    """Check the settings of ``workflow``; a setting absent from ``settings`` (or None) is not checked.

    Args:
        workflow: ``"pretraining"``, ``"evaluation"`` or ``"inference"``.
        settings: ``{setting: resolved value}``, e.g. :func:`recipe_settings`; keys the workflow does not
            check are ignored.

    Returns:
        ``{setting: value or None}`` for every setting of :data:`WORKFLOW_SETTINGS` ``[workflow]``, in order.

    Raises:
        ValueError: for the first bad setting, naming it and the allowed values.
        FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
    """
    _CHECKS[_workflow(workflow)](settings)
    return {name: settings.get(name) for name in WORKFLOW_SETTINGS[workflow]}


def _parser_being_parsed() -> ConfigParser:
    """The ``ConfigParser`` whose ``get_parsed_content`` is evaluating the caller's config expression.

    MONAI hands a config expression only the items it references, never the parser; a check of the whole
    recipe reads it from the call stack instead of naming every setting twice in the config.
    """
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_code is ConfigParser.get_parsed_content.__code__:
            return frame.f_locals["self"]
        frame = frame.f_back
    raise RuntimeError(
        "recipe_settings: expected to be called from a bundle config being parsed (a '$...' expression), got none."
    )


def _resolved(workflow: str, config: Mapping[str, object], resolve: Callable[[str], Any]) -> dict[str, Any]:
    names = [name for name in WORKFLOW_SETTINGS[_workflow(workflow)] if name in config]
    resolved = {name: resolve(name) for name in names}
    return {name: value for name, value in resolved.items() if value is not None}


def parsed_settings(parser: ConfigParser, workflow: str) -> dict[str, Any]:
    """The resolved settings of ``workflow`` in ``parser``'s configuration; those it leaves out or sets to null
    are left out.

    Args:
        parser: a bundle's parser (config files merged with the overrides), not being parsed now.
        workflow: ``"pretraining"``, ``"evaluation"`` or ``"inference"``: which of :data:`WORKFLOW_SETTINGS`.
    """
    return _resolved(workflow, parser.get(), parser.get_parsed_content)


def recipe_settings(workflow: str) -> dict[str, Any]:
    """The resolved settings of ``workflow`` in the configuration being parsed, as :func:`parsed_settings`.

    Call it from a config expression (``"$monai_ilm.recipe_checks.recipe_settings('pretraining')"``): it reads
    them from the parser evaluating that expression (config files merged with the overrides), through its
    reference resolver, so the parse in progress is neither restarted nor repeated.

    Raises:
        RuntimeError: when called outside the parsing of a bundle config.
    """
    parser = _parser_being_parsed()
    return _resolved(workflow, parser.get(), parser.ref_resolver.get_resolved_content)


def check_recipe(workflow: str) -> dict[str, Any]:
    """Check the settings of the recipe being parsed (:func:`recipe_settings`), first in its ``initialize`` list.

    Inside ``monai.bundle run``, a setting given to the run that ``workflow`` does not read is refused first.

    Returns:
        The workflow's settings, as :func:`check_settings` returns them.

    Raises:
        ValueError: for an unread given setting or the first bad setting, naming it and the allowed values.
        FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
    """
    check_given_settings_used(workflow)
    return check_settings(workflow, recipe_settings(workflow))
