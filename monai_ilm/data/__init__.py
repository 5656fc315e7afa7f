"""Datalists for the paper's data sets and generic layouts, seeded patient-level splits, and sample data.

Every reader returns a MONAI datalist: a list of dicts with at least ``"image"`` (a path, or an
array for MedMNIST), ``"label"`` (an int class index, or a multi-hot float list for NIH) and
``"patient_id"``. :func:`load_datalist` dispatches to the right reader by name, which is what the
bundle configs call (with :func:`datalist_options`), and names every row by a stable ``"image_id"``.
:func:`training_dataset` keeps the decoded training images in the compact uint8 cache
(:class:`CompactCacheDataset`) that the bundles' ``cache`` setting selects.
"""

from __future__ import annotations

from monai_ilm.data.compact_cache import CACHE_MODES, CompactCacheDataset, cache_bytes, training_dataset
from monai_ilm.data.csv_datalist import read_csv_datalist
from monai_ilm.data.dispatch import DATASETS, IMAGE_ID_KEY, datalist_options, load_datalist
from monai_ilm.data.dr import DR_GRADES, DR_REFERABLE_CLASSES, read_dr
from monai_ilm.data.folder import read_image_folder
from monai_ilm.data.idc import IDC_CLASSES, read_idc
from monai_ilm.data.integrity import UnreadableImageError, check_image_readable, verify_images
from monai_ilm.data.label_fractions import label_fraction
from monai_ilm.data.medmnist import read_medmnist
from monai_ilm.data.nifti import read_nifti_folder
from monai_ilm.data.nih import NIH_FINDINGS, read_nih, read_nih_metadata
from monai_ilm.data.splits import (
    SPLIT_NAMES,
    PatientLeakError,
    assert_patient_disjoint,
    check_class_presence,
    patient_split,
)

__all__ = [
    "CACHE_MODES",
    "DATASETS",
    "DR_GRADES",
    "DR_REFERABLE_CLASSES",
    "IDC_CLASSES",
    "IMAGE_ID_KEY",
    "CompactCacheDataset",
    "NIH_FINDINGS",
    "SPLIT_NAMES",
    "PatientLeakError",
    "UnreadableImageError",
    "assert_patient_disjoint",
    "cache_bytes",
    "check_class_presence",
    "check_image_readable",
    "datalist_options",
    "label_fraction",
    "load_datalist",
    "patient_split",
    "read_csv_datalist",
    "read_dr",
    "read_idc",
    "read_image_folder",
    "read_medmnist",
    "read_nifti_folder",
    "read_nih",
    "read_nih_metadata",
    "training_dataset",
    "verify_images",
]
