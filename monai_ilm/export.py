"""Self-contained MONAI bundles: an editable copy of a shipped bundle, or a release with a run's weights.

:func:`export_bundle` turns a pretraining run into what the MONAI model zoo expects of a bundle
(https://docs.monai.io/en/stable/mb_specification.html), described from the run's own record
(:mod:`monai_ilm.run_record`: backbone, input size, output width, queue, method, epochs, seed, code version):

* ``models/model.pt``: what inference needs (the query encoder and projection head,
  :class:`~monai_ilm.networks.MoCoQueryNetwork`), and ``models/model.ts``, the same network in TorchScript;
* ``configs/inference.json``: embeddings of a folder of images with MONAI and PyTorch only (the TorchScript
  network and MONAI transforms that reproduce the data set's evaluation preprocessing), so the model zoo's CI
  installs and runs it without monai-ilm, which is not on PyPI;
* ``configs/pretrain.json`` and ``configs/evaluate.json`` (these need monai-ilm) set to the run's recipe and to
  the bundle's own ``models/model.pt``, so the README's evaluation commands work as written in the bundle folder;
* ``configs/metadata.json``: a new version and changelog entry, shapes and description from the record, and
  ``required_packages_version`` with only published packages and version ranges a user can resolve;
* ``docs/README.md``: the run's settings, the headline Performance table (protocol x label fraction, mean over
  seeds with interval) and ``docs/performance_details.md`` with every other row (per finding, per block, CKA);
* ``large_files.yml`` (the zoo's rule for weights) and a ``.gitignore`` that keeps the weights out of a commit.

A run without a record (made before runs kept one) is exported with a warning: the shapes are read from the
weights, the image size comes from ``image_size`` or, named as such, the bundle's default.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from monai_ilm.data.identity import file_digest
from monai_ilm.experiment import BUNDLE_DATASETS, bundles_root
from monai_ilm.provenance import NOT_RESULT_SETTINGS, PRETRAINING_RECORD
from monai_ilm.run_record import RUN_RECORD, read_run_record

__all__ = [
    "BUNDLE_FILES",
    "GITIGNORE",
    "PERFORMANCE_DETAILS",
    "bump_version",
    "copy_bundle",
    "export_bundle",
    "inference_config",
    "inference_requirements",
    "network_settings",
    "resolve_bundle",
    "run_description",
]

logger = logging.getLogger("monai_ilm.export")

BUNDLE_FILES: tuple[str, ...] = ("configs", "docs", "LICENSE")
"""What a bundle holds besides its weights; a checkout's bundle may also hold run outputs, never copied."""

PERFORMANCE_DETAILS = "docs/performance_details.md"
"""The exported bundle's file with every results row of the run beyond the headline table."""

GITIGNORE = (
    "# the weights are hosted (large_files.yml), never committed\n"
    "models/*.pt\n"
    "models/*.ts\n"
    "# outputs of the bundle's own commands\n"
    "eval/\n"
    "runs/\n"
)
"""The exported bundle's ``.gitignore``."""

