"""Test-set embeddings beside the results: projection, round trip, size, bad files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA

from monai_ilm.results.embeddings import embeddings_path, project, read_embeddings, write_embeddings


def _features(n: int = 40, d: int = 10, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) @ np.diag(np.linspace(3, 0.1, d)) + 5.0


def test_projection_matches_scikit_learn_pca() -> None:
    x = _features()
    projected, variance, total = project(x, max_components=3)
    reference = PCA(n_components=3).fit(x)
    expected = reference.transform(x)
    signs = np.sign((projected * expected).sum(axis=0))  # components are defined up to their sign
    np.testing.assert_allclose(projected * signs, expected, atol=1e-8)
    np.testing.assert_allclose(variance, reference.explained_variance_, rtol=1e-10)
    assert total == pytest.approx(np.var(x, axis=0, ddof=1).sum())


def test_round_trip_keeps_the_two_leading_components(tmp_path: Path) -> None:
    x = _features(n=30, d=200)
    labels = np.arange(30) % 3
    ids = [f"img_{i}.png" for i in range(30)]
    path = write_embeddings(tmp_path, "probe-nih-moco-seed0", x, ids, labels=labels, method="moco", block=4)
    assert path == embeddings_path(tmp_path, "probe-nih-moco-seed0") and path.name.endswith(".embeddings.npz")
    data = read_embeddings(path)
    assert data["embeddings"].shape == (30, 30)  # at most n components
    assert data["ids"] == ids and data["image_paths"] == ["" for _ in ids]  # ids that are no files: no path
    assert data["method"] == "moco" and data["block"] == 4 and data["split"] == "test"
    np.testing.assert_array_equal(data["labels"], labels)
    leading = PCA(n_components=2).fit_transform(x)
    stored = data["embeddings"][:, :2].astype(np.float64)
    signs = np.sign((stored * leading).sum(axis=0))
    np.testing.assert_allclose(stored * signs, leading, rtol=2e-3, atol=2e-3 * np.abs(leading).max())  # float16


def test_stored_size_is_bounded(tmp_path: Path) -> None:
    x = _features(n=500, d=512)
    path = write_embeddings(tmp_path, "r1", x, [str(i) for i in range(500)], max_components=64)
    assert read_embeddings(path)["embeddings"].shape == (500, 64)
    assert path.stat().st_size < 500 * 64 * 2 + 20_000  # float16 components, not 512 float32 channels


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="ids: expected 40 identifiers"):
        write_embeddings(tmp_path, "r1", _features(), ["a"])
    with pytest.raises(ValueError, match="labels: expected 40 rows"):
        write_embeddings(tmp_path, "r1", _features(), [str(i) for i in range(40)], labels=np.zeros(3))
    with pytest.raises(ValueError, match="run_id: expected"):
        write_embeddings(tmp_path, "../x", _features(), [str(i) for i in range(40)])
    bad = tmp_path / "bad.embeddings.npz"
    bad.write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="bad.embeddings.npz: expected a NumPy .npz file"):
        read_embeddings(bad)
    np.savez(tmp_path / "other.npz", features=np.zeros((3, 2)))
    with pytest.raises(ValueError, match="other.npz: expected an 'embeddings' array"):
        read_embeddings(tmp_path / "other.npz")


def test_reads_the_embedding_saver_format(tmp_path: Path) -> None:
    path = tmp_path / "embeddings_test.npz"
    np.savez(path, embeddings=np.ones((4, 3), dtype=np.float32), ids=np.asarray(["a", "b", "c", "d"]))
    data = read_embeddings(path)
    assert data["embeddings"].shape == (4, 3) and data["labels"] is None and data["block"] is None
