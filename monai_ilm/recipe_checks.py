"""The check of a bundle recipe's settings, read from its resolved configuration, called first in ``initialize``.

A recipe declares each setting once, as a top-level key of its config (``"queue_size": 65536``), and uses it
by reference (``"@queue_size"``) in the components that need it. Its ``initialize`` list starts with::

    "$monai_ilm.recipe_checks.check_recipe('pretraining')"

which resolves the workflow's settings from the configuration being parsed (the config files merged with the
overrides, as ``monai.bundle run`` merges them) and checks them before anything is built or cached. A wrong
setting otherwise surfaces late and far from its cause: a typo in ``layers`` as a shape error inside the loss
after the data has been cached, ``queue_size < batch_size`` at the first enqueue, an unwritable ``output_dir``
when the first checkpoint is saved. Every message has the form ``"<setting>: expected <what>, got <value>."``
and only ``ValueError`` and ``FileNotFoundError`` are raised, whatever the input; a setting the configuration
leaves out (or sets to null) is not checked.

The rules are not written here. Each component of the package declares the checks of its arguments where it
is defined (:func:`monai_ilm.checks.checks_arguments`) and runs them when built; :func:`component_routes`
follows the recipe from what it runs to the components it builds, and a setting passed whole to an argument
(``"temperature": "@temperature"`` in ``InfoNCELoss``) is checked by that argument's rule, under the setting's
name, before anything is built. So a component edited in a ``--config`` file brings its own rules, a value
written on a component's argument itself (``--contrastive_loss#temperature 0``) is checked by that rule under
its id, and a new setting costs one template line, its use and the one check of the argument it feeds. What is
left here:

* the data and output settings (:data:`DATA_SETTINGS`): ``seed`` in [0, 2**32 - 1] (numpy's global seed, which
  MONAI's ``set_determinism`` sets), ``dataset_name`` before ``dataset_dir`` (whose error quotes that data set's
  layout), ``output_dir`` writable, the split settings (:func:`monai_ilm.data.dispatch.check_data_settings`),
  ``num_workers`` >= 0, ``volume`` null for a 2D data set, else
  :func:`~monai_ilm.transforms.volumes.check_volume_options`;
* the settings only torch's and MONAI's classes or the recipe's expressions receive (:data:`UNOWNED_SETTINGS`);
* the rules across settings: ``backbone`` by the data set's dimensions (a torchvision ResNet in 2D, MONAI's
  ``ResNetFeatures`` depths in 3D), ``queue_size`` at least ``batch_size`` (a batch of keys must fit),
  ``cache`` ``"memory"`` or ``"disk"`` only with ``augment_on`` ``"device"`` (whose loader gives uint8 images),
  ``checkpoint_iterations`` a multiple of ``nan_check_interval`` (every iteration checkpoint follows a NaN
  check), and ``n_resamples`` at least 1 in a bundle's evaluation cell (``EvaluationRun`` takes 0, no interval;
  the runner's seed intervals and paired differences resample each cell's bootstrap replicates).

docs/method.md §4-§6 say what the settings mean. Inside ``monai.bundle run``, :func:`check_recipe` first refuses a
setting given to the run that the workflow does not read (:func:`monai_ilm.bundle_usage.check_given_settings_used`).
"""

from __future__ import annotations

import json
import pydoc
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import cache, partial
from pathlib import Path
from typing import Any, NamedTuple

from monai.bundle import ConfigParser
from monai.bundle.reference_resolver import ReferenceResolver

from monai_ilm.bundle_usage import check_given_settings_used
from monai_ilm.checks import (
    ArgumentChecks,
    Check,
    argument_checks,
    check_bool,
    check_choice,
    check_existing_path,
    check_int,
    check_real,
    check_writable_dir,
    fail,
    is_int,
)
from monai_ilm.data.dispatch import check_data_settings
from monai_ilm.datasets import DATASETS
from monai_ilm.networks.backbones import BACKBONES, MONAI_BACKBONES
from monai_ilm.transforms.presets import get_preset
from monai_ilm.transforms.volumes import check_volume_options

