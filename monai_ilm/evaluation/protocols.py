"""One evaluation cell of the paper's tables, runnable from a bundle config.

An :class:`EvaluationRun` is one (protocol, method, label fraction, seed) cell: it reads the data
set, builds the downstream model from a pretraining checkpoint (or at random for the supervised
baseline), trains and selects on validation, evaluates on test and appends its rows to the results
table ``<output_dir>/results``. The protocols and the tables they fill (paper_results.md):

=================  ==========================================================================
``linear``         Table 1: a linear head on the frozen encoder (BatchNorm frozen too), 100 %
``finetune``       Table 2: the whole encoder fine-tuned at 1 %, 6 %, 100 % of the labels
``probe``          Table 4: a linear probe on the pooled output of each block 1-4
``feature_reuse``  Table 3: CKA per block between the pretrained and the fine-tuned encoder
``ks``             Kolmogorov-Smirnov distance of test probabilities, fraction f vs 100 %
=================  ==========================================================================

``feature_reuse`` and ``ks`` read what ``finetune`` saved for the same method, seed and
fraction(s) (the fine-tuned weights and the test predictions), so every cell of a method sees the
same labelled subset, the same test rows in the same order, and no model is trained twice.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from monai_ilm.checks import check_bool, check_choice, check_int, check_real, checks_arguments
from monai_ilm.data import load_datalist
from monai_ilm.data.integrity import check_datalists
from monai_ilm.data.label_fractions import check_fraction
from monai_ilm.datasets import DATASETS
from monai_ilm.evaluation.cell_identity import (
    PROTOCOL_SPLITS,
    cell_inputs,
    cell_settings,
    evaluation_run_id,
    input_hashes,
    pretraining_record,
    run_dir_name,
)
from monai_ilm.evaluation.cka import KERNELS
from monai_ilm.evaluation.classifier import downstream_network
from monai_ilm.evaluation.downstream_rows import downstream_rows
from monai_ilm.evaluation.feature_reuse import feature_reuse, feature_reuse_from_features, feature_reuse_rows
from monai_ilm.evaluation.features import (
    _default_device,
    extract_stage_features,
    ids_digest,
    load_pretrained_encoder,
)
from monai_ilm.evaluation.ks import ks_distance, ks_rows
from monai_ilm.evaluation.prediction import DownstreamResult, run_downstream
from monai_ilm.evaluation.probing import probe_features, probe_rows
from monai_ilm.methods import METHODS
from monai_ilm.networks import resnet_encoder
from monai_ilm.provenance import code_version, fingerprint
from monai_ilm.results import PROTOCOLS, replicate_key, utc_now, write_results
from monai_ilm.results.embeddings import write_embeddings
from monai_ilm.statistics.intervals import METHODS as CI_METHODS
from monai_ilm.transforms import eval_transforms, finetune_transforms, get_preset
from monai_ilm.transforms.presets import IMAGE_CHECKS

__all__ = ["DATASET_TASKS", "EVALUATION_METHODS", "EvaluationRun", "evaluation_run_id", "run_dir_name"]

logger = logging.getLogger("monai_ilm.evaluation")

# data set -> (task preset of monai_ilm.evaluation.tasks, number of outputs)
DATASET_TASKS = {d.name: (d.task, d.num_classes) for d in DATASETS.values() if d.task is not None}
_PROTOCOL_SPLITS = PROTOCOL_SPLITS  # the splits each protocol reads images from (owned by cell_identity)
# data sets whose per-class metric gets a row per class, with the class names
# what the ``linear`` head trains on (docs/method.md D23)
LINEAR_FEATURES = ("cached", "augmented")
DATASET_CLASS_NAMES = {d.name: d.classes for d in DATASETS.values() if d.class_names is not None}
EVALUATION_METHODS = (*METHODS, "supervised")  # "supervised": no pretraining, the baseline of Tables 1-2


@checks_arguments(
    protocol=partial(check_choice, allowed=PROTOCOLS),
    dataset_name=partial(check_choice, allowed=tuple(DATASET_TASKS)),
    method=partial(check_choice, allowed=EVALUATION_METHODS),
    label_fraction=check_fraction,
    batch_size=check_int,
    max_epochs=check_int,
    lr=partial(check_real, low=0.0, low_open=True),
    n_resamples=partial(check_int, minimum=0),
    ci_method=partial(check_choice, allowed=CI_METHODS),
    cka_kernel=partial(check_choice, allowed=KERNELS),
    amp=check_bool,
    standardize_features=check_bool,
    linear_features=partial(check_choice, allowed=LINEAR_FEATURES),
    linear_epochs=check_int,
    **IMAGE_CHECKS,
)
@dataclass
class EvaluationRun:
    """One evaluation cell; ``run()`` computes it and appends its rows to the results table.

    Args:
        protocol: one of :data:`monai_ilm.results.schema.PROTOCOLS` (the results table owns the names).
        dataset_name: ``"nih"``, ``"dr"`` or ``"idc"`` (also the transform preset).
        dataset_dir: the data set as published.
        output_dir: the bundle's output folder: pretraining runs under ``pretrain/``, cells under
            ``evaluation/``, the results table in ``results/``.
        method: pretraining method (``moco``, ``mse``, ``barlow``) or ``supervised`` (random init).
        pretrained_checkpoint: the pretraining checkpoint (None: random initialisation).
        seed: seed of the split, the label subset, the initialisation and the bootstrap.
        label_fraction: fraction of the training labels, in (0, 1].
        backbone, channels, image_size: the encoder and input, as in pretraining.
        batch_size, max_epochs, lr: downstream training (the reference: 16, 100, Adam 1e-3).
        num_workers: data-loading workers.
        n_resamples, ci_method: bootstrap intervals (``"percentile"``, or the paper's ``"standard_error"``).
        cka_kernel: ``"linear"``, ``"linear_debiased"`` or ``"rbf"`` (feature reuse).
        device: where to run (default: CUDA when available).
        amp: mixed precision for the ``linear`` and ``finetune`` training (MONAI's ``amp``: float16
            autocast with a gradient scaler, CUDA only); features for probing and CKA, and the test
            predictions, stay float32.
        datalist_options: reader options for every :func:`~monai_ilm.data.load_datalist` call of the cell
            (the bundles pass ``@datalist_options``, the options of pretraining, so both read the same
            splits); None uses the readers' defaults.
        standardize_features: the linear head of ``linear``, ``finetune`` and ``probe`` standardises the
            pooled features with frozen training statistics and starts at the training prevalence (default);
            false gives the reference's raw ``nn.Linear`` with PyTorch's initialisation (docs/method.md D22).
        linear_features: what the ``linear`` head trains on: ``"cached"`` (default) block-4 features of the
            un-augmented training images, extracted once with the evaluation transforms and trained by the probe's
            code path (:func:`~monai_ilm.evaluation.probing.probe_features`), or ``"augmented"``, the reference's
            new training augmentation every epoch through the frozen encoder (docs/method.md D23).
        linear_epochs: epochs of the ``"cached"`` linear head (cheap: no encoder pass per epoch; 100 converges
            where the quick settings' few ``max_epochs`` did not). ``"augmented"`` trains ``max_epochs``.
        volume: a 3D data set's volume settings (orientation, spacing, intensity; see
            :func:`monai_ilm.transforms.volumes.check_volume_options`), as in pretraining; None: the defaults.
            A 3D data set (its preset's ``spatial_dims``) gets MONAI's 3D ``ResNetFeatures`` as ``backbone``.

    Raises:
        ValueError: for an argument its declared check refuses (an unknown protocol, data set or method, a
            label fraction outside (0, 1], a non-positive size, epoch count or learning rate...), naming it.
        FileNotFoundError: when a checkpoint or a finetune output the protocol needs is missing.
    """

    protocol: str
    dataset_name: str
    dataset_dir: str
    output_dir: str
    method: str
    pretrained_checkpoint: str | None = None
    seed: int = 0
    label_fraction: float = 1.0
    backbone: str = "resnet50"
    channels: int = 3
    image_size: int | None = None
    batch_size: int = 16
    max_epochs: int = 100
    lr: float = 1e-3
    num_workers: int = 0
    n_resamples: int = 1000
    ci_method: str = "percentile"
    cka_kernel: str = "linear"
    device: Any = None
    amp: bool = False
    datalist_options: dict | None = None
    standardize_features: bool = True
    volume: dict | None = None
    linear_features: str = "cached"
    linear_epochs: int = 100

    def __post_init__(self) -> None:
        if self.pretrained_checkpoint is not None and not Path(self.pretrained_checkpoint).is_file():
            raise FileNotFoundError(
                f"pretrained_checkpoint: {self.pretrained_checkpoint} does not exist; pretrain '{self.method}' first."
            )
        self.device = _default_device(self.device)

    # ------------------------------------------------------------------ paths and identifiers
    @property
    def task(self) -> str:
        return DATASET_TASKS[self.dataset_name][0]

    @property
    def num_classes(self) -> int:
        return DATASET_TASKS[self.dataset_name][1]

    @property
    def spatial_dims(self) -> int:
        """2 for images, 3 for volumes: the data set's preset's."""
        return get_preset(self.dataset_name).spatial_dims

    @property
    def run_id(self) -> str:
        return evaluation_run_id(self.dataset_name, self.protocol, self.method, self.seed, self.label_fraction)

    def settings(self) -> dict[str, Any]:
        """The settings that change this cell's numbers: the fields its protocol uses, but paths and the device."""
        return cell_settings(self.protocol, asdict(self))

    def input_files(self) -> dict[str, Path]:
        """The files this cell's numbers are computed from, by role (they must exist to fingerprint it)."""
        return cell_inputs(self)

    def input_hashes(self) -> dict[str, str]:
        """``{role: sha256}`` of :meth:`input_files` (a missing file names the cell to run first)."""
        return input_hashes(self.input_files(), self.method, self.seed)

    def fingerprint(self) -> str:
        """The fingerprint of this cell: its settings and the content of its inputs (see monai_ilm.provenance)."""
        return fingerprint(self.settings(), self.input_hashes())

    def cell_dir(self, protocol: str | None = None, label_fraction: float | None = None) -> Path:
        fraction = self.label_fraction if label_fraction is None else label_fraction
        name = run_dir_name(self.method, self.seed, fraction)
        return Path(self.output_dir) / "evaluation" / (protocol or self.protocol) / name

    # ------------------------------------------------------------------ data
    def loader(self, split: str, train: bool = False) -> DataLoader:
        fraction = self.label_fraction if split == "train" else 1.0
        data = load_datalist(
            self.dataset_name,
            self.dataset_dir,
            split,
            seed=self.seed,
            label_fraction=fraction,
            options=self.datalist_options,
        )
        make = finetune_transforms if train else eval_transforms
        transform = make(self.dataset_name, image_size=self.image_size, channels=self.channels, volume=self.volume)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(
            Dataset(data, transform),
            batch_size=self.batch_size,
            shuffle=train,
            num_workers=self.num_workers,
            generator=generator,
        )

    def encoder(self, checkpoint: str | os.PathLike | None, prefix: str = "encoder_q.") -> torch.nn.Module:
        encoder = resnet_encoder(self.backbone, self.spatial_dims, self.channels)
        return load_pretrained_encoder(checkpoint, encoder, prefix=prefix)

    def check_data(self) -> None:
        """Stop before any training when a split the protocol reads is empty or holds unreadable images.

        The splits are read with the options of :meth:`loader`; ``skip_unreadable`` among the
        ``datalist_options`` lets the readers drop unreadable images instead.

        Raises:
            ValueError: naming an empty split.
            UnreadableImageError: listing the unreadable images (see
                :func:`monai_ilm.data.integrity.check_datalists`).
        """
        options = self.datalist_options or {}
        datalists = {
            split: load_datalist(
                self.dataset_name,
                self.dataset_dir,
                split,
                seed=self.seed,
                label_fraction=self.label_fraction if split == "train" else 1.0,
                options=options,
            )
            for split in _PROTOCOL_SPLITS[self.protocol]
        }
        check_datalists(
            datalists,
            batch_size=self.batch_size,
            drop_last=False,
            num_workers=self.num_workers,
            skip_unreadable=bool(options.get("skip_unreadable", False)),
        )

    # ------------------------------------------------------------------ protocols
    def run(self) -> Path:
        """Compute the cell and append its rows; returns the results file written."""
        started = time.perf_counter()
        self.check_data()
        inputs = self.input_hashes()
        cell_fingerprint = fingerprint(self.settings(), inputs)
        torch.manual_seed(self.seed)
        self._scored: dict[int | None, DownstreamResult] = {}
        rows = getattr(self, f"_run_{self.protocol}")()
        metadata = {
            "fingerprint": cell_fingerprint,
            "settings": self.settings(),
            "inputs": {role: {"path": str(path), "sha256": inputs[role]} for role, path in self.input_files().items()},
            "pretraining": pretraining_record(self.pretrained_checkpoint),
            "host": socket.gethostname(),
            "code_version": code_version(),
            "device": str(self.device),
            "dataset_dir": str(self.dataset_dir),  # provenance only (not in the fingerprint): sample data shows here
            "seed": self.seed,
            "seconds": round(time.perf_counter() - started, 2),
        }
        common = {
            "run_id": self.run_id,
            "checkpoint": str(self.pretrained_checkpoint or ""),
            "config_hash": cell_fingerprint,
            "timestamp": utc_now(),
        }
        rows = [{**row, **common} for row in rows]
        path = write_results(
            Path(self.output_dir) / "results", rows, metadata, overwrite=True, replicates=self._replicates()
        )
        logger.info("%s: %d rows in %.1f s -> %s", self.run_id, len(rows), metadata["seconds"], path)
        return path

    def _replicates(self) -> dict[str, Any]:
        """Bootstrap replicates of the scored rows, for seed aggregation and paired differences."""
        out: dict[str, Any] = {}
        for block, result in self._scored.items():
            if result.ci is not None and getattr(result.ci, "replicates", None) is not None:
                out[replicate_key(result.metric, block)] = result.ci.replicates
                out["test_ids_sha256"] = ids_digest(result.ids)  # None (left out) without ids from the data
        return out

    def _head(self) -> dict[str, Any]:
        """The linear head's settings: standardised with the prevalence start, or the reference's raw head."""
        return {
            "standardize": self.standardize_features,
            "head_init": "prior" if self.standardize_features else "default",
        }

    def _columns(self) -> dict[str, Any]:
        return {"dataset": self.dataset_name, "method": self.method, "seed": self.seed, "run_id": self.run_id}

    def _downstream(self, freeze_encoder: bool) -> list[dict]:
        network = downstream_network(
            self.pretrained_checkpoint,
            self.num_classes,
            freeze_encoder=freeze_encoder,
            encoder_name=self.backbone,
            in_channels=self.channels,
            spatial_dims=self.spatial_dims,
            seed=self.seed,
            standardize_features=self._head()["standardize"],
            head_init=self._head()["head_init"],
        )
        cell = self.cell_dir()
        result = run_downstream(
            network,
            self.loader("train", train=True),
            self.loader("val"),
            self.loader("test"),
            self.task,
            max_epochs=self.max_epochs,
            lr=self.lr,
            device=self.device,
            seed=self.seed,
            ckpt_dir=cell,
            n_resamples=self.n_resamples,
            ci_method=self.ci_method,
            amp=self.amp,
        )
        self._save_predictions(result)
        self._scored[None] = result
        return downstream_rows(
            result, self.protocol, label_fraction=self.label_fraction, **self._per_class(), **self._columns()
        )

    def _per_class(self) -> dict[str, Any]:
        """Per-finding rows beside the mean where the data set has named classes (NIH's 14 findings)."""
        names = DATASET_CLASS_NAMES.get(self.dataset_name)
        return {"per_class_rows": names is not None, "class_names": names}

    def _run_linear(self) -> list[dict]:
        """The frozen encoder's linear evaluation: by default on cached un-augmented features (D23)."""
        if self.linear_features == "augmented":
            return self._downstream(freeze_encoder=True)
        encoder = self.encoder(self.pretrained_checkpoint)
        train, val, test = (
            extract_stage_features(
                encoder, self.loader(split), blocks=(4,), device=self.device, require_order=split != "train"
            )
            for split in ("train", "val", "test")
        )
        result = self._probe(train, val, test, max_epochs=self.linear_epochs)[4]
        self._save_predictions(result)
        self._scored[None] = result
        return downstream_rows(
            result, self.protocol, label_fraction=self.label_fraction, **self._per_class(), **self._columns()
        )

    def _probe(self, train: Any, val: Any, test: Any, max_epochs: int) -> dict[int, DownstreamResult]:
        """The cell's linear heads on cached features, one per extracted block (the probe's code path)."""
        return probe_features(
            train,
            val,
            test,
            self.task,
            device=self.device,
            seed=self.seed,
            max_epochs=max_epochs,
            lr=self.lr,
            batch_size=self.batch_size,
            n_resamples=self.n_resamples,
            ci_method=self.ci_method,
            **self._head(),
        )

    def _save_predictions(self, result: DownstreamResult) -> None:
        cell = self.cell_dir()
        cell.mkdir(parents=True, exist_ok=True)
        np.savez(
            cell / "predictions.npz",
            probabilities=result.probabilities,
            labels=result.labels,
            ids=np.asarray(result.ids, dtype=str),
        )

    def _run_finetune(self) -> list[dict]:
        return self._downstream(freeze_encoder=False)

    def _run_probe(self) -> list[dict]:
        """Linear probes of blocks 1-4 trained with ``lr``, ``batch_size`` and ``linear_epochs``.

        They train on features cached once from un-augmented images, as the default ``linear`` does and for as
        many epochs: a cached head is cheap per epoch, and the quick settings' few ``max_epochs`` (meant for
        fine-tuning through the encoder) stopped the probe before it converged (D23 in ``docs/method.md``).
        See :mod:`monai_ilm.evaluation.probing`.
        """
        # the features of every split are extracted once; the test split's block 4 also feeds the dashboard's
        # embedding explorer
        encoder = self.encoder(self.pretrained_checkpoint)
        train, val, test = (
            extract_stage_features(
                encoder,
                self.loader(split),
                device=self.device,
                require_order=split != "train",
                keep_pictures=split == "test",
            )
            for split in ("train", "val", "test")
        )
        results = self._probe(train, val, test, max_epochs=self.linear_epochs)
        self._scored.update(results)
        write_embeddings(
            Path(self.output_dir) / "results",
            self.run_id,
            test.block(4),
            test.ids,
            labels=test.labels,
            class_names=self._per_class()["class_names"],
            method=self.method,
            block=4,
            pictures=test.pictures,
        )
        return probe_rows(results, label_fraction=self.label_fraction, **self._columns())

    def _finetune_output(self, name: str, label_fraction: float | None = None) -> Path:
        path = self.cell_dir("finetune", label_fraction) / name
        if not path.is_file():
            fraction = self.label_fraction if label_fraction is None else label_fraction
            raise FileNotFoundError(
                f"{path} does not exist: run the finetune protocol for method '{self.method}', seed {self.seed}, "
                f"label_fraction {fraction:g} first."
            )
        return path

    def _run_feature_reuse(self) -> list[dict]:
        before = self.encoder(self.pretrained_checkpoint)
        after = self.encoder(self._finetune_output("model.pt"), prefix="encoder.")
        # linear CKA always (Table 3 and the dashboard's default), plus the configured kernel; each with its
        # block x block matrix, from one pass over the test set
        result = feature_reuse(
            before,
            after,
            self.loader("test"),
            kernel="linear",
            matrix=True,
            keep_features=self.cka_kernel != "linear",
            device=self.device,
            seed=self.seed,
        )
        results = [result]
        if self.cka_kernel != "linear":
            results.append(
                feature_reuse_from_features(
                    result.before, result.after, kernel=self.cka_kernel, matrix=True, seed=self.seed
                )
            )
        return [
            row for r in results for row in feature_reuse_rows(r, label_fraction=self.label_fraction, **self._columns())
        ]

    def _run_ks(self) -> list[dict]:
        low = np.load(self._finetune_output("predictions.npz"))
        full = np.load(self._finetune_output("predictions.npz", label_fraction=1.0))
        result = ks_distance(
            low["probabilities"],
            full["probabilities"],
            binary=self.num_classes == 2 and self.task != "multilabel",
            ids_a=low["ids"],
            ids_b=full["ids"],
        )
        return ks_rows(result, n=len(low["ids"]), label_fraction=self.label_fraction, **self._columns())
