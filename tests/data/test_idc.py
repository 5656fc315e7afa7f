"""Kaggle IDC breast histopathology reader: generated patches, the 40 real patches, split CSVs, bad names."""

from __future__ import annotations

import shutil

import pytest

from monai_ilm.data.idc import parse_idc_file_name, read_idc, scan_idc
from monai_ilm.data.splits import PatientLeakError, assert_patient_disjoint
from monai_ilm.data.synthetic import make_idc_sample
from tests.data.helpers import shared_path


def _split_all(root, **kwargs):
    return {s: read_idc(root, s, **kwargs) for s in ("train", "val", "test")}


def test_seeded_split_is_patient_disjoint_and_complete(idc_dir):
    splits = _split_all(idc_dir, seed=1)
    assert_patient_disjoint(*splits.values())
    assert sum(len(v) for v in splits.values()) == len(scan_idc(idc_dir)) == 60
    for rows in splits.values():
        assert {r["label"] for r in rows} == {0, 1}
    assert splits == _split_all(idc_dir, seed=1)


def test_row_fields_come_from_the_path(idc_dir):
    row = read_idc(idc_dir, "test")[0]
    parsed = parse_idc_file_name(row["image"])
    assert row["patient_id"] == parsed["patient_id"] and row["label"] == parsed["label"]
    assert row["image"].endswith(
        f"/{row['label']}/{row['patient_id']}_idx5_x{row['x']}_y{row['y']}_class{row['label']}.png"
    )


def test_real_patches():
    root = shared_path("idc_samples")
    rows = scan_idc(root)
    assert len(rows) == 40 and len({r["patient_id"] for r in rows}) == 9
    assert sum(r["label"] for r in rows) == 14
    splits = _split_all(root, ratios=(0.5, 0.25, 0.25), seed=0)
    assert_patient_disjoint(*splits.values())
    assert sum(len(v) for v in splits.values()) == 40


class TestSplitCsvs:
    def test_reference_csvs_are_used(self, tmp_path):
        root = make_idc_sample(
            tmp_path / "idc", n_patients=8, patches_per_patient=4, patch_size=8, write_split_csvs=True
        )
        csv_splits = _split_all(root, split_source="csv")
        for name, rows in csv_splits.items():
            listed = (root / f"{name}_split.csv").read_text().splitlines()[1:]
            assert sorted(r["image"] for r in rows) == sorted(str(root / line.split(",")[0]) for line in listed)

    def test_train_is_the_rest_when_only_val_and_test_are_published(self, tmp_path):
        root = make_idc_sample(
            tmp_path / "idc", n_patients=8, patches_per_patient=4, patch_size=8, write_split_csvs=True
        )
        (root / "train_split.csv").unlink()
        splits = _split_all(root)
        assert_patient_disjoint(*splits.values())
        assert sum(len(v) for v in splits.values()) == 32

    def test_val_equal_to_test_is_rejected(self, tmp_path):
        root = make_idc_sample(
            tmp_path / "idc", n_patients=8, patches_per_patient=4, patch_size=8, write_split_csvs=True
        )
        shutil.copy(root / "val_split.csv", root / "test_split.csv")
        with pytest.raises(PatientLeakError, match="'val'.*'test'|'test'.*'val'"):
            read_idc(root, "val")

    def test_csv_without_expected_columns(self, tmp_path):
        root = make_idc_sample(tmp_path / "idc", n_patients=4, patches_per_patient=2, patch_size=8)
        (root / "val_split.csv").write_text("path,label\n")
        with pytest.raises(
            ValueError,
            match=r"val_split.csv': expected the header 'img_path,labels', got columns .* \(no \['img_path', 'labels'",
        ):
            read_idc(root, "val")

    def test_csv_label_disagreeing_with_folder(self, tmp_path):
        root = make_idc_sample(tmp_path / "idc", n_patients=4, patches_per_patient=2, patch_size=8)
        patch = next(root.glob("*/0/*.png")).relative_to(root)
        (root / "val_split.csv").write_text(f"img_path,labels\n{patch},1\n")
        with pytest.raises(ValueError, match=r"label of '.*': expected 0 \(its class folder\), got 1\."):
            read_idc(root, "val")

    def test_csv_source_requires_the_csv(self, idc_dir):
        with pytest.raises(FileNotFoundError, match="val_split.csv"):
            read_idc(idc_dir, "val", split_source="csv")


class TestBadLayout:
    def test_class_suffix_disagreeing_with_folder(self, tmp_path):
        root = make_idc_sample(tmp_path / "idc", n_patients=3, patches_per_patient=2, patch_size=8)
        patch = next(root.glob("*/0/*.png"))
        moved = patch.parent.parent / "1" / patch.name
        patch.rename(moved)
        with pytest.raises(
            ValueError, match=f"'{moved}': expected class folder '0' \\(its name says class0\\), got class folder '1'"
        ):
            scan_idc(root)

    def test_patient_prefix_disagreeing_with_folder(self, tmp_path):
        root = make_idc_sample(tmp_path / "idc", n_patients=3, patches_per_patient=2, patch_size=8)
        patch = next(root.glob("*/0/*.png"))
        patch.rename(patch.with_name("99999" + patch.name[patch.name.index("_") :]))
        with pytest.raises(ValueError, match="expected patient folder '.*' \\(its name says so\\), got patient folder"):
            scan_idc(root)

    def test_name_not_following_the_pattern(self, tmp_path):
        (tmp_path / "123" / "0").mkdir(parents=True)
        (tmp_path / "123" / "0" / "patch.png").write_bytes(b"")
        with pytest.raises(
            ValueError, match="expected the file-name pattern <patient>_idx5_x<X>_y<Y>_class<0\\|1>.png, got"
        ):
            scan_idc(tmp_path)

    def test_empty_or_missing_folder(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="expected the Kaggle IDC layout.*got no IDC patches"):
            read_idc(tmp_path)
        with pytest.raises(FileNotFoundError, match="does not exist"):
            read_idc(tmp_path / "missing")

    def test_bad_arguments(self, idc_dir):
        with pytest.raises(ValueError, match=r"^split: expected one of \["):
            read_idc(idc_dir, "training")
        with pytest.raises(ValueError, match=r"^split_source: expected one of \["):
            read_idc(idc_dir, split_source="official")
