"""What a number was made from: the settings that change it, the identity of its inputs and data, and the code.

Every evaluation cell and pretraining run of the experiment runner gets a **fingerprint**: the SHA-256 of
its resolved settings (:data:`NOT_RESULT_SETTINGS` left out: they do not change the number), of the content
hashes of the files it reads (the pretraining checkpoint, a fine-tuned model, the predictions a KS cell
compares) and of the identity of the data it reads (:func:`~monai_ilm.data.identity.data_identity`: every image
of its datalists by size and modification time, the in-memory arrays and the label tables by content). A result
is reused only while its fingerprint matches, so a changed setting, a replaced image or a re-trained checkpoint can
never leave a stale number in the tables. The code version is stored beside the fingerprint (for reproduction) but
not inside it, so upgrading monai-ilm does not silently re-run months of work; :func:`code_version` says which
commit made a number.
"""

from __future__ import annotations

import gzip
import json
import os
import platform
import re
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from monai_ilm.data.identity import data_identity, table_files
from monai_ilm.results.rows import config_hash

__all__ = [
    "DEVICE_AUGMENT_NOT_RESULT_SETTINGS",
    "NOT_RESULT_SETTINGS",
    "PRETRAINING_DATALISTS",
    "PRETRAINING_RECORD",
    "bundle_data_identity",
    "bundle_settings",
    "changed_settings",
    "code_version",
    "fingerprint",
    "read_data_manifest",
    "write_data_manifest",
]

NOT_RESULT_SETTINGS = frozenset(
    {
        # imports: loading a module does not change a number
        "imports",
        # paths: moving a data set or an output folder does not change a number
        "bundle_root",
        "dataset_dir",
        "output_dir",
        "run_dir",
        "ckpt_dir",
        "resume_path",
        "pretrained_checkpoint",
        # logging, progress, checking and fault tolerance
        "log_interval",
        "nan_check_interval",
        "checkpoint_iterations",
        "checkpoint_saver",
        "iteration_checkpoint_saver",
        "checkpoint_loader",
        # monitoring: the online kNN and the health indicators read the run, they never change it
        "knn_interval",
        "knn_bank_size",
        "knn_val_size",
        "knn_cache_rate",
        "health_samples",
        "collapse_rank",
        "collapse_patience",
        # where it runs and how much is cached (the results are the same)
        "device",
        "cache",
        "cache_dir",
        "cache_rate",
        # threads filling a cache, and loaders of deterministic (validation) steps: the same items in the same order
        "train#dataset#num_workers",
        "train#dataset#cache",
        "train#dataset#cache_dir",
        "train#dataset#cache_rate",
        "validate#dataset#num_workers",
        "validate#dataset#cache_rate",
        "validate#dataloader#num_workers",
    }
)
"""Settings (top-level names, or ``#`` paths into components) that never enter a pretraining fingerprint."""

DEVICE_AUGMENT_NOT_RESULT_SETTINGS = frozenset({"num_workers", "train#dataloader#num_workers"})
"""Left out of the fingerprint as well when ``augment_on`` is ``"device"``.

The loader worker count decides which worker's random stream augments a sample: MONAI's ``DataLoader``
seeds each worker's transforms with the batch's base seed plus the worker id
(:func:`monai.data.utils.worker_init_fn`), so with ``augment_on="loader"`` another count gives other views
and stays in the fingerprint. With ``augment_on="device"`` the loader steps are deterministic (decode,
resize, uint8) and every draw comes from the device stage's own seeded generator, so the count (by default
``min(16, os.cpu_count())``, a property of the machine) changes no number and moving hosts re-runs nothing.
"""

PRETRAINING_DATALISTS = {"train": "train#datalist", "val": "validate#datalist"}
"""``{split: config id}`` of the datalists a pretraining bundle reads (its data identity)."""

PRETRAINING_RECORD = "run_settings.json"
"""The settings record (fingerprint, settings, code version, status) the runner keeps in a pretraining run folder."""

_REFERENCE = re.compile(r"@([A-Za-z_][\w#]*)")


def fingerprint(settings: Mapping[str, Any], inputs: Mapping[str, str] | None = None) -> str:
    """The fingerprint of a result: a hash of its settings and of its inputs' content hashes.

    Args:
        settings: JSON-serialisable settings that change the result.
        inputs: ``{name: sha256}`` of the files the result is computed from.

    Returns:
        16 hexadecimal characters.
    """
    return config_hash({"settings": dict(settings), "inputs": dict(inputs or {})}, length=16)


