"""Reader for NIH ChestX-ray14 as NIH publishes it (Wang et al., CVPR 2017).

Layout (``dataset_dir``)::

    Data_Entry_2017_v2020.csv[.gz]   or  Data_Entry_2017.csv[.gz]
    images_001/images/00000001_000.png ... images_012/images/...   (as downloaded; or a flat folder)
    train_val_list.txt, test_list.txt                              (official split, one file name per line)

The paper's code (docs/method.md §2.1) needs the 112,120 PNGs flattened into one folder and uses the
CheXNet split lists (70/10/20 by patient, 15 columns: file name and 14 labels). Here the published
nested folders work as they are, and the split comes from one of three sources:

* ``"official"``: NIH's ``test_list.txt`` is the test split; ``train_val_list.txt`` is split by
  patient into train and val with a seed (``val_fraction`` of its patients, stratified). Without
  the lists (Kaggle's "sample" download, user subsets) the seeded split below is used, with a
  logged warning naming the missing list;
* ``"chexnet"``: the CheXNet lists used by the paper (``chest_xray_14_{split}_list.txt``,
  ``labels/{split}_list.txt`` or ``{split}_list.txt`` with 15 columns; labels are taken from the list);
* ``"seeded"``: a seeded, stratified 70/10/20 patient-level split of the whole metadata table.

Labels are 14-long float multi-hot lists in the CheXNet order (:data:`NIH_FINDINGS`); ``No Finding``
is all zeros.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monai_ilm.data.files import (
    PathLike,
    find_first_existing,
    list_files,
    list_subdirectories,
    read_table,
    read_text_lines,
    require_directory,
)
from monai_ilm.data.integrity import drop_or_raise_missing, verify_images
from monai_ilm.data.splits import SPLIT_NAMES, patient_split, train_val_test_split

logger = logging.getLogger(__name__)

NIH_FINDINGS: tuple[str, ...] = (
    "Atelectasis",
    "Cardiomegaly",
    "Effusion",
    "Infiltration",
    "Mass",
    "Nodule",
    "Pneumonia",
    "Pneumothorax",
    "Consolidation",
    "Edema",
    "Emphysema",
    "Fibrosis",
    "Pleural_Thickening",
    "Hernia",
)
"""The 14 findings in the CheXNet order used by the paper's label vectors."""

NO_FINDING = "No Finding"
METADATA_FILES: tuple[str, ...] = (
    "Data_Entry_2017_v2020.csv",
    "Data_Entry_2017_v2020.csv.gz",
    "Data_Entry_2017.csv",
    "Data_Entry_2017.csv.gz",
)
REQUIRED_COLUMNS: tuple[str, ...] = ("Image Index", "Finding Labels", "Patient ID")
SPLIT_SOURCES: tuple[str, ...] = ("official", "chexnet", "seeded")
OFFICIAL_LISTS: tuple[str, ...] = ("train_val_list.txt", "test_list.txt")
DEFAULT_VAL_FRACTION = 0.125  # val = 1/8 of train_val gives the CheXNet 70:10 train:val ratio
EXPECTED_LAYOUT = (
    "a NIH ChestX-ray14 folder holding Data_Entry_2017_v2020.csv(.gz) or Data_Entry_2017.csv(.gz) and the PNGs "
    "in images_001/images/ ... images_012/images/ (or flat)"
)
_FILE_NAME = re.compile(r"^(\d+)_\d+\.png$")


def find_metadata_csv(dataset_dir: PathLike) -> Path:
    """The NIH metadata table in ``dataset_dir`` (the v2020 revision is preferred).

    Raises:
        FileNotFoundError: naming ``dataset_dir`` and the file names looked for.
    """
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    path = find_first_existing(root, METADATA_FILES)
    if path is None:
        raise FileNotFoundError(
            f"dataset_dir '{root}': expected an NIH metadata table ({', '.join(METADATA_FILES)}), got none."
        )
    return path


