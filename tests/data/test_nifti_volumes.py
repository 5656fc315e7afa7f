"""NIfTI folders with a labels CSV (binary, multi-class, multi-label), and the header check before any training."""

from __future__ import annotations

import logging
import struct

import nibabel
import numpy as np
import pytest

from monai_ilm.data import load_datalist
from monai_ilm.data.integrity import BadVolumeHeaderError, UnreadableImageError, check_datalists, check_volume_header
from monai_ilm.data.nifti import read_nifti_folder
from monai_ilm.data.splits import assert_patient_disjoint
from monai_ilm.data.volumes import read_volumes

_PIXDIM_OFFSET = 76  # NIfTI-1 header: float32 pixdim[8] starts at byte 76; pixdim[1..3] are the voxel sizes


def write_volume(path, shape=(6, 6, 6), affine=None, seed=0):
    volume = np.random.default_rng(seed).random(shape).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4) if affine is None else affine), str(path))
    return path


def write_folder(root, labels, patients=None, extra_columns=None):
    """Volumes ``v<k>.nii.gz`` and a labels.csv of ``image,<label columns>[,patient]``."""
    root.mkdir(parents=True, exist_ok=True)
    header = ["image", *(extra_columns or ["label"])] + (["patient"] if patients else [])
    lines = [",".join(header)]
    for k, label in enumerate(labels):
        write_volume(root / f"v{k}.nii.gz", seed=k)
        cells = [f"v{k}.nii.gz", *([str(v) for v in label] if isinstance(label, tuple) else [str(label)])]
        lines.append(",".join(cells + ([patients[k]] if patients else [])))
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    return root


def test_binary_labels_and_patients_from_the_csv(tmp_path):
    root = write_folder(tmp_path / "ct", [0, 1, 1, 0], patients=["p0", "p0", "p1", "p2"])
    rows = read_nifti_folder(root)
    assert [r["label"] for r in rows] == [0, 1, 1, 0]
    assert [r["patient_id"] for r in rows] == ["p0", "p0", "p1", "p2"]
    assert rows[0]["image"] == str(root.resolve() / "v0.nii.gz")


def test_multi_class_names_are_indexed_in_sorted_order(tmp_path):
    root = write_folder(tmp_path / "mr", ["glioma", "normal", "meningioma"])
    assert [r["label"] for r in read_nifti_folder(root)] == [0, 2, 1]


def test_multi_label_columns_give_multi_hot_rows(tmp_path):
    root = write_folder(tmp_path / "ml", [(1, 0), (0, 0), (1, 1)], extra_columns=["label_mass", "label_cyst"])
    assert [r["label"] for r in read_nifti_folder(root)] == [[1.0, 0.0], [0.0, 0.0], [1.0, 1.0]]


def test_seeded_patient_split_or_the_csv_split_column(tmp_path):
    labels = [k % 2 for k in range(20)]
    patients = [f"p{k // 2}" for k in range(20)]
    root = write_folder(tmp_path / "seeded", labels, patients=patients)
    parts = {s: load_datalist("volumes", root, s, seed=1) for s in ("train", "val", "test")}
    assert sum(len(p) for p in parts.values()) == 20
    assert_patient_disjoint(*parts.values())
    fixed = write_folder(tmp_path / "fixed", labels[:4], extra_columns=["label", "split"])
    text = (fixed / "labels.csv").read_text().splitlines()
    splits = ["train", "train", "val", "test"]
    rewritten = [text[0]] + [f"v{k}.nii.gz,{labels[k]},{splits[k]}" for k in range(4)]
    (fixed / "labels.csv").write_text("\n".join(rewritten) + "\n")
    assert [r["image"].rsplit("/", 1)[1] for r in read_volumes(fixed, "train")] == ["v0.nii.gz", "v1.nii.gz"]
    assert len(read_volumes(fixed, "test")) == 1


def _zero_pixdim(path):
    """A ``.nii`` whose second voxel size is 0 in the file (nibabel would fix it on writing, so the bytes are set)."""
    data = bytearray(write_volume(path).read_bytes())
    data[_PIXDIM_OFFSET + 8 : _PIXDIM_OFFSET + 12] = struct.pack("<f", 0.0)
    path.write_bytes(bytes(data))
    return path


def _flat(path):
    nibabel.save(nibabel.Nifti1Image(np.zeros((6, 6), np.float32), np.eye(4)), str(path))
    return path


def _singular(path):
    header = nibabel.Nifti1Header()
    header.set_data_dtype(np.float32)
    header.set_data_shape((6, 6, 6))
    header.set_sform(np.diag([1.0, 0.0, 1.0, 1.0]), code=1)  # the y axis maps to nothing: no inverse
    nibabel.save(nibabel.Nifti1Image(np.ones((6, 6, 6), np.float32), None, header), str(path))
    return path


def _garbage(path):
    path.write_bytes(b"this is not a NIfTI file " * 20)
    return path


@pytest.mark.parametrize(
    ("make", "name", "expected"),
    [
        (
            _zero_pixdim,
            "bad.nii",
            r"expected a finite, positive voxel spacing \(pixdim\) on each axis, got \(1\.0, 0\.0",
        ),
        (_flat, "bad.nii.gz", r"expected a 3D volume of shape \(X, Y, Z\) or \(X, Y, Z, 1\).*got \(6, 6\)"),
        (_singular, "bad.nii", r"expected an invertible affine .*got the singular"),
        (_garbage, "bad.nii.gz", r"cannot be read \("),
    ],
)
def test_a_bad_volume_is_named_when_the_folder_is_read(tmp_path, make, name, expected):
    root = write_folder(tmp_path / "ct", [0, 1, 0])
    make(root / name)
    lines = (root / "labels.csv").read_text().splitlines() + [f"{name},1"]
    (root / "labels.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(UnreadableImageError, match=rf"got 1 of 4 that cannot be used: '.*/ct/{name}'.*{expected}"):
        read_nifti_folder(root)
    with pytest.raises(UnreadableImageError, match=expected):
        check_volume_header(root / name)
    rows = read_nifti_folder(root, check_headers=False)  # the quick check before training names it too
    with pytest.raises(UnreadableImageError, match=rf"'.*/ct/{name}'; the first: .*{expected}"):
        check_datalists({"train": rows}, batch_size=1)


def test_bad_volumes_can_be_skipped_with_a_warning(tmp_path, caplog):
    root = write_folder(tmp_path / "ct", [0, 1, 0])
    _flat(root / "flat.nii.gz")
    (root / "labels.csv").write_text((root / "labels.csv").read_text() + "flat.nii.gz,1\n")
    with caplog.at_level(logging.WARNING):
        rows = read_nifti_folder(root, skip_unreadable=True)
    assert len(rows) == 3 and "skipped 1 of 4" in caplog.text and "flat.nii.gz" in caplog.text


def test_good_headers_pass(tmp_path):
    path = write_volume(tmp_path / "ok.nii.gz", affine=np.diag([-0.8, -0.8, 2.5, 1.0]))
    check_volume_header(path)
    check_volume_header(write_volume(tmp_path / "t1.nii", shape=(5, 5, 5, 1)))  # one time point: still 3D
    with pytest.raises(BadVolumeHeaderError, match="expected a 3D volume"):
        check_volume_header(write_volume(tmp_path / "t2.nii", shape=(5, 5, 5, 2)))