__all__ = [
    "AMP_DTYPES",
    "MAX_SEED",
    "UNOWNED_SETTINGS",
    "WORKFLOW_CONFIGS",
    "WORKFLOW_SETTINGS",
    "Route",
    "check_recipe",
    "check_settings",
    "component_routes",
    "parsed_settings",
    "recipe_settings",
]

MAX_SEED = 2**32 - 1  # numpy's global seed, which MONAI's set_determinism sets, must fit in 32 bits
AMP_DTYPES = ("bfloat16", "float16")


DATA_SETTINGS = ("seed", "dataset_name", "dataset_dir", "output_dir", "nih_split", "val_fraction")
DATA_SETTINGS += ("require_all_classes", "skip_unreadable", "num_workers", "volume")
_SHARED = (*DATA_SETTINGS, "backbone", "channels", "image_size")
WORKFLOW_SETTINGS: dict[str, tuple[str, ...]] = {
    "pretraining": (
        *_SHARED,
        *("method", "layers", "mse_weights", "mse_pool_sizes", "barlow_weights", "barlow_scale"),
        *("barlow_offdiag_weight", "barlow_projector_dims", "zero_init_residual", "embedding_dim", "head"),
        *("batch_norm", "batch_size", "cache", "cache_dir", "cache_rate", "max_epochs", "epoch_length"),
        *("val_interval", "learning_rate", "weight_decay", "queue_size", "temperature", "momentum"),
        *("momentum_schedule", "amp", "channels_last", "compile", "amp_dtype", "augment_on", "log_interval"),
        *("nan_check_interval", "checkpoint_iterations", "knn_interval", "knn_bank_size", "knn_val_size"),
        *("health_samples", "collapse_patience", "knn_cache_rate", "collapse_rank"),
    ),
    "evaluation": (
        *_SHARED,
        *("protocol", "method", "label_fraction", "evaluation_epochs", "evaluation_batch_size", "n_resamples"),
        *("evaluation_lr", "evaluation_linear_features", "evaluation_linear_epochs", "ci_method", "cka_kernel"),
        *("amp", "standardize_features"),
    ),
    "inference": (*_SHARED, "split", "batch_size", "embedding_dim", "head"),
}
"""The settings each workflow checks (and a pretraining run records), by the names the recipes give them."""

UNOWNED_SETTINGS: dict[str, Check] = {
    "batch_size": check_int,  # torch's DataLoader
    "learning_rate": partial(check_real, low=0.0, low_open=True),  # torch's SGD
    "weight_decay": partial(check_real, low=0.0),
    "val_interval": check_int,  # MONAI's ValidationHandler
    "log_interval": check_int,  # MONAI's StatsHandler and TensorBoardStatsHandler, through expressions
    "amp_dtype": partial(check_choice, allowed=AMP_DTYPES),  # getattr(torch, amp_dtype) in an expression
}
"""The rules of the settings that only torch's and MONAI's classes or the recipe's expressions receive: no
component of the package declares them (:func:`component_routes`), and those classes check them late or not."""


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


def _check_backbone(s: Mapping[str, object]) -> None:
    """The backbone by the data set: a torchvision ResNet in 2D, a MONAI ``ResNetFeatures`` depth in 3D."""
    if s.get("backbone") is not None:
        allowed = MONAI_BACKBONES if _is_volume_data(s.get("dataset_name")) else BACKBONES
        check_choice("backbone", s["backbone"], allowed)


def _check_volume(dataset_name: object, volume: object) -> None:
    """A 3D data set's ``volume`` settings (orientation, spacing, intensity); a 2D data set takes none."""
    if volume is None or not isinstance(dataset_name, str) or dataset_name not in DATASETS:
        return
    if not _is_volume_data(dataset_name):
        raise fail("volume", f"null for the 2D data set '{dataset_name}' (volume settings are for 3D data)", volume)
    check_volume_options(volume)


def _check_cache(s: Mapping[str, object]) -> None:
    """The compact cache needs the uint8 images of the device stage's loader."""
    if s.get("augment_on") == "loader" and s.get("cache") in ("memory", "disk"):
        raise fail(
            "cache",
            "'auto' or 'cache_rate' with augment_on 'loader' (its loader gives float views, not uint8 images)",
            s["cache"],
        )


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