# ResNet depth from (blocks per stage, bottleneck blocks), torchvision's and MONAI's alike (MONAI adds 10 and 200)
_RESNETS = {
    ((1, 1, 1, 1), False): "resnet10",
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
    ((3, 24, 36, 3), True): "resnet200",
}
_SECTION = re.compile(r"^## (?P<title>[^\n]+)\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)
_METHOD_NAMES = {
    "moco": "MoCo",
    "mse": "MoCo + intermediate-layer MSE",
    "barlow": "MoCo + intermediate-layer Barlow Twins",
}
_WHOLE_MODEL_PROTOCOLS = ("linear", "finetune")

# What the exported inference.json imports besides MONAI, torch and numpy (which metadata.json names apart), with
# the lowest version it needs: MONAI's engines and handlers need pytorch-ignite from the version MONAI's optional
# import asks for (monai.utils.IgniteInfo.OPT_IMPORT_VERSION); `python -m monai.bundle` needs fire (its Fire()
# command line, unchanged since 0.4.0); MONAI's PILReader needs Pillow (MONAI excludes 8.3.0 only), the NibabelReader
# of a 3D export nibabel (MONAI names no version: monai-ilm's own floor, setup.cfg, the oldest with numpy 2 tested).
_INFERENCE_PACKAGE_FLOORS = {"pytorch-ignite": None, "fire": "0.4.0"}
_IMAGE_READER_FLOORS = {2: {"pillow": "8.3.1"}, 3: {"nibabel": "5.2"}}


def resolve_bundle(bundle: str | os.PathLike) -> Path:
    """A bundle folder, or the shipped bundle of that name.

    Raises:
        FileNotFoundError: naming the shipped bundles when ``bundle`` is neither.
    """
    path = Path(bundle)
    if (path / "configs" / "metadata.json").is_file():
        return path
    shipped = bundles_root() / str(bundle)
    if (shipped / "configs" / "metadata.json").is_file():
        return shipped
    names = sorted(BUNDLE_DATASETS)
    raise FileNotFoundError(f"bundle: expected a bundle folder or one of {names}, got {str(bundle)!r}.")


def copy_bundle(bundle: str | os.PathLike, to: str | os.PathLike) -> Path:
    """Copy a bundle's configs, docs and licence to ``to``, e.g. to edit its settings.

    Args:
        bundle: a shipped bundle name (``nih_chestxray_ilm``) or a bundle folder.
        to: the new bundle folder; it must not exist or be empty.

    Returns:
        The new bundle folder.

    Raises:
        FileExistsError: when ``to`` holds files.
        FileNotFoundError: for an unknown bundle.
    """
    source, target = resolve_bundle(bundle), Path(to)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"to: expected a new or empty folder, got {target} holding files.")
    target.mkdir(parents=True, exist_ok=True)
    for name in BUNDLE_FILES:
        if (source / name).is_dir():
            shutil.copytree(source / name, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        elif (source / name).is_file():
            shutil.copy2(source / name, target / name)
    return target


def bump_version(version: str) -> str:
    """``"0.3.0"`` -> ``"0.3.1"``: the next patch version, as the model zoo asks of every new release.

    Raises:
        ValueError: when ``version`` is not ``MAJOR.MINOR.PATCH``.
    """
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError(f"metadata.json version: expected MAJOR.MINOR.PATCH, got {version!r}.")
    return f"{parts[0]}.{parts[1]}.{int(parts[2]) + 1}"


def network_settings(state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """The inference.json settings that rebuild the network of a MoCo (or query-network) state dict.

    Read from the weights themselves, so they are right whatever the run's configs said.

    Returns:
        ``{"backbone", "channels", "embedding_dim", "head"}``, ``feature_dim`` (the output width) and
        ``spatial_dims`` (2: a torchvision ResNet; 3: MONAI's 3D ``ResNetFeatures``, from the 5-D first kernel).

    Raises:
        ValueError: for a state dict that is not that of a ResNet MoCo query encoder.
    """
    conv1 = state.get("encoder_q.net.conv1.weight")
    if conv1 is None or conv1.dim() not in (4, 5):
        found = (
            "no 'encoder_q.net.conv1.weight'" if conv1 is None else f"a {conv1.dim()}-D 'encoder_q.net.conv1.weight'"
        )
        raise ValueError(
            f"model.pt: expected the weights of a 2D or 3D ResNet MoCo encoder ('encoder_q.net.*'), got {found}."
        )
    blocks = tuple(
        len({key.split(".")[3] for key in state if key.startswith(f"encoder_q.net.layer{i}.")}) for i in range(1, 5)
    )
    bottleneck = "encoder_q.net.layer1.0.conv3.weight" in state
    backbone = _RESNETS.get((blocks, bottleneck))
    if backbone is None:
        raise ValueError(
            f"model.pt: expected a ResNet of {sorted(set(_RESNETS.values()))}, got stages of {blocks} blocks."
        )
    head = "linear" if "projector_q.weight" in state else "mlp"
    last = state["projector_q.weight"] if head == "linear" else state["projector_q.2.weight"]
    return {
        "backbone": backbone,
        "channels": int(conv1.shape[1]),
        "embedding_dim": int(last.shape[0]),
        "head": head,
        "feature_dim": int(last.shape[1]),
        "spatial_dims": conv1.dim() - 2,
    }


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    # a single-object CheckpointSaver writes the state dict itself; a multi-object one nests it
    return state.get("network", state) if isinstance(state, Mapping) else state


def _md5(path: Path) -> str:
    return file_digest(path, "md5")  # the hash type the model zoo's large_files.yml and download() use


def _write_json(path: Path, content: Mapping) -> None:
    # the zoo's pre-commit formatting: 4-space indent, key order kept, one newline at the end
    path.write_text(json.dumps(content, indent=4) + "\n")


def _run_rows(results_dir: Path, dataset: str, method: str, seed: int, run_dir: Path):
    """The results rows that measure this run: its own (``run``) and seed means that include it."""
    from monai_ilm.results import read_results

    results = read_results(results_dir)
    if results.empty:
        return results
    same = (results["dataset"] == dataset) & (results["method"] == method)
    checkpoint = results["checkpoint"].fillna("").map(lambda c: c == "" or Path(c).resolve().is_relative_to(run_dir))
    own = same & (results["kind"] == "run") & (results["seed"] == seed) & checkpoint
    seeds = results["seeds"].fillna("").map(lambda s: str(seed) in s.split(","))
    means = same & (results["kind"] == "seed_mean") & seeds
    return results[(own | means).fillna(False).astype(bool)]


def run_description(
    run_dir: str | os.PathLike, network: Mapping[str, Any], image_size: int | None, default_image_size: int
) -> dict[str, Any]:
    """What the run trained, from its record, checked against the weights.

    The record is the run's ``run_record.json`` (written by every pretraining run), else the experiment runner's
    ``run_settings.json``. Without either, only what the weights say is known: a WARNING names what is missing.

    Args:
        run_dir: the pretraining run folder.
        network: :func:`network_settings` of the run's weights.
        image_size: an explicit input size (wins over the record, with a warning when they differ).
        default_image_size: the bundle's own input size, used (and named as such) when nothing else says.

    Returns:
        ``{"settings": {...}, "network": {...}, "world_size", "code_version", "source", "image_size_source"}``.

    Raises:
        ValueError: when the record's backbone, channels or embedding width are not those of the weights.
    """
    run = Path(run_dir)
    record, source = read_run_record(run), RUN_RECORD
    if record is None and (run / PRETRAINING_RECORD).is_file():
        runner = json.loads((run / PRETRAINING_RECORD).read_text(encoding="utf-8"))
        record, source = (
            {"settings": runner.get("settings", {}), "code_version": runner.get("code_version")},
            (PRETRAINING_RECORD),
        )
    if record is None:
        logger.warning(
            "%s: no run record (%s) beside the weights, so the run's settings are unknown: the export is described "
            "from the weights' shapes (%s, %d-d output), and the image size is %s",
            run,
            RUN_RECORD,
            network["backbone"],
            network["feature_dim"],
            f"{image_size} px as given"
            if image_size
            else f"the bundle's default {default_image_size} px (pass "
            "image_size / --image_size with the run's real size)",
        )
        record, source = {"settings": {}}, None
    settings = dict(record.get("settings") or {})
    for key in ("backbone", "channels", "embedding_dim"):
        if key in settings and settings[key] != network[key]:
            raise ValueError(
                f"{run / source}: expected the {key} of the weights ({network[key]!r}), got {settings[key]!r}: "
                "the record does not describe these weights."
            )
    recorded_size = settings.get("image_size")
    if image_size and recorded_size and int(image_size) != int(recorded_size):
        logger.warning("image_size: %s given, but run %s was trained at %s px", image_size, run, recorded_size)
    if image_size:
        size, size_source = int(image_size), "given to the export"
    elif recorded_size:
        size, size_source = int(recorded_size), f"recorded in {source}"
    else:
        size, size_source = int(default_image_size), "the bundle's default: the run did not record it"
    method, _, seed = run.name.rpartition("_seed")
    settings.setdefault("method", method or None)
    settings.setdefault("seed", int(seed) if seed.isdigit() else None)
    settings.update({"backbone": network["backbone"], "channels": network["channels"], "image_size": size})
    settings.update({"embedding_dim": network["embedding_dim"], "head": network["head"]})
    return {
        "settings": settings,
        "network": dict(network),
        "world_size": record.get("world_size"),
        "code_version": record.get("code_version"),
        "source": source,
        "image_size_source": size_source,
    }


def inference_requirements(spatial_dims: int = 2) -> dict[str, str]:
    """``required_packages_version`` of an exported bundle: what its inference.json needs besides monai/torch/numpy.

    Only published packages, each with the lowest version it needs as a range (``">=0.4.11"``), which the zoo's
    ``get_bundle_requirements.py`` keeps as is and pip resolves on any supported Python.

    Args:
        spatial_dims: 2 (image files, read with Pillow) or 3 (NIfTI volumes, read with nibabel).
    """
    from monai.utils import IgniteInfo

    floors = {
        **_INFERENCE_PACKAGE_FLOORS,
        "pytorch-ignite": IgniteInfo.OPT_IMPORT_VERSION,
        **_IMAGE_READER_FLOORS[spatial_dims],
    }
    return {name: f">={floor}" for name, floor in floors.items()}


_IMAGE_HELPERS = {
    "pil_converter": "$lambda image: image.convert('L') if image.mode in ('LA', '1') else image "
    "if image.mode in ('L', 'RGB', 'I;16', 'I;16L', 'I;16B', 'I;16N', 'I') else image.convert('RGB')",
    "scale_intensity": "$lambda x: x.float() / 255.0 if x.dtype == torch.uint8 else (x.float() / 65535.0).clamp(0, 1)",
    "resize_shorter_side": "$lambda x, side: x if min(x.shape[1:]) == side else torch.nn.functional.interpolate("
    "x[None], size=[side, int(side * x.shape[2] / x.shape[1])] if x.shape[1] <= x.shape[2] else "
    "[int(side * x.shape[1] / x.shape[2]), side], mode='bilinear', align_corners=False, antialias=True)[0]",
}
"""The expressions the 2D preprocessing of an exported ``inference.json`` calls by reference."""


def _preprocessing(dataset: str, size: int, channels: int) -> list[dict[str, Any]]:
    """MONAI transforms equal to ``monai_ilm.transforms.eval_transforms(dataset, size, channels)`` on 2D images."""
    from monai_ilm.transforms.presets import get_preset

    shorter_side = max(size, round(size * get_preset(dataset).resize_ratio))
    to_channels = (
        "$lambda x: x.repeat(3, 1, 1) if x.shape[0] == 1 else x"
        if channels == 3
        else "$lambda x: (x * torch.tensor([0.299, 0.587, 0.114]).reshape(3, 1, 1)).sum(0, keepdim=True) "
        "if x.shape[0] == 3 else x"
    )
    return [
        {
            "_target_": "LoadImaged",
            "keys": "image",
            "reader": {"_target_": "PILReader", "reverse_indexing": False, "converter": "@pil_converter"},
            "image_only": True,
            "ensure_channel_first": True,
            "dtype": None,
        },
        {"_target_": "EnsureTyped", "keys": "image", "track_meta": False},
        {"_target_": "Lambdad", "keys": "image", "func": "@scale_intensity"},
        {"_target_": "Lambdad", "keys": "image", "func": to_channels},
        {"_target_": "Lambdad", "keys": "image", "func": f"$lambda x: @resize_shorter_side(x, {shorter_side})"},
        {"_target_": "CenterSpatialCropd", "keys": "image", "roi_size": ["@image_size", "@image_size"]},
        {"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32", "track_meta": False},
    ]


def _volume_preprocessing(volume: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """MONAI transforms equal to ``monai_ilm.transforms.eval_transforms("volumes", size, 1, volume=volume)`` on
    NIfTI files: nibabel, channel first, ``Orientationd`` / ``Spacingd`` from the header, the intensity setting,
    a trilinear resize to ``image_size`` on every axis."""
    from monai_ilm.transforms.volumes import check_volume_options

    options = check_volume_options(volume)
    steps: list[dict[str, Any]] = [
        {
            "_target_": "LoadImaged",
            "keys": "image",
            "reader": "NibabelReader",
            "dtype": "$numpy.float32",
            "image_only": True,
            "ensure_channel_first": True,
        }
    ]
    if options["orientation"] is not None:
        steps.append({"_target_": "Orientationd", "keys": "image", "axcodes": options["orientation"]})
    if options["pixdim"] is not None:
        steps.append({"_target_": "Spacingd", "keys": "image", "pixdim": list(options["pixdim"]), "mode": "bilinear"})
    if options["intensity"] == "window":
        a_min, a_max = options["window"]
        scale = {"_target_": "ScaleIntensityRanged", "a_min": a_min, "a_max": a_max, "b_min": 0.0, "b_max": 1.0}
        steps.append({**scale, "keys": "image", "clip": True})
    elif options["intensity"] == "percentiles":
        lower, upper = options["percentiles"]
        scale = {"_target_": "ScaleIntensityRangePercentilesd", "lower": lower, "upper": upper, "b_min": 0.0}
        steps.append({**scale, "b_max": 1.0, "keys": "image", "clip": True})
    else:  # "auto" and "minmax" agree on float NIfTI data: min-max per volume
        steps.append({"_target_": "ScaleIntensityd", "keys": "image", "minv": 0.0, "maxv": 1.0})
    size = ["@image_size"] * 3
    steps.append({"_target_": "Resized", "keys": "image", "spatial_size": size, "mode": "trilinear"})
    steps.append({"_target_": "EnsureTyped", "keys": "image", "dtype": "$torch.float32", "track_meta": False})
    return steps


def inference_config(
    dataset: str,
    dataset_dir: str,
    size: int,
    channels: int,
    batch_size: int,
    volume: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The exported ``inference.json``: embeddings of every image under ``dataset_dir``, with MONAI and torch only.

    The network is ``models/model.ts`` (TorchScript needs no monai-ilm code); the preprocessing is the data set's
    evaluation preprocessing written with MONAI transforms. Images: Pillow in the image's own bit depth scaled to
    [0, 1] (8-bit / 255, 16-bit / 65535), rows first, ``channels`` channels (grey repeated, or RGB to luma), the
    shorter side resized (antialiased bilinear) and a centred ``size`` crop. Volumes (a 3D data set): every
    ``.nii`` / ``.nii.gz`` file, made uniform by the run's ``volume`` settings (:func:`_volume_preprocessing`).
    The embeddings go to ``<output_dir>/embeddings.csv``: one line per file, its path and the pooled
    representation.
    """
    from monai_ilm.data.files import IMAGE_EXTENSIONS, NIFTI_EXTENSIONS
    from monai_ilm.transforms.presets import get_preset

    volumes = get_preset(dataset).spatial_dims == 3
    if volumes:
        helpers: dict[str, Any] = {}
        preprocessing = _volume_preprocessing(volume)
    else:
        helpers = _IMAGE_HELPERS
        preprocessing = _preprocessing(dataset, size, channels)
    return {
        "imports": ["$import glob", "$import os", *(["$import numpy"] if volumes else [])],
        "bundle_root": ".",
        "dataset_dir": dataset_dir,
        "output_dir": "$os.path.join(@bundle_root, 'eval')",
        "image_suffixes": list(NIFTI_EXTENSIONS if volumes else IMAGE_EXTENSIONS),
        "images": "$sorted(p for p in glob.glob(os.path.join(@dataset_dir, '**', '*'), recursive=True) "
        "if p.lower().endswith(tuple(@image_suffixes)))",
        "datalist": "$[{'image': path, 'path': path} for path in @images]",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "image_size": size,
        "channels": channels,
        "batch_size": batch_size,
        "num_workers": "$min(4, os.cpu_count() or 1)",
        "network_def": {
            "_target_": "torch.jit.load",
            "f": "$os.path.join(@bundle_root, 'models', 'model.ts')",
            "map_location": "cpu",
        },
        "network": "$@network_def.to(@device)",
        **helpers,
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "dataset": {"_target_": "Dataset", "data": "@datalist", "transform": "@preprocessing"},
        "dataloader": {
            "_target_": "DataLoader",
            "dataset": "@dataset",
            "batch_size": "@batch_size",
            "shuffle": False,
            "num_workers": "@num_workers",
        },
        "inferer": {"_target_": "SimpleInferer"},
        "handlers": [
            {"_target_": "StatsHandler", "iteration_log": False},
            {
                "_target_": "ClassificationSaver",
                "output_dir": "@output_dir",
                "filename": "embeddings.csv",
                "batch_transform": "$lambda batch: [{'filename_or_obj': path} for path in batch['path']]",
                "output_transform": "$lambda output: output['pred']",
            },
        ],
        "evaluator": {
            "_target_": "SupervisedEvaluator",
            "device": "@device",
            "val_data_loader": "@dataloader",
            "network": "@network",
            "inferer": "@inferer",
            "val_handlers": "@handlers",
            "decollate": False,
        },
        "initialize": [
            "$None if @images else exec('raise FileNotFoundError(message)', {'message': 'dataset_dir: expected "
            "image files (' + ', '.join(@image_suffixes) + ') in it or below it, got none in ' + repr(@dataset_dir) + "
            "'.'})",
            "$monai.utils.set_determinism(seed=0)",
        ],
        "run": ["$@evaluator.run()"],
    }


def _recipe_config(config: dict[str, Any], settings: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with each literal top-level setting that the run recorded set to the run's value.

    Paths, logging, caching and machine settings (:data:`monai_ilm.provenance.NOT_RESULT_SETTINGS`) keep the
    bundle's defaults; expressions (``"$..."``) are left alone.
    """
    updated = dict(config)
    for key, value in config.items():
        literal = not (isinstance(value, str) and value.startswith(("$", "@", "%"))) and not isinstance(value, dict)
        if literal and key in settings and key not in NOT_RESULT_SETTINGS:
            updated[key] = settings[key]
    return updated


def _headline_metric(rows: pd.DataFrame, dataset: str) -> str | None:
    from monai_ilm.datasets import DATASETS

    spec = DATASETS.get(dataset)
    present = set(rows["metric"])
    return next((m for m in (spec.metrics if spec else ()) if m in present), None)


def _interval(low: Any, high: Any) -> str:
    return "" if pd.isna(low) or pd.isna(high) else f"{low:.4f} - {high:.4f}"


def _headline_table(rows: pd.DataFrame, dataset: str, seed: int) -> tuple[list[str], pd.Index]:
    """Protocol x label fraction of the data set's headline metric: the mean over seeds and this run's own value."""
    whole = rows[rows["block"].isna() & rows["protocol"].isin(_WHOLE_MODEL_PROTOCOLS)]
    metric = _headline_metric(whole, dataset) if not whole.empty else None
    if metric is None:
        return [], rows.index[:0]
    chosen = whole[whole["metric"] == metric]
    lines = [
        f"| protocol | label fraction | {metric}: mean over seeds | interval | seeds | this run (seed {seed}) | "
        "its interval | n |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for (protocol, fraction), cell in chosen.groupby(["protocol", "label_fraction"], sort=True):
        mean = cell[cell["kind"] == "seed_mean"].head(1)
        own = cell[cell["kind"] == "run"].head(1)
        mean_text = (
            ("", "", "")
            if mean.empty
            else (
                f"{mean['value'].iloc[0]:.4f}",
                _interval(mean["ci_low"].iloc[0], mean["ci_high"].iloc[0]),
                str(mean["seeds"].iloc[0]),
            )
        )
        own_text = (
            ("", "")
            if own.empty
            else (f"{own['value'].iloc[0]:.4f}", _interval(own["ci_low"].iloc[0], own["ci_high"].iloc[0]))
        )
        n = (own if not own.empty else mean)["n"].iloc[0]
        lines.append(f"| {protocol} | {fraction:g} | {' | '.join(mean_text)} | {' | '.join(own_text)} | {n} |")
    return lines, chosen.index


def _detail_table(rows: pd.DataFrame) -> list[str]:
    lines = [
        "| protocol | label fraction | block | metric | value | interval | n | kind | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = rows.sort_values(["kind", "protocol", "label_fraction", "block", "metric"], na_position="first")
    for row in rows.itertuples():
        block = "" if pd.isna(row.block) else str(int(row.block))
        seeds = row.seeds or ("" if pd.isna(row.seed) else str(int(row.seed)))
        lines.append(
            f"| {row.protocol} | {row.label_fraction:g} | {block} | {row.metric} | {row.value:.4f} | "
            f"{_interval(row.ci_low, row.ci_high)} | {row.n} | {row.kind} | {seeds} |"
        )
    return lines


def _performance(
    rows: pd.DataFrame | None, run_name: str, results_dir: Path, about: Mapping[str, Any], dataset: str
) -> tuple[str, str | None]:
    """The README's Performance section and the text of :data:`PERFORMANCE_DETAILS` (None: no detail rows)."""
    s = about["settings"]
    head = (
        f"Weights of pretraining run `{run_name}` (method `{s['method']}`, seed {s['seed']}, {s['backbone']}, "
        f"{s['image_size']} px), exported on {date.today().isoformat()}."
    )
    if rows is None or rows.empty:
        return (
            f"## Performance\n\n{head} The results table (`{results_dir.name}/`) holds no evaluation of this run, "
            "so no numbers are given: evaluate it with `python -m monai_ilm experiment` and export again.\n\n",
            None,
        )
    headline, used = _headline_table(rows, dataset, s["seed"])
    details = rows.drop(index=used)
    text = [f"## Performance\n\n{head} Numbers from the run's rows of the results table (`{results_dir.name}/`).\n"]
    if headline:
        text += [
            "The headline metric, whole model: the mean over the seeds listed (this run among them) with its "
            "two-stage bootstrap interval, and this run's own value with its bootstrap interval.\n",
            *headline,
            "",
        ]
    if not details.empty:
        text.append(
            f"Every other row of the run ({len(details)}: per finding, per block, feature reuse, CKA, KS) is in "
            f"[`{PERFORMANCE_DETAILS}`]({PERFORMANCE_DETAILS.split('/', 1)[1]}).\n"
        )
    detail_text = None
    if not details.empty:
        detail_text = (
            f"# Performance details of run `{run_name}`\n\n`run` rows measure these weights; `seed_mean` rows are "
            "the mean over the seeds listed, this run among them, with the two-stage bootstrap interval.\n\n"
            + "\n".join(_detail_table(details))
            + "\n"
        )
    return "\n".join(text) + "\n", detail_text


def _value(settings: Mapping[str, Any], key: str, unknown: str = "not recorded") -> str:
    value = settings.get(key)
    return unknown if value is None else (", ".join(map(str, value)) if isinstance(value, list) else str(value))


def _settings_table(about: Mapping[str, Any]) -> list[str]:
    s, net = about["settings"], about["network"]
    method = s.get("method")
    rows = [
        ("method", f"`{method}` ({_METHOD_NAMES.get(method, method)})" if method else "not recorded"),
        ("backbone", f"{net['backbone']}, randomly initialised (zero_init_residual {_value(s, 'zero_init_residual')})"),
        (
            "input (`image`)",
            f"{net['channels']} x {s['image_size']} x {s['image_size']} ({about['image_size_source']})",
        ),
        ("output (`pred`)", f"{net['feature_dim']}-d pooled representation of the last stage"),
        ("contrastive embedding", f"{net['embedding_dim']}-d, {net['head']} head (`model.ts`: `embed`)"),
        ("queue", f"{_value(s, 'queue_size')} keys, temperature {_value(s, 'temperature')}"),
        ("key encoder momentum", f"{_value(s, 'momentum')} ({_value(s, 'momentum_schedule')})"),
        (
            "batch size",
            f"{_value(s, 'batch_size')} per process, {about.get('world_size') or 'unknown number of'} process(es)",
        ),
        ("epochs", f"{_value(s, 'max_epochs')} (epoch length: {_value(s, 'epoch_length', 'the whole split')})"),
        ("optimiser", f"SGD, lr {_value(s, 'learning_rate')}, momentum 0.9, weight decay {_value(s, 'weight_decay')}"),
        ("batch norm of the key encoder", _value(s, "batch_norm")),
        ("seed", _value(s, "seed")),
        ("data set", f"`{_value(s, 'dataset_name')}`"),
    ]
    if method in ("mse", "barlow"):
        rows.append(("intermediate layers", _value(s, "layers")))
        weights = "mse_weights" if method == "mse" else "barlow_weights"
        rows.append((weights, _value(s, weights)))
        if method == "mse":
            rows.append(("mse_pool_sizes", _value(s, "mse_pool_sizes")))
    code = about.get("code_version") or {}
    if code:
        commit = f" (commit {code['git_commit']})" if code.get("git_commit") else ""
        rows.append(
            (
                "code",
                f"monai-ilm {code.get('monai_ilm')}{commit}, MONAI {code.get('monai')}, PyTorch "
                f"{code.get('torch')}, Python {code.get('python')}",
            )
        )
    rows.append(("recorded in", f"`{about['source']}` of the run folder" if about["source"] else "**no record**"))
    return ["| setting | value |", "| --- | --- |", *(f"| {k} | {v} |" for k, v in rows)]


def _is_volume(net: Mapping[str, Any]) -> bool:
    return net.get("spatial_dims") == 3


def _item(net: Mapping[str, Any]) -> str:
    return "volume" if _is_volume(net) else "image"


def _shape(net: Mapping[str, Any], size: int) -> str:
    """``"C x S x S"`` (2D) or ``"C x S x S x S"`` (3D), the network's input."""
    return " x ".join(str(n) for n in (net["channels"], *[size] * (3 if _is_volume(net) else 2)))


def _preprocessing_text(net: Mapping[str, Any], size: int) -> str:
    """What the exported ``preprocessing`` does to a file, as :func:`_volume_preprocessing` / :func:`_preprocessing`."""
    if _is_volume(net):
        return (
            "NIfTI volumes (`.nii`, `.nii.gz`): re-oriented and resampled from their header and intensity-scaled as "
            f"the run's `volume` setting says, then resized trilinearly to {size} x {size} x {size}"
        )
    grey = "grey repeated over 3 channels" if net["channels"] == 3 else "RGB to luma"
    return (
        f"8- or 16-bit image files: scaled by their bit depth, {grey}, the shorter side resized (antialiased "
        f"bilinear) and a centred {size} x {size} crop"
    )


def _readme(
    shipped: str,
    about: Mapping[str, Any],
    run_name: str,
    performance: str,
    bundle: str,
    dataset_dir: str,
    shipped_epochs: Any,
) -> str:
    """The exported README: the run's settings, its numbers, commands that work in the bundle folder."""
    sections = {m.group("title").strip(): m.group(0) for m in _SECTION.finditer(shipped)}
    first = shipped.find("\n## ")
    title, _, intro = (shipped[:first] if first >= 0 else shipped).partition("\n")
    s, net = about["settings"], about["network"]
    size = s["image_size"]
    warning = ""
    if not about["source"]:
        warning = (
            "\n**The run kept no record of its settings**: the backbone and widths below are read from the weights, "
            f"the image size is {about['image_size_source']}; the other settings are unknown.\n"
        )
    short = ""
    if isinstance(s.get("max_epochs"), int) and isinstance(shipped_epochs, int) and s["max_epochs"] < shipped_epochs:
        short = (
            f"- These weights were trained for {s['max_epochs']} epochs, fewer than the recipe's {shipped_epochs}: "
            "a check of the pipeline; their numbers say nothing about the method.\n"
        )
    evaluate = "\"['configs/pretrain.json','configs/evaluate.json']\""
    parts = [
        f"{title}: weights of run `{run_name}`\n{intro.rstrip()}\n{warning}",
        "## Model Overview\n\n"
        f"`models/model.pt` and its TorchScript export `models/model.ts` hold the query encoder and projection head "
        f"of pretraining run `{run_name}`: a {net['backbone']} pretrained with "
        f"{_METHOD_NAMES.get(s.get('method'), s.get('method') or 'an unrecorded method')} on "
        f"{_shape(net, size)} {_item(net)}s. The network's single-input forward returns the pooled "
        f"{net['feature_dim']}-d representation. The run's settings:\n\n" + "\n".join(_settings_table(about)) + "\n\n"
        "`configs/pretrain.json` holds this recipe (without monai-ilm's paths and machine settings).\n\n",
        sections.get("Data", ""),
        "## Input\n\n"
        f"`image`: {_shape(net, size)} float32 in [0, 1] (`metadata.json`, `network_data_format`), made by "
        f"`inference.json`'s `preprocessing` from {_preprocessing_text(net, size)}, as the data set's evaluation "
        "preprocessing.\n\n",
        "## Output\n\n"
        f"`pred`: (N, {net['feature_dim']}) float32, the globally average-pooled output of the query encoder's last "
        f"stage ({net['backbone']}). `inference.json` writes one line per {_item(net)} to "
        f"`<output_dir>/embeddings.csv` (the file's path, then the {net['feature_dim']} values); `models/model.ts`'s "
        f"`embed` gives the {net['embedding_dim']}-d contrastive embedding.\n\n",
        performance,
        "## MONAI Bundle Commands\n\n"
        "Run from this folder. Inference needs only the packages of `metadata.json` (MONAI, PyTorch, numpy, "
        f"pytorch-ignite, fire, {'nibabel' if _is_volume(net) else 'Pillow'}); evaluating and pretraining need "
        "monai-ilm too (its wheel, or `pip install .` in its repository).\n\n"
        "```bash\n"
        f"# embeddings of every {_item(net)} in a folder (and below it) with models/model.ts -> eval/embeddings.csv\n"
        f"python -m monai.bundle run --config_file configs/inference.json --dataset_dir {dataset_dir}\n\n"
        "# evaluate these weights (models/model.pt) on the data set's splits (needs monai-ilm)\n"
        f"python -m monai.bundle run --config_file {evaluate} --dataset_dir {dataset_dir} --output_dir runs "
        "--protocol linear\n"
        f"python -m monai.bundle run --config_file {evaluate} --dataset_dir {dataset_dir} --output_dir runs "
        "--protocol finetune --label_fraction 0.01\n\n"
        "# the model zoo's checks\n"
        "python -m monai.bundle verify_net_in_out --net_id network_def --meta_file configs/metadata.json "
        "--config_file configs/inference.json\n"
        "python -m monai.bundle ckpt_export --net_id network_def --filepath models/model.ts --ckpt_file "
        "models/model.pt --meta_file configs/metadata.json --config_file configs/inference.json\n"
        "```\n\n"
        "The weights are not committed (`.gitignore`): host `models/model.pt` and `models/model.ts` and fill in "
        "their urls in `large_files.yml`, as the model zoo asks for files over 25 MB.\n\n",
        sections.get("Evaluation numbers", ""),
        "## Limitations\n\n"
        "- Research use only; not a medical device and not validated for any clinical decision.\n"
        "- The encoder is pretrained without labels; evaluate its representation on your task before any use.\n"
        + short
        + f"- The recipe and its differences from the reference code: `bundles/{bundle}/docs/README.md` of "
        "monai-ilm.\n\n",
        sections.get("References", ""),
        sections.get("License", ""),
    ]
    return "\n".join(part.rstrip("\n") + "\n" for part in parts if part).replace("\n\n\n", "\n\n")


def _large_files(target: Path) -> str:
    entries = []
    for name in ("models/model.pt", "models/model.ts"):
        entries.append(
            f'  - path: "{name}"\n    url: "<where {name} is hosted>"\n'
            f'    hash_val: "{_md5(target / name)}"\n    hash_type: "md5"\n'
        )
    return (
        "# The model zoo keeps weights out of git: host each file and fill in its url before submitting.\n"
        "large_files:\n" + "".join(entries)
    )


def _save_torchscript(state: Mapping[str, torch.Tensor], network: Mapping[str, Any], target: Path, size: int) -> None:
    """``models/model.ts``: the query network in TorchScript script mode, checked against the eager one."""
    from monai.data import save_net_with_metadata
    from monai.networks.utils import convert_to_torchscript

    from monai_ilm.networks import MoCoQueryNetwork, resnet_encoder

    dims = network["spatial_dims"]
    encoder = resnet_encoder(network["backbone"], dims, in_channels=network["channels"])
    eager = MoCoQueryNetwork(encoder, network["embedding_dim"], network["head"])
    eager.load_state_dict(state)
    eager.eval()
    probe = [torch.rand(1, network["channels"], *[size] * dims)]
    scripted = convert_to_torchscript(eager, inputs=probe, use_trace=False)  # compares outputs with the eager network
    extra = {name: (target / "configs" / name).read_bytes() for name in ("metadata.json", "inference.json")}
    meta = json.loads(extra["metadata.json"])
    save_net_with_metadata(
        scripted,
        str(target / "models" / "model.ts"),
        meta_values=meta,
        more_extra_files={"inference.json": extra["inference.json"]},
        include_config_vals=False,
        append_timestamp=False,
    )


def _description(about: Mapping[str, Any], dataset_label: str) -> str:
    s, net = about["settings"], about["network"]
    method = _METHOD_NAMES.get(s.get("method"), s.get("method") or "an unrecorded method")
    recipe = (
        f"queue {s['queue_size']}, temperature {s['temperature']}, batch {s['batch_size']}, "
        f"{s['max_epochs']} epochs, seed {s['seed']}"
        if all(s.get(k) is not None for k in ("queue_size", "temperature", "batch_size", "max_epochs"))
        else "settings not recorded"
    )
    return (
        f"A randomly initialised {net['backbone']} pretrained with {method} on {dataset_label} at "
        f"{s['image_size']} x {s['image_size']} px ({recipe}; Kaku et al., NeurIPS 2021). The network's single-input "
        f"forward returns the pooled {net['feature_dim']}-d representation."
    )


def export_bundle(
    bundle: str | os.PathLike,
    run_dir: str | os.PathLike,
    to: str | os.PathLike,
    results_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
) -> Path:
    """Write a self-contained bundle holding a pretraining run's weights, described from the run's record.

    Args:
        bundle: the bundle that made the run (a shipped name or a folder).
        run_dir: the pretraining run folder, ``<output_dir>/pretrain/<method>_seed<seed>``, holding
            ``models/model.pt`` (the best-validation weights) and ``run_record.json``.
        to: the new bundle folder; it must not exist or be empty.
        results_dir: the results table to read the run's numbers from (default ``<output_dir>/results``).
        image_size: the input size of the run; default: the one in the run's record (a run without one is exported
            with a warning and the bundle's default size).

    Returns:
        The new bundle folder.

    Raises:
        FileNotFoundError: when the run has no ``models/model.pt``.
        FileExistsError: when ``to`` holds files.
        ValueError: when the weights are not those of a MoCo ResNet encoder, or the record is not of these weights.
    """
    import monai
    import numpy

    from monai_ilm.datasets import DATASETS
    from monai_ilm.networks import query_state_dict

    source, run = resolve_bundle(bundle), Path(run_dir).resolve()
    weights = run / "models" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"run: expected the run's best weights at '{weights}', got none.")
    state = query_state_dict(_load_state(weights))
    network = network_settings(state)
    shipped_inference = json.loads((source / "configs" / "inference.json").read_text())
    about = run_description(run, network, image_size, int(shipped_inference["image_size"]))
    settings, size = about["settings"], about["settings"]["image_size"]
    dataset = BUNDLE_DATASETS.get(source.name, shipped_inference.get("dataset_name", ""))
    target = copy_bundle(source, to)
    configs = target / "configs"

    pretrain = _recipe_config(json.loads((configs / "pretrain.json").read_text()), settings)
    _write_json(configs / "pretrain.json", pretrain)
    evaluate = json.loads((configs / "evaluate.json").read_text())
    evaluate["pretrained_checkpoint"] = (
        "$os.path.join(@bundle_root, 'models', 'model.pt') if @method != 'supervised' else None"
    )
    _write_json(configs / "evaluate.json", evaluate)
    inference = inference_config(
        dataset,
        shipped_inference["dataset_dir"],
        size,
        network["channels"],
        int(shipped_inference["batch_size"]),
        volume=settings.get("volume"),
    )
    _write_json(configs / "inference.json", inference)

    metadata = json.loads((configs / "metadata.json").read_text())
    version = bump_version(metadata["version"])
    change = (
        f"weights of pretraining run {run.name} (method {settings['method']}, seed {settings['seed']}, "
        f"{network['backbone']}, {size} px, {network['feature_dim']}-d output): models/model.pt and models/model.ts; "
        "inference.json needs only MONAI and PyTorch"
    )
    metadata["version"] = version
    metadata["changelog"] = {version: change, **metadata["changelog"]}
    metadata["monai_version"] = monai.__version__.split("+")[0]
    metadata["pytorch_version"] = torch.__version__.split("+")[0]
    metadata["numpy_version"] = numpy.__version__
    metadata["required_packages_version"] = inference_requirements(network["spatial_dims"])
    label = metadata.get("data_source", dataset).split(",")[0] if dataset in DATASETS else dataset
    metadata["description"] = _description(about, label)
    metadata["pred_classes"] = f"{network['feature_dim']}-d pooled {network['backbone']} representation"
    image = metadata["network_data_format"]["inputs"]["image"]
    image["num_channels"], image["spatial_shape"] = network["channels"], [size] * network["spatial_dims"]
    if network["channels"] == 1 and network["spatial_dims"] == 2:
        image["channel_def"] = {"0": "grey"}
    metadata["network_data_format"]["outputs"]["pred"]["num_channels"] = network["feature_dim"]

    results = Path(results_dir) if results_dir is not None else run.parents[1] / "results"
    rows = _run_rows(results, dataset, settings["method"], settings["seed"], run) if results.is_dir() else None
    if rows is not None and not rows.empty:
        whole = rows[(rows["kind"] == "run") & rows["block"].isna()]
        metadata["eval_metrics"] = {
            f"{r.protocol}_{r.label_fraction:g}_{r.metric}": round(float(r.value), 6) for r in whole.itertuples()
        }
    _write_json(configs / "metadata.json", metadata)

    performance, details = _performance(rows, run.name, results, about, dataset)
    if details is not None:
        (target / PERFORMANCE_DETAILS).write_text(details)
    readme = target / "docs" / "README.md"
    shipped_epochs = json.loads((source / "configs" / "pretrain.json").read_text()).get("max_epochs")
    text = _readme(
        readme.read_text(), about, run.name, performance, source.name, shipped_inference["dataset_dir"], shipped_epochs
    )
    readme.write_text(text.rstrip("\n") + "\n")

    (target / "models").mkdir()
    torch.save(state, target / "models" / "model.pt")
    _save_torchscript(state, network, target, size)
    (target / "large_files.yml").write_text(_large_files(target))
    (target / ".gitignore").write_text(GITIGNORE)
    logger.info("exported %s with the weights of %s to %s (version %s)", source.name, run, target, version)
    return target
