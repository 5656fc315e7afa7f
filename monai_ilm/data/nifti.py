"""Reader for NIfTI volumes (``.nii`` / ``.nii.gz``), for 3D pretraining and evaluation.

Three layouts are accepted:

* class folders, ``<root>/<class>/<volume>.nii.gz`` (labels from the folder, as an image folder);
* a ``labels.csv`` (columns ``image,label`` and optionally ``patient_id``) beside the volumes;
* a flat folder of volumes without labels (enough for self-supervised pretraining).

The volumes are read later by :class:`monai_ilm.transforms.LoadImageWithPathd` through MONAI's
nibabel reader.
"""

from __future__ import annotations

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
from monai_ilm.data.integrity import verify_images

EXPECTED_LAYOUT = (
    "NIfTI volumes (*.nii or *.nii.gz) in class folders <root>/<class>/, or beside a labels.csv "
    "(columns image,label[,patient_id]), or flat in <root>/ for unlabelled data"
)


def read_nifti_folder(
    dataset_dir: PathLike,
    labels_csv: PathLike | None = None,
    patient_pattern: str | None = None,
    verify: bool = False,
    skip_unreadable: bool = False,
) -> list[dict]:
    """Datalist of a folder of NIfTI volumes.

    Args:
        dataset_dir: the folder (see the module docstring for the layouts).
        labels_csv: a CSV of ``image,label[,patient_id]`` (default: ``<dataset_dir>/labels.csv`` when present).
        patient_pattern: a regular expression whose first group in the file stem is the patient id.
        verify: read every volume.
        skip_unreadable: drop missing or unreadable volumes with a logged warning instead of raising.

    Returns:
        Rows ``{"image": path, "label": int (when labelled), "patient_id": str}``.

    Raises:
        FileNotFoundError: when ``dataset_dir`` holds no NIfTI volume in any of the layouts.
        ValueError: for a malformed labels CSV.
    """
    root = require_directory(dataset_dir, EXPECTED_LAYOUT)
    csv_path = Path(labels_csv) if labels_csv is not None else root / "labels.csv"
    if labels_csv is not None or csv_path.is_file():
        header = " ".join(read_text_lines(csv_path, max_lines=1)).strip().split(",")
        return read_csv_datalist(
            csv_path,
            patient_column="patient_id" if "patient_id" in header else None,
            base_dir=root,
            verify=verify,
            skip_unreadable=skip_unreadable,
        )
    has_class_folders = any(list_files(root / name, NIFTI_EXTENSIONS) for name in list_subdirectories(root))
    if has_class_folders:
        return read_image_folder(
            root, NIFTI_EXTENSIONS, patient_pattern=patient_pattern, verify=verify, skip_unreadable=skip_unreadable
        )
    files = list_files(root, NIFTI_EXTENSIONS)
    if not files:
        raise FileNotFoundError(f"dataset_dir '{root}': expected {EXPECTED_LAYOUT}, got no NIfTI volumes.")
    datalist = [
        {"image": str(root / name), "patient_id": patient_from_name(name, NIFTI_EXTENSIONS, patient_pattern)}
        for name in files
    ]
    if verify:
        datalist, _ = verify_images(datalist, skip_unreadable)
    return datalist
