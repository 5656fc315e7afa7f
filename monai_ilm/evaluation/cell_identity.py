"""What identifies one evaluation cell: its names, the settings, data and files its numbers depend on.

An evaluation cell is reused by the experiment runner only when its fingerprint (these settings plus the
SHA-256 of these files, see :mod:`monai_ilm.provenance`) matches the one stored beside its results. A cell
therefore leaves out of its settings what cannot change its numbers (paths, the device) and what its
protocol does not read, adds the identity of the data it reads (``data_identity``: every image of the
splits it reads by size and modification time, the data set's tables by content), and lists as inputs
every file it computes from. ``num_workers`` stays in the settings of the protocols that train on
augmented images (``linear``, ``finetune``, ``probe``): MONAI seeds each loader worker's random
transforms with a base seed plus the worker id, so another worker count gives other augmentations.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from monai_ilm.data.identity import data_identity, file_sha256, table_files
from monai_ilm.provenance import PRETRAINING_RECORD

__all__ = [
    "PROTOCOL_SPLITS",
    "cell_data_identity",
    "cell_inputs",
    "cell_settings",
    "evaluation_run_id",
    "input_hashes",
    "pretraining_record",
    "run_dir_name",
]

PROTOCOL_SPLITS = {
    "linear": ("train", "val", "test"),
    "finetune": ("train", "val", "test"),
    "probe": ("train", "val", "test"),
    "feature_reuse": ("test",),
    "ks": (),
}
"""The splits each protocol reads images from (``ks`` reads only what finetune saved)."""

# the fields that do not change the numbers of a cell (paths and placement): left out of its fingerprint
_NOT_SETTINGS = ("dataset_dir", "output_dir", "pretrained_checkpoint", "device")
# fields a protocol does not use, so changing them does not re-run it
_TRAINING = ("linear_features", "linear_epochs", "batch_size", "max_epochs", "lr", "num_workers", "n_resamples")
# feature reuse and KS train nothing: they read what finetune wrote, whose content is part of their fingerprint
_READS_FINETUNE = (*_TRAINING, "ci_method", "amp")
_UNUSED_SETTINGS = {
    "linear": ("cka_kernel",),
    "finetune": ("cka_kernel", "linear_features", "linear_epochs"),
    "probe": ("cka_kernel", "linear_features", "max_epochs"),
    "feature_reuse": _READS_FINETUNE,
    "ks": (*_READS_FINETUNE, "backbone", "channels", "image_size", "cka_kernel"),
}


class _Cell(Protocol):
    protocol: str
    method: str
    seed: int
    pretrained_checkpoint: str | os.PathLike | None

    def cell_dir(self, protocol: str | None = None, label_fraction: float | None = None) -> Path: ...


def run_dir_name(method: str, seed: int, label_fraction: float) -> str:
    """The folder of one cell under ``<output_dir>/evaluation/<protocol>/``."""
    return f"{method}_seed{seed}_frac{label_fraction:g}"


def evaluation_run_id(dataset: str, protocol: str, method: str, seed: int, label_fraction: float) -> str:
    """The results-table ``run_id`` (and results file name) of one evaluation cell."""
    return f"{dataset}-{protocol}-{method}-seed{seed}-frac{label_fraction:g}"


def cell_data_identity(protocol: str, fields: Mapping[str, Any]) -> dict[str, Any] | None:
    """The :func:`~monai_ilm.data.identity.data_identity` of the splits ``protocol`` reads, or None for none.

    The splits are read as the cell reads them (the train split at its label fraction, the others whole,
    with the cell's ``datalist_options``); their images are only stat'ed.

    Args:
        protocol: the cell's protocol.
        fields: every field of the cell (``dataclasses.asdict`` of an ``EvaluationRun``).

    Raises:
        FileNotFoundError: naming ``dataset_dir`` when the data set is missing (from the readers).
    """
    from monai_ilm.data import load_datalist  # the data package imports the evaluation's users

    splits = PROTOCOL_SPLITS[protocol]
    if not splits:
        return None
    datalists = {
        split: load_datalist(
            fields["dataset_name"],
            fields["dataset_dir"],
            split,
            seed=fields["seed"],
            label_fraction=fields["label_fraction"] if split == "train" else 1.0,
            options=fields.get("datalist_options"),
        )
        for split in splits
    }
    return data_identity(datalists, tables=table_files(fields["dataset_dir"]))


def cell_settings(protocol: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The settings that change a cell's numbers: the fields ``protocol`` uses, but paths and the device,
    and the digest of the data it reads under ``data_identity`` (:func:`cell_data_identity`).

    Args:
        protocol: the cell's protocol, one of ``monai_ilm.results.PROTOCOLS``.
        fields: every field of the cell (``dataclasses.asdict`` of an ``EvaluationRun``).

    Raises:
        FileNotFoundError: naming ``dataset_dir`` when the data set the protocol reads is missing.
    """
    unused = (*_NOT_SETTINGS, *_UNUSED_SETTINGS[protocol])
    settings = {k: v for k, v in fields.items() if k not in unused}
    identity = cell_data_identity(protocol, fields)
    if identity is not None:
        settings["data_identity"] = identity["digest"]
    return settings


def cell_inputs(cell: _Cell) -> dict[str, Path]:
    """The files a cell's numbers are computed from, by role: the pretraining checkpoint, and what finetune wrote."""
    inputs = {}
    if cell.pretrained_checkpoint is not None:
        inputs["pretrained_checkpoint"] = Path(cell.pretrained_checkpoint)
    if cell.protocol == "feature_reuse":
        inputs["finetuned_model"] = cell.cell_dir("finetune") / "model.pt"
    if cell.protocol == "ks":
        inputs["predictions"] = cell.cell_dir("finetune") / "predictions.npz"
        inputs["predictions_full_labels"] = cell.cell_dir("finetune", 1.0) / "predictions.npz"
    return inputs


def input_hashes(inputs: Mapping[str, Path], method: str, seed: int) -> dict[str, str]:
    """``{role: sha256}`` of a cell's input files.

    Args:
        inputs: ``{role: path}`` from :func:`cell_inputs`.
        method: the cell's method, named in the error.
        seed: the cell's seed, named in the error.

    Raises:
        FileNotFoundError: when an input is missing; the message names the cell to run first.
    """
    hashes = {}
    for role, path in inputs.items():
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: expected the {role.replace('_', ' ')} of this cell; run the cell that writes it first "
                f"(pretraining for '{method}', or finetune for seed {seed})."
            )
        hashes[role] = file_sha256(path)
    return hashes


def pretraining_record(checkpoint: str | os.PathLike | None) -> dict | None:
    """The settings record the experiment runner keeps beside the pretraining run of ``checkpoint``, if any."""
    if checkpoint is None:
        return None
    record = Path(checkpoint).parent.parent / PRETRAINING_RECORD
    return json.loads(record.read_text(encoding="utf-8")) if record.is_file() else None
