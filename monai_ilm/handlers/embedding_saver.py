"""Writes the embeddings an evaluator computes to one ``.npz`` file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from ignite.engine import Engine, Events
from monai.utils import CommonKeys as Keys

__all__ = ["EmbeddingSaver"]


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

    Raises:
        ValueError: at the end of the run, when ``ids`` does not match the number of embeddings.
    """

    rank_zero_only: ClassVar[bool] = True  # in a distributed run, one process writes the file

    def __init__(self, filepath: str | os.PathLike, ids: Sequence[str] | None = None) -> None:
        self.filepath = Path(filepath)
        self.ids = None if ids is None else [str(i) for i in ids]
        self._parts: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] | None = []

    def attach(self, engine: Engine) -> None:
        engine.add_event_handler(Events.STARTED, self.reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.collect)
        engine.add_event_handler(Events.COMPLETED, self.save)

    def reset(self, engine: Engine) -> None:
        self._parts = []
        self._labels = []

    def collect(self, engine: Engine) -> None:
        output = engine.state.output
        if isinstance(output, dict):
            pred = output[Keys.PRED]
            label = output.get(Keys.LABEL)
        else:  # decollated: a list of per-sample dicts
            pred = torch.stack([torch.as_tensor(item[Keys.PRED]) for item in output])
            labels = [item.get(Keys.LABEL) for item in output]
            label = None if any(v is None for v in labels) else torch.stack([torch.as_tensor(v) for v in labels])
        self._parts.append(pred.detach().float().cpu())
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
