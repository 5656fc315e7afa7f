"""Online weighted-kNN evaluation of the query encoder during pretraining."""

from __future__ import annotations

import contextlib
import logging
import math
import random
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import ClassVar

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.data import CacheDataset
from torch import nn
from torch.utils.data import DataLoader

from monai_ilm.checks import check_int, check_real, checks_arguments
from monai_ilm.datasets import DATASETS
from monai_ilm.engines.utils import autocast_context, channels_last_format
from monai_ilm.evaluation.knn import UndefinedScoreError, WeightedKNNScore
from monai_ilm.handlers.utils import attach_once
from monai_ilm.utils import unwrap_network

__all__ = ["OnlineKNNHandler", "knn_metric_for", "preserved_state"]


def knn_metric_for(dataset_name: str) -> str:
    """The paper's test metric of a data set, as an :class:`OnlineKNNHandler` ``metric``: F1 for IDC, else AUC.

    The data set's evaluation task (:data:`monai_ilm.datasets.DATASETS`) says which.
    """
    dataset = DATASETS.get(dataset_name)
    return "f1" if dataset is not None and dataset.task == "f1" else "auc"


@contextlib.contextmanager
def preserved_state(modules: Sequence[nn.Module]) -> Iterator[None]:
    """Run a block with every random generator and the modules' train/eval modes put back afterwards.

    A ``DataLoader`` draws its base seed from torch's global generator even with ``num_workers=0``, which
    would shift every later augmentation of the run; the CPU and CUDA generators, numpy's and Python's are
    saved and restored, so the pretraining continues exactly as without the block.
    """
    torch_state, numpy_state, python_state = torch.get_rng_state(), np.random.get_state(), random.getstate()
    cuda_state = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    modes = [(m, m.training) for module in modules for m in module.modules()]
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training  # per module: Module.train() would overwrite modes that differ inside
        torch.set_rng_state(torch_state)
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state_all(cuda_state)


def _subsample(data: Sequence, size: int, seed: int) -> list:
    """At most ``size`` items of ``data``, drawn once with a private generator (the global ones stay untouched)."""
    if size >= len(data):
        return list(data)
    keep = np.sort(np.random.default_rng(seed).choice(len(data), size=size, replace=False))
    return [data[i] for i in keep]


