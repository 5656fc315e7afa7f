"""EmbeddingSaver: embeddings, ids and (new) labels in one .npz."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from ignite.engine import Engine
from monai.handlers import from_engine

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


def test_output_transform_reads_other_keys_and_monai_from_engine(tmp_path: Path) -> None:
    batches = [{"emb": torch.full((2, 3), float(i)), "y": torch.tensor([i, 5])} for i in range(2)]
    engine = Engine(lambda e, batch: batch)
    EmbeddingSaver(tmp_path / "a.npz", output_transform=lambda o: (o["emb"], o["y"])).attach(engine)
    engine.run(batches, max_epochs=1)
    with np.load(tmp_path / "a.npz") as data:
        np.testing.assert_array_equal(data["embeddings"], [[0] * 3, [0] * 3, [1] * 3, [1] * 3])
        np.testing.assert_array_equal(data["labels"], [0, 5, 1, 5])

    # decollated output (a list of per-sample dicts) through MONAI's from_engine: lists of per-sample tensors
    decollated = [
        [{"pred": torch.full((3,), float(2 * i + j)), "label": torch.tensor(j)} for j in range(2)] for i in (0, 1)
    ]
    engine = Engine(lambda e, batch: batch)
    EmbeddingSaver(tmp_path / "b.npz", output_transform=from_engine(["pred", "label"])).attach(engine)
    engine.run(decollated, max_epochs=1)
    with np.load(tmp_path / "b.npz") as data:
        np.testing.assert_array_equal(data["embeddings"][:, 0], [0, 1, 2, 3])
        np.testing.assert_array_equal(data["labels"], [0, 1, 0, 1])
