"""Reader for Kaggle diabetic retinopathy (EyePACS) fundus photographs.

Two layouts are read (``layout="auto"`` picks the one present):

* ``"kaggle"``, as Kaggle ships it: ``trainLabels.csv`` (columns ``image,level``; ``image`` such as
  ``10_left``, ``level`` the 0-4 grade) and ``train/10_left.jpeg``. The patient is the number before
  ``_left`` / ``_right``, so both eyes of a patient stay in one split. When Kaggle's later-published
  test labels are there too (``retinopathy_solution.csv`` and ``test/``), they form the test split and
  train/val are carved from ``trainLabels.csv``; otherwise all three splits are carved from it.
* ``"jama16"``, the output of the jama16-retina-replication pre-processing used by the paper:
  ``<split>/<class>/<image>.jpg`` with split folders ``train``, ``validation`` (or ``val``) and
  ``test``. That pre-processing writes no validation images (docs/method.md D19); when the folder is
  missing, val is carved from train by patient with a seed (the authors' 20 %).

Labels: ``grading="referable"`` (default, the paper's task) gives 1 for grade >= 2 (referable DR) and
0 otherwise; ``grading="grades"`` gives the 0-4 grade. jama16 folders named only ``0``/``1`` are
already binarised (``bin2``) and cannot give grades.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monai_ilm.data.files import (
    IMAGE_EXTENSIONS,
    PathLike,
    list_files,
    list_subdirectories,
    read_table,
    require_directory,
    strip_suffix,
)
from monai_ilm.data.integrity import drop_or_raise_missing, verify_images
from monai_ilm.data.splits import SPLIT_NAMES, patient_split, train_val_test_split

LAYOUTS: tuple[str, ...] = ("auto", "kaggle", "jama16")
GRADINGS: tuple[str, ...] = ("referable", "grades")
REFERABLE_GRADE = 2
DEFAULT_VAL_FRACTION = 0.2  # the authors' share of train moved to val
DR_GRADES: tuple[str, ...] = ("no DR", "mild", "moderate", "severe", "proliferative")
DR_REFERABLE_CLASSES: tuple[str, ...] = ("non-referable", "referable")
EXPECTED_LAYOUT = (
    "either Kaggle's trainLabels.csv (columns image,level) with train/<image>.jpeg, or the jama16 layout "
    "<split>/<class>/<image>.jpg with split folders train, validation and test"
)
_EYE_NAME = re.compile(r"^(?P<patient>.+)_(?P<eye>left|right)$")
_JAMA16_SPLIT_FOLDERS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "val": ("validation", "val"),
    "test": ("test",),
}


def patient_of(image_name: str) -> str:
    """The patient id of an EyePACS image name: ``"10_left"`` gives ``"10"``.

    Raises:
        ValueError: when the name does not end with ``_left`` or ``_right``.
    """
    match = _EYE_NAME.match(image_name)
    if match is None:
        raise ValueError(f"EyePACS image name: expected '<patient>_left' or '<patient>_right', got '{image_name}'.")
    return match["patient"]


def grade_to_label(grade: int, grading: str) -> int:
    """The class index of a 0-4 grade: referable DR (grade >= 2) or the grade itself."""
    return int(grade >= REFERABLE_GRADE) if grading == "referable" else int(grade)


def detect_layout(dataset_dir: PathLike) -> str:
    """``"kaggle"`` or ``"jama16"``, whichever ``dataset_dir`` holds.

    Raises:
        FileNotFoundError: naming ``dataset_dir`` and both expected layouts when neither is there.
    """
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    if (root / "trainLabels.csv").is_file() or (root / "trainLabels.csv.gz").is_file():
        return "kaggle"
    if any(c.isdigit() for c in list_subdirectories(root / "train")):
        return "jama16"
    raise FileNotFoundError(f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got no diabetic retinopathy data.")


def read_kaggle_labels(csv_path: PathLike, image_dir: PathLike) -> list[dict]:
    """Rows of a Kaggle label CSV (``image,level``) joined with the image files of ``image_dir``.

    Returns:
        Rows with ``image`` (the path, or ``None`` when no file matches), ``grade``, ``patient_id``,
        ``eye`` and ``image_name``.

    Raises:
        ValueError: when a column is missing, a level is not an integer 0-4, or a name has no eye suffix.
    """
    csv_path = Path(csv_path)
    table = read_table(csv_path, dtype={"image": str})
    missing = [c for c in ("image", "level") if c not in table.columns]
    if missing:
        raise ValueError(
            f"EyePACS label CSV '{csv_path}': expected the header 'image,level', got columns {list(table.columns)} "
            f"(no {missing})."
        )
    table = table.reset_index(drop=True)  # rows with more cells than the header make pandas index by them
    empty = np.flatnonzero(table["image"].isna().to_numpy())
    if len(empty):
        raise ValueError(
            f"EyePACS label CSV '{csv_path}' row {int(empty[0]) + 2}, column 'image': "
            "expected a name, got an empty cell."
        )
    levels = pd.to_numeric(table["level"], errors="coerce")
    bad = np.flatnonzero(~levels.isin(range(5)).to_numpy())
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"EyePACS label CSV '{csv_path}' row {row + 2}, column 'level': expected a grade 0-4, "
            f"got '{table['level'].iloc[row]}'."
        )
    files = {strip_suffix(name, IMAGE_EXTENSIONS): name for name in list_files(image_dir, IMAGE_EXTENSIONS)}
    datalist = []
    for name, grade in zip(table["image"].str.strip().tolist(), levels.astype(int).tolist()):
        file_name = files.get(name)
        datalist.append(
            {
                "image": str(Path(image_dir) / file_name) if file_name else str(Path(image_dir) / f"{name}.jpeg"),
                "found": file_name is not None,
                "grade": grade,
                "patient_id": patient_of(name),
                "eye": _EYE_NAME.match(name)["eye"],
                "image_name": name,
            }
        )
    return datalist


def _with_labels(rows: list[dict], grading: str) -> list[dict]:
    for row in rows:
        row["label"] = grade_to_label(row["grade"], grading)
    return rows


def _split_by_referable(
    rows: list[dict],
    ratios: Sequence[float],
    seed: int,
    split_names: Sequence[str],
    require_all_classes: bool,
    val_fraction: float | None = None,
) -> list[list[dict]]:
    """Patient split stratified on referable DR, so both gradings get the same split of patients.

    A train/val/test split with ``val_fraction`` draws test first and carves val from the rest.
    """
    common = {
        "seed": seed,
        "class_names": DR_REFERABLE_CLASSES,
        "require_all_classes": require_all_classes,
        "label_key": "referable",
    }
    if tuple(split_names) == SPLIT_NAMES:
        parts = train_val_test_split(rows, ratios, val_fraction=val_fraction, **common)
    else:
        parts = patient_split(rows, ratios=ratios, split_names=split_names, **common)
    for part in parts:
        for row in part:
            row.pop("referable")
    return parts


def _read_kaggle(
    root: Path,
    split: str,
    seed: int,
    ratios: Sequence[float],
    val_fraction: float | None,
    grading: str,
    require_all_classes: bool,
) -> list[dict]:
    labels_csv = root / "trainLabels.csv" if (root / "trainLabels.csv").is_file() else root / "trainLabels.csv.gz"
    if not (root / "train").is_dir():
        raise FileNotFoundError(
            f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got {labels_csv.name} without a train/ image folder."
        )
    solution = root / "retinopathy_solution.csv"
    has_test = solution.is_file() and (root / "test").is_dir()
    if has_test and split == "test":
        return _with_labels(read_kaggle_labels(solution, root / "test"), grading)
    rows = _with_labels(read_kaggle_labels(labels_csv, root / "train"), grading)
    for row in rows:
        row["referable"] = grade_to_label(row["grade"], "referable")
    if has_test:
        carve = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
        parts = _split_by_referable(rows, (1.0 - carve, carve), seed, ("train", "val"), require_all_classes)
    else:
        parts = _split_by_referable(rows, ratios, seed, SPLIT_NAMES, require_all_classes, val_fraction)
    return parts[SPLIT_NAMES.index(split)]


def _read_jama16_folder(folder: Path) -> list[dict]:
    classes = [name for name in list_subdirectories(folder) if name.isdigit()]
    rows = []
    for class_name in classes:
        for file_name in list_files(folder / class_name, IMAGE_EXTENSIONS):
            name = strip_suffix(file_name, IMAGE_EXTENSIONS)
            rows.append(
                {
                    "image": str(folder / class_name / file_name),
                    "found": True,
                    "grade": int(class_name),
                    "patient_id": patient_of(name),
                    "image_name": name,
                }
            )
    return rows


def _read_jama16(
    root: Path, split: str, seed: int, val_fraction: float | None, grading: str, require_all_classes: bool
) -> list[dict]:
    folders = {
        name: next((root / f for f in names if (root / f).is_dir()), None)
        for name, names in _JAMA16_SPLIT_FOLDERS.items()
    }
    if folders["train"] is None:
        raise FileNotFoundError(f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got no train/ folder.")
    if split == "test" and folders["test"] is None:
        raise FileNotFoundError(f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got no test/ folder.")
    source = folders[split] if split != "val" or folders["val"] is not None else folders["train"]
    rows = _read_jama16_folder(source)
    if not rows:
        raise FileNotFoundError(f"'{source}': expected {EXPECTED_LAYOUT}, got no images in numbered class folders.")
    all_grades = {row["grade"] for row in _read_jama16_folder(folders["train"])} | {row["grade"] for row in rows}
    binarised = all_grades <= {0, 1}
    if binarised and grading == "grades":
        raise ValueError(
            f"dataset_dir '{root}': expected class folders 0-4 for grading='grades', "
            "got only class folders 0 and 1 (jama16 bin2, already binarised)."
        )
    for row in rows:
        row["label"] = row["grade"] if binarised else grade_to_label(row["grade"], grading)
        row["referable"] = row["grade"] if binarised else grade_to_label(row["grade"], "referable")
        if binarised:
            row.pop("grade")
    if split in ("train", "val") and folders["val"] is None:
        carve = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
        parts = _split_by_referable(rows, (1.0 - carve, carve), seed, ("train", "val"), require_all_classes)
        return parts[0 if split == "train" else 1]
    for row in rows:
        row.pop("referable")
    return rows


def read_dr(
    dataset_dir: PathLike,
    split: str = "train",
    layout: str = "auto",
    grading: str = "referable",
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    val_fraction: float | None = None,
    verify: bool = False,
    skip_unreadable: bool = False,
    require_all_classes: bool = False,
) -> list[dict]:
    """Datalist of one split of EyePACS diabetic retinopathy.

    Args:
        dataset_dir: a Kaggle or jama16 folder (see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        layout: ``"kaggle"``, ``"jama16"`` or ``"auto"``.
        grading: ``"referable"`` (grade >= 2 is class 1; the paper's task) or ``"grades"`` (0-4).
        seed: seed of the patient-level carve-outs.
        ratios: train/val/test patient fractions when every split comes from ``trainLabels.csv``.
        val_fraction: fraction of train patients moved to val when there is a separate test set or
            no validation folder (None: 1/5, the authors'). When every split comes from ``trainLabels.csv``
            and it is given, test is drawn first (``ratios[2]``) and val is this fraction of the rest.
        verify: decode every image of the split (slow at full scale).
        skip_unreadable: drop missing or unreadable images with a logged warning instead of raising.
        require_all_classes: raise when a class is missing from a carved split; ``False`` logs a warning
            naming the class and the split instead.

    Returns:
        Rows ``{"image": path, "label": int, "patient_id": str, "image_name": str, "grade": int, ...}``.

    Raises:
        ValueError: for an unknown split, layout or grading, a malformed CSV, or grades asked of bin2 data.
        FileNotFoundError: when the folder, its layout or a listed image is missing.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split: expected one of {list(SPLIT_NAMES)}, got '{split}'.")
    if layout not in LAYOUTS:
        raise ValueError(f"layout: expected one of {list(LAYOUTS)}, got '{layout}'.")
    if grading not in GRADINGS:
        raise ValueError(f"grading: expected one of {list(GRADINGS)}, got '{grading}'.")
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction}.")
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    layout = detect_layout(root) if layout == "auto" else layout
    if layout == "kaggle":
        rows = _read_kaggle(root, split, seed, ratios, val_fraction, grading, require_all_classes)
    else:
        rows = _read_jama16(root, split, seed, val_fraction, grading, require_all_classes)
    missing = np.flatnonzero([not row.pop("found") for row in rows]).tolist()
    rows = drop_or_raise_missing(rows, missing, skip_unreadable, f"the EyePACS '{split}' split of '{root}'")
    if verify:
        rows, _ = verify_images(rows, skip_unreadable)
    return rows