def _check_pretraining(s: Mapping[str, object], routes: Sequence[Route]) -> None:
    _check_data(s)
    _check_backbone(s)
    _check_components(s, routes)
    _check_given(s, UNOWNED_SETTINGS)
    _check_cache(s)
    _check_queue(s)
    _check_nan_checks(s)


def _check_evaluation(s: Mapping[str, object], routes: Sequence[Route]) -> None:
    _check_components(s, routes)
    if s.get("n_resamples") is not None:  # EvaluationRun takes 0 (no interval); a bundle's cell keeps replicates
        check_int("n_resamples", s["n_resamples"])  # for the seed intervals and paired differences
    _check_data(s)
    _check_backbone(s)


def _check_inference(s: Mapping[str, object], routes: Sequence[Route]) -> None:
    _check_components(s, routes)
    _check_given(s, UNOWNED_SETTINGS)
    _check_data(s)
    _check_backbone(s)


_CHECKS = {"pretraining": _check_pretraining, "evaluation": _check_evaluation, "inference": _check_inference}


def _workflow(workflow: object) -> str:
    if workflow not in WORKFLOW_SETTINGS:
        raise ValueError(f"workflow: expected one of {list(WORKFLOW_SETTINGS)}, got {workflow!r}.")
    return str(workflow)


TEMPLATE_CONFIGS = Path(__file__).resolve().parent / "bundle_template" / "recipe" / "configs"
WORKFLOW_CONFIGS: dict[str, tuple[str, ...]] = {
    "pretraining": ("pretrain.json",),
    "evaluation": ("pretrain.json", "evaluate.json"),
    "inference": ("inference.json",),
}
"""The recipe files each workflow runs, merged in this order (as ``monai.bundle run --config_file``)."""
RUN_ITEMS = ("initialize", "run", "finalize")  # what a ConfigWorkflow runs; the components it uses hang off them


class Route(NamedTuple):
    """A setting passed whole to an argument of a component that declares its checks (``"arg": "@setting"``)."""

    setting: str
    target: str
    argument: str
    checks: ArgumentChecks


def _item(config: Mapping[str, Any], ref: str) -> object:
    node: object = config
    for key in ReferenceResolver.split_id(ref):
        if isinstance(node, Mapping) and key in node:
            node = node[key]
        elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
            node = node[int(key)]
        else:
            return None
    return node


def _nodes(node: object, id_: str) -> Iterator[tuple[str, object]]:
    """``node`` and everything nested in it, with their config ids (``train::trainer``)."""
    yield id_, node
    if isinstance(node, (dict, list)):
        for _, sub_id, child in ReferenceResolver.iter_subconfigs(id_, node):
            yield from _nodes(child, sub_id)


def _used_items(config: Mapping[str, Any]) -> Iterator[tuple[str, object]]:
    """The items the run uses, with their ids: :data:`RUN_ITEMS` and whatever they reach by reference, each once."""
    pending, seen = [key for key in RUN_ITEMS if key in config], set()
    while pending:
        ref = pending.pop()
        if ref in seen:
            continue
        seen.add(ref)
        item = _item(config, ref)
        yield ref, item
        pending.extend(ReferenceResolver.find_refs_in_config(item, ref))


@cache
def _declared_checks(target: str) -> ArgumentChecks | None:
    # only the package's own components declare checks; locating another (torch, MONAI) would import it for nothing
    return argument_checks(pydoc.locate(target)) if target.startswith("monai_ilm.") else None


UsedComponent = tuple[str, Mapping[str, Any], ArgumentChecks]  # (config id, the component's config, its checks)


def _used_components(config: Mapping[str, Any]) -> Iterator[UsedComponent]:
    """``(id, component, its declared checks)`` of each component of the package the run uses, once each."""
    seen: set[int] = set()
    for ref, item in _used_items(config):
        for path, node in _nodes(item, ref):
            if isinstance(node, Mapping) and isinstance(node.get("_target_"), str) and id(node) not in seen:
                seen.add(id(node))
                checks = _declared_checks(node["_target_"])
                if checks is not None:
                    yield path, node, checks


