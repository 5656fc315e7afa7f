"""Reader for the Kaggle breast histopathology IDC patches (Janowczyk and Madabhushi, 2016).

Layout (``dataset_dir``), exactly as Kaggle ships it::

    <patient_id>/0/<patient_id>_idx5_x<X>_y<Y>_class0.png     (IDC-negative 50x50 RGB patches)
    <patient_id>/1/<patient_id>_idx5_x<X>_y<Y>_class1.png     (IDC-positive)

The label comes from the class folder and is cross-checked with the ``class<c>`` suffix and the
patient folder with the file-name prefix; any mismatch is an error naming the file.

Splits: the reference's split CSVs (header ``img_path,labels``, ``img_path`` relative to
``dataset_dir``; ``train_split.csv``, ``val_split.csv``, ``test_split.csv``) when present, else a
seeded, stratified, patient-level split. The reference's train CSV is not public (docs/method.md D21):
when only the val and test CSVs exist, train is every other patient. Split CSVs that share a patient
(before 2022-04-25 val and test were the same file, D7) are rejected. Paths are resolved against
``dataset_dir`` (or ``split_csv_dir``), never the working directory (D17).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monai_ilm.data.files import PathLike, list_files, list_subdirectories, read_table, require_directory
from monai_ilm.data.integrity import drop_or_raise_missing, verify_images
from monai_ilm.data.splits import SPLIT_NAMES, assert_patient_disjoint, train_val_test_split

IDC_CLASSES: tuple[str, ...] = ("IDC-negative", "IDC-positive")
"""Class names by index: 0 = IDC-negative, 1 = IDC-positive."""

FILE_NAME_PATTERN = re.compile(r"^(?P<patient>[^_/]+)_idx5_x(?P<x>\d+)_y(?P<y>\d+)_class(?P<label>[01])\.png$")
SPLIT_SOURCES: tuple[str, ...] = ("auto", "csv", "seeded")
SPLIT_CSV_NAMES: dict[str, str] = {"train": "train_split.csv", "val": "val_split.csv", "test": "test_split.csv"}
EXPECTED_LAYOUT = (
    "the Kaggle IDC layout <patient_id>/<0|1>/<patient_id>_idx5_x<X>_y<Y>_class<0|1>.png "
    "(if you downloaded from Kaggle, point at the folder that holds the patient folders)"
)


def parse_idc_file_name(path: str | Path) -> dict:
    """Patient, patch position and label encoded in an IDC patch path, checked against its folders.

    Args:
        path: ``.../<patient_id>/<class>/<patient_id>_idx5_x<X>_y<Y>_class<c>.png``.

    Returns:
        ``{"patient_id": str, "x": int, "y": int, "label": int}``.

    Raises:
        ValueError: when the name does not follow the pattern, the ``class<c>`` suffix differs from
            the class folder, or the name's patient differs from the patient folder.
    """
    path = Path(path)
    match = FILE_NAME_PATTERN.match(path.name)
    if match is None:
        raise ValueError(
            f"IDC patch '{path}': expected the file-name pattern <patient>_idx5_x<X>_y<Y>_class<0|1>.png, "
            f"got '{path.name}'."
        )
    label = int(match["label"])
    folder_label, folder_patient = path.parent.name, path.parent.parent.name
    if folder_label != str(label):
        raise ValueError(
            f"IDC patch '{path}': expected class folder '{label}' (its name says class{label}), "
            f"got class folder '{folder_label}'."
        )
    if folder_patient != match["patient"]:
        raise ValueError(
            f"IDC patch '{path}': expected patient folder '{match['patient']}' (its name says so), "
            f"got patient folder '{folder_patient}'."
        )
    return {"patient_id": match["patient"], "x": int(match["x"]), "y": int(match["y"]), "label": label}


def scan_idc(dataset_dir: PathLike) -> list[dict]:
    """Every patch under ``dataset_dir``, with label from the folder (cross-checked with the name).

    Raises:
        FileNotFoundError: when ``dataset_dir`` is missing or holds no patient folder with patches.
        ValueError: when a patch name disagrees with its folders (see :func:`parse_idc_file_name`).
    """
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    datalist = []
    for patient in list_subdirectories(root):
        for label in ("0", "1"):
            folder = root / patient / label
            for name in list_files(folder, (".png",)):
                path = folder / name
                datalist.append({"image": str(path), **parse_idc_file_name(path)})
    if not datalist:
        raise FileNotFoundError(f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got no IDC patches.")
    return datalist


def read_idc_split_csv(csv_path: PathLike, dataset_dir: PathLike) -> list[dict]:
    """Rows of a reference split CSV (``img_path,labels``), paths resolved against ``dataset_dir``.

    Raises:
        ValueError: when a column is missing, a label is not 0/1, or a label disagrees with the path.
    """
    csv_path, root = Path(csv_path), Path(dataset_dir)
    table = read_table(csv_path, dtype={"img_path": str})
    missing = [c for c in ("img_path", "labels") if c not in table.columns]
    if missing:
        raise ValueError(
            f"IDC split CSV '{csv_path}': expected the header 'img_path,labels', got columns {list(table.columns)} "
            f"(no {missing})."
        )
    table = table.reset_index(drop=True)  # rows with more cells than the header make pandas index by them
    empty = np.flatnonzero(table["img_path"].isna().to_numpy())
    if len(empty):
        raise ValueError(
            f"IDC split CSV '{csv_path}' row {int(empty[0]) + 2}, column 'img_path': "
            "expected a path, got an empty cell."
        )
    labels = pd.to_numeric(table["labels"], errors="coerce")
    bad = np.flatnonzero(~labels.isin([0, 1]).to_numpy())
    if len(bad):
        row = int(bad[0])
        raise ValueError(
            f"IDC split CSV '{csv_path}' row {row + 2}, column 'labels': expected 0 or 1, "
            f"got '{table['labels'].iloc[row]}'."
        )
    datalist = []
    for relative, label in zip(table["img_path"].tolist(), labels.astype(int).tolist()):
        path = root / relative
        parsed = parse_idc_file_name(path)
        if parsed["label"] != label:
            raise ValueError(
                f"IDC split CSV '{csv_path}', label of '{relative}': expected {parsed['label']} (its class folder), "
                f"got {label}."
            )
        datalist.append({"image": str(path), **parsed})
    return datalist


def _csv_splits(root: Path, csv_dir: Path, split: str) -> list[dict] | None:
    """The requested split from the reference CSVs, or ``None`` when the CSVs cannot provide it."""
    paths = {name: csv_dir / file for name, file in SPLIT_CSV_NAMES.items() if (csv_dir / file).is_file()}
    if split in paths:
        requested = read_idc_split_csv(paths[split], root)
        others = [read_idc_split_csv(paths[name], root) for name in paths if name != split]
        assert_patient_disjoint(requested, *others, names=[split] + [n for n in paths if n != split])
        return requested
    if split == "train" and {"val", "test"} <= set(paths):
        val, test = read_idc_split_csv(paths["val"], root), read_idc_split_csv(paths["test"], root)
        assert_patient_disjoint(val, test, names=["val", "test"])
        excluded = {item["patient_id"] for item in val + test}
        return [item for item in scan_idc(root) if item["patient_id"] not in excluded]
    return None


def read_idc(
    dataset_dir: PathLike,
    split: str = "train",
    split_source: str = "auto",
    seed: int = 0,
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    val_fraction: float | None = None,
    split_csv_dir: PathLike | None = None,
    verify: bool = False,
    skip_unreadable: bool = False,
    require_all_classes: bool = False,
) -> list[dict]:
    """Datalist of one split of the Kaggle IDC breast histopathology patches.

    Args:
        dataset_dir: the folder holding the patient folders.
        split: ``"train"``, ``"val"`` or ``"test"``.
        split_source: ``"csv"`` (the reference's split CSVs), ``"seeded"`` (seeded patient split) or
            ``"auto"`` (the CSVs when they provide the split, else seeded).
        seed: seed of the patient split.
        ratios: train/val/test fractions of patients for the seeded split.
        val_fraction: for the seeded split, when given, test is drawn first (``ratios[2]`` of the
            patients) and val is this fraction of the other patients; the split CSVs ignore it.
        split_csv_dir: where the split CSVs are (default: ``dataset_dir``).
        verify: decode every patch of the split (slow at full scale).
        skip_unreadable: drop missing or unreadable patches with a logged warning instead of raising.
        require_all_classes: raise when a class is missing from a seeded split; ``False`` logs a warning
            naming the class and the split instead.

    Returns:
        Rows ``{"image": path, "label": 0|1, "patient_id": str, "x": int, "y": int}``.

    Raises:
        ValueError: for an unknown split or split source, a name/folder mismatch, a bad CSV, or split
            CSVs sharing a patient.
        FileNotFoundError: when the folder, the requested split CSV (``"csv"``) or a patch is missing.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split: expected one of {list(SPLIT_NAMES)}, got '{split}'.")
    if split_source not in SPLIT_SOURCES:
        raise ValueError(f"split_source: expected one of {list(SPLIT_SOURCES)}, got '{split_source}'.")
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    csv_dir = Path(split_csv_dir) if split_csv_dir is not None else root
    datalist = None if split_source == "seeded" else _csv_splits(root, csv_dir, split)
    if datalist is not None:  # CSV rows may point at patches that are not on disk
        exists = np.fromiter((Path(item["image"]).is_file() for item in datalist), dtype=bool, count=len(datalist))
        datalist = drop_or_raise_missing(
            datalist, np.flatnonzero(~exists).tolist(), skip_unreadable, f"the IDC '{split}' split CSV in '{csv_dir}'"
        )
    else:
        if split_source == "csv":
            raise FileNotFoundError(
                f"split_csv_dir '{csv_dir}': expected {SPLIT_CSV_NAMES[split]} for split '{split}' "
                "(or val_split.csv and test_split.csv for train), got no such file."
            )
        parts = train_val_test_split(
            scan_idc(root), ratios, seed, val_fraction, class_names=IDC_CLASSES, require_all_classes=require_all_classes
        )
        datalist = parts[SPLIT_NAMES.index(split)]
        datalist = drop_or_raise_missing(datalist, [], skip_unreadable, f"the IDC '{split}' split of '{root}'")
    if verify:
        datalist, _ = verify_images(datalist, skip_unreadable)
    return datalist
