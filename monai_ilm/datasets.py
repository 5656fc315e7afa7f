"""The data sets monai-ilm reads, defined once: what every part of the package knows about each.

One row per data set: its reader and the layout its ``dataset_dir`` must hold (the readers' dispatch,
:func:`monai_ilm.data.load_datalist`, and the ``dataset_dir`` check), its transforms preset
(:mod:`monai_ilm.transforms.presets`), its bundle (the experiment runner), its evaluation task and
classes (:mod:`monai_ilm.evaluation.protocols`) and its display label and headline metrics (the
dashboard). Adding a data set is one row here plus its reader and, for a paper data set, its preset
and bundle: the bundle is rendered from the one template (:mod:`monai_ilm.bundle_render`) with the row's name
and a short overlay of its own values, ``monai_ilm/bundle_template/datasets/<bundle>.json``.

Readers, layouts and class names live in the data modules, which import heavy libraries; the table names
them as ``"module:attribute"`` and resolves them only when asked, so importing it is free of cycles.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

__all__ = ["DATASETS", "DatasetSpec", "bundle_datasets", "paper_datasets"]


def _resolve(reference: str) -> object:
    module, _, attribute = reference.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class DatasetSpec:
    """One data set.

    Args:
        name: the ``dataset_name`` of the bundles and of :func:`~monai_ilm.data.load_datalist`.
        reader: ``"module:function"`` of the reader, called as ``reader(root, split, **options)``.
        splits: how :func:`~monai_ilm.data.load_datalist` calls the reader: ``"seeded"`` (the reader draws
            its own seeded patient splits and takes ``seed``, ``ratios``, ``val_fraction`` and
            ``require_all_classes``), ``"fixed"`` (the files fix the splits), ``"csv"`` (a CSV datalist,
            split by a column or seeded) or ``"tree"`` (split folders, or a seeded split of one tree).
        layout: what ``dataset_dir`` must hold, quoted in error messages: the text, or ``"monai_ilm.<module>:<name>"``
            of the text in the reader's module.
        label: the display name (dashboard, tables).
        bundle: the folder of its bundle under ``bundles/`` (rendered by :mod:`monai_ilm.bundle_render`), or None.
        preset: its transforms preset in :data:`monai_ilm.transforms.presets.PRESETS`, or None.
        task: its task preset of the downstream evaluation (``"multilabel"``, ``"binary_auc"`` or ``"f1"``),
            or None when it is not evaluated.
        num_classes: the number of outputs of its downstream classifier.
        class_names: ``"module:attribute"`` of the class names that get one results row each, or None.
        metrics: the results-row metrics to show first for it, best first (dashboard).
        column: its place in the paper's tables (NIH, DR, IDC), which the dashboard keeps; None: after those.
    """

    name: str
    reader: str
    splits: str
    layout: str
    label: str = ""
    bundle: str | None = None
    preset: str | None = None
    task: str | None = None
    num_classes: int | None = None
    class_names: str | None = None
    metrics: tuple[str, ...] = ()
    column: int | None = None

    def read(self, *args, **kwargs) -> list[dict]:
        """Call the reader."""
        return _resolve(self.reader)(*args, **kwargs)

    @property
    def expected_layout(self) -> str:
        """What ``dataset_dir`` must hold."""
        return str(_resolve(self.layout)) if self.layout.startswith("monai_ilm.") else self.layout

    @property
    def classes(self) -> tuple[str, ...] | None:
        """The class names that get one results row each, or None."""
        return None if self.class_names is None else tuple(_resolve(self.class_names))


_PAPER = (
    DatasetSpec(
        "nih",
        reader="monai_ilm.data.nih:read_nih",
        splits="seeded",
        layout="monai_ilm.data.nih:EXPECTED_LAYOUT",
        label="NIH ChestX-ray14",
        bundle="nih_chestxray_ilm",
        preset="nih",
        task="multilabel",
        num_classes=14,
        class_names="monai_ilm.data.nih:NIH_FINDINGS",
        metrics=("mean_auc", "auc"),
        column=0,
    ),
    DatasetSpec(
        "idc",
        reader="monai_ilm.data.idc:read_idc",
        splits="seeded",
        layout="monai_ilm.data.idc:EXPECTED_LAYOUT",
        label="Breast Histopathology (IDC)",
        bundle="breast_histopathology_ilm",
        preset="idc",
        task="f1",
        num_classes=2,
        metrics=("f1", "f1_macro"),
        column=2,
    ),
    DatasetSpec(
        "dr",
        reader="monai_ilm.data.dr:read_dr",
        splits="seeded",
        layout="monai_ilm.data.dr:EXPECTED_LAYOUT",
        label="Diabetic Retinopathy",
        bundle="diabetic_retinopathy_ilm",
        preset="dr",
        task="binary_auc",
        num_classes=2,
        metrics=("auc", "roc_auc"),
        column=1,
    ),
)
_VOLUMES = (
    DatasetSpec(
        "volumes",
        reader="monai_ilm.data.volumes:read_volumes",
        splits="seeded",
        layout="monai_ilm.data.volumes:EXPECTED_LAYOUT",
        label="CT / MR volumes (MedMNIST 3D or NIfTI)",
        bundle="ct_mr_volumes_ilm",
        preset="volume",
        task="binary_auc",
        num_classes=2,
        metrics=("auc", "roc_auc"),
    ),
)
_GENERIC = (
    DatasetSpec(
        "medmnist",
        reader="monai_ilm.data.medmnist:read_medmnist",
        splits="fixed",
        layout="a MedMNIST .npz file ({train,val,test}_images and _labels) or a folder holding one",
    ),
    DatasetSpec(
        "csv",
        reader="monai_ilm.data.csv_datalist:read_csv_datalist",
        splits="csv",
        layout="a CSV datalist (columns image,label[,patient_id][,split]) or a folder holding datalist.csv",
    ),
    DatasetSpec(
        "folder",
        reader="monai_ilm.data.folder:read_image_folder",
        splits="tree",
        layout="an image-folder tree <root>/<class>/<image>, optionally inside train/, val/ and test/ folders",
    ),
    DatasetSpec(
        "nifti",
        reader="monai_ilm.data.nifti:read_nifti_folder",
        splits="tree",
        layout="monai_ilm.data.nifti:EXPECTED_LAYOUT",
    ),
)

DATASETS: dict[str, DatasetSpec] = {dataset.name: dataset for dataset in (*_PAPER, *_VOLUMES, *_GENERIC)}
"""Every data set by name: the paper's three (with bundles) first, the volumes (binary, e.g. AdrenalMNIST3D),
then the generic layouts."""


def bundle_datasets() -> dict[str, str]:
    """``{bundle folder: data set name}`` of the data sets that have a bundle."""
    return {d.bundle: d.name for d in DATASETS.values() if d.bundle is not None}


def paper_datasets() -> list[DatasetSpec]:
    """The data sets of the paper's tables, in their order there."""
    return sorted((d for d in DATASETS.values() if d.column is not None), key=lambda d: d.column)
