"""Reader for MedMNIST ``.npz`` files (Yang et al., Scientific Data 2023).

A MedMNIST file holds ``{train,val,test}_images`` (uint8: 2D ``(N, H, W)`` or ``(N, H, W, 3)``,
MedMNIST 3D ``(N, D, H, W)``, e.g. AdrenalMNIST3D's ``(N, 28, 28, 28)``, or ``(N, D, H, W, C)``) and
``{split}_labels`` of shape ``(N, 1)`` or ``(N,)`` for single-label tasks (both occur in the
wild) and ``(N, K)`` for multi-label ones (ChestMNIST). The images are small enough to keep in
memory, so datalist rows hold the arrays themselves; the loading transforms
(:class:`monai_ilm.transforms.LoadImageWithPathd` for images, :class:`monai_ilm.transforms.volumes.LoadVolumed`
for volumes) accept arrays as well as paths, and the compact cache keys such rows by their bytes.

A 4-D image array is read as 2D colour images when its last axis has at most 4 entries (channels) and as
volumes otherwise; ``spatial_dims`` says which where that guess would be wrong.

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


_MAX_CHANNELS = 4  # a last axis this short holds channels (grey, RGB, RGBA), a longer one is a spatial axis
_SHAPES = {2: "(N, H, W) or (N, H, W, C)", 3: "(N, D, H, W) or (N, D, H, W, C)"}


def image_spatial_dims(shape: tuple[int, ...], source: str, spatial_dims: int | None = None) -> int:
    """The spatial dimensions of a MedMNIST image array of ``shape``: 2 (images) or 3 (volumes).

    Args:
        shape: the array's shape, samples first.
        source: the file and key, quoted in the error.
        spatial_dims: 2 or 3 when known; None infers it (a 4-D array whose last axis has at most 4 entries
            holds 2D colour images, any other 4-D array volumes).

    Raises:
        ValueError: naming ``source`` and the shapes expected, for a shape that fits neither (or not
            ``spatial_dims``), or a ``spatial_dims`` other than None, 2 or 3.
    """
    if spatial_dims not in (None, 2, 3):
        raise ValueError(f"spatial_dims: expected None, 2 or 3, got {spatial_dims!r}.")
    ndim = len(shape)
    channels_last = ndim >= 4 and 1 <= shape[-1] <= _MAX_CHANNELS
    known = spatial_dims
    if spatial_dims is None:
        spatial_dims = 2 if ndim == 3 or (ndim == 4 and channels_last) else 3
    fits = ndim == spatial_dims + 1 or (ndim == spatial_dims + 2 and channels_last)
    if not fits or any(side < 1 for side in shape[1:]):
        expected = _SHAPES[known] if known else f"{_SHAPES[2]} (images) or {_SHAPES[3]} (volumes)"
        expected += f" with C at most {_MAX_CHANNELS}" if ndim == spatial_dims + 2 else ""
        raise ValueError(f"{source}: expected the shape {expected}, got {tuple(shape)}.")
    return spatial_dims


def read_medmnist(
    dataset_dir: PathLike, split: str = "train", flag: str | None = None, spatial_dims: int | None = None
) -> list[dict]:
    """Datalist of one split of a MedMNIST ``.npz`` file, 2D or 3D.

    Args:
        dataset_dir: the ``.npz`` file, or a folder holding it (see :func:`find_medmnist_file`).
        split: ``"train"``, ``"val"`` or ``"test"``.
        flag: the file's data set name when ``dataset_dir`` holds several files.
        spatial_dims: 2 (images) or 3 (volumes, MedMNIST 3D); None infers it from the shape
            (see :func:`image_spatial_dims`).

    Returns:
        Rows ``{"image": uint8 array (H, W), (H, W, C), (D, H, W) or (D, H, W, C), "label": int or multi-hot
        list, "patient_id": str, "image_id": str}`` (patient and image id are both ``"<file stem>-<split>-<index>"``).

    Raises:
        ValueError: for an unknown split, missing arrays, images and labels of different lengths, or an
            image array of another shape than ``spatial_dims`` allows (naming the file and key).
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
    image_spatial_dims(images.shape, f"MedMNIST file '{path}', {image_key}", spatial_dims)
    if len(images) != len(labels):
        raise ValueError(
            f"MedMNIST file '{path}': expected as many {label_key} as {image_key} ({len(images)}), got {len(labels)}."
        )
    label_values = _labels_to_python(labels, f"MedMNIST file '{path}' ({label_key})")
    stem = path.stem
    names = [f"{stem}-{split}-{i}" for i in range(len(images))]
    return [
        {"image": images[i], "label": label_values[i], "patient_id": names[i], "image_id": names[i]}
        for i in range(len(images))
    ]
