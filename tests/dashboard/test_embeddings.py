"""The embedding explorer's data: discovery, labels, projections, thumbnails, the figure."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dashboard import embeddings
from dashboard.figures import embedding_figure
from dashboard.sample import SampleLayout


def test_discover_and_load(sample: SampleLayout, tmp_path: Path) -> None:
    found = embeddings.discover(sample.results_dir)
    assert [p.name for p in found] == [f"probe-nih-{m}-s0.embeddings.npz" for m in ("barlow", "moco", "mse")]
    points, problems = embeddings.load_embeddings(found, sample.root)
    assert not problems and len(points.points) == 3 * 120 and points.vectors.shape[0] == 360
    assert set(points.points["method"]) == {"moco", "mse", "barlow"} and set(points.points["split"]) == {"test"}
    assert points.points["file"].iloc[0] == "results/probe-nih-barlow-s0.embeddings.npz"
    bad = tmp_path / "results" / "x.embeddings.npz"
    bad.parent.mkdir()
    bad.write_bytes(b"garbage")
    inference = tmp_path / "bundle" / "eval" / "embeddings_test.npz"
    inference.parent.mkdir(parents=True)
    np.savez(inference, embeddings=np.ones((5, 2)), ids=np.asarray([f"{i}" for i in range(5)]))
    found = embeddings.discover(tmp_path / "results")
    assert found == [bad, inference]
    points, problems = embeddings.load_embeddings(found, tmp_path)
    assert [p.file for p in problems] == ["results/x.embeddings.npz"] and "expected a NumPy .npz" in problems[0].problem
    assert len(points.points) == 5 and set(points.points["label"]) == {"unknown"}
    assert points.points["split"].iloc[0] == "test"  # from the EmbeddingSaver file name
    assert embeddings.discover(tmp_path / "nowhere" / "results") == []


def test_label_texts() -> None:
    assert embeddings.label_texts(np.array([0, 2]), None) == ["class 0", "class 2"]
    multi = np.array([[1, 0, 1], [0, 0, 0]])
    assert embeddings.label_texts(multi, ["Effusion", "Mass", "Nodule"]) == ["Effusion + Nodule", "no finding"]
    assert embeddings.label_texts(None, None) == []


def test_projections() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 5)) * np.array([5.0, 2.0, 0.5, 0.1, 0.1])
    xy, titles = embeddings.project_2d(x, "PCA")
    # closed form: PCA coordinates are the centred data times the leading right singular vectors
    centred = x - x.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    expected = centred @ vt[:2].T
    np.testing.assert_allclose(np.abs(xy), np.abs(expected), atol=1e-8)
    share = s[:2] ** 2 / (s**2).sum() * 100
    assert titles == (
        f"PC 1 ({share[0]:.0f} % of the variance shown)",
        f"PC 2 ({share[1]:.0f} % of the variance shown)",
    )
    xy, titles = embeddings.project_2d(x, "t-SNE")
    assert xy.shape == (50, 2) and titles == ("t-SNE 1", "t-SNE 2")
    with pytest.raises(ValueError, match="method: expected one of"):
        embeddings.project_2d(x, "UMAP")
    with pytest.raises(ValueError, match="expected at least 3 points"):
        embeddings.project_2d(x[:2], "PCA")


def test_thumbnail(sample: SampleLayout, tmp_path: Path) -> None:
    image = embeddings.thumbnail(str(sample.root / "sample_images" / "test_000.png"), size=16)
    assert image is not None and max(image.size) <= 16 and image.mode == "RGB"
    assert embeddings.thumbnail(str(tmp_path / "missing.png")) is None
    (tmp_path / "x.png").write_bytes(b"not an image")
    assert embeddings.thumbnail(str(tmp_path / "x.png")) is None


def test_embedding_figure(sample: SampleLayout) -> None:
    points, _ = embeddings.load_embeddings(embeddings.discover(sample.results_dir), sample.root)
    xy, titles = embeddings.project_2d(points.vectors)
    frame = points.points.assign(x=xy[:, 0], y=xy[:, 1])
    fig = embedding_figure(frame, "method", "PCA", titles)
    assert [t.name for t in fig.data] == ["MoCo + Barlow Twins", "MoCo", "MoCo + MSE"]
    assert fig.layout.dragmode == "select" and fig.layout.xaxis.title.text == titles[0]
    assert sorted(int(v) for t in fig.data for v in t.customdata) == list(range(360))
    by_label = embedding_figure(frame, "label", "PCA", titles)
    assert [t.name for t in by_label.data] == ["class 0", "class 1", "class 2"]


def test_relative_image_paths_resolve_against_the_run_dataset_dir(sample: SampleLayout, tmp_path: Path) -> None:
    import json

    from monai_ilm.results.embeddings import write_embeddings

    results = tmp_path / "results"
    write_embeddings(results, "probe-x", np.eye(3), ["test_000.png", "test_001.png", "gone.png"], method="moco")
    (results / "probe-x.json").write_text(
        json.dumps({"metadata": {"dataset_dir": str(sample.root / "sample_images")}}), encoding="utf-8"
    )
    points, _ = embeddings.load_embeddings(embeddings.discover(results), tmp_path)
    paths = points.points["image_path"].tolist()
    assert paths[0] == str(sample.root / "sample_images" / "test_000.png")
    assert [embeddings.thumbnail(p) is not None for p in paths] == [True, True, False]
