"""Writes the embeddings an evaluator computes to one ``.npz`` file."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys as Keys

from monai_ilm.handlers.utils import attach_once

__all__ = ["EmbeddingSaver", "pred_and_label"]


def pred_and_label(output: Any) -> tuple[Any, Any]:
    """``(output["pred"], output.get("label"))`` of a dict output, or the per-sample lists of a decollated one.

    A label that some sample lacks gives ``None`` (the file then has no labels).
    """
    if isinstance(output, dict):
        return output[Keys.PRED], output.get(Keys.LABEL)
    labels = [item.get(Keys.LABEL) for item in output]  # decollated: a list of per-sample dicts
    return [item[Keys.PRED] for item in output], None if any(v is None for v in labels) else labels


def _batch(value: Any) -> torch.Tensor:
    """A batch tensor from a tensor or a list of per-sample tensors."""
    if isinstance(value, (list, tuple)):
        return torch.stack([torch.as_tensor(v) for v in value])
    return torch.as_tensor(value)


class EmbeddingSaver:
    """Collects ``output["pred"]`` of every iteration and saves ``embeddings`` (N, C) at the end.

    For a bundle's ``inference.json``: a ``SupervisedEvaluator`` runs the encoder's single-input
    forward (the pooled representation) over a datalist in order, and this handler writes
    ``{"embeddings": float32 (N, C), "ids": str (N,)}`` to ``filepath``, plus ``"labels"`` (N, ...) when every
    iteration's output carries ``label`` (the dashboard's embedding explorer colours points by it). The file is
    written to a
    temporary name and renamed, so an interrupted run never leaves a half-written file. Works with
    ``decollate`` on or off.

    Args:
        filepath: the ``.npz`` to write.
        ids: one identifier per sample in loader order (e.g. image paths); their count is checked.
        output_transform: maps ``engine.state.output`` to ``(pred, label)``, each a batch tensor or a list of
            per-sample tensors, ``label`` ``None`` when absent, as the ``output_transform`` of MONAI's handlers
            (``monai.handlers.from_engine(["pred", "label"])`` fits); the default is :func:`pred_and_label`.

    Raises:
        ValueError: at the end of the run, when ``ids`` does not match the number of embeddings.
    """

    rank_zero_only: ClassVar[bool] = True  # in a distributed run, one process writes the file

    def __init__(
        self,
        filepath: str | os.PathLike,
        ids: Sequence[str] | None = None,
        output_transform: Callable[[Any], tuple[Any, Any]] = pred_and_label,
    ) -> None:
        self.filepath = Path(filepath)
        self.output_transform = output_transform
        self.ids = None if ids is None else [str(i) for i in ids]
        self._parts: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] | None = []

    def attach(self, engine: Engine) -> None:
        attach_once(engine, Events.STARTED, self.reset)
        attach_once(engine, Events.ITERATION_COMPLETED, self.collect)
        attach_once(engine, Events.COMPLETED, self.save)

    def reset(self, engine: Engine) -> None:
        self._parts = []
        self._labels = []

    def collect(self, engine: Engine) -> None:
        pred, label = self.output_transform(engine.state.output)
        label = None if label is None else _batch(label)
        self._parts.append(_batch(pred).detach().float().cpu())
        if label is None:  # labels are kept only when every batch has them
            self._labels = None
        elif self._labels is not None:
            self._labels.append(torch.as_tensor(label).detach().cpu())

    def save(self, engine: Engine) -> None:
        embeddings = torch.cat(self._parts).numpy() if self._parts else np.zeros((0, 0), dtype=np.float32)
        ids = self.ids if self.ids is not None else [str(i) for i in range(len(embeddings))]
        if len(ids) != len(embeddings):
            raise ValueError(f"ids: {len(ids)} identifiers for {len(embeddings)} embeddings.")
        self.filepath.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.filepath.with_name(self.filepath.name + ".tmp")
        with open(temporary, "wb") as handle:
            extra = {"labels": torch.cat(self._labels).numpy()} if self._labels and self._parts else {}
            np.savez(handle, embeddings=embeddings, ids=np.asarray(ids, dtype=str), **extra)
        os.replace(temporary, self.filepath)