def parse_findings(finding_labels: pd.Series, source: str = "the metadata table") -> np.ndarray:
    """Multi-hot (N, 14) float32 matrix from ``Finding Labels`` strings such as ``"Effusion|Mass"``.

    Args:
        finding_labels: one ``|``-separated string per image; ``No Finding`` gives an all-zero row.
        source: where the strings come from, for the error message.

    Raises:
        ValueError: when a string holds a finding that is not one of the 14 (nor ``No Finding``).
    """
    dummies = finding_labels.fillna("").astype(str).str.get_dummies(sep="|")
    dummies.columns = [column.strip() for column in dummies.columns]
    unknown = sorted(set(dummies.columns) - set(NIH_FINDINGS) - {NO_FINDING, ""})
    if unknown:
        raise ValueError(
            f"'Finding Labels' in {source}: expected '|'-separated names from {list(NIH_FINDINGS)} or "
            f"'{NO_FINDING}', got unknown finding(s) {unknown}."
        )
    if dummies.columns.duplicated().any():  # names that differed only by surrounding spaces
        dummies = dummies.T.groupby(level=0).max().T
    return dummies.reindex(columns=list(NIH_FINDINGS), fill_value=0).to_numpy(dtype=np.float32)


def read_nih_metadata(csv_path: PathLike) -> pd.DataFrame:
    """Read the NIH metadata table into ``image_name``, ``patient_id`` and the 14 finding columns.

    Works on the plain or gzipped CSV (original 2017 or v2020 revision); only the needed columns are
    parsed, so all 112,120 rows take well under a second.

    Args:
        csv_path: ``Data_Entry_2017_v2020.csv(.gz)`` or ``Data_Entry_2017.csv(.gz)``.

    Returns:
        A DataFrame with one row per image, in file order.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when a required column is missing or a finding is unknown.
    """
    path = Path(csv_path)
    if not path.is_file():
        raise FileNotFoundError(f"NIH metadata table '{path}': expected a file, got nothing (the path does not exist).")
    header = read_table(path, nrows=0).columns
    missing = [column for column in REQUIRED_COLUMNS if column not in header]
    if missing:
        raise ValueError(
            f"NIH metadata table '{path}': expected the columns {list(REQUIRED_COLUMNS)}, got {list(header)} "
            f"(no column(s) {missing})."
        )
    optional = [c for c in ("View Position",) if c in header]
    table = read_table(
        path, usecols=list(REQUIRED_COLUMNS) + optional, dtype={"Image Index": str, "Finding Labels": str}
    )
    findings = parse_findings(table["Finding Labels"], source=f"'{path}'")
    frame = pd.DataFrame(
        {"image_name": table["Image Index"].str.strip(), "patient_id": table["Patient ID"].astype(str)}
    )
    if "View Position" in table:
        frame["view_position"] = table["View Position"].astype(str)
    frame[list(NIH_FINDINGS)] = findings
    return frame


def index_nih_images(dataset_dir: PathLike) -> dict[str, str]:
    """Map each PNG file name to its path, for the published nested layout and for a flat folder.

    Looks in ``dataset_dir``, ``dataset_dir/images`` and every ``dataset_dir/images_*/`` and
    ``dataset_dir/images_*/images/`` with one directory listing each.
    """
    root = Path(dataset_dir)
    folders = [root, root / "images"]
    for name in list_subdirectories(root):
        if name.startswith("images_"):
            folders += [root / name, root / name / "images"]
    index: dict[str, str] = {}
    for folder in folders:
        for file_name in list_files(folder, (".png",)):
            index.setdefault(file_name, str(folder / file_name))
    return index


def _read_name_list(path: Path) -> list[str]:
    """File names from an official NIH list (one per line; blank lines ignored)."""
    return [line.split()[0] for line in read_text_lines(path) if line.strip()]


def _find_chexnet_list(directory: Path, split: str) -> Path:
    names = [f"chest_xray_14_{split}_list.txt", f"labels/{split}_list.txt", f"{split}_list.txt"]
    for name in names:
        path = directory / name
        if path.is_file():
            first = " ".join(read_text_lines(path, max_lines=1)).split()
            if len(first) == 1 + len(NIH_FINDINGS):
                return path
    raise FileNotFoundError(
        f"'{directory}': expected a CheXNet split list for split '{split}' (one of {names}, with 15 "
        "space-separated columns: file name and 14 labels), got none."
    )


