"""EyePACS diabetic retinopathy reader: Kaggle CSV + jpeg layout and the jama16 folder layout."""

from __future__ import annotations

import shutil

import pytest

from monai_ilm.data.dr import patient_of, read_dr
from monai_ilm.data.splits import assert_patient_disjoint
from monai_ilm.data.synthetic import make_dr_sample


def _split_all(root, **kwargs):
    return {s: read_dr(root, s, **kwargs) for s in ("train", "val", "test")}


class TestKaggle:
    def test_patient_split_keeps_both_eyes_together(self, dr_kaggle_dir):
        splits = _split_all(dr_kaggle_dir, seed=2)
        assert_patient_disjoint(*splits.values())
        assert sum(len(v) for v in splits.values()) == 60
        for rows in splits.values():
            assert {r["label"] for r in rows} == {0, 1}
            assert all(r["image"].endswith(f"/train/{r['image_name']}.jpeg") for r in rows)
            eyes = {}
            for r in rows:
                eyes.setdefault(r["patient_id"], set()).add(r["eye"])
            assert all(e == {"left", "right"} for e in eyes.values())

    def test_referable_and_grades(self, dr_kaggle_dir):
        referable = read_dr(dr_kaggle_dir, "train")
        grades = read_dr(dr_kaggle_dir, "train", grading="grades")
        assert [r["image"] for r in referable] == [r["image"] for r in grades]
        assert all(r["label"] == int(g["label"] >= 2) for r, g in zip(referable, grades))
        assert max(g["label"] for g in grades) >= 2

    def test_kaggle_test_labels_form_the_test_split(self, tmp_path, dr_kaggle_dir):
        root = tmp_path / "dr"
        shutil.copytree(dr_kaggle_dir, root)
        (root / "test").mkdir()
        shutil.copy(root / "train" / "10_left.jpeg", root / "test" / "1_left.jpeg")
        shutil.copy(root / "train" / "10_right.jpeg", root / "test" / "1_right.jpeg")
        (root / "retinopathy_solution.csv").write_text("image,level,Usage\n1_left,3,Public\n1_right,0,Private\n")
        test = read_dr(root, "test")
        assert [(r["image_name"], r["label"]) for r in test] == [("1_left", 1), ("1_right", 0)]
        assert sum(len(read_dr(root, s)) for s in ("train", "val")) == 60

    def test_missing_image_and_bad_csv(self, tmp_path, dr_kaggle_dir):
        root = tmp_path / "dr"
        shutil.copytree(dr_kaggle_dir, root)
        victim = read_dr(root, "test")[0]
        (root / "train" / f"{victim['image_name']}.jpeg").unlink()
        with pytest.raises(FileNotFoundError, match=victim["image_name"]):
            read_dr(root, "test")
        assert len(read_dr(root, "test", skip_unreadable=True)) == len(read_dr(dr_kaggle_dir, "test")) - 1
        (root / "trainLabels.csv").write_text("image,grade\n10_left,0\n")
        with pytest.raises(
            ValueError, match=r"trainLabels.csv': expected the header 'image,level', got columns .* \(no \['level'\]\)"
        ):
            read_dr(root)
        (root / "trainLabels.csv").write_text("image,level\n10_left,7\n")
        with pytest.raises(ValueError, match="row 2, column 'level': expected a grade 0-4, got '7'"):
            read_dr(root)
        (root / "trainLabels.csv").write_text("image,level\n10_left,0\n,1\n")
        with pytest.raises(ValueError, match="row 3, column 'image': expected a name, got an empty cell"):
            read_dr(root)
        (root / "trainLabels.csv").write_text("image,level\n10_left,0,,\n")  # more cells than the header
        with pytest.raises(ValueError, match="trainLabels.csv' row 2"):
            read_dr(root)

    def test_patient_of(self):
        assert patient_of("10_left") == "10" and patient_of("4432_right") == "4432"
        with pytest.raises(ValueError, match="expected '<patient>_left' or '<patient>_right', got '10_middle'"):
            patient_of("10_middle")


class TestJama16:
    def test_binary_folders_with_val_carved_from_train(self, dr_jama16_dir):
        splits = _split_all(dr_jama16_dir, seed=0)
        assert_patient_disjoint(*splits.values())
        assert sum(len(v) for v in splits.values()) == 60
        assert all("/test/" in r["image"] for r in splits["test"])
        assert all("/train/" in r["image"] for r in splits["train"] + splits["val"])
        assert all(r["image"].endswith(".jpg") and f"/{r['label']}/" in r["image"] for r in splits["train"])
        with pytest.raises(
            ValueError, match="expected class folders 0-4 for grading='grades', got only class folders 0 and 1"
        ):
            read_dr(dr_jama16_dir, grading="grades")

    def test_grade_folders_and_explicit_validation_folder(self, tmp_path):
        root = make_dr_sample(tmp_path / "dr", n_patients=40, image_size=16, layout="jama16", jama16_grade_folders=True)
        grades = read_dr(root, "train", grading="grades")
        assert all(f"/{r['label']}/" in r["image"] for r in grades)
        referable = read_dr(root, "train")
        assert {r["label"] for r in referable} == {0, 1}
        (root / "validation").mkdir()
        shutil.move(str(root / "test" / "0"), str(root / "validation" / "0"))
        shutil.copytree(
            root / "test" / "1" if (root / "test" / "1").exists() else root / "test" / "2", root / "validation" / "2"
        )
        val = read_dr(root, "val", require_all_classes=False)
        assert all("/validation/" in r["image"] for r in val)

    def test_layout_errors(self, tmp_path):
        with pytest.raises(FileNotFoundError, match="expected either Kaggle.*got no diabetic retinopathy data"):
            read_dr(tmp_path)
        with pytest.raises(FileNotFoundError, match="^dataset_dir: expected .*, got '.*', which does not exist"):
            read_dr(tmp_path / "missing")
        with pytest.raises(ValueError, match=r"^grading: expected one of \["):
            read_dr(tmp_path, grading="binary")
        with pytest.raises(ValueError, match=r"^layout: expected one of \["):
            read_dr(tmp_path, layout="folders")
