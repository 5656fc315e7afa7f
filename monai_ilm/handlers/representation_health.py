"""Representation-health indicators of MoCo pretraining, per epoch, with an optional collapse stop."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from ignite.engine import Engine, Events
from monai.engines.utils import IterationEvents
from monai.metrics.embedding_collapse import compute_embedding_collapse

from monai_ilm.checks import check_int, check_real, checks_arguments
from monai_ilm.handlers.utils import attach_once
from monai_ilm.networks.backbones import global_pool
from monai_ilm.utils import unwrap_network

__all__ = [
    "RepresentationCollapseError",
    "RepresentationHealthHandler",
    "alignment",
    "effective_rank",
    "embedding_std",
    "uniformity",
]


class RepresentationCollapseError(RuntimeError):
    """The embedding stayed collapsed for ``collapse_patience`` epochs; the message names the metric and threshold."""


def effective_rank(features: torch.Tensor) -> float:
    """Effective rank of ``(n, d)`` features (Roy & Vetterli, EUSIPCO 2007), from MONAI's ``EmbeddingCollapseMetric``.

    ``exp(H(p))`` with ``p`` the singular values of the **mean-centred** features divided by their sum:
    1 for features that vary along one direction, ``min(n - 1, d)`` for an isotropic cloud. MONAI 1.6.1's
    ``effective_rank_score`` is this value normalised to a collapse score, ``1 - rank / min(n - 1, d)``,
    which is inverted here so the curve reads in dimensions. Unlike Roy & Vetterli and RankMe (Garrido et
    al., ICML 2023), which take the spectrum of the raw matrix, MONAI centres first: a constant offset
    shared by every sample does not count as a dimension; constant features have rank 0.

    Raises:
        ValueError: for fewer than two rows or a tensor that is not 2-D.
    """
    score = compute_embedding_collapse(features.float(), include_indicators=["effective_rank"], reduction="none")
    return float((1.0 - score["effective_rank_score"]) * min(features.shape[0] - 1, features.shape[1]))


def embedding_std(embedding: torch.Tensor) -> float:
    """Mean over dimensions of the per-dimension standard deviation of the L2-normalised embedding.

    The collapse indicator of SimSiam (Chen & He, CVPR 2021, §4.1): 0 when every sample maps to one point,
    about ``1 / sqrt(d)`` for embeddings spread over the unit sphere. Not in MONAI's metric.
    """
    return float(F.normalize(embedding.float(), dim=1).std(dim=0).mean())


def alignment(x: torch.Tensor, y: torch.Tensor) -> float:
    """``E ||f(x) - f(y)||²`` over positive pairs of L2-normalised embeddings (Wang & Isola, ICML 2020, α = 2).

    0 for identical views; 4 for opposite ones. Not in MONAI's metric.
    """
    return float((F.normalize(x.float(), dim=1) - F.normalize(y.float(), dim=1)).pow(2).sum(dim=1).mean())


def uniformity(x: torch.Tensor, t: float = 2.0) -> float:
    """``log E exp(-t ||f(x) - f(y)||²)`` over all pairs of distinct L2-normalised embeddings (Wang & Isola, t = 2).

    0 when every sample maps to one point, lower (more negative) the more uniformly the embeddings cover the
    sphere. Not in MONAI's metric.
    """
    distances = torch.pdist(F.normalize(x.float(), dim=1)).pow(2)
    return float(torch.logsumexp(-t * distances, dim=0) - torch.log(torch.tensor(float(distances.numel()))))


def moco_pred(output: Any) -> Any:
    """``output["pred"]`` of a dict output (a MoCo engine's embeddings and stages), else ``None``."""
    return output.get("pred") if isinstance(output, dict) else None


@checks_arguments(
    samples=partial(check_int, minimum=2),
    collapse_rank=partial(check_real, low=0.0),
    collapse_patience=partial(check_int, minimum=0),
)
class RepresentationHealthHandler:
    """Logs, per epoch, whether MoCo's representation is healthy or collapsing; can stop a collapsed run.

    It reads the training forward passes (nothing is run again): on ``FORWARD_COMPLETED`` of the last
    iterations of each epoch, up to ``samples`` rows of the query embedding (projector output of view 1),
    the key embedding (view 2, its positive) and the globally pooled output of every query-encoder stage
    are copied, detached, and on ``EPOCH_COMPLETED`` these indicators go into ``engine.state.metrics``
    (so ``StatsHandler`` prints them and ``TensorBoardStatsHandler`` writes them under the same tags):

    * ``health/effective_rank``: :func:`effective_rank` of the query embedding (1 = collapsed to a line);
    * ``health/embedding_std``: :func:`embedding_std` (0 = collapsed, ``1/sqrt(d)`` = spread);
    * ``health/alignment`` and ``health/uniformity``: :func:`alignment` of the query/key pairs and
      :func:`uniformity` of the query embeddings (Wang & Isola, ICML 2020);
    * ``health/effective_rank_<stage>``: :func:`effective_rank` of each stage's pooled features.

    MoCo's state is untouched: only detached copies of outputs the step computed anyway are read (no
    random numbers are drawn, no module runs). With ``collapse_patience > 0`` the run stops with
    :class:`RepresentationCollapseError` once ``health/effective_rank`` has stayed below ``collapse_rank``
    for that many consecutive epochs, before the epoch's checkpoint is written (attach the trainer's
    ``CheckpointSaver`` after it); the count restarts with a resumed run.

    Args:
        samples: at most this many rows (from the epoch's last iterations) enter the indicators.
        collapse_rank: the effective rank below which the embedding counts as collapsed.
        collapse_patience: consecutive collapsed epochs before stopping; 0 never stops.
        output_transform: maps ``engine.state.output`` to the dict with ``"query"`` and ``"key"`` (``(n, d)``
            embeddings) and optionally ``"query_stages"`` (the query encoder's stage outputs), as the
            ``output_transform`` of MONAI's handlers; the default takes ``output["pred"]`` of a MoCo engine.
            An iteration whose transform gives no such dict is skipped.

    Raises:
        ValueError: when ``samples`` is below 2, ``collapse_rank`` is negative or ``collapse_patience`` negative.
    """

    rank_zero_only: ClassVar[bool] = True  # a monitor: it reads the run without taking part in collectives

    def __init__(
        self,
        samples: int = 1024,
        collapse_rank: float = 2.0,
        collapse_patience: int = 0,
        output_transform: Callable[[Any], Any] = moco_pred,
    ) -> None:
        self.samples, self.collapse_rank, self.collapse_patience = samples, collapse_rank, collapse_patience
        self.output_transform = output_transform
        self._rows: deque[dict[str, torch.Tensor]] = deque()
        self._collapsed_epochs: list[int] = []

    def attach(self, engine: Engine) -> None:
        attach_once(engine, Events.EPOCH_STARTED, self.reset)
        attach_once(engine, IterationEvents.FORWARD_COMPLETED, self.collect)
        attach_once(engine, Events.EPOCH_COMPLETED, self)
        attach_once(engine, Events.EXCEPTION_RAISED, self.reraise)

    def reset(self, engine: Engine) -> None:
        self._rows.clear()

    def collect(self, engine: Engine) -> None:
        """Copy this iteration's embeddings and pooled stages when it is among the epoch's last ``samples`` rows."""
        pred = self.output_transform(engine.state.output)
        if not isinstance(pred, dict) or "query" not in pred:
            return
        batch = pred["query"].shape[0]
        epoch_length = engine.state.epoch_length
        if epoch_length:
            left = epoch_length - ((engine.state.iteration - 1) % epoch_length + 1)  # iterations after this one
            if left * batch >= self.samples:
                return
        names = unwrap_network(engine.network).stage_names
        rows = {"query": pred["query"], "key": pred["key"]}
        rows.update({name: global_pool(stage) for name, stage in zip(names, pred.get("query_stages", ()))})
        self._rows.append({name: value.detach().float().clone() for name, value in rows.items()})
        while sum(len(r["query"]) for r in self._rows) - len(self._rows[0]["query"]) >= self.samples:
            self._rows.popleft()

    def compute(self) -> dict[str, float]:
        """The indicators over the collected rows (the latest ``samples``); empty with fewer than two rows."""
        if not self._rows:
            return {}
        rows = {name: torch.cat([r[name] for r in self._rows])[-self.samples :] for name in self._rows[0]}
        if len(rows["query"]) < 2:
            return {}
        query, key = rows.pop("query"), rows.pop("key")
        metrics = {
            "health/effective_rank": effective_rank(query),
            "health/embedding_std": embedding_std(query),
            "health/alignment": alignment(query, key),
            "health/uniformity": uniformity(query),
        }
        metrics.update({f"health/effective_rank_{name}": effective_rank(value) for name, value in rows.items()})
        return metrics

    def __call__(self, engine: Engine) -> None:
        metrics = self.compute()
        self._rows.clear()
        engine.state.metrics.update(metrics)
        rank = metrics.get("health/effective_rank")
        if rank is None or self.collapse_patience == 0:
            return
        self._collapsed_epochs = self._collapsed_epochs + [engine.state.epoch] if rank < self.collapse_rank else []
        if len(self._collapsed_epochs) >= self.collapse_patience:
            first = self._collapsed_epochs[0]
            raise RepresentationCollapseError(
                f"health/effective_rank: expected at least collapse_rank = {self.collapse_rank} within "
                f"collapse_patience = {self.collapse_patience} epoch(s), got {rank:.3f}, below it for "
                f"{len(self._collapsed_epochs)} epoch(s) since epoch {first} (the embedding has collapsed, so training "
                f"stopped before the checkpoint of epoch {engine.state.epoch}; lower the learning rate, raise the "
                "temperature or check the augmentations)."
            )

    def reraise(self, engine: Engine, error: BaseException) -> None:
        """Re-raise, as MONAI's ``StatsHandler`` does, so later exception handlers do not save a "final" checkpoint
        of the collapsed run (ignite swallows an error once any ``EXCEPTION_RAISED`` handler exists)."""
        if isinstance(error, RepresentationCollapseError) and not getattr(error, "logged", False):
            error.logged = True  # ignite fires EXCEPTION_RAISED twice for an error inside a handler
            engine.logger.error("RepresentationHealthHandler: %s", error)
        raise error
