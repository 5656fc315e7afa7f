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
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.data import DataLoader, Dataset

from monai_ilm.data import load_datalist
from monai_ilm.evaluation.downstream import downstream_network, downstream_rows, run_downstream
from monai_ilm.evaluation.feature_reuse import feature_reuse, feature_reuse_rows
from monai_ilm.evaluation.features import _default_device, load_pretrained_encoder
from monai_ilm.evaluation.ks import ks_distance
from monai_ilm.evaluation.probing import probe_blocks, probe_rows
from monai_ilm.networks import resnet_encoder
from monai_ilm.results import config_hash, make_row, utc_now, write_results
from monai_ilm.transforms import eval_transforms, finetune_transforms

__all__ = ["DATASET_TASKS", "EVALUATION_PROTOCOLS", "EvaluationRun", "run_dir_name"]

logger = logging.getLogger("monai_ilm.evaluation")

EVALUATION_PROTOCOLS = ("linear", "finetune", "probe", "feature_reuse", "ks")
# data set -> (task preset of monai_ilm.evaluation.downstream, number of outputs)
DATASET_TASKS = {"nih": ("multilabel", 14), "dr": ("binary_auc", 2), "idc": ("f1", 2)}


def run_dir_name(method: str, seed: int, label_fraction: float) -> str:
    """The folder of one cell under ``<output_dir>/evaluation/<protocol>/``."""
    return f"{method}_seed{seed}_frac{label_fraction:g}"


@dataclass
class EvaluationRun:
    """One evaluation cell; ``run()`` computes it and appends its rows to the results table.

    Args:
        protocol: one of :data:`EVALUATION_PROTOCOLS`.
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

    Raises:
        ValueError: for an unknown protocol or data set, or a label fraction outside (0, 1].
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

    def __post_init__(self) -> None:
        if self.protocol not in EVALUATION_PROTOCOLS:
            raise ValueError(f"protocol: expected one of {list(EVALUATION_PROTOCOLS)}, got {self.protocol!r}.")
        if self.dataset_name not in DATASET_TASKS:
            raise ValueError(f"dataset_name: expected one of {list(DATASET_TASKS)}, got {self.dataset_name!r}.")
        if not 0.0 < float(self.label_fraction) <= 1.0:
            raise ValueError(f"label_fraction: expected a value in (0, 1], got {self.label_fraction}.")
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
    def run_id(self) -> str:
        return f"{self.dataset_name}-{self.protocol}-{self.method}-seed{self.seed}-frac{self.label_fraction:g}"

    def cell_dir(self, protocol: str | None = None, label_fraction: float | None = None) -> Path:
        fraction = self.label_fraction if label_fraction is None else label_fraction
        name = run_dir_name(self.method, self.seed, fraction)
        return Path(self.output_dir) / "evaluation" / (protocol or self.protocol) / name

    # ------------------------------------------------------------------ data
    def loader(self, split: str, train: bool = False) -> DataLoader:
        fraction = self.label_fraction if split == "train" else 1.0
        data = load_datalist(self.dataset_name, self.dataset_dir, split, seed=self.seed, label_fraction=fraction)
        make = finetune_transforms if train else eval_transforms
        transform = make(self.dataset_name, image_size=self.image_size, channels=self.channels)
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(Dataset(data, transform), batch_size=self.batch_size, shuffle=train,
                          num_workers=self.num_workers, generator=generator)  # fmt: skip

    def encoder(self, checkpoint: str | os.PathLike | None, prefix: str = "encoder_q.") -> torch.nn.Module:
        encoder = resnet_encoder(self.backbone, in_channels=self.channels)
        return load_pretrained_encoder(checkpoint, encoder, prefix=prefix)

    # ------------------------------------------------------------------ protocols
    def run(self) -> Path:
        """Compute the cell and append its rows; returns the results file written."""
        started = time.perf_counter()
        torch.manual_seed(self.seed)
        rows = getattr(self, f"_run_{self.protocol}")()
        metadata = {
            "config": {k: str(v) if isinstance(v, torch.device) else v for k, v in asdict(self).items()},
            "checkpoint": self.pretrained_checkpoint,
            "seed": self.seed,
            "seconds": round(time.perf_counter() - started, 2),
        }
        common = {"run_id": self.run_id, "checkpoint": str(self.pretrained_checkpoint or ""),
                  "config_hash": config_hash(metadata["config"]), "timestamp": utc_now()}  # fmt: skip
        rows = [{**row, **common} for row in rows]
        path = write_results(Path(self.output_dir) / "results", rows, metadata, overwrite=True)
        logger.info("%s: %d rows in %.1f s -> %s", self.run_id, len(rows), metadata["seconds"], path)
        return path

    def _columns(self) -> dict[str, Any]:
        return {"dataset": self.dataset_name, "method": self.method, "seed": self.seed, "run_id": self.run_id}

    def _downstream(self, freeze_encoder: bool) -> list[dict]:
        network = downstream_network(self.pretrained_checkpoint, self.num_classes, freeze_encoder=freeze_encoder,
                                     encoder_name=self.backbone, in_channels=self.channels, seed=self.seed)  # fmt: skip
        cell = self.cell_dir()
        result = run_downstream(network, self.loader("train", train=True), self.loader("val"), self.loader("test"),
                                self.task, max_epochs=self.max_epochs, lr=self.lr, device=self.device, seed=self.seed,
                                ckpt_dir=cell, n_resamples=self.n_resamples, ci_method=self.ci_method,
                                amp=self.amp)  # fmt: skip
        np.savez(cell / "predictions.npz", probabilities=result.probabilities, labels=result.labels,
                 ids=np.asarray(result.ids, dtype=str))  # fmt: skip
        return downstream_rows(result, self.protocol, label_fraction=self.label_fraction, **self._columns())

    def _run_linear(self) -> list[dict]:
        return self._downstream(freeze_encoder=True)

    def _run_finetune(self) -> list[dict]:
        return self._downstream(freeze_encoder=False)

    def _run_probe(self) -> list[dict]:
        results = probe_blocks(self.encoder(self.pretrained_checkpoint), self.loader("train"), self.loader("val"),
                               self.loader("test"), self.task, device=self.device, seed=self.seed,
                               max_epochs=self.max_epochs, n_resamples=self.n_resamples,
                               ci_method=self.ci_method)  # fmt: skip
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
        result = feature_reuse(before, after, self.loader("test"), kernel=self.cka_kernel, device=self.device,
                               seed=self.seed)  # fmt: skip
        return feature_reuse_rows(result, label_fraction=self.label_fraction, **self._columns())

    def _run_ks(self) -> list[dict]:
        low = np.load(self._finetune_output("predictions.npz"))
        full = np.load(self._finetune_output("predictions.npz", label_fraction=1.0))
        if not np.array_equal(low["ids"], full["ids"]):
            raise ValueError("ks: the two fine-tuned models were evaluated on different test rows.")
        result = ks_distance(low["probabilities"], full["probabilities"], binary=self.num_classes == 2
                             and self.task != "multilabel")  # fmt: skip
        row = make_row(protocol="ks", label_fraction=self.label_fraction, metric="ks_vs_100",
                       value=float(result.mean_statistic), n=int(len(low["ids"])), **self._columns())  # fmt: skip
        return [row]
