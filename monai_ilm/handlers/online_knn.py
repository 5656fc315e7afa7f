"""Online weighted-kNN evaluation of the query encoder during pretraining."""

from __future__ import annotations

import contextlib
import logging
import math
import random
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.data import CacheDataset
from torch import nn
from torch.utils.data import DataLoader

from monai_ilm.datasets import DATASETS
from monai_ilm.engines.utils import autocast_context, channels_last_format
from monai_ilm.evaluation.metrics import binary_auc, f1, mean_auc
from monai_ilm.utils import unwrap_network

__all__ = ["KNN_METRICS", "OnlineKNNHandler", "knn_metric_for", "preserved_state", "weighted_knn_scores"]

KNN_METRICS = ("auc", "f1")
"""``"auc"``: mean ROC-AUC over findings (multi-label) or ROC-AUC of class 1 (binary); ``"f1"``: macro F1."""


def knn_metric_for(dataset_name: str) -> str:
    """The paper's test metric of a data set, as an :class:`OnlineKNNHandler` ``metric``: F1 for IDC, else AUC.

    The data set's evaluation task (:data:`monai_ilm.datasets.DATASETS`) says which.
    """
    dataset = DATASETS.get(dataset_name)
    return "f1" if dataset is not None and dataset.task == "f1" else "auc"


def weighted_knn_scores(
    bank: torch.Tensor, bank_labels: torch.Tensor, queries: torch.Tensor, k: int = 20, temperature: float = 0.07
) -> torch.Tensor:
    """Class scores of a weighted kNN vote (Wu et al., CVPR 2018, InstDisc; as solo-learn's online kNN).

    Features are L2-normalised; each query's ``k`` most cosine-similar bank rows vote with weight
    ``exp(similarity / temperature)``. The scores are the weighted votes per class normalised by the
    total weight, i.e. scikit-learn's ``KNeighborsClassifier(metric="cosine").predict_proba`` with
    ``weights=lambda d: exp((1 - d) / temperature)``. For multi-label (multi-hot) labels each finding
    is voted on separately: its score is the weighted share of neighbours that have it.

    Args:
        bank: ``(n_bank, d)`` features of the labelled bank.
        bank_labels: ``(n_bank,)`` integer classes, or ``(n_bank, n_findings)`` multi-hot labels.
        queries: ``(n, d)`` features to score.
        k: neighbours (capped at ``n_bank``).
        temperature: of the exponential weights.

    Returns:
        ``(n, n_classes)`` float32 scores in [0, 1]; each row sums to 1 for integer classes.

    Raises:
        ValueError: when the shapes do not match.
    """
    if bank.ndim != 2 or queries.ndim != 2 or bank.shape[1] != queries.shape[1] or len(bank_labels) != len(bank):
        raise ValueError(
            f"bank, bank_labels, queries: expected (n_bank, d), (n_bank, ...) and (n, d), got {tuple(bank.shape)}, "
            f"{tuple(bank_labels.shape)} and {tuple(queries.shape)}."
        )
    bank = F.normalize(bank.float(), dim=1)
    queries = F.normalize(queries.float().to(bank.device), dim=1)
    similarity, index = (queries @ bank.t()).topk(min(k, len(bank)), dim=1)
    # subtracting each row's largest similarity before exp leaves the normalised scores unchanged and cannot overflow
    weights = torch.exp((similarity - similarity[:, :1]) / temperature)
    labels = bank_labels.to(bank.device)
    votes = labels.float() if labels.ndim == 2 else F.one_hot(labels.long(), int(labels.max()) + 1).float()
    if labels.ndim == 1:
        votes = F.pad(votes, (0, max(0, 2 - votes.shape[1])))  # binary tasks keep two columns
    scores = torch.einsum("nk,nkc->nc", weights, votes[index])
    return scores / weights.sum(dim=1, keepdim=True)


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