def _read_chexnet_list(path: Path) -> pd.DataFrame:
    """Rows of a CheXNet list: the file name and its 14 labels (CRLF line ends are fine)."""
    table = read_table(path, sep=r"\s+", header=None, dtype={0: str}, engine="c")
    if table.shape[1] != 1 + len(NIH_FINDINGS):
        raise ValueError(f"CheXNet list '{path}': expected 15 columns (file name and 14 labels), got {table.shape[1]}.")
    names = table[0].str.strip()
    bad = names[~names.str.match(_FILE_NAME)]
    if len(bad):
        raise ValueError(f"CheXNet list '{path}': expected file names like '00001522_000.png', got '{bad.iloc[0]}'.")
    frame = pd.DataFrame({"image_name": names, "patient_id": names.str.extract(_FILE_NAME)[0].astype(int).astype(str)})
    frame[list(NIH_FINDINGS)] = table.iloc[:, 1:].to_numpy(dtype=np.float32)
    return frame


def _to_datalist(frame: pd.DataFrame, image_paths: dict[str, str] | None, root: Path) -> tuple[list[dict], list[int]]:
    """Datalist rows from a metadata frame, and the indices of rows whose image is not in the index."""
    names = frame["image_name"].tolist()
    if image_paths is None:
        paths, missing = [str(root / name) for name in names], []
    else:
        paths = [image_paths.get(name) for name in names]
        missing = [i for i, path in enumerate(paths) if path is None]
        paths = [path if path is not None else str(root / names[i]) for i, path in enumerate(paths)]
    labels = frame[list(NIH_FINDINGS)].to_numpy(dtype=np.float32).tolist()
    extra = frame["view_position"].tolist() if "view_position" in frame else None
    datalist = []
    for i, (name, patient, label) in enumerate(zip(names, frame["patient_id"].tolist(), labels)):
        item = {"image": paths[i], "label": label, "patient_id": patient, "image_name": name}
        if extra is not None:
            item["view_position"] = extra[i]
        datalist.append(item)
    return datalist, missing


def _select_official(
    frame: pd.DataFrame, root: Path, split: str, seed: int, val_fraction: float, require_all_classes: bool
) -> pd.DataFrame:
    train_val_path, test_path = (root / name for name in OFFICIAL_LISTS)
    test_names = set(_read_name_list(test_path))
    train_val_names = set(_read_name_list(train_val_path))
    unknown = (test_names | train_val_names) - set(frame["image_name"])
    if unknown:
        raise ValueError(
            f"official split lists of '{root}': expected file names from the metadata table, got {len(unknown)} "
            f"that are not in it, e.g. {sorted(unknown)[:3]}."
        )
    if split == "test":
        return frame[frame["image_name"].isin(test_names)]
    train_val = frame[frame["image_name"].isin(train_val_names)]
    parts = patient_split(
        _split_rows(train_val),
        ratios=(1.0 - val_fraction, val_fraction),
        seed=seed,
        split_names=("train", "val"),
        class_names=NIH_FINDINGS,
        require_all_classes=require_all_classes,
    )
    return train_val.iloc[[row["row"] for row in parts[0 if split == "train" else 1]]]


def _split_rows(frame: pd.DataFrame) -> list[dict]:
    """Light rows (patient, label, row number) for :func:`patient_split`, built without a per-row pandas call."""
    labels = frame[list(NIH_FINDINGS)].to_numpy(dtype=np.float32).tolist()
    patients = frame["patient_id"].tolist()
    return [{"patient_id": p, "label": label, "row": i} for i, (p, label) in enumerate(zip(patients, labels))]


def _select_seeded(
    frame: pd.DataFrame,
    split: str,
    seed: int,
    ratios: Sequence[float],
    val_fraction: float | None,
    require_all_classes: bool,
) -> pd.DataFrame:
    parts = train_val_test_split(
        _split_rows(frame),
        ratios,
        seed,
        val_fraction,
        class_names=NIH_FINDINGS,
        require_all_classes=require_all_classes,
    )
    return frame.iloc[[row["row"] for row in parts[SPLIT_NAMES.index(split)]]]