def component_routes(config: Mapping[str, Any]) -> list[Route]:
    """Where the components a run uses take a setting as a whole argument, with the checks they declare.

    A component of the package declares the checks of its arguments once
    (:func:`monai_ilm.checks.checks_arguments`); following the recipe from what it runs
    (:data:`RUN_ITEMS`) to the components it builds, a setting given as ``"arg": "@setting"`` is checked
    by the rule of that argument, under the setting's name, before anything is built. A component the run
    does not use (a disabled handler is still used) adds no rule.

    Args:
        config: a recipe's configuration, its files merged (and the overrides applied).
    """
    return _routes(config, list(_used_components(config)))


def _routes(config: Mapping[str, Any], components: Sequence[UsedComponent]) -> list[Route]:
    routes: dict[tuple[str, str, str], Route] = {}
    for _, node, checks in components:
        for argument, value in node.items():
            setting = value[1:] if isinstance(value, str) and value.startswith("@") else None
            if setting in config and setting not in RUN_ITEMS:
                routes[setting, node["_target_"], argument] = Route(setting, node["_target_"], argument, checks)
    return list(routes.values())


def _check_literal_arguments(components: Sequence[UsedComponent]) -> None:
    """A value written on a component's argument itself (``--contrastive_loss#temperature 0``, an edited
    ``--config`` file) by that argument's rule, named by its id, before anything is built."""
    for id_, node, checks in components:
        for argument, check in checks.single.items():
            value = node.get(argument)
            if (
                value is not None
                and not isinstance(value, Mapping)
                and not (isinstance(value, str) and value[:1] in "@$%")
            ):
                check(f"{id_}#{argument}".replace(ReferenceResolver.sep, "#"), value)  # as an override names it


@cache
def _template_config(workflow: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for name in WORKFLOW_CONFIGS[workflow]:
        merged.update(json.loads((TEMPLATE_CONFIGS / name).read_text()))
    return merged


def _check_components(settings: Mapping[str, object], routes: Sequence[Route]) -> None:
    """Each routed setting by its argument's check; then each component's rule over several arguments, on
    those it takes under their own names (``"layers": "@layers"``), so that its message names the setting."""
    joint: dict[str, tuple[ArgumentChecks, dict[str, object]]] = {}
    for route in routes:
        value = settings.get(route.setting)
        if value is None:
            continue
        check = route.checks.single.get(route.argument)
        if check is not None:
            check(route.setting, value)
        if route.checks.joint is not None and route.argument == route.setting:
            joint.setdefault(route.target, (route.checks, {}))[1][route.setting] = value
    for checks, values in joint.values():
        checks.joint(values)


def check_settings(
    workflow: str, settings: Mapping[str, object], config: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Check the settings of ``workflow``; a setting absent from ``settings`` (or None) is not checked.

    Each setting the workflow passes to a component of the package is checked by the rule that component
    declares for that argument (:func:`component_routes`), and so is a value written on the argument itself
    (named by its id, ``contrastive_loss#temperature``); then the data and output settings, the settings
    only torch's or MONAI's classes receive (:data:`UNOWNED_SETTINGS`) and the rules across settings
    (``queue_size`` >= ``batch_size``, the compact cache and ``augment_on``, checkpoints after NaN checks,
    ``volume`` and ``backbone`` by the data set's dimensions).

    Args:
        workflow: ``"pretraining"``, ``"evaluation"`` or ``"inference"``.
        settings: ``{setting: resolved value}``, e.g. :func:`recipe_settings`; keys the workflow does not
            check are ignored.
        config: the recipe's configuration, which decides which component receives which setting; None: the
            package's recipe template of the workflow (:data:`WORKFLOW_CONFIGS`).

    Returns:
        ``{setting: value or None}`` for every setting of :data:`WORKFLOW_SETTINGS` ``[workflow]``, in order.

    Raises:
        ValueError: for the first bad setting, naming it and the allowed values.
        FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
    """
    workflow = _workflow(workflow)
    config = _template_config(workflow) if config is None else config
    components = list(_used_components(config))
    routes = _routes(config, components)
    _CHECKS[workflow](settings, [route for route in routes if route.setting in WORKFLOW_SETTINGS[workflow]])
    _check_literal_arguments(components)
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
    return check_settings(workflow, recipe_settings(workflow), _parser_being_parsed().get())
