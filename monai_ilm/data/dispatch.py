"""One entry point for every supported data set: :func:`load_datalist`, called by the bundle configs."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

from monai_ilm.data.csv_datalist import SPLIT_ALIASES, read_csv_datalist
from monai_ilm.data.dr import EXPECTED_LAYOUT as DR_LAYOUT
from monai_ilm.data.dr import read_dr
from monai_ilm.data.files import PathLike, list_subdirectories, read_text_lines
from monai_ilm.data.folder import read_image_folder
from monai_ilm.data.idc import EXPECTED_LAYOUT as IDC_LAYOUT
from monai_ilm.data.idc import read_idc
from monai_ilm.data.medmnist import read_medmnist
from monai_ilm.data.nifti import EXPECTED_LAYOUT as NIFTI_LAYOUT
from monai_ilm.data.nifti import read_nifti_folder
from monai_ilm.data.nih import EXPECTED_LAYOUT as NIH_LAYOUT
from monai_ilm.data.nih import read_nih
from monai_ilm.data.splits import SPLIT_NAMES, patient_split, validate_fraction
from monai_ilm.data.splits import label_fraction as take_label_fraction

logger = logging.getLogger(__name__)

DATASET_LAYOUTS: dict[str, str] = {
    "nih": NIH_LAYOUT,
    "idc": IDC_LAYOUT,
    "dr": DR_LAYOUT,
    "medmnist": "a MedMNIST .npz file ({train,val,test}_images and _labels) or a folder holding one",
    "csv": "a CSV datalist (columns image,label[,patient_id][,split]) or a folder holding datalist.csv",
    "folder": "an image-folder tree <root>/<class>/<image>, optionally inside train/, val/ and test/ folders",
    "nifti": NIFTI_LAYOUT,
}
"""What each data set's ``dataset_dir`` must hold, quoted in error messages."""

DATASETS: tuple[str, ...] = tuple(DATASET_LAYOUTS)


def _split_folder(root: Path, split: str) -> Path | None:
    folders = set(list_subdirectories(root))
    return next((root / name for name in SPLIT_ALIASES[split] if name in folders), None)


def _has_split_folders(root: Path) -> bool:
    return any(_split_folder(root, name) is not None for name in SPLIT_NAMES)


def _load_tree(
    root: Path, split: str, seed: int, read: Callable[[Path], list[dict]], ratios: Sequence[float], val_fraction: float
) -> list[dict]:
    """One split of a tree read by ``read``: from split folders when present, else a seeded patient split.

    With split folders but no val folder, val is carved from the train folder by patient (and train
    is what is left), so the two never share a patient.
    """
    if not _has_split_folders(root):
        return patient_split(read(root), ratios=ratios, seed=seed)[SPLIT_NAMES.index(split)]
    train_folder = _split_folder(root, "train")
    if split in ("train", "val") and _split_folder(root, "val") is None and train_folder is not None:
        parts = patient_split(
            read(train_folder), ratios=(1 - val_fraction, val_fraction), seed=seed, split_names=("train", "val")
        )
        return parts[0 if split == "train" else 1]
    folder = _split_folder(root, split)
    if folder is None:
        raise FileNotFoundError(
            f"dataset_dir '{root}' has split folders but none for split '{split}' "
            f"(looked for {list(SPLIT_ALIASES[split])})."
        )
    return read(folder)


def _load_csv(root: Path, split: str, seed: int, ratios, kwargs: dict) -> list[dict]:
    csv_path = root if root.is_file() else root / kwargs.pop("csv_file", "datalist.csv")
    if not csv_path.is_file():
        raise FileNotFoundError(f"dataset_dir '{root}' holds no '{csv_path.name}'; expected {DATASET_LAYOUTS['csv']}.")
    header = [column.strip() for column in " ".join(read_text_lines(csv_path, max_lines=1)).split(",")]
    kwargs.setdefault("patient_column", "patient_id" if "patient_id" in header else None)
    split_column = kwargs.pop("split_column", "split" if "split" in header else None)
    if split_column is not None:
        return read_csv_datalist(csv_path, split_column=split_column, split=split, **kwargs)
    return patient_split(read_csv_datalist(csv_path, **kwargs), ratios=ratios, seed=seed)[SPLIT_NAMES.index(split)]