def read_nih(
    dataset_dir: PathLike,
    split: str = "train",
    split_source: str = "official",
    seed: int = 0,
    val_fraction: float | None = None,
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    split_list_dir: PathLike | None = None,
    check_images: bool = True,
    verify: bool = False,
    skip_unreadable: bool = False,
    require_all_classes: bool = False,
) -> list[dict]:
    """Datalist of one split of NIH ChestX-ray14.

    Args:
        dataset_dir: the NIH folder (metadata table and images; see the module docstring).
        split: ``"train"``, ``"val"`` or ``"test"``.
        split_source: ``"official"`` (NIH lists; val carved from train_val by patient; the seeded split,
            with a warning, when a list is missing), ``"chexnet"`` (the paper's CheXNet lists) or
            ``"seeded"`` (seeded patient split of all rows).
        seed: the seed for the val carve-out (official) or the whole split (seeded).
        val_fraction: with ``"official"``, the fraction of train_val patients that form val (None: 1/8,
            the CheXNet 70:10 train:val ratio). With ``"seeded"``, when given, test is drawn first
            (``ratios[2]`` of the patients) and val is this fraction of the other patients.
        ratios: with ``"seeded"``, the train/val/test fractions of patients.
        split_list_dir: where the split lists are (default: ``dataset_dir``).
        check_images: look each image up on disk (one listing per folder) and fail on missing ones.
            ``False`` builds flat paths without touching the images (metadata-only work).
        verify: also decode every image of the split (slow at full scale).
        skip_unreadable: drop missing or unreadable images with a logged warning instead of raising.
        require_all_classes: for seeded splits and the val carve-out, raise when a finding is missing
            from a split; ``False`` logs a warning naming the finding and the split instead.

    Returns:
        Rows ``{"image": path, "label": 14 floats, "patient_id": str, "image_name": str, ...}``.

    Raises:
        ValueError: for an unknown ``split`` or ``split_source``, a malformed table or list, or (with
            ``require_all_classes``) a finding missing from a split.
        FileNotFoundError: when ``dataset_dir``, the metadata table, a CheXNet list or an image is missing.
    """
    if split not in SPLIT_NAMES:
        raise ValueError(f"split: expected one of {list(SPLIT_NAMES)}, got '{split}'.")
    if split_source not in SPLIT_SOURCES:
        raise ValueError(f"split_source: expected one of {list(SPLIT_SOURCES)}, got '{split_source}'.")
    if val_fraction is not None and not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction}.")
    started = time.perf_counter()
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    list_dir = Path(split_list_dir) if split_list_dir is not None else root
    if split_source == "chexnet":
        frame = _read_chexnet_list(_find_chexnet_list(list_dir, split))
    else:
        frame = read_nih_metadata(find_metadata_csv(root))
        missing_lists = [name for name in OFFICIAL_LISTS if not (list_dir / name).is_file()]
        if split_source == "official" and missing_lists:
            shares = "/".join(f"{100 * r:g}" for r in ratios) + " (train/val/test)"
            if val_fraction is not None:
                shares = f"{100 * ratios[2]:g}% test, val_fraction {val_fraction:g} of the rest,"
            logger.warning(
                "NIH %s split: '%s' has no %s, so the official split is replaced by the seeded %s "
                "patient-level split with seed %d; set split_source='seeded' to choose it explicitly.",
                split,
                list_dir,
                " or ".join(f"'{name}'" for name in missing_lists),
                shares,
                seed,
            )
            split_source = "seeded"
        if split_source == "official":
            carve = DEFAULT_VAL_FRACTION if val_fraction is None else val_fraction
            frame = _select_official(frame, list_dir, split, seed, carve, require_all_classes)
        else:
            frame = _select_seeded(frame, split, seed, ratios, val_fraction, require_all_classes)
    image_paths = None
    if check_images:
        image_paths = index_nih_images(root)
        if not image_paths:
            raise FileNotFoundError(f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got no PNG images.")
    datalist, missing = _to_datalist(frame, image_paths, root)
    datalist = drop_or_raise_missing(datalist, missing, skip_unreadable, source=f"the NIH '{split}' split of '{root}'")
    if verify:
        datalist, _ = verify_images(datalist, skip_unreadable)
    logger.info(
        "NIH %s split (%s): %d images in %.2f s", split, split_source, len(datalist), time.perf_counter() - started
    )
    return datalist


__all__ = [
    "NIH_FINDINGS",
    "find_metadata_csv",
    "index_nih_images",
    "parse_findings",
    "read_nih",
    "read_nih_metadata",
]
