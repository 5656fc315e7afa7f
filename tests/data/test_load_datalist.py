"""The single dispatch entry point used by the bundle configs."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ilm.data import DATASETS, load_datalist
from monai_ilm.data.splits import assert_patient_disjoint
from tests.data.helpers import shared_path

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def layouts(nih_dir, idc_dir, dr_kaggle_dir, dr_jama16_dir, nifti_dir, medmnist_file):
    return {
        "nih": (nih_dir, {}),
        "idc": (idc_dir, {}),
        "dr": (dr_kaggle_dir, {}),
        "medmnist": (medmnist_file, {}),
        "folder": (dr_jama16_dir, {"patient_pattern": r"^(\d+)_"}),
        "nifti": (nifti_dir, {"ratios": (0.5, 0.25, 0.25)}),
    }


@pytest.mark.parametrize("dataset", ["nih", "idc", "dr", "medmnist", "folder", "nifti"])
def test_every_dataset_gives_disjoint_splits_of_valid_rows(layouts, dataset):
    root, kwargs = layouts[dataset]
    splits = [load_datalist(dataset, root, split, seed=0, **kwargs) for split in SPLITS]
    assert_patient_disjoint(*splits)
    for rows in splits:
        assert rows and all({"image", "label", "patient_id"} <= set(r) for r in rows)
    assert load_datalist(dataset, root, "train", seed=0, **kwargs)[0].keys() == splits[0][0].keys()


def test_label_fraction_is_nested_and_seeded(layouts):
    root, _ = layouts["nih"]
    names = {
        f: {r["image_name"] for r in load_datalist("nih", root, "train", seed=3, label_fraction=f)}
        for f in (0.1, 0.3, 1.0)
    }
    assert names[0.1] < names[0.3] < names[1.0]
    assert names[0.1] == {r["image_name"] for r in load_datalist("nih", root, "train", seed=3, label_fraction=0.1)}


def test_csv_dataset_with_and_without_split_column(tmp_path):
    for i in range(12):
        (tmp_path / f"{i}.png").write_bytes(b"x")
    rows = "".join(f"{i}.png,{i % 2},p{i // 2}\n" for i in range(12))
    (tmp_path / "datalist.csv").write_text("image,label,patient_id\n" + rows)
    splits = [load_datalist("csv", tmp_path, s, ratios=(0.5, 0.25, 0.25)) for s in SPLITS]
    assert_patient_disjoint(*splits)
    assert sum(map(len, splits)) == 12
    split_rows = "".join(f"{i}.png,{i % 2},{'train' if i < 8 else 'test'}\n" for i in range(12))
    (tmp_path / "with_split.csv").write_text("image,label,split\n" + split_rows)
    assert len(load_datalist("csv", tmp_path / "with_split.csv", "test")) == 4


def test_real_medmnist_through_dispatch():
    path = shared_path("medmnist", "pneumoniamnist.npz")
    rows = load_datalist("medmnist", path.parent, "train", flag="pneumoniamnist", label_fraction=0.01, seed=0)
    assert abs(len(rows) - 47) <= 1 and {r["label"] for r in rows} == {0, 1}


class TestErrors:
    def test_unknown_dataset_and_split_list_the_allowed_values(self, tmp_path):
        with pytest.raises(
            ValueError,
            match=r"dataset: expected one of \['nih', 'idc', 'dr', 'volumes', 'medmnist', 'csv', 'folder', 'nifti'\]",
        ):
            load_datalist("chexpert", tmp_path, "train")
        with pytest.raises(ValueError, match=r"split: expected one of \['train', 'val', 'test'\], got 'validation'"):
            load_datalist("nih", tmp_path, "validation")
        assert DATASETS == ("nih", "idc", "dr", "volumes", "medmnist", "csv", "folder", "nifti")

    @pytest.mark.parametrize("dataset", DATASETS)
    def test_missing_dataset_dir_is_named_with_the_expected_layout(self, tmp_path, dataset):
        with pytest.raises(
            FileNotFoundError, match=f"dataset_dir: expected .*, got '{tmp_path / 'absent'}', which does not exist"
        ):
            load_datalist(dataset, tmp_path / "absent", "train")

    @pytest.mark.parametrize("dataset", DATASETS)
    def test_wrong_layout_is_named(self, tmp_path, dataset):
        (tmp_path / "readme.txt").write_text("not a data set")
        with pytest.raises((FileNotFoundError, ValueError), match=str(tmp_path)):
            load_datalist(dataset, tmp_path, "train")

    @pytest.mark.parametrize("fraction", [0.0, 1.5, -1])
    def test_fraction_outside_unit_interval(self, layouts, fraction):
        with pytest.raises(ValueError, match=r"^label_fraction: expected a finite number in \(0, 1\], got "):
            load_datalist("idc", layouts["idc"][0], "train", label_fraction=fraction)

    def test_missing_split_folder(self, tmp_path, dr_jama16_dir):
        import shutil

        shutil.copytree(dr_jama16_dir / "train", tmp_path / "train")
        with pytest.raises(
            FileNotFoundError, match="expected a folder for split 'test' .*, got other split folders only"
        ):
            load_datalist("folder", tmp_path, "test")


def test_labels_have_the_documented_types(layouts):
    nih = load_datalist("nih", layouts["nih"][0], "val")
    assert isinstance(nih[0]["label"], list) and len(nih[0]["label"]) == 14
    assert np.asarray(nih[0]["label"]).dtype.kind == "f"
    assert all(isinstance(load_datalist(d, layouts[d][0], "val")[0]["label"], int) for d in ("idc", "dr", "medmnist"))
