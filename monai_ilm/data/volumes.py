"""Reader of the ``volumes`` data set: a MedMNIST 3D ``.npz`` or a folder of NIfTI volumes with a labels CSV.

The 3D bundle takes either input under one ``dataset_dir``:

* a MedMNIST 3D file (e.g. AdrenalMNIST3D, ``{train,val,test}_images`` of shape ``(N, 28, 28, 28)``), or a
  folder holding one: its official splits (:func:`~monai_ilm.data.medmnist.read_medmnist`), rows holding the
  uint8 arrays;
* a folder of ``.nii`` / ``.nii.gz`` volumes with a ``labels.csv`` of ``image,label[,patient][,split]`` (or
  multi-label ``label_<finding>`` 0/1 columns; see :mod:`monai_ilm.data.nifti`): its ``split`` column when it
  has one, else a seeded patient-level, stratified split (:func:`~monai_ilm.data.splits.train_val_test_split`);
  every header is checked when the folder is read.
"""

from __future__ import annotations

from pathlib import Path

from monai_ilm.data.files import NIFTI_EXTENSIONS, PathLike, has_suffix
from monai_ilm.data.medmnist import read_medmnist
from monai_ilm.data.nifti import csv_columns, read_nifti_folder
from monai_ilm.data.splits import SPLIT_NAMES, train_val_test_split

__all__ = ["EXPECTED_LAYOUT", "read_volumes"]

EXPECTED_LAYOUT = (
    "a MedMNIST 3D .npz file ({train,val,test}_images of shape (N, D, H, W), and _labels) or a folder holding one, "
    "or a folder of NIfTI volumes (*.nii, *.nii.gz) with a labels.csv (columns image,label[,patient][,split])"
)


def _is_npz(root: Path) -> bool:
    """Whether ``root`` is an ``.npz`` file, or a folder holding ``.npz`` files and no NIfTI volume or labels CSV."""
    if root.is_file():
        return root.suffix.lower() == ".npz"
    if (root / "labels.csv").is_file():
        return False
    names = [p.name for p in root.iterdir() if p.is_file()]
    return any(n.lower().endswith(".npz") for n in names) and not any(has_suffix(n, NIFTI_EXTENSIONS) for n in names)


def read_volumes(
    dataset_dir: PathLike,
    split: str = "train",
    seed: int = 0,
    ratios: tuple[float, float, float] = (0.7, 0.1, 0.2),
    val_fraction: float | None = None,
    require_all_classes: bool = False,
    labels_csv: PathLike | None = None,
    flag: str | None = None,
    skip_unreadable: bool = False,
) -> list[dict]:
    """One split of a volume data set: a MedMNIST 3D ``.npz`` (official splits) or a NIfTI folder with a labels CSV.

    Args:
        dataset_dir: the ``.npz`` file, a folder holding one, or a folder of NIfTI volumes (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: the seed of the patient split of a NIfTI folder without a ``split`` column (``.npz`` splits are fixed).
        ratios: the train/val/test patient fractions of that split.
        val_fraction: the share of the train+val patients that form val in that split, or None.
        require_all_classes: raise, instead of logging a warning, when a class is missing from a drawn split.
        labels_csv: the labels CSV of a NIfTI folder (default ``<dataset_dir>/labels.csv``).
        flag: the MedMNIST file's name when the folder holds several ``.npz`` files.
        skip_unreadable: drop missing, unreadable or bad-header volumes with a logged warning instead of raising.

    Returns:
        Rows ``{"image": uint8 array (D, H, W) or NIfTI path, "label": int or multi-hot list, "patient_id": str, ...}``.

    Raises:
        ValueError: for an unknown split, an ``.npz`` that does not hold volumes, or a malformed labels CSV.
        FileNotFoundError: when ``dataset_dir`` does not exist or holds neither layout.
        UnreadableImageError: naming the NIfTI volumes that cannot be read or whose header is unusable.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split: expected one of {list(SPLIT_NAMES)}, got '{split}'.")
    root = Path(dataset_dir).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset_dir: expected {EXPECTED_LAYOUT}, got '{root}', which does not exist.")
    if _is_npz(root):
        return read_medmnist(root, split, flag=flag, spatial_dims=3)
    csv_path = Path(labels_csv) if labels_csv is not None else root / "labels.csv"
    if csv_path.is_file() and "split" in csv_columns(csv_path):
        return read_nifti_folder(root, labels_csv, split=split, skip_unreadable=skip_unreadable)
    rows = read_nifti_folder(root, labels_csv, skip_unreadable=skip_unreadable)
    parts = train_val_test_split(rows, ratios, seed, val_fraction, require_all_classes=require_all_classes)
    return parts[SPLIT_NAMES.index(split)]
