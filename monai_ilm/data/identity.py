"""The identity of a data set without reading its images: what a fingerprint and a cache file are keyed by.

A result or a cache is stale when the data it was made from changed. Reading 112k images to find out would
take hours, so a data set enters by what changes when its data changes: each image file by its size and
modification time (a stat), each in-memory array by the digest of its bytes, every other value of a row
(label, patient, id) by content, and the tables beside the images (metadata, label and split files) by
content. :func:`data_identity` gives the digest and the manifest behind it, :func:`data_changes` says in
words what differs between two manifests, and :func:`row_entry` is one row's entry, shared with the
compact training cache (:class:`monai_ilm.data.CompactCacheDataset`), whose file name it keys.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "TABLE_SUFFIXES",
    "array_digest",
    "data_changes",
    "data_identity",
    "file_digest",
    "file_sha256",
    "row_entry",
    "table_files",
]

TABLE_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".txt", ".json", ".npz", ".npy")
"""Files beside the images whose content enters a data identity: metadata, label and split tables, arrays."""

_TABLE_HASH_LIMIT = 1 << 30  # larger tables enter by size and modification time (hashing would take minutes)


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    """Hex digest of a file's content with a :mod:`hashlib` algorithm, read in chunks.

    Raises:
        FileNotFoundError: naming the file when it does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a file to fingerprint, found none.")
    digest = hashlib.new(algorithm)
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 of a file's content (the identity of a checkpoint or a predictions file).

    Raises:
        FileNotFoundError: naming the file when it does not exist.
    """
    return file_digest(path, "sha256")


def array_digest(array: Any) -> str:
    """SHA-1 of an array's bytes, dtype and shape (``str(ndarray)`` abbreviates above 1,000 elements)."""
    if hasattr(array, "detach"):  # a torch tensor
        array = array.detach().cpu().numpy()
    array = np.ascontiguousarray(array)
    digest = hashlib.sha1(f"{array.dtype.str}{array.shape}".encode())
    digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def _json_default(value: Any) -> Any:
    """What JSON cannot write of a datalist value: arrays by their digest, scalars and paths by value."""
    if hasattr(value, "shape") and hasattr(value, "dtype") and getattr(value, "ndim", 0) > 0:
        return {"array": array_digest(value)}
    if hasattr(value, "item") and callable(value.item):  # numpy and torch scalars
        return value.item()
    if isinstance(value, (set, frozenset)):
        return sorted(map(str, value))
    return os.fspath(value) if isinstance(value, os.PathLike) else str(value)


def _image_entry(value: Any) -> str:
    """An image's identity: a file by size and modification time (no content read), an array by its bytes."""
    if isinstance(value, (str, os.PathLike)):
        try:
            stat = os.stat(value)
        except OSError:
            return "missing"
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    return "array:" + array_digest(value) if hasattr(value, "dtype") else json.dumps(value, default=_json_default)


def row_entry(row: Mapping[str, Any], image_key: str) -> str:
    """One datalist row's identity: ``"<image entry>|<digest of its other values>"``.

    The image enters by :func:`_image_entry` (a file by size and modification time, an array by its bytes),
    every other value (label, patient, id) by content; the compact cache's file name and :func:`data_identity`
    both use it, so the two agree on what changed.
    """
    rest = json.dumps({k: v for k, v in row.items() if k != image_key}, sort_keys=True, default=_json_default)
    return f"{_image_entry(row.get(image_key))}|{hashlib.sha1(rest.encode()).hexdigest()[:16]}"


_TABLE_HASHES: dict[tuple, str] = {}


def _table_entry(path: Path) -> str:
    stat = path.stat()
    if stat.st_size > _TABLE_HASH_LIMIT:
        return f"{stat.st_size}:{stat.st_mtime_ns}"
    # one read per process and version of the file (a write changes ctime, which no one can set back)
    key = (str(path.resolve()), stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns)
    if key not in _TABLE_HASHES:
        _TABLE_HASHES[key] = file_sha256(path)
    return _TABLE_HASHES[key]