@checks_arguments(
    interval=partial(check_int, minimum=0),
    bank_size=check_int,
    val_size=check_int,
    batch_size=check_int,
    cache_rate=partial(check_real, low=0.0, high=1.0),
)
class OnlineKNNHandler:
    """Scores the query encoder with a weighted kNN on labelled data every ``interval`` epochs.

    solo-learn and lightly follow self-supervised pretraining with an online kNN accuracy; this is
    that check for monai-ilm's medical data sets. On ``EPOCH_COMPLETED`` (every ``interval`` epochs and
    after the last one) the query encoder, in eval mode and without gradients, embeds a labelled bank
    drawn from the training split and a sample of the validation split (pooled features of the last
    stage, deterministic transforms) into a :class:`~monai_ilm.evaluation.knn.WeightedKNNScore` metric
    (k = 20, T = 0.07), and the data set's test metric it computes is written to
    ``engine.state.metrics["knn/val_<metric>"]``, where ``StatsHandler`` prints it and ``TensorBoardStatsHandler``
    writes it under the same tag. Attach it before those handlers. The handler schedules and embeds; the score
    is the metric's (see there for ``"auc"`` and ``"f1"``). An undefined metric (one class in the sample) is
    logged as NaN.

    MoCo's state is left alone: only the query encoder runs, in eval mode (BatchNorm statistics are read,
    not updated), the queue and the key encoder are never touched, each module's train/eval mode and every
    random generator are restored afterwards, so a resumed run stays bitwise equal to an uninterrupted one.
    The bank and validation samples are drawn once (``seed``) and their images loaded lazily on the first
    evaluation, so a rank that never evaluates (``rank_zero_only``) never loads them.

    Args:
        train_data: the labelled training datalist (dicts with ``image_key`` and ``label_key``).
        val_data: the labelled validation datalist.
        transform: a deterministic transform to ``{image_key: tensor, label_key: tensor}``, e.g.
            :func:`~monai_ilm.transforms.eval_transforms`.
        metric: ``"auc"`` or ``"f1"`` (:func:`knn_metric_for` picks the paper's).
        interval: evaluate every this many epochs (and after the last epoch); 0 switches the handler off.
        bank_size: at most this many training images form the bank.
        val_size: at most this many validation images are scored.
        k: neighbours. temperature: of the vote weights.
        batch_size, num_workers: of the embedding loader.
        cache_rate: share of the sampled images kept in memory after their first loading (MONAI ``CacheDataset``).
        seed: of the bank and validation samples.
        image_key, label_key: the datalist keys.

    Raises:
        ValueError: for an unknown ``metric``, a non-positive size or ``k``, or a non-positive ``temperature``.
    """

    rank_zero_only: ClassVar[bool] = True  # a monitor: it reads the run without taking part in collectives

    def __init__(
        self,
        train_data: Sequence[dict],
        val_data: Sequence[dict],
        transform: Callable,
        metric: str = "auc",
        interval: int = 1,
        bank_size: int = 2048,
        val_size: int = 512,
        k: int = 20,
        temperature: float = 0.07,
        batch_size: int = 64,
        num_workers: int = 0,
        cache_rate: float = 1.0,
        seed: int = 0,
        image_key: str = "image",
        label_key: str = "label",
    ) -> None:
        self.score = WeightedKNNScore(metric, k, temperature)
        self.train_data = _subsample(train_data, bank_size, seed)
        self.val_data = _subsample(val_data, val_size, seed + 1)
        self.transform, self.metric, self.interval = transform, metric, interval
        self.batch_size, self.num_workers, self.cache_rate = batch_size, num_workers, cache_rate
        self.image_key, self.label_key = image_key, label_key
        self.tag = f"knn/val_{metric}"
        self._datasets: tuple[CacheDataset, CacheDataset] | None = None
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        if self.interval > 0:
            attach_once(engine, Events.EPOCH_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        if engine.state.epoch % self.interval and engine.state.epoch != engine.state.max_epochs:
            return
        network = unwrap_network(engine.network)
        encoder = getattr(network, "encoder_q", network)
        with preserved_state([network]):
            encoder.eval()
            value = self.evaluate(engine, encoder)
        engine.state.metrics[self.tag] = value

    def _loaders(self) -> tuple[DataLoader, DataLoader]:
        if self._datasets is None:
            self._datasets = tuple(  # type: ignore[assignment]
                CacheDataset(data, self.transform, cache_rate=self.cache_rate, num_workers=None, progress=False)
                for data in (self.train_data, self.val_data)
            )
        return tuple(  # type: ignore[return-value]
            DataLoader(ds, batch_size=self.batch_size, shuffle=False, num_workers=self.num_workers)
            for ds in self._datasets
        )

    @torch.no_grad()
    def embed(
        self, engine: Engine, encoder: nn.Module, loader: DataLoader
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Pooled float32 features and labels of each batch of ``loader``, on the engine's device."""
        device = engine.state.device
        for batch in loader:
            image = batch[self.image_key]
            image = image.as_tensor() if hasattr(image, "as_tensor") else image
            layout = channels_last_format(image.ndim) if getattr(engine, "channels_last", False) else None
            image = image.to(device, memory_format=layout or torch.preserve_format)
            with autocast_context(engine) if hasattr(engine, "amp") else contextlib.nullcontext():
                features = encoder(image).float()
            yield features, torch.as_tensor(batch[self.label_key]).to(device)

    def evaluate(self, engine: Engine, encoder: nn.Module) -> float:
        """Embed the bank and the validation sample into the kNN metric and compute it; NaN when it is undefined."""
        bank_loader, val_loader = self._loaders()
        self.score.reset()
        for features, labels in self.embed(engine, encoder, bank_loader):
            self.score.update(bank=features, bank_labels=labels)
        for features, labels in self.embed(engine, encoder, val_loader):
            self.score.update(queries=features, labels=labels)
        try:
            return self.score.compute()
        except UndefinedScoreError as error:  # a single class in the sample: the metric is undefined this time
            self.logger.warning("OnlineKNNHandler: %s is undefined (%s); logged as NaN.", self.tag, error)
            return math.nan
        finally:
            self.score.reset()  # the features are not kept between evaluations
