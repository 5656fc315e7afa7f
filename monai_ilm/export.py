"""Self-contained MONAI bundles: an editable copy of a shipped bundle, or a release with a run's weights.

:func:`export_bundle` turns a pretraining run into what the MONAI model zoo expects of a bundle
(https://docs.monai.io/en/stable/mb_specification.html): the configs and docs, ``models/model.pt`` with
what inference needs (the query encoder and projection head, :class:`~monai_ilm.networks.MoCoQueryNetwork`),
``models/model.ts`` exported with TorchScript in script mode, a ``large_files.yml`` template for hosting the
weights, metadata with a new version and changelog entry describing the network it holds, and the README's
Performance section filled from the run's rows of the results table (numbers only where the run produced them).
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

from monai_ilm.experiment import BUNDLE_DATASETS, bundles_root
from monai_ilm.provenance import PRETRAINING_RECORD, file_digest

__all__ = ["BUNDLE_FILES", "bump_version", "copy_bundle", "export_bundle", "network_settings", "resolve_bundle"]

logger = logging.getLogger("monai_ilm.export")

BUNDLE_FILES: tuple[str, ...] = ("configs", "docs", "LICENSE")
"""What a bundle holds besides its weights; a checkout's bundle may also hold run outputs, never copied."""

# torchvision ResNet depth from (blocks per stage, bottleneck blocks)
_RESNETS = {
    ((2, 2, 2, 2), False): "resnet18",
    ((3, 4, 6, 3), False): "resnet34",
    ((3, 4, 6, 3), True): "resnet50",
    ((3, 4, 23, 3), True): "resnet101",
    ((3, 8, 36, 3), True): "resnet152",
}
_PERFORMANCE = re.compile(r"^## Performance\n.*?(?=^## |\Z)", re.MULTILINE | re.DOTALL)


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
        ``{"backbone", "channels", "embedding_dim", "head"}`` and ``feature_dim`` (the output width).

    Raises:
        ValueError: for a state dict that is not that of a torchvision-ResNet MoCo query encoder.
    """
    conv1 = state.get("encoder_q.net.conv1.weight")
    if conv1 is None or conv1.dim() != 4:
        found = (
            "no 'encoder_q.net.conv1.weight'" if conv1 is None else f"a {conv1.dim()}-D 'encoder_q.net.conv1.weight'"
        )
        raise ValueError(
            f"model.pt: expected the weights of a 2D torchvision-ResNet MoCo encoder ('encoder_q.net.*'), got {found}."
        )
    blocks = tuple(
        len({key.split(".")[3] for key in state if key.startswith(f"encoder_q.net.layer{i}.")}) for i in range(1, 5)
    )
    bottleneck = "encoder_q.net.layer1.0.conv3.weight" in state
    backbone = _RESNETS.get((blocks, bottleneck))
    if backbone is None:
        raise ValueError(f"model.pt: expected a torchvision ResNet, got stages of {blocks} blocks.")
    head = "linear" if "projector_q.weight" in state else "mlp"
    last = state["projector_q.weight"] if head == "linear" else state["projector_q.2.weight"]
    return {
        "backbone": backbone,
        "channels": int(conv1.shape[1]),
        "embedding_dim": int(last.shape[0]),
        "head": head,
        "feature_dim": int(last.shape[1]),
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


def _performance(rows, run_name: str, results_dir: Path, settings: Mapping[str, Any]) -> str:
    about = (
        f"Weights of pretraining run `{run_name}` (method `{settings['method']}`, seed {settings['seed']}, "
        f"{settings['backbone']}, {settings['image_size']} px), exported on {date.today().isoformat()}."
    )
    if rows is None or rows.empty:
        return (
            f"## Performance\n\n{about} The results table (`{results_dir.name}/`) holds no evaluation of this run, "
            "so no numbers are given: evaluate it with `python -m monai_ilm experiment` and export again.\n\n"
        )
    lines = [
        "## Performance\n",
        f"{about} Numbers from the run's rows of the results table: `run` rows measure these "
        "weights; `seed_mean` rows are the mean over the seeds listed, this run among them, with the two-stage "
        "bootstrap interval.\n",
        "| protocol | label fraction | block | metric | value | interval | n | kind | seeds |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    rows = rows.sort_values(["kind", "protocol", "label_fraction", "block", "metric"], na_position="first")
    for row in rows.itertuples():
        block = "" if pd.isna(row.block) else str(int(row.block))
        interval = "" if pd.isna(row.ci_low) or pd.isna(row.ci_high) else f"{row.ci_low:.4f} - {row.ci_high:.4f}"
        seeds = row.seeds or ("" if pd.isna(row.seed) else str(int(row.seed)))
        lines.append(
            f"| {row.protocol} | {row.label_fraction:g} | {block} | {row.metric} | {row.value:.4f} | "
            f"{interval} | {row.n} | {row.kind} | {seeds} |"
        )
    return "\n".join(lines) + "\n\n"


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


def export_bundle(
    bundle: str | os.PathLike,
    run_dir: str | os.PathLike,
    to: str | os.PathLike,
    results_dir: str | os.PathLike | None = None,
    image_size: int | None = None,
) -> Path:
    """Write a self-contained bundle holding a pretraining run's weights.

    Args:
        bundle: the bundle that made the run (a shipped name or a folder).
        run_dir: the pretraining run folder, ``<output_dir>/pretrain/<method>_seed<seed>``, holding
            ``models/model.pt`` (the best-validation weights).
        to: the new bundle folder; it must not exist or be empty.
        results_dir: the results table to read the run's numbers from (default ``<output_dir>/results``).
        image_size: the input size of the run; default: the one in the run's settings record
            (``run_settings.json``, written by ``python -m monai_ilm experiment``), else the bundle's.

    Returns:
        The new bundle folder.

    Raises:
        FileNotFoundError: when the run has no ``models/model.pt``.
        FileExistsError: when ``to`` holds files.
        ValueError: when the weights are not those of a MoCo ResNet encoder.
    """
    from monai.bundle import ckpt_export

    import monai_ilm
    from monai_ilm.networks import query_state_dict

    source, run = resolve_bundle(bundle), Path(run_dir).resolve()
    weights = run / "models" / "model.pt"
    if not weights.is_file():
        raise FileNotFoundError(f"run: expected the run's best weights at '{weights}', got none.")
    state = query_state_dict(_load_state(weights))
    network = network_settings(state)
    record_path = run / PRETRAINING_RECORD
    recorded = json.loads(record_path.read_text()).get("settings", {}) if record_path.is_file() else {}
    target = copy_bundle(source, to)

    inference_path = target / "configs" / "inference.json"
    inference = json.loads(inference_path.read_text())
    size = int(image_size or recorded.get("image_size") or inference["image_size"])
    method, _, seed = run.name.rpartition("_seed")
    settings = {
        "method": recorded.get("method", method),
        "seed": int(recorded.get("seed", seed or 0)),
        "backbone": network["backbone"],
        "image_size": size,
    }
    inference.update({key: network[key] for key in ("backbone", "channels", "embedding_dim", "head")})
    inference["image_size"] = size
    _write_json(inference_path, inference)

    (target / "models").mkdir()
    torch.save(state, target / "models" / "model.pt")
    meta_path = target / "configs" / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    version = bump_version(metadata["version"])
    change = (
        f"weights of pretraining run {run.name} (method {settings['method']}, seed {settings['seed']}, "
        f"{network['backbone']}, {size} px): models/model.pt and models/model.ts"
    )
    metadata["version"] = version
    metadata["changelog"] = {version: change, **metadata["changelog"]}
    metadata["monai_version"] = __import__("monai").__version__
    metadata["pytorch_version"] = torch.__version__.split("+")[0]
    metadata["numpy_version"] = __import__("numpy").__version__
    metadata["required_packages_version"]["monai-ilm"] = monai_ilm.__version__
    metadata["pred_classes"] = f"{network['feature_dim']}-d pooled {network['backbone']} representation"
    image = metadata["network_data_format"]["inputs"]["image"]
    image["num_channels"], image["spatial_shape"] = network["channels"], [size, size]
    metadata["network_data_format"]["outputs"]["pred"]["num_channels"] = network["feature_dim"]

    dataset = BUNDLE_DATASETS.get(source.name, inference.get("dataset_name", ""))
    results = Path(results_dir) if results_dir is not None else run.parents[1] / "results"
    rows = _run_rows(results, dataset, settings["method"], settings["seed"], run) if results.is_dir() else None
    if rows is not None and not rows.empty:
        whole = rows[(rows["kind"] == "run") & rows["block"].isna()]
        metadata["eval_metrics"] = {
            f"{r.protocol}_{r.label_fraction:g}_{r.metric}": round(float(r.value), 6) for r in whole.itertuples()
        }
    _write_json(meta_path, metadata)

    readme = target / "docs" / "README.md"
    text = readme.read_text()
    section = _performance(rows, run.name, results, settings)
    text = _PERFORMANCE.sub(lambda _: section, text, count=1) if _PERFORMANCE.search(text) else text + "\n" + section
    readme.write_text(text.rstrip("\n") + "\n")

    ckpt_export(
        net_id="network_def",
        filepath=str(target / "models" / "model.ts"),
        ckpt_file=str(target / "models" / "model.pt"),
        meta_file=str(meta_path),
        config_file=str(inference_path),
        bundle_root=str(target),
    )
    (target / "large_files.yml").write_text(_large_files(target))
    logger.info("exported %s with the weights of %s to %s (version %s)", source.name, run, target, version)
    return target
