"""Embeddings for the explorer page: finding the files, reading them, 2-D projections and labels (no Streamlit here).

Two sources, both plain ``.npz`` files read with ``allow_pickle=False`` (:func:`monai_ilm.results.embeddings.
read_embeddings`): ``<results>/<run_id>.embeddings.npz``, written by the layer-wise probing cell (test-set block-4
features, labels, image paths), and the ``embeddings_<split>.npz`` files a bundle's ``inference.json`` writes
(``EmbeddingSaver``) one or two folders below the results directory's parent.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.data import FileProblem
from dashboard.runs import read_sidecar
from monai_ilm.results.embeddings import EMBEDDINGS_SUFFIX, read_embeddings

__all__ = [
    "PROJECTIONS",
    "TSNE_MAX_POINTS",
    "EmbeddingSet",
    "discover",
    "display_name",
    "label_texts",
    "load_embeddings",
    "picture_image",
    "project_2d",
    "thumbnail",
]

PROJECTIONS = ("PCA", "t-SNE")
TSNE_MAX_POINTS = 5000  # scikit-learn's exact-neighbour t-SNE takes minutes beyond this on a laptop
THUMBNAIL_PX = 128


@dataclass(frozen=True)
class EmbeddingSet:
    """The points of the chosen embedding files.

    Attributes:
        points: one row per sample: ``point`` (row in ``vectors``), ``file``, ``method``, ``split``, ``label``,
            ``id``, ``image_path``, ``picture`` (the stored ``(H, W)`` uint8 picture of a sample without a picture
            file, e.g. the middle slice of a volume, or None).
        vectors: ``(n, k)`` float32 embeddings, the rows of all files (zero-padded to the widest file).
    """

    points: pd.DataFrame
    vectors: np.ndarray


def discover(results_dir: str | os.PathLike) -> list[Path]:
    """The embedding files of a results directory and of the bundle outputs next to it.

    Args:
        results_dir: the results directory.

    Returns:
        ``<results>/*.embeddings.npz``, then ``embeddings_*.npz`` one or two levels below the results directory's
        parent; sorted, without duplicates; empty when there are none.
    """
    results = Path(results_dir)
    found = sorted(results.glob(f"*{EMBEDDINGS_SUFFIX}")) if results.is_dir() else []
    parent = results.parent
    if parent.is_dir():
        for pattern in ("*/embeddings_*.npz", "*/*/embeddings_*.npz"):
            found += sorted(p for p in parent.glob(pattern) if p.parent != results)
    return list(dict.fromkeys(p for p in found if not p.name.startswith(".")))


def label_texts(labels: np.ndarray | None, class_names: list[str] | None) -> list[str]:
    """One display label per sample.

    Args:
        labels: ``(n,)`` class indices or ``(n, classes)`` multi-hot rows, or None.
        class_names: names of the multi-hot columns (NIH findings), or None.

    Returns:
        ``"class 1"`` for indices, the positive findings joined by ``" + "`` (``"no finding"`` for none) for
        multi-hot rows, ``"unknown"`` without labels.
    """
    if labels is None:
        return []
    labels = np.asarray(labels)
    if labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1):
        return [f"class {int(v)}" for v in labels.reshape(-1)]
    names = class_names or [f"class {j}" for j in range(labels.shape[1])]
    return [" + ".join(names[j] for j in np.flatnonzero(row > 0.5)) or "no finding" for row in labels]


def _resolved(paths: list[str], embeddings_file: Path) -> list[str]:
    """Image paths relative to the data set (as the readers give them) joined to the run's ``dataset_dir``, read
    from the results sidecar ``<run_id>.json`` beside ``<run_id>.embeddings.npz``; others unchanged."""
    if not embeddings_file.name.endswith(EMBEDDINGS_SUFFIX) or all(os.path.isabs(p) for p in paths):
        return paths
    sidecar, _ = read_sidecar(embeddings_file.with_name(embeddings_file.name.removesuffix(EMBEDDINGS_SUFFIX) + ".json"))
    root = ((sidecar or {}).get("metadata") or {}).get("dataset_dir")
    if not isinstance(root, str) or not root:
        return paths
    return [p if os.path.isabs(p) else os.path.join(root, p) for p in paths]


def display_name(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """A file's name as the page shows it: relative to ``root`` when it lies below it."""
    path, root = Path(path), Path(root)
    return os.path.relpath(path, root) if path.is_relative_to(root) else str(path)


def load_embeddings(paths: list[Path], root: Path) -> tuple[EmbeddingSet, list[FileProblem]]:
    """Read embedding files into one set of points; unreadable files become problems.

    Args:
        paths: the files.
        root: shown paths are relative to this folder where possible.

    Returns:
        ``(points, problems)``.
    """
    frames, blocks, problems = [], [], []
    offset = 0
    for path in paths:
        name = display_name(path, root)
        try:
            data = read_embeddings(path)
        except ValueError as err:
            problems.append(FileProblem(name, str(err)))
            continue
        n = data["embeddings"].shape[0]
        labels = label_texts(data["labels"], data["class_names"]) or ["unknown"] * n
        split = data["split"] or Path(path).stem.removeprefix("embeddings_").removesuffix(".embeddings")
        image_paths = _resolved([p if p else i for p, i in zip(data["image_paths"], data["ids"])], path)
        pictures = list(data["pictures"]) if data["pictures"] is not None else [None] * n
        frames.append(
            pd.DataFrame(
                {
                    "point": np.arange(offset, offset + n),
                    "file": name,
                    "method": data["method"] or "unknown",
                    "split": split,
                    "label": labels,
                    "id": data["ids"],
                    "image_path": image_paths,
                    "picture": pictures,
                }
            )
        )
        blocks.append(data["embeddings"])
        offset += n
    if not frames:
        return EmbeddingSet(
            pd.DataFrame(columns=["point", "file", "method", "split", "label", "id", "image_path", "picture"]),
            np.zeros((0, 0), dtype=np.float32),
        ), problems
    width = max(b.shape[1] for b in blocks)
    vectors = np.concatenate([np.pad(b, ((0, 0), (0, width - b.shape[1]))) for b in blocks]).astype(np.float32)
    return EmbeddingSet(pd.concat(frames, ignore_index=True), vectors), problems


def project_2d(vectors: np.ndarray, method: str = "PCA", seed: int = 0) -> tuple[np.ndarray, tuple[str, str]]:
    """Two coordinates per point.

    Args:
        vectors: ``(n, k)`` embeddings.
        method: ``"PCA"`` (scikit-learn ``PCA``) or ``"t-SNE"`` (``sklearn.manifold.TSNE``, PCA initialisation;
            at most :data:`TSNE_MAX_POINTS` points).
        seed: random state of t-SNE.

    Returns:
        ``(xy (n, 2), axis titles)``; PCA titles give each component's share of the variance shown.

    Raises:
        ValueError: for an unknown method, fewer than 3 points, or too many points for t-SNE.
    """
    from sklearn.decomposition import PCA  # imported on use: the other pages do not need scikit-learn
    from sklearn.manifold import TSNE

    if method not in PROJECTIONS:
        raise ValueError(f"method: expected one of {PROJECTIONS}, got {method!r}.")
    n = vectors.shape[0]
    if n < 3:
        raise ValueError(f"embeddings: expected at least 3 points to project, got {n}.")
    x = np.asarray(vectors, dtype=np.float64)
    components = min(2, x.shape[1])
    if method == "PCA":
        pca = PCA(n_components=components).fit(x)
        xy = pca.transform(x)
        share = pca.explained_variance_ratio_ * 100.0
        titles = tuple(f"PC {i + 1} ({share[i]:.0f} % of the variance shown)" for i in range(components))
    else:
        if n > TSNE_MAX_POINTS:
            raise ValueError(f"t-SNE: expected at most {TSNE_MAX_POINTS} points, got {n}; use PCA.")
        perplexity = float(min(30.0, max(2.0, (n - 1) / 3.0)))
        xy = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(x)
        titles = ("t-SNE 1", "t-SNE 2")
    if xy.shape[1] == 1:  # one-dimensional features: put every point on the x axis
        xy = np.column_stack([xy[:, 0], np.zeros(n)])
        titles = (titles[0], "")
    return xy, (titles[0], titles[1])


def picture_image(picture: np.ndarray, size: int = THUMBNAIL_PX):
    """A stored grey picture (e.g. a volume's middle slice) as an RGB image for display, its longest side ``size``.

    Args:
        picture: ``(H, W)`` uint8.
        size: the longest side in pixels (small pictures are enlarged without smoothing, so voxels stay visible).

    Returns:
        A ``PIL.Image.Image``.
    """
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(picture, dtype=np.uint8))  # 2-D uint8: grey ("L")
    scale = size / max(image.size)
    shape = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(shape, Image.Resampling.NEAREST).convert("RGB")


def thumbnail(path: str, size: int = THUMBNAIL_PX):
    """A small RGB copy of an image file for display, or None when it is missing or not an image.

    Args:
        path: the image file.
        size: the longest side in pixels.

    Returns:
        A ``PIL.Image.Image`` or None.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.thumbnail((size, size))
            return image.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError):
        return None
