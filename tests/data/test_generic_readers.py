"""MedMNIST npz, generic CSV, image-folder and NIfTI readers."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from monai_ilm.data.csv_datalist import read_csv_datalist
from monai_ilm.data.folder import read_image_folder
from monai_ilm.data.medmnist import read_medmnist
from monai_ilm.data.nifti import read_nifti_folder
from monai_ilm.data.synthetic import make_medmnist_sample
from tests.data.helpers import shared_path

REAL_MEDMNIST = {
    "retinamnist": ((1080, 120, 400), (28, 28, 3)),
    "pneumoniamnist": ((4708, 524, 624), (28, 28)),
    "breastmnist": ((546, 78, 156), (28, 28)),
}


class TestMedMNIST:
    @pytest.mark.parametrize("flag", sorted(REAL_MEDMNIST))
    def test_real_files(self, flag):
        path = shared_path("medmnist", f"{flag}.npz")
        sizes, shape = REAL_MEDMNIST[flag]
        for split, size in zip(("train", "val", "test"), sizes):
            rows = read_medmnist(path, split)
            assert len(rows) == size
            assert rows[0]["image"].shape == shape and rows[0]["image"].dtype == np.uint8
            assert all(isinstance(r["label"], int) for r in rows)
            assert len({r["patient_id"] for r in rows}) == size
        assert read_medmnist(path.parent, "val", flag=flag)[0]["patient_id"] == f"{flag}-val-0"

    def test_retinamnist_grade_counts(self):
        rows = read_medmnist(shared_path("medmnist", "retinamnist.npz"), "train")
        assert np.bincount([r["label"] for r in rows]).tolist() == [486, 128, 206, 194, 66]

    @pytest.mark.parametrize("flat", [False, True])
    def test_both_label_shapes(self, tmp_path, flat):
        path = make_medmnist_sample(tmp_path / "x.npz", split_sizes=(6, 2, 2), flat_labels=flat, num_classes=3)
        assert [r["label"] for r in read_medmnist(path, "train")] == np.load(path)["train_labels"].reshape(-1).tolist()

    def test_multi_label_arrays(self, tmp_path):
        path = tmp_path / "chest.npz"
        np.savez(path, train_images=np.zeros((2, 4, 4), np.uint8), train_labels=np.array([[0, 1, 1], [1, 0, 0]]))
        assert read_medmnist(path)[0]["label"] == [0.0, 1.0, 1.0]

    def test_errors(self, tmp_path, medmnist_file):
        np.savez(tmp_path / "bad.npz", train_images=np.zeros((1, 2, 2)))
        with pytest.raises(ValueError, match=r"expected array\(s\) \['val_images', 'val_labels'\], got arrays"):
            read_medmnist(tmp_path / "bad.npz", "val")
        make_medmnist_sample(tmp_path / "other.npz", split_sizes=(2, 2, 2))
        with pytest.raises(FileNotFoundError, match="exactly one MedMNIST .npz"):
            read_medmnist(tmp_path)
        with pytest.raises(FileNotFoundError, match="does not exist"):
            read_medmnist(tmp_path / "missing")
        with pytest.raises(ValueError, match=r"^split: expected one of \["):
            read_medmnist(medmnist_file, "dev")


class TestCsv:
    def _write(self, tmp_path, text):
        for name in ("a.png", "b.png", "c.png"):  # real PNGs: skip_unreadable drops files that do not decode
            Image.new("L", (4, 4)).save(tmp_path / name)
        path = tmp_path / "list.csv"
        path.write_text(text)
        return path

    def test_int_labels_relative_paths_and_patients(self, tmp_path):
        path = self._write(tmp_path, "image,label,pid\na.png,0,p1\nb.png,1,p1\nc.png,1,p2\n")
        rows = read_csv_datalist(path, patient_column="pid")
        assert rows[0] == {"image": str(tmp_path.resolve() / "a.png"), "patient_id": "p1", "label": 0}

    def test_empty_image_cell_is_named(self, tmp_path):
        path = self._write(tmp_path, "image,label\na.png,0\n,1\n")
        with pytest.raises(
            ValueError, match="list.csv' row 3, column 'image': expected an image path, got an empty cell"
        ):
            read_csv_datalist(path)

    def test_class_names_multi_hot_and_unlabelled(self, tmp_path):
        path = self._write(tmp_path, "file,diagnosis,x,y\na.png,normal,0,1\nb.png,tumour,1,1\nc.png,normal,0,0\n")
        assert [r["label"] for r in read_csv_datalist(path, "file", "diagnosis")] == [0, 1, 0]
        assert [r["label"] for r in read_csv_datalist(path, "file", "diagnosis", class_names=["tumour", "normal"])] == [
            1,
            0,
            1,
        ]
        assert read_csv_datalist(path, "file", ["x", "y"])[1]["label"] == [1.0, 1.0]
        assert "label" not in read_csv_datalist(path, "file", None)[0]

    def test_split_column(self, tmp_path):
        path = self._write(tmp_path, "image,label,split\na.png,0,train\nb.png,1,Validation\nc.png,1,test\n")
        assert [r["image"].rsplit("/", 1)[1] for r in read_csv_datalist(path, split_column="split", split="val")] == [
            "b.png"
        ]

    def test_missing_columns_and_files(self, tmp_path):
        path = self._write(tmp_path, "path,label\na.png,0\nmissing.png,1\n")
        with pytest.raises(ValueError, match=r"expected column\(s\) \['image'\], got columns \['path', 'label'\]"):
            read_csv_datalist(path)
        with pytest.raises(FileNotFoundError, match="missing.png"):
            read_csv_datalist(path, image_column="path")
        assert len(read_csv_datalist(path, image_column="path", skip_unreadable=True)) == 1
        with pytest.raises(ValueError, match=r"column 'label': expected class names in \['dog'\], got \['cat'\]"):
            read_csv_datalist(self._write(tmp_path, "image,label\na.png,cat\n"), class_names=["dog"])
        with pytest.raises(ValueError, match=r"expected 0 or 1 \(a multi-label column\), got "):
            read_csv_datalist(self._write(tmp_path, "image,x\na.png,2\n"), label_column=["x"])


class TestFolderAndNifti:
    def test_image_folder(self, tmp_path):
        for cls, names in {"benign": ["p1_a.png", "p2_a.png"], "malignant": ["p1_b.jpg"]}.items():
            (tmp_path / cls).mkdir()
            for name in names:
                (tmp_path / cls / name).write_bytes(b"x")
        (tmp_path / "benign" / "notes.txt").write_text("ignored")
        rows = read_image_folder(tmp_path, patient_pattern=r"^(p\d+)_")
        assert [(r["label"], r["patient_id"], r["class_name"]) for r in rows] == [
            (0, "p1", "benign"),
            (0, "p2", "benign"),
            (1, "p1", "malignant"),
        ]
        with pytest.raises(
            ValueError,
            match="^patient_pattern: expected a pattern matching every file name, got .* which does not match",
        ):
            read_image_folder(tmp_path, patient_pattern=r"^(q\d+)")
        with pytest.raises(ValueError, match=r"expected class folder\(s\) \['other'\], got folders"):
            read_image_folder(tmp_path, class_names=["benign", "other"])

    def test_numbered_class_folders_sort_numerically(self, tmp_path):
        for cls in ("2", "10"):
            (tmp_path / cls).mkdir()
            (tmp_path / cls / "x.png").write_bytes(b"x")
        assert [r["class_name"] for r in read_image_folder(tmp_path)] == ["2", "10"]

    def test_nifti_layouts(self, nifti_dir, tmp_path):
        rows = read_nifti_folder(nifti_dir, verify=True)
        assert len(rows) == 12 and {r["label"] for r in rows} == {0, 1}
        assert all(r["image"].endswith(".nii.gz") for r in rows)
        flat = tmp_path / "flat"
        flat.mkdir()
        for r in rows[:3]:
            (flat / r["image"].rsplit("/", 1)[1]).write_bytes(open(r["image"], "rb").read())
        assert all("label" not in r for r in read_nifti_folder(flat))
        (flat / "labels.csv").write_text(
            "image,label,patient_id\n"
            + "".join(f"{r['image'].rsplit('/', 1)[1]},{r['label']},{r['patient_id']}\n" for r in rows[:3])
        )
        assert [r["label"] for r in read_nifti_folder(flat)] == [r["label"] for r in rows[:3]]
        with pytest.raises(FileNotFoundError, match="got no NIfTI volumes"):
            read_nifti_folder(_empty_dir(tmp_path))


def _empty_dir(tmp_path):
    path = tmp_path / "empty"
    path.mkdir()
    return path
