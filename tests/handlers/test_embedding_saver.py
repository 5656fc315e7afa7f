"""EmbeddingSaver: embeddings, ids and (new) labels in one .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine

from monai_ilm.handlers import EmbeddingSaver


def _run(tmp_path: Path, batches: list[dict]) -> dict:
    engine = Engine(lambda e, batch: batch)
    path = tmp_path / "embeddings_test.npz"
    EmbeddingSaver(path, ids=[f"img{i}.png" for i in range(sum(len(b["pred"]) for b in batches))]).attach(engine)
    engine.run(batches, max_epochs=1)
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def test_labels_are_saved_when_every_batch_has_them(tmp_path: Path) -> None:
    batches = [{"pred": torch.ones(2, 3) * i, "label": torch.tensor([i, i + 1])} for i in range(2)]
    data = _run(tmp_path, batches)
    assert data["embeddings"].shape == (4, 3) and data["ids"].tolist()[0] == "img0.png"
    np.testing.assert_array_equal(data["labels"], [0, 1, 1, 2])


def test_no_labels_without_them(tmp_path: Path) -> None:
    batches = [{"pred": torch.ones(2, 3)}, {"pred": torch.ones(1, 3), "label": torch.tensor([1])}]
    data = _run(tmp_path, batches)
    assert data["embeddings"].shape == (3, 3) and "labels" not in data