def load_datalist(
    dataset: str,
    dataset_dir: PathLike,
    split: str,
    seed: int = 0,
    label_fraction: float = 1.0,
    **kwargs,
) -> list[dict]:
    """The datalist of one split of one data set, optionally reduced to a labelled fraction.

    This is the function the bundle configs call, e.g.
    ``{"_target_": "monai_ilm.data.load_datalist", "dataset": "nih", "dataset_dir": "@dataset_dir",
    "split": "train", "label_fraction": 0.01}``.

    Args:
        dataset: ``"nih"``, ``"idc"``, ``"dr"``, ``"medmnist"``, ``"csv"``, ``"folder"`` or ``"nifti"``.
        dataset_dir: the data set's folder (or file, for ``medmnist`` and ``csv``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: the seed of every split and subset drawn (the same seed gives the same rows).
        label_fraction: keep this fraction of the split's rows, grouped by patient and stratified
            (:func:`monai_ilm.data.splits.label_fraction`; nested across fractions for one seed).
        kwargs: passed to the reader (:func:`~monai_ilm.data.nih.read_nih`, :func:`~monai_ilm.data.idc.read_idc`,
            :func:`~monai_ilm.data.dr.read_dr`, :func:`~monai_ilm.data.medmnist.read_medmnist`,
            :func:`~monai_ilm.data.csv_datalist.read_csv_datalist`, :func:`~monai_ilm.data.folder.read_image_folder`
            or :func:`~monai_ilm.data.nifti.read_nifti_folder`). ``ratios`` and ``val_fraction`` set the
            seeded split of ``csv``, ``folder`` and ``nifti`` data without split information.

    Returns:
        Rows ``{"image": path or array, "label": int or multi-hot list, "patient_id": str, ...}``.

    Raises:
        ValueError: for an unknown data set or split (listing the allowed values), or a fraction outside (0, 1].
        FileNotFoundError: naming ``dataset_dir`` when it does not exist or lacks the expected layout.
    """
    if dataset not in DATASET_LAYOUTS:
        raise ValueError(f"dataset must be one of {list(DATASETS)}, got '{dataset}'.")
    if split not in SPLIT_NAMES:
        raise ValueError(f"split must be one of {list(SPLIT_NAMES)}, got '{split}'.")
    fraction = validate_fraction(label_fraction)
    root = Path(dataset_dir).expanduser()
    if not root.exists():
        raise FileNotFoundError(f"dataset_dir '{root}' does not exist; expected {DATASET_LAYOUTS[dataset]}.")
    ratios = kwargs.pop("ratios", (0.7, 0.1, 0.2))
    val_fraction = kwargs.pop("val_fraction", 0.1)
    if dataset == "nih":
        rows = read_nih(root, split, seed=seed, **kwargs)
    elif dataset == "idc":
        rows = read_idc(root, split, seed=seed, ratios=ratios, **kwargs)
    elif dataset == "dr":
        rows = read_dr(root, split, seed=seed, ratios=ratios, **kwargs)
    elif dataset == "medmnist":
        rows = read_medmnist(root, split, **kwargs)
    elif dataset == "csv":
        rows = _load_csv(root, split, seed, ratios, kwargs)
    elif dataset == "folder":
        rows = _load_tree(root, split, seed, lambda path: read_image_folder(path, **kwargs), ratios, val_fraction)
    else:
        rows = _load_tree(root, split, seed, lambda path: read_nifti_folder(path, **kwargs), ratios, val_fraction)
    if fraction < 1.0:
        rows = take_label_fraction(rows, fraction, seed=seed)
    logger.info("%s %s split of '%s': %d rows (label fraction %g)", dataset, split, root, len(rows), fraction)
    return rows
