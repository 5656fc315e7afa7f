"""Reader for NIfTI volumes (``.nii`` / ``.nii.gz``), for 3D pretraining and evaluation.

Three layouts are accepted:

* class folders, ``<root>/<class>/<volume>.nii.gz`` (labels from the folder, as an image folder);
* a ``labels.csv`` beside the volumes (or any CSV given as ``labels_csv``), one row per volume:

  - ``image``: the volume's path, relative to ``<root>`` (or absolute);
  - the label, binary or multi-class: a ``label`` column of class indices (``0``, ``1``, ...) or class names
    (indexed in sorted order); multi-label: instead of ``label``, one 0/1 column per finding named
    ``label_<finding>`` (e.g. ``label_mass,label_cyst``), which gives each row a multi-hot list in column
    order; no label column at all: unlabelled (pretraining only);
  - optionally ``patient`` (or ``patient_id``): rows of one patient stay in one split; without it every
    volume is its own patient;
  - optionally ``split`` (``train`` / ``val`` / ``test``): a fixed split instead of a seeded one;

* a flat folder of volumes without labels (enough for self-supervised pretraining).

Every volume's header is checked when the folder is read (:func:`~monai_ilm.data.integrity.check_volume_header`:
readable, 3D, finite positive spacing, invertible affine), so a bad file is named before any long work; the
volumes themselves are read later by :class:`monai_ilm.transforms.volumes.LoadVolumed` (MONAI's nibabel reader).
"""

from __future__ import annotations

import logging
from pathlib import Path

from monai_ilm.data.csv_datalist import read_csv_datalist
from monai_ilm.data.files import (
    NIFTI_EXTENSIONS,
    PathLike,
    list_files,
    list_subdirectories,
    read_text_lines,
    require_directory,
)
from monai_ilm.data.folder import patient_from_name, read_image_folder
from monai_ilm.data.integrity import UnreadableImageError, _describe, find_unreadable, verify_images

logger = logging.getLogger(__name__)

EXPECTED_LAYOUT = (
    "NIfTI volumes (*.nii or *.nii.gz) in class folders <root>/<class>/, or beside a labels.csv "
    "(columns image,label or image,label_<finding>...[,patient][,split]), or flat in <root>/ for unlabelled data"
)
PATIENT_COLUMNS: tuple[str, ...] = ("patient", "patient_id")
"""The columns of a labels CSV that name each volume's patient (the first one present is used)."""
MULTI_LABEL_PREFIX = "label_"
"""The prefix of the 0/1 columns of a multi-label labels CSV, one per finding."""


def csv_columns(csv_path: PathLike) -> list[str]:
    """The header of a CSV, stripped."""
    return [column.strip() for column in " ".join(read_text_lines(csv_path, max_lines=1)).split(",")]


def label_columns(columns: list[str]) -> str | list[str] | None:
    """The label column(s) of a labels CSV: ``"label"``, the ``label_<finding>`` columns in order, or None."""
    if "label" in columns:
        return "label"
    findings = [c for c in columns if c.startswith(MULTI_LABEL_PREFIX) and len(c) > len(MULTI_LABEL_PREFIX)]
    return findings or None


def check_volume_headers(datalist: list[dict], skip_unreadable: bool, source: str) -> list[dict]:
    """Check every volume's header and completeness (:func:`~monai_ilm.data.integrity.quick_check_image`).

    Args:
        datalist: rows whose ``"image"`` is a NIfTI path.
        skip_unreadable: drop the bad volumes (with a logged warning) instead of raising.
        source: where the rows came from, quoted in the message.

    Raises:
        UnreadableImageError: naming every bad volume (the first few) and what the first one lacks.
    """
    problems = find_unreadable(datalist)
    if not problems:
        return datalist
    if not skip_unreadable:
        paths = [path for _, path, _ in problems]
        raise UnreadableImageError(
            f"{source}: expected readable 3D NIfTI volumes, got {len(paths)} of {len(datalist)} that cannot be used: "
            f"{_describe(paths)}; the first: {problems[0][2]} Set skip_unreadable to true to drop them, or replace "
            "the files."
        )
    bad = {i for i, _, _ in problems}
    logger.warning("skipped %d of %d unusable volumes listed by %s", len(bad), len(datalist), source)
    return [row for i, row in enumerate(datalist) if i not in bad]


def read_nifti_folder(
    dataset_dir: PathLike,
    labels_csv: PathLike | None = None,
    patient_pattern: str | None = None,
    verify: bool = False,
    skip_unreadable: bool = False,
    split: str | None = None,
    check_headers: bool = True,
) -> list[dict]:
    """Datalist of a folder of NIfTI volumes.

    Args:
        dataset_dir: the folder (see the module docstring for the layouts).
        labels_csv: a CSV of ``image,label[,patient][,split]`` or ``image,label_<finding>...[,patient][,split]``
            (default: ``<dataset_dir>/labels.csv`` when present).
        patient_pattern: a regular expression whose first group in the file stem is the patient id.
        verify: read every volume in full.
        skip_unreadable: drop missing, unreadable or bad-header volumes with a logged warning instead of raising.
        split: with a labels CSV that has a ``split`` column, keep that split's rows (``train``, ``val``, ``test``).
        check_headers: check every volume's header (see the module docstring).

    Returns:
        Rows ``{"image": path, "label": int or multi-hot list (when labelled), "patient_id": str}``.

    Raises:
        FileNotFoundError: when ``dataset_dir`` holds no NIfTI volume in any of the layouts, or a listed
            volume does not exist.
        ValueError: for a malformed labels CSV.
        UnreadableImageError: naming the volumes that cannot be read or whose header is unusable.
    """
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    csv_path = Path(labels_csv) if labels_csv is not None else root / "labels.csv"
    if labels_csv is not None or csv_path.is_file():
        columns = csv_columns(csv_path)
        datalist = read_csv_datalist(
            csv_path,
            label_column=label_columns(columns),
            patient_column=next((c for c in PATIENT_COLUMNS if c in columns), None),
            base_dir=root,
            split_column="split" if split is not None and "split" in columns else None,
            split=split if "split" in columns else None,
            skip_unreadable=skip_unreadable,
        )
        return _checked(datalist, verify, check_headers, skip_unreadable, f"labels CSV '{csv_path}'")
    has_class_folders = any(list_files(root / name, NIFTI_EXTENSIONS) for name in list_subdirectories(root))
    if has_class_folders:
        datalist = read_image_folder(root, NIFTI_EXTENSIONS, patient_pattern=patient_pattern)
    else:
        files = list_files(root, NIFTI_EXTENSIONS)
        if not files:
            raise FileNotFoundError(f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got no NIfTI volumes.")
        datalist = [
            {"image": str(root / name), "patient_id": patient_from_name(name, NIFTI_EXTENSIONS, patient_pattern)}
            for name in files
        ]
    return _checked(datalist, verify, check_headers, skip_unreadable, f"dataset_dir '{root}'")


def _checked(datalist: list[dict], verify: bool, check_headers: bool, skip_unreadable: bool, source: str) -> list[dict]:
    if check_headers:
        datalist = check_volume_headers(datalist, skip_unreadable, source)
    if verify:
        datalist, _ = verify_images(datalist, skip_unreadable)
    return datalist