def changed_settings(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """Human-readable differences between two settings mappings, e.g. ``["max_epochs 2 -> 50"]``.

    Args:
        old: the settings a stored result was made with.
        new: the settings of this run.

    Returns:
        One ``"key old -> new"`` string per differing key, sorted by key (``(unset)`` for a missing key).
    """

    def show(mapping: Mapping[str, Any], key: str) -> str:
        return json.dumps(mapping[key]) if key in mapping else "(unset)"

    keys = sorted(set(old) | set(new))
    return [f"{k} {show(old, k)} -> {show(new, k)}" for k in keys if old.get(k, ...) != new.get(k, ...)]


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _references(raw: Any) -> set[str]:
    text = json.dumps(raw) if not isinstance(raw, str) else raw
    return {ref.split("#")[0] for ref in _REFERENCE.findall(text)}


def _parser(config_files: Sequence[str | os.PathLike], overrides: Mapping[str, Any] | None):
    from monai.bundle import ConfigParser

    for path in config_files:
        if not Path(path).is_file():
            raise ValueError(f"config_file: expected a bundle config at {path}, found none.")
    parser = ConfigParser()
    parser.read_config([str(p) for p in config_files])
    parser.update({key: str(value) if isinstance(value, Path) else value for key, value in (overrides or {}).items()})
    return parser


def _flatten(prefix: str, raw: Any, skip: set[str], out: dict[str, Any]) -> None:
    """``out[id] = raw text`` for each leaf of a component below ``prefix``; ``skip`` ids (and all below) left out."""
    if prefix in skip:
        return
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else None
    if items is None or not raw:
        out[prefix] = raw
        return
    for key, value in items:
        _flatten(f"{prefix}#{key}", value, skip, out)


def bundle_settings(
    config_files: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """The resolved configuration of a bundle run, less what cannot change its numbers.

    The configs are merged and the overrides (``--key value``, ``#`` paths included) applied as
    ``monai.bundle run`` does. A top-level literal, list of literals, or expression that refers only to
    other settings (``"amp": "$torch.cuda.is_available()"``) enters with its resolved value; every leaf of
    a component or workflow section (a dict, or a list holding one) enters under its ``#`` path with its
    text (``"optimizer#momentum": 0.9``, ``"network_def#queue_size": "@queue_size"``), as does an
    expression that refers to a component. Nothing heavy is built, and any override or config edit changes
    the result. Left out: :data:`NOT_RESULT_SETTINGS` (paths, logging, monitoring, cache placement), and
    with ``augment_on="device"`` also :data:`DEVICE_AUGMENT_NOT_RESULT_SETTINGS` (the loader worker count,
    which there changes no draw; see its note).

    Args:
        config_files: the bundle configs, merged in order as ``monai.bundle run`` merges them.
        overrides: command-line overrides, applied last.
        exclude: further top-level keys or ``#`` paths to leave out.

    Returns:
        ``{key or #-path: resolved JSON value or config text}``.

    Raises:
        ValueError: naming the config file that cannot be read.
    """
    parser = _parser(config_files, overrides)
    raw_config = parser.get()
    skip = set(NOT_RESULT_SETTINGS) | set(exclude)
    if "augment_on" in raw_config and parser.get_parsed_content("augment_on") == "device":
        skip |= DEVICE_AUGMENT_NOT_RESULT_SETTINGS
    components = {
        key
        for key, raw in raw_config.items()
        if isinstance(raw, dict) or (isinstance(raw, list) and any(isinstance(v, (dict, list)) for v in raw))
    }
    settings: dict[str, Any] = {}
    for key in sorted(raw_config):
        raw = raw_config[key]
        if key in skip:
            continue
        if key in components:
            _flatten(key, raw, skip, settings)
            continue
        resolvable = not _references(raw) & (components | skip)
        value = parser.get_parsed_content(key) if resolvable else raw
        settings[key] = value if _jsonable(value) else raw
    return settings


def bundle_data_identity(
    config_files: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    datalists: Mapping[str, str] = PRETRAINING_DATALISTS,
) -> dict[str, Any]:
    """The :func:`~monai_ilm.data.identity.data_identity` of the datalists a bundle run reads.

    The images enter by stat, its tables by content.

    Args:
        config_files: the bundle configs, merged in order.
        overrides: command-line overrides, applied last.
        datalists: ``{split: config id}`` of the datalists the run reads.

    Raises:
        FileNotFoundError: naming ``dataset_dir`` when the data set is missing (from the readers).
    """
    parser = _parser(config_files, overrides)
    lists = {split: parser.get_parsed_content(ref) for split, ref in datalists.items()}
    return data_identity(lists, tables=table_files(parser.get_parsed_content("dataset_dir")))


def _manifest_path(folder: str | os.PathLike, digest: str) -> Path:
    return Path(folder) / f"{digest}.json.gz"


def write_data_manifest(folder: str | os.PathLike, identity: Mapping[str, Any]) -> Path:
    """Keep a data identity's manifest as ``<folder>/<digest>.json.gz`` (once; atomically).

    :func:`~monai_ilm.data.identity.data_changes` compares two.
    """
    path = _manifest_path(folder, identity["digest"])
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(dir=path.parent, suffix=".partial")
        try:
            with os.fdopen(handle, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as out:
                out.write(json.dumps(identity["manifest"]).encode())
            os.replace(partial, path)
        except BaseException:
            Path(partial).unlink(missing_ok=True)
            raise
    return path


def read_data_manifest(folder: str | os.PathLike, digest: str) -> dict[str, str] | None:
    """The manifest :func:`write_data_manifest` kept for ``digest``, or None."""
    try:
        with gzip.open(_manifest_path(folder, digest), "rb") as handle:
            return json.loads(handle.read())
    except (OSError, ValueError):
        return None


@lru_cache(maxsize=1)
def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[1]
    if not (root / ".git").exists():
        return None
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def code_version() -> dict[str, str | None]:
    """The versions that made a number: monai-ilm (and its git commit in a checkout), MONAI, torch, Python."""
    import monai
    import torch

    import monai_ilm

    return {
        "monai_ilm": monai_ilm.__version__,
        "git_commit": _git_commit(),
        "monai": monai.__version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
