"""Reader for an image-folder tree: ``<root>/<class name>/<image>``, classes in sorted order.

This is the layout of ``torchvision.datasets.ImageFolder``, which the paper's diabetic retinopathy
code reads; class indices come from the sorted folder names (numbered folders sort numerically).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from monai_ilm.data.files import (
    IMAGE_EXTENSIONS,
    PathLike,
    list_files,
    list_subdirectories,
    require_directory,
    strip_suffix,
)
from monai_ilm.data.integrity import verify_images


def _sorted_classes(names: Sequence[str]) -> list[str]:
    if all(name.isdigit() for name in names):
        return sorted(names, key=int)
    return sorted(names)


def patient_from_name(file_name: str, extensions: Sequence[str], patient_pattern: str | None) -> str:
    """The patient id of an image file: the first group of ``patient_pattern`` matched on the file stem, or the stem.

    Raises:
        ValueError: when ``patient_pattern`` is given and does not match the file name.
    """
    stem = strip_suffix(file_name, extensions)
    if patient_pattern is None:
        return stem
    match = re.search(patient_pattern, stem)
    if match is None:
        raise ValueError(
            f"patient_pattern: expected a pattern matching every file name, got {patient_pattern!r}, "
            f"which does not match '{file_name}'."
        )
    return match.group(1) if match.groups() else match.group(0)


def read_image_folder(
    dataset_dir: PathLike,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
    class_names: Sequence[str] | None = None,
    patient_pattern: str | None = None,
    verify: bool = False,
    skip_unreadable: bool = False,
) -> list[dict]:
    """Datalist of an image-folder tree, one class folder per class.

    Args:
        dataset_dir: the folder holding one sub-folder per class.
        extensions: the image file suffixes to take (case-insensitive).
        class_names: the class folders in index order (default: sorted, numerically when all are numbers).
        patient_pattern: a regular expression whose first group (searched in the file stem) is the
            patient id, e.g. ``r"^(\\d+)_"`` for ``10_left.jpg``. Without it each image is its own patient.
        verify: decode every image.
        skip_unreadable: drop unreadable images with a logged warning instead of raising.

    Returns:
        Rows ``{"image": path, "label": int, "patient_id": str, "class_name": str}``.

    Raises:
        FileNotFoundError: when ``dataset_dir`` is missing or holds no class folder with images.
        ValueError: when a given class folder is missing or ``patient_pattern`` does not match a file.
    """
    expected = "one sub-folder per class holding the images (<root>/<class>/<image>)"
    root = require_directory(dataset_dir, expected)
    folders = list_subdirectories(root)
    classes = list(class_names) if class_names is not None else _sorted_classes(folders)
    absent = [name for name in classes if name not in folders]
    if absent:
        raise ValueError(f"dataset_dir '{root}': expected class folder(s) {absent}, got folders {folders}.")
    datalist = []
    for label, class_name in enumerate(classes):
        for file_name in list_files(root / class_name, extensions):
            datalist.append(
                {
                    "image": str(root / class_name / file_name),
                    "label": label,
                    "patient_id": patient_from_name(file_name, extensions, patient_pattern),
                    "class_name": class_name,
                }
            )
    if not datalist:
        raise FileNotFoundError(
            f"dataset_dir '{root}': expected {expected}, got no images with suffix {tuple(extensions)}."
        )
    if verify:
        datalist, _ = verify_images(datalist, skip_unreadable)
    return datalist