class OnlineKNNHandler:
    """Scores the query encoder with a weighted kNN on labelled data every ``interval`` epochs.

    solo-learn and lightly follow self-supervised pretraining with an online kNN accuracy; this is
    that check for monai-ilm's medical data sets. On ``EPOCH_COMPLETED`` (every ``interval`` epochs and
    after the last one) the query encoder, in eval mode and without gradients, embeds a labelled bank
    drawn from the training split and a sample of the validation split (pooled features of the last
    stage, deterministic transforms); :func:`weighted_knn_scores` (k = 20, T = 0.07) scores the
    validation images and the data set's test metric is written to ``engine.state.metrics["knn/val_<metric>"]``,
    where ``StatsHandler`` prints it and ``TensorBoardStatsHandler`` writes it under the same tag. Attach it
    before those handlers.

    ``metric="auc"`` is the mean ROC-AUC over the findings present in the validation sample for multi-hot
    labels (NIH, :func:`~monai_ilm.evaluation.mean_auc`) and the ROC-AUC of class 1 for binary labels (DR,
    :func:`~monai_ilm.evaluation.binary_auc`); ``"f1"`` is the macro F1 of the argmax (IDC,
    :func:`~monai_ilm.evaluation.f1`). An undefined metric (one class in the sample) is logged as NaN.

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
        metric: ``"auc"`` or ``"f1"`` (see above; :func:`knn_metric_for` picks the paper's).
        interval: evaluate every this many epochs (and after the last epoch); 0 switches the handler off.
        bank_size: at most this many training images form the bank.
        val_size: at most this many validation images are scored.
        k: neighbours. temperature: of the vote weights.
        batch_size, num_workers: of the embedding loader.
        cache_rate: share of the sampled images kept in memory after their first loading (MONAI ``CacheDataset``).
        seed: of the bank and validation samples.
        image_key, label_key: the datalist keys.

    Raises:
        ValueError: for an unknown ``metric`` or a non-positive size.
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
        if metric not in KNN_METRICS:
            raise ValueError(f"metric: expected one of {list(KNN_METRICS)}, got {metric!r}.")
        for name, value in (("bank_size", bank_size), ("val_size", val_size), ("k", k), ("batch_size", batch_size)):
            if value < 1:
                raise ValueError(f"{name}: expected a positive integer, got {value!r}.")
        self.train_data = _subsample(train_data, bank_size, seed)
        self.val_data = _subsample(val_data, val_size, seed + 1)
        self.transform, self.metric, self.interval = transform, metric, interval
        self.k, self.temperature = k, temperature
        self.batch_size, self.num_workers, self.cache_rate = batch_size, num_workers, cache_rate
        self.image_key, self.label_key = image_key, label_key
        self.tag = f"knn/val_{metric}"
        self._datasets: tuple[CacheDataset, CacheDataset] | None = None
        self.logger = logging.getLogger(__name__)

    def attach(self, engine: Engine) -> None:
        if self.interval > 0:
            engine.add_event_handler(Events.EPOCH_COMPLETED, self)

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
    def embed(self, engine: Engine, encoder: nn.Module, loader: DataLoader) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled float32 features and labels of every image of ``loader``."""
        features, labels = [], []
        device = engine.state.device
        for batch in loader:
            image = batch[self.image_key]
            image = image.as_tensor() if hasattr(image, "as_tensor") else image
            layout = channels_last_format(image.ndim) if getattr(engine, "channels_last", False) else None
            image = image.to(device, memory_format=layout or torch.preserve_format)
            with autocast_context(engine) if hasattr(engine, "amp") else contextlib.nullcontext():
                features.append(encoder(image).float())
            labels.append(torch.as_tensor(batch[self.label_key]))
        return torch.cat(features), torch.cat(labels).to(device)

    def evaluate(self, engine: Engine, encoder: nn.Module) -> float:
        """Embed the bank and the validation sample and score the kNN; NaN when the metric is undefined."""
        bank_loader, val_loader = self._loaders()
        bank, bank_labels = self.embed(engine, encoder, bank_loader)
        queries, labels = self.embed(engine, encoder, val_loader)
        scores = weighted_knn_scores(bank, bank_labels, queries, self.k, self.temperature).cpu().numpy()
        labels = labels.cpu().numpy()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # findings absent from the sample are skipped by design
                if self.metric == "f1":
                    return f1(labels, scores, average="macro")
                if labels.ndim == 2:
                    return mean_auc(labels, scores).mean
                return binary_auc(labels, scores[:, :2])
        except ValueError as error:  # a single class in the sample: the metric is undefined this time
            self.logger.warning("OnlineKNNHandler: %s is undefined (%s); logged as NaN.", self.tag, error)
            return math.nan
