"""Test-set embeddings stored beside an evaluation run's results, for the dashboard's embedding explorer.

``<run_id>.embeddings.npz`` holds, in test-loader order:

* ``embeddings``: ``(n, k)`` float16, the pooled features projected on their top ``k`` principal components
  (``k = min(max_components, n, d)``). A ResNet-50's 2048 pooled channels for 22,000 NIH test images are 180 MB
  as float32; the explorer draws a 2-D PCA (the first two of these components, unchanged by the truncation) or a
  t-SNE, for which the top 50-100 components are the usual input, so 64 float16 components (2.8 MB) lose
  nothing it shows.
* ``explained_variance``: ``(k,)`` float32, the variance of each stored component; ``total_variance``: the
  variance of the full features, so a view can say how much of it two components hold.
* ``ids``: ``(n,)`` the sample identifiers (image paths for the MONAI readers, see
  ``monai_ilm.evaluation.features.batch_ids``); ``image_paths`` the same, when they are files.
* ``labels``: ``(n,)`` or ``(n, classes)`` when known; ``class_names``: ``(classes,)`` for multi-label data.
* ``pictures``: ``(n, H, W)`` uint8, for samples with no picture file to show (volumes: the middle slice of each,
  see ``monai_ilm.evaluation.features.middle_slices``), when given.
* ``method``, ``split``, ``block``: what the features are.

The file is plain ``numpy.savez`` content (no pickles); :func:`read_embeddings` loads it with
``allow_pickle=False`` and checks the shapes.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_ilm.results.store import _check_run_id

__all__ = [
    "EMBEDDINGS_SUFFIX",
    "embeddings_path",
    "project",
    "read_embeddings",
    "write_embeddings",
]

EMBEDDINGS_SUFFIX = ".embeddings.npz"
MAX_COMPONENTS = 64


def embeddings_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    """``<results_dir>/<run_id>.embeddings.npz``.

    Raises:
        ValueError: if ``run_id`` is not a safe file name.
    """
    return Path(results_dir) / f"{_check_run_id(run_id)}{EMBEDDINGS_SUFFIX}"


def project(features: np.ndarray, max_components: int = MAX_COMPONENTS) -> tuple[np.ndarray, np.ndarray, float]:
    """Centre ``features`` and project them on their top principal components (an SVD, as PCA does).

    Args:
        features: ``(n, d)`` features.
        max_components: the most components to keep.

    Returns:
        ``(projected (n, k), variance of each component (k,), total variance)``.

    Raises:
        ValueError: for features that are not a non-empty 2-D array or ``max_components < 1``.
    """
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features: expected a non-empty (n, d) array, got shape {x.shape}.")
    if max_components < 1:
        raise ValueError(f"max_components: expected an int >= 1, got {max_components}.")
    x = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(x, full_matrices=False)
    k = min(max_components, s.size)
    denom = max(x.shape[0] - 1, 1)
    return u[:, :k] * s[:k], (s[:k] ** 2 / denom), float((s**2).sum() / denom)


def write_embeddings(
    results_dir: str | os.PathLike,
    run_id: str,
    features: np.ndarray,
    ids: Sequence[str],
    labels: np.ndarray | None = None,
    class_names: Sequence[str] | None = None,
    method: str = "",
    split: str = "test",
    block: int | None = None,
    max_components: int = MAX_COMPONENTS,
    pictures: np.ndarray | None = None,
) -> Path:
    """Write ``<run_id>.embeddings.npz`` (see the module docstring), atomically.

    Args:
        results_dir: the results directory.
        run_id: the evaluation run.
        features: ``(n, d)`` pooled features in loader order.
        ids: ``n`` sample identifiers (image paths where the reader provides them).
        labels: ``(n,)`` or ``(n, classes)`` labels, or None.
        class_names: names of the label columns of multi-label data.
        method: the pretraining method of the encoder.
        split: the data split of the samples.
        block: the encoder block the features come from.
        max_components: principal components to store.
        pictures: ``(n, H, W)`` uint8 pictures of the samples (the middle slice of each volume), or None.

    Returns:
        The file written.

    Raises:
        ValueError: when ``ids``, ``labels`` or ``pictures`` do not have one entry per row of ``features``, or
            ``pictures`` are not ``(n, H, W)`` uint8.
    """
    projected, variance, total = project(features, max_components)
    n = projected.shape[0]
    if len(ids) != n:
        raise ValueError(f"ids: expected {n} identifiers (one per embedding), got {len(ids)}.")
    arrays: dict[str, Any] = {
        "embeddings": projected.astype(np.float16),
        "explained_variance": variance.astype(np.float32),
        "total_variance": np.float32(total),
        "ids": np.asarray([str(i) for i in ids], dtype=str),
        "image_paths": np.asarray([str(i) if os.path.isfile(str(i)) else "" for i in ids], dtype=str),
        "method": np.asarray(method),
        "split": np.asarray(split),
        "block": np.asarray(-1 if block is None else int(block)),
    }
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape[0] != n:
            raise ValueError(f"labels: expected {n} rows (one per embedding), got {labels.shape[0]}.")
        arrays["labels"] = labels
    if class_names is not None:
        arrays["class_names"] = np.asarray(list(class_names), dtype=str)
    if pictures is not None:
        arrays["pictures"] = _checked_pictures(np.asarray(pictures), n, "pictures")
    path = embeddings_path(results_dir, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_bytes(buffer.getvalue())
    os.replace(temporary, path)
    return path


def _checked_pictures(pictures: np.ndarray, n: int, source: str) -> np.ndarray:
    if pictures.dtype != np.uint8 or pictures.ndim != 3 or pictures.shape[0] != n:
        raise ValueError(f"{source}: expected ({n}, H, W) uint8 pictures, got {pictures.dtype} {pictures.shape}.")
    return pictures


def read_embeddings(path: str | os.PathLike) -> dict[str, Any]:
    """Read an embeddings file: this module's, or the ``{"embeddings", "ids"[, "labels"]}`` one of
    :class:`monai_ilm.handlers.EmbeddingSaver`.

    Args:
        path: the ``.npz`` file.

    Returns:
        ``{"embeddings": float32 (n, k), "ids": list[str], "image_paths": list[str], "labels": array | None,
        "class_names": list[str] | None, "method": str, "split": str, "block": int | None,
        "explained_variance": array | None, "total_variance": float | None, "pictures": (n, H, W) uint8 | None}``.

    Raises:
        ValueError: for an unreadable file or inconsistent shapes (naming the file).
    """
    name = Path(path).name
    try:
        with np.load(path, allow_pickle=False) as data:
            content = {key: data[key] for key in data.files}
    except (OSError, ValueError, EOFError) as err:
        raise ValueError(f"{name}: expected a NumPy .npz file of embeddings, got an unreadable file ({err}).") from err
    if "embeddings" not in content:
        raise ValueError(f"{name}: expected an 'embeddings' array, got keys {sorted(content)}.")
    embeddings = np.asarray(content["embeddings"], dtype=np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] == 0:
        raise ValueError(f"{name}: expected 'embeddings' of shape (n, d) with n > 0, got {embeddings.shape}.")
    n = embeddings.shape[0]
    ids = [str(i) for i in content.get("ids", np.arange(n))]
    paths = [str(p) for p in content.get("image_paths", ids)]
    labels = content.get("labels")
    for key, values in (("ids", ids), ("image_paths", paths), ("labels", labels)):
        if values is not None and len(values) != n:
            raise ValueError(f"{name}: expected {n} entries in '{key}' (one per embedding), got {len(values)}.")
    block = int(content["block"]) if "block" in content else -1
    pictures = content.get("pictures")
    if pictures is not None:
        pictures = _checked_pictures(pictures, n, f"{name} 'pictures'")
    return {
        "embeddings": embeddings,
        "ids": ids,
        "image_paths": paths,
        "labels": labels,
        "class_names": [str(c) for c in content["class_names"]] if "class_names" in content else None,
        "method": str(content.get("method", "")),
        "split": str(content.get("split", "")),
        "block": None if block < 0 else block,
        "explained_variance": content.get("explained_variance"),
        "total_variance": float(content["total_variance"]) if "total_variance" in content else None,
        "pictures": pictures,
    }
