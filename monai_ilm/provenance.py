"""What a number was made from: the settings that change it, the identity of its inputs, and the code.

Every evaluation cell and pretraining run of the experiment runner gets a **fingerprint**: the SHA-256 of
its resolved settings (paths, logging and progress settings left out: they do not change the number) and
of the content hashes of the files it reads (the pretraining checkpoint, a fine-tuned model, the predictions
a KS cell compares). A result is reused only while its fingerprint matches, so a changed setting or a
re-trained checkpoint can never leave a stale number in the tables. The code version is stored beside the
fingerprint (for reproduction) but not inside it, so upgrading monai-ilm does not silently re-run months of
work; :func:`code_version` says which commit made a number.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from monai_ilm.results.rows import config_hash

__all__ = [
    "NOT_RESULT_SETTINGS",
    "PRETRAINING_RECORD",
    "bundle_settings",
    "changed_settings",
    "code_version",
    "file_digest",
    "file_sha256",
    "fingerprint",
]

NOT_RESULT_SETTINGS = frozenset(
    {
        # workflow plumbing and expressions that build objects
        "imports",
        "initialize",
        "run",
        "finalize",
        "network",
        "evaluation",
        # paths: moving a data set or an output folder does not change a number
        "bundle_root",
        "dataset_dir",
        "output_dir",
        "run_dir",
        "ckpt_dir",
        "resume_path",
        "pretrained_checkpoint",
        # logging, progress and fault tolerance
        "log_interval",
        "nan_check_interval",
        "checkpoint_iterations",
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
    }
)
"""Top-level bundle settings that never enter a fingerprint."""

PRETRAINING_RECORD = "run_settings.json"
"""The settings record (fingerprint, settings, code version, status) the runner keeps in a pretraining run folder."""

_REFERENCE = re.compile(r"@([A-Za-z_][\w#]*)")


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's content with a :mod:`hashlib` algorithm, read in chunks.

    Raises:
        FileNotFoundError: naming the file when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a file to fingerprint, found none.")
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (the identity of a checkpoint or a predictions file).

    Raises:
        FileNotFoundError: naming the file when it does not exist.
    """
    return file_digest(path, "sha256")


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


def bundle_settings(
    config_files: Sequence[str | os.PathLike],
    overrides: Mapping[str, Any] | None = None,
    exclude: Iterable[str] = (),
) -> dict[str, Any]:
    """The resolved top-level settings of a bundle run that can change its numbers.

    A top-level entry is a setting when it is a literal, a list of literals, or an expression that refers
    only to other settings (``"amp": "$torch.cuda.is_available()"``); components (``_target_`` dicts),
    workflow sections and :data:`NOT_RESULT_SETTINGS` are left out, so nothing heavy is built.

    Args:
        config_files: the bundle configs, merged in order as ``monai.bundle run`` merges them.
        overrides: command-line overrides (``--key value``), applied last.
        exclude: further keys to leave out.

    Returns:
        ``{key: resolved JSON value}``.

    Raises:
        ValueError: naming the config file that cannot be read.
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    for path in config_files:
        if not Path(path).is_file():
            raise ValueError(f"config_file: expected a bundle config at {path}, found none.")
    parser.read_config([str(p) for p in config_files])
    parser.update({key: value for key, value in (overrides or {}).items()})
    raw_config = parser.get()
    skip = NOT_RESULT_SETTINGS | set(exclude)
    components = {key for key, raw in raw_config.items() if isinstance(raw, dict)}
    settings = {}
    for key in sorted(raw_config):
        raw = raw_config[key]
        if key in skip or key in components or _references(raw) & (components | skip):
            continue
        value = parser.get_parsed_content(key)
        if _jsonable(value):
            settings[key] = value
    return settings


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
