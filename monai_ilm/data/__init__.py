"""Datalists for the paper's data sets and generic layouts, seeded patient-level splits, and sample data.

Every reader returns a MONAI datalist: a list of dicts with at least ``"image"`` (a path, or an
array for MedMNIST), ``"label"`` (an int class index, or a multi-hot float list for NIH) and
``"patient_id"``. :func:`load_datalist` dispatches to the right reader by name, which is what the
bundle configs call (with :func:`datalist_options`), and names every row by a stable ``"image_id"``.
:func:`training_dataset` keeps the decoded training images in the compact uint8 cache
(:class:`CompactCacheDataset`) that the bundles' ``cache`` setting selects.
"""

from __future__ import annotations

from monai_ilm.utils import lazy_package

# each name is loaded from its module on first use: importing one module of the package loads only what it needs
__all__ = lazy_package(
    __name__,
    {
        "compact_cache": ("CACHE_MODES", "CompactCacheDataset", "cache_boundary", "cache_bytes", "training_dataset"),
        "csv_datalist": ("read_csv_datalist",),
        "dispatch": ("DATASETS", "IMAGE_ID_KEY", "datalist_options", "load_datalist"),
        "dr": ("DR_GRADES", "DR_REFERABLE_CLASSES", "read_dr"),
        "folder": ("read_image_folder",),
        "idc": ("IDC_CLASSES", "read_idc"),
        "integrity": ("UnreadableImageError", "check_image_readable", "verify_images"),
        "label_fractions": ("label_fraction",),
        "medmnist": ("read_medmnist",),
        "nifti": ("read_nifti_folder",),
        "nih": ("NIH_FINDINGS", "read_nih", "read_nih_metadata"),
        "splits": (
            "PatientLeakError",
            "SPLIT_NAMES",
            "assert_patient_disjoint",
            "check_class_presence",
            "patient_split",
        ),
    },
)
