"""The data-set table is the one place the readers, presets, runner, evaluation and dashboard read."""

from __future__ import annotations

import dataclasses

import pytest

import monai_ilm.datasets as table
from monai_ilm.data import datalist_options, load_datalist
from monai_ilm.data.dispatch import DATASETS
from monai_ilm.data.synthetic import make_idc_sample
from monai_ilm.datasets import DatasetSpec, bundle_datasets, paper_datasets
from monai_ilm.evaluation.protocols import DATASET_CLASS_NAMES, DATASET_TASKS
from monai_ilm.experiment import BUNDLE_DATASETS
from monai_ilm.transforms.presets import PRESETS, get_preset


def test_every_row_resolves():
    for dataset in table.DATASETS.values():
        assert callable(table._resolve(dataset.reader)), dataset.name
        assert dataset.splits in ("seeded", "fixed", "csv", "tree"), dataset.name
        assert dataset.expected_layout and not dataset.expected_layout.startswith("monai_ilm."), dataset.name
        assert dataset.preset is None or dataset.preset in PRESETS, dataset.name
        if dataset.task is not None:  # "volumes" gets its bundle (issue 25) from the bundle template later
            assert dataset.num_classes >= 2 and (dataset.bundle is not None or dataset.name == "volumes"), dataset.name


def test_the_readers_runner_evaluation_and_presets_read_the_table(tmp_path):
    assert DATASETS == tuple(table.DATASETS) == ("nih", "idc", "dr", "volumes", "medmnist", "csv", "folder", "nifti")
    for name, dataset in table.DATASETS.items():  # the readers' dispatch quotes each row's layout
        with pytest.raises(FileNotFoundError) as raised:
            load_datalist(name, tmp_path / "missing", "train")
        assert dataset.expected_layout in str(raised.value), name
    assert (
        BUNDLE_DATASETS
        == bundle_datasets()
        == {
            "nih_chestxray_ilm": "nih",
            "breast_histopathology_ilm": "idc",
            "diabetic_retinopathy_ilm": "dr",
            "ct_mr_volumes_ilm": "volumes",
        }
    )
    assert DATASET_TASKS == {
        "nih": ("multilabel", 14),
        "idc": ("f1", 2),
        "dr": ("binary_auc", 2),
        "volumes": ("binary_auc", 2),
    }
    assert set(DATASET_CLASS_NAMES) == {"nih"} and len(DATASET_CLASS_NAMES["nih"]) == 14
    assert [d.name for d in paper_datasets()] == ["nih", "dr", "idc"]  # the order of the paper's tables
    for name in ("nih", "idc", "dr"):
        assert get_preset(name) is PRESETS[name]


def test_unknown_data_set_is_named():
    """The bundles' data options (the first use of ``dataset_name``) list the table's names."""
    with pytest.raises(ValueError, match=r"^dataset_name: expected one of \['nih', 'idc', 'dr'.*got 'chexpert'\.$"):
        datalist_options("chexpert")


def test_a_new_data_set_is_one_row(monkeypatch, tmp_path):
    """A row naming an existing reader and preset is enough for the dispatch and the presets."""
    root = make_idc_sample(tmp_path / "idc", n_patients=6, patches_per_patient=4, seed=0)
    row = dataclasses.replace(table.DATASETS["idc"], name="idc_copy", bundle=None, column=None)
    monkeypatch.setitem(table.DATASETS, "idc_copy", row)
    assert isinstance(row, DatasetSpec)
    rows = load_datalist("idc_copy", root, "train", seed=0)
    assert rows == load_datalist("idc", root, "train", seed=0)
    assert get_preset("idc_copy") is PRESETS["idc"]
