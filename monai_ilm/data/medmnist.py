"""Reader for MedMNIST ``.npz`` files (Yang et al., Scientific Data 2023).

A MedMNIST file holds ``{train,val,test}_images`` (uint8, ``(N, H, W)`` or ``(N, H, W, 3)``) and
``{split}_labels`` of shape ``(N, 1)`` or ``(N,)`` for single-label tasks (both occur in the
wild) and ``(N, K)`` for multi-label ones (ChestMNIST). The images are small enough to keep in
memory, so datalist rows hold the arrays themselves; the loading transform
(:class:`monai_ilm.transforms.LoadImageWithPathd`) accepts arrays as well as paths.

MedMNIST publishes no patient ids: each image is treated as its own patient
(``"<file stem>-<split>-<index>"``), which is what the official splits do too. That name is also
each row's ``"image_id"``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from monai_ilm.data.files import PathLike
from monai_ilm.data.splits import SPLIT_NAMES


def find_medmnist_file(path: PathLike, flag: str | None = None) -> Path:
    """The ``.npz`` file meant by ``path``: the file itself, ``<path>/<flag>.npz``, or the only ``.npz`` in ``path``.

    Args:
        path: an ``.npz`` file or a folder holding MedMNIST files.
        flag: the MedMNIST data set name (e.g. ``"pneumoniamnist"``) when ``path`` is a folder.

    Raises:
        FileNotFoundError: when no matching file exists, or a folder holds several and ``flag`` is not given.
    """
    path = Path(path).expanduser().resolve()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(
            f"dataset_dir '{path}': expected a MedMNIST .npz file or a folder of them, got a path that does not exist."
        )
    if flag is not None:
        candidate = path / (flag if flag.endswith(".npz") else f"{flag}.npz")
        if not candidate.is_file():
            raise FileNotFoundError(
                f"dataset_dir '{path}': expected '{candidate.name}' (flag='{flag}'), got no such file."
            )
        return candidate
    files = sorted(path.glob("*.npz"))
    if len(files) != 1:
        found = [f.name for f in files] or "none"
        raise FileNotFoundError(
            f"dataset_dir '{path}': expected exactly one MedMNIST .npz file (or a flag naming one), got {found}."
        )
    return files[0]


def _labels_to_python(labels: np.ndarray, source: str) -> list:
    if labels.ndim == 1 or (labels.ndim == 2 and labels.shape[1] == 1):
        flat = labels.reshape(-1)
        if not np.all(np.equal(np.mod(flat, 1), 0)):
            raise ValueError(f"{source}: expected integer class indices, got non-integer single-label values.")
        return flat.astype(np.int64).tolist()
    if labels.ndim == 2:
        return labels.astype(np.float32).tolist()
    raise ValueError(f"{source}: expected the shape (N,), (N, 1) or (N, K), got {labels.shape}.")


def read_medmnist(dataset_dir: PathLike, split: str = "train", flag: str | None = None) -> list[dict]:
    """Datalist of one split of a MedMNIST ``.npz`` file.

    Args:
        dataset_dir: the ``.npz`` file, or a folder holding it (see :func:`find_medmnist_file`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        flag: the file's data set name when ``dataset_dir`` holds several files.

    Returns:
        Rows ``{"image": uint8 array (H, W) or (H, W, C), "label": int or multi-hot list, "patient_id": str,
        "image_id": str}`` (patient and image id are both ``"<file stem>-<split>-<index>"``).

    Raises:
        ValueError: for an unknown split, missing arrays, or images and labels of different lengths.
        FileNotFoundError: when the file cannot be found.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split: expected one of {list(SPLIT_NAMES)}, got '{split}'.")
    path = find_medmnist_file(dataset_dir, flag)
    image_key, label_key = f"{split}_images", f"{split}_labels"
    with np.load(path) as archive:
        missing = [key for key in (image_key, label_key) if key not in archive.files]
        if missing:
            raise ValueError(
                f"MedMNIST file '{path}': expected array(s) {missing}, got arrays {sorted(archive.files)}."
            )
        images, labels = archive[image_key], archive[label_key]
    if len(images) != len(labels):
        raise ValueError(
            f"MedMNIST file '{path}': expected as many {label_key} as {image_key} ({len(images)}), got {len(labels)}."
        )
    if images.ndim not in (3, 4):
        raise ValueError(f"MedMNIST file '{path}', {image_key}: expected the shape (N, H, W[, C]), got {images.shape}.")
    label_values = _labels_to_python(labels, f"MedMNIST file '{path}' ({label_key})")
    stem = path.stem
    names = [f"{stem}-{split}-{i}" for i in range(len(images))]
    return [
        {"image": images[i], "label": label_values[i], "patient_id": names[i], "image_id": names[i]}
        for i in range(len(images))
    ]
