"""The record a pretraining run keeps of itself: what it trained, on what, with which code.

Whatever starts a pretraining run (``python -m monai.bundle run --config_file configs/pretrain.json``, the
experiment runner, ``torchrun``), :class:`RunRecordHandler` writes ``run_record.json`` into the run folder
when the trainer is built: the bundle's resolved pretraining settings
(:func:`monai_ilm.recipe_checks.recipe_settings`: backbone, image size, queue size, method, temperature, batch
size, epochs, seed, data set...), what the network itself says (the
width of its output, its embedding and stage widths), the number of processes and the code version
(:func:`monai_ilm.provenance.code_version`). :func:`monai_ilm.export.export_bundle` describes the weights
from it, so an exported bundle names the network and input the run really had.

The experiment runner keeps its own record beside it (``run_settings.json``, the fingerprint that decides
whether a run is reused); the two never write the same file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from monai_ilm.distributed import rank, world_size
from monai_ilm.provenance import code_version

__all__ = ["RUN_RECORD", "RunRecordHandler", "network_record", "read_run_record", "write_run_record"]

RUN_RECORD = "run_record.json"
"""The file, in a pretraining run folder, that records the run's resolved settings."""

_RECORD_VERSION = 1


def _jsonable(value: Any) -> Any:
    """``value`` as JSON: paths as strings, tuples as lists; anything else that JSON cannot hold as its ``repr``."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    return repr(value)


def network_record(network: nn.Module) -> dict[str, Any]:
    """What a MoCo network says about its shapes: output (feature) width, embedding width, stage widths, queue.

    Read from the built module, so it holds whatever the settings made of it.

    Args:
        network: a :class:`~monai_ilm.networks.MoCo` (or a network with the same attributes; missing ones are left out).
    """
    network = getattr(network, "module", network)  # DistributedDataParallel
    encoder = getattr(network, "encoder_q", None)
    record: dict[str, Any] = {"class": type(network).__name__}
    if encoder is not None and hasattr(encoder, "feature_dim"):
        record["feature_dim"] = int(encoder.feature_dim)
    if hasattr(network, "stage_channels"):
        record["stage_channels"] = [int(c) for c in network.stage_channels]
    projector = getattr(network, "projector_q", None)
    if projector is not None:
        last = [m for m in projector.modules() if isinstance(m, nn.Linear)]
        if last:
            record["embedding_dim"] = int(last[-1].out_features)
    queue = getattr(network, "queue", None)
    if isinstance(queue, torch.Tensor) and queue.dim() == 2:
        record["queue_shape"] = list(queue.shape)
    return record


def write_run_record(run_dir: str | os.PathLike, settings: Mapping[str, Any], network: nn.Module | None = None) -> Path:
    """Write ``run_dir/run_record.json`` atomically (a partial name, then a rename).

    Args:
        run_dir: the pretraining run folder (created when missing).
        settings: the run's resolved settings, ``{setting: value}``.
        network: the pretraining network, whose shapes are recorded (:func:`network_record`).

    Returns:
        The record's path.

    Raises:
        TypeError: when ``settings`` is not a mapping.
    """
    if not isinstance(settings, Mapping):
        raise TypeError(f"settings: expected a mapping of the run's settings, got {type(settings).__name__}.")
    resolved = dict(settings)
    content = {
        "record_version": _RECORD_VERSION,
        "written": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "settings": _jsonable(resolved),
        "network": network_record(network) if network is not None else {},
        "world_size": world_size(),
        "code_version": code_version(),
    }
    path = Path(run_dir) / RUN_RECORD
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(content, indent=2) + "\n", encoding="utf-8")
    os.replace(partial, path)
    return path


def read_run_record(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's ``run_record.json``, or None when the run has none (a run made before records were kept).

    Raises:
        ValueError: naming the file when it exists but is not a JSON object with ``settings``.
    """
    path = Path(run_dir) / RUN_RECORD
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as error:
        raise ValueError(f"{path}: expected a JSON run record, got unreadable JSON ({error}).") from error
    if not isinstance(record, dict) or not isinstance(record.get("settings"), dict):
        raise ValueError(f"{path}: expected a JSON object with 'settings', got {type(record).__name__}.")
    return record


class RunRecordHandler:
    """Writes the run record when it is attached to the trainer, i.e. as the run starts, before any step.

    Put it in ``train#handlers`` of a pretraining config; under ``torchrun`` only rank 0 writes.

    Args:
        run_dir: the run folder.
        settings: the run's resolved settings
            (``"$monai_ilm.recipe_checks.recipe_settings('pretraining')"`` in a recipe).
        network: the pretraining network (``@network_def``).
    """

    rank_zero_only: ClassVar[bool] = True  # one process writes the file

    def __init__(
        self, run_dir: str | os.PathLike, settings: Mapping[str, Any], network: nn.Module | None = None
    ) -> None:
        self.run_dir = Path(run_dir)
        self.settings = settings
        self.network = network

    def attach(self, engine: Any) -> None:
        """Write the record (rank 0 only); ``engine`` is not changed."""
        if rank() == 0:
            write_run_record(self.run_dir, self.settings, self.network)