def table_files(dataset_dir: str | os.PathLike) -> list[Path]:
    """The tables of a data set whose content enters its identity: ``dataset_dir`` itself when it is a file
    (a MedMNIST ``.npz``, a datalist CSV), else its top-level files ending in one of :data:`TABLE_SUFFIXES`
    (e.g. NIH's ``Data_Entry_2017_v2020.csv`` and split lists, EyePACS' ``trainLabels.csv``)."""
    root = Path(dataset_dir)
    if root.is_file():
        return [root]
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_file() and p.name.lower().endswith(TABLE_SUFFIXES))


def data_identity(
    datalists: Mapping[str, Sequence[Mapping[str, Any]]],
    image_key: str = "image",
    id_key: str = "image_id",
    tables: Iterable[str | os.PathLike] = (),
) -> dict[str, Any]:
    """The identity of the data a run reads, without reading an image.

    Each row of each datalist enters with its image's size and modification time (a file; a stat, so 112k
    images take about a second) or the digest of its bytes (an in-memory array), and a digest of its other
    values (label, patient, id); the rows in their order, so adding, removing, replacing, relabelling,
    moving to another split or reordering an image all change the digest. ``tables`` (metadata, label and
    split files) enter by content.

    Args:
        datalists: ``{split: rows}``.
        image_key: the key of each row's image path or array.
        id_key: the key of each row's stable id (its position where missing).
        tables: files whose content the datalists were read from.

    Returns:
        ``{"digest": 16 hex characters, "images": number of rows, "manifest": {id or "table:name": entry}}``
        (an entry is ``"split|size:mtime|digest of the other values"``); :func:`data_changes` compares two.
    """
    manifest: dict[str, str] = {}
    for split in sorted(datalists):
        for index, row in enumerate(datalists[split]):
            name = str(row.get(id_key, f"{split}#{index}"))
            manifest[name if name not in manifest else f"{name}#{split}#{index}"] = f"{split}|" + row_entry(
                row, image_key
            )
    images = len(manifest)
    for path in tables:
        manifest[f"table:{Path(path).name}"] = _table_entry(Path(path))
    digest = hashlib.sha256(json.dumps(list(manifest.items())).encode()).hexdigest()[:16]
    return {"digest": digest, "images": images, "manifest": manifest}


def data_changes(old: Mapping[str, str], new: Mapping[str, str]) -> str:
    """What differs between two data manifests, e.g. ``"3 images (2 replaced, 1 added), labels.csv content"``.

    An image is *replaced* (its file or array changed), *relabelled* (its other values changed), *moved*
    (to another split), *added* or *removed*.

    Args:
        old: the manifest a stored result was made with (:func:`data_identity`).
        new: the manifest of this run.
    """
    rows = [{k for k in m if not k.startswith("table:")} for m in (old, new)]
    both = [(old[k].split("|"), new[k].split("|")) for k in rows[0] & rows[1]]  # [split, image, other values]
    counts = {
        "replaced": sum(a[1] != b[1] for a, b in both),
        "relabelled": sum(a[1] == b[1] and a[2] != b[2] for a, b in both),
        "moved": sum(a[1:] == b[1:] and a[0] != b[0] for a, b in both),
        "added": len(rows[1] - rows[0]),
        "removed": len(rows[0] - rows[1]),
    }
    parts = []
    total = sum(counts.values())
    if total:
        detail = ", ".join(f"{n} {what}" for what, n in counts.items() if n)
        parts.append(f"{total} image{'s' if total != 1 else ''} ({detail})")
    tables = sorted({k for k in (*old, *new) if k.startswith("table:") and old.get(k) != new.get(k)})
    parts += [f"{k[len('table:') :]} content" for k in tables]
    if not parts and list(old) != list(new):
        parts.append("image order")
    return ", ".join(parts) if parts else "data identity"
