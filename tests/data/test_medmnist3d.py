"""MedMNIST 3D files: reading volumes (N, D, H, W[, C]), the ``volumes`` data set, the compact cache of their arrays."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from monai_ilm.data import load_datalist
from monai_ilm.data.compact_cache import CompactCacheDataset
from monai_ilm.data.medmnist import read_medmnist
from monai_ilm.data.volumes import read_volumes
from monai_ilm.transforms import ToUint8d, deterministic_transforms, eval_transforms
from tests.data.helpers import shared_path

ADRENAL_MD5 = "bbd3c5a5576322bc4cdfea780653b1ce"  # the official AdrenalMNIST3D file (MedMNIST v2, Zenodo)


def _volumes_npz(path, sizes=(6, 2, 4), side=8, channels=None, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in zip(("train", "val", "test"), sizes):
        shape = (n, side, side, side) + ((channels,) if channels else ())
        arrays[f"{split}_images"] = rng.integers(0, 256, size=shape, dtype=np.uint8)
        arrays[f"{split}_labels"] = (np.arange(n) % 2).reshape(n, 1).astype(np.uint8)
    np.savez(path, **arrays)
    return path


def test_volumes_are_read_as_volumes(tmp_path):
    path = _volumes_npz(tmp_path / "tiny3d.npz")
    stored = np.load(path)
    rows = read_medmnist(path, "test")
    assert [r["image"].shape for r in rows] == [(8, 8, 8)] * 4
    assert all(np.array_equal(r["image"], stored["test_images"][i]) for i, r in enumerate(rows))
    assert [r["label"] for r in rows] == [0, 1, 0, 1]
    assert [r["image_id"] for r in rows] == [f"tiny3d-test-{i}" for i in range(4)]


def test_channel_last_volumes_are_accepted(tmp_path):
    path = _volumes_npz(tmp_path / "rgb3d.npz", channels=1)
    assert read_medmnist(path, "train", spatial_dims=3)[0]["image"].shape == (8, 8, 8, 1)


def test_the_volume_preset_gives_one_channel_volumes_of_a_medmnist_row(tmp_path):
    """A (D, H, W) row is one volume with one channel, not D channels of a 2D image (the uint8 values / 255)."""
    path = _volumes_npz(tmp_path / "tiny3d.npz")
    row = read_medmnist(path, "train")[0]
    out = eval_transforms("volume", image_size=8, channels=1)(row)
    assert tuple(out["image"].shape) == (1, 8, 8, 8)
    # same size: the trilinear resize keeps every voxel; uint8 / 255 is exact to float32 rounding
    np.testing.assert_allclose(out["image"][0].numpy(), row["image"] / 255.0, rtol=0, atol=1e-6)


@pytest.mark.parametrize(
    ("shape", "spatial_dims", "expected"),
    [
        ((3, 8, 8), 3, r"\(N, D, H, W\) or \(N, D, H, W, C\), got \(3, 8, 8\)"),
        ((3, 4, 4, 4, 4, 4), None, r"\(volumes\), got \(3, 4, 4, 4, 4, 4\)"),
        ((3, 8, 8, 8, 9), 3, r"with C at most 4, got \(3, 8, 8, 8, 9\)"),
    ],
)
def test_bad_shapes_name_the_file_and_key(tmp_path, shape, spatial_dims, expected):
    path = tmp_path / "bad.npz"
    np.savez(path, train_images=np.zeros(shape, np.uint8), train_labels=np.zeros((3, 1), np.uint8))
    with pytest.raises(
        ValueError, match=rf"^MedMNIST file '.*bad\.npz', train_images: expected the shape .*{expected}"
    ):
        read_medmnist(path, "train", spatial_dims=spatial_dims)


def test_the_volumes_data_set_refuses_a_2d_file(tmp_path):
    path = tmp_path / "flat.npz"
    np.savez(path, test_images=np.zeros((2, 28, 28), np.uint8), test_labels=np.zeros((2, 1), np.uint8))
    with pytest.raises(ValueError, match=r"flat\.npz', test_images: expected the shape \(N, D, H, W\)"):
        read_volumes(path, "test")


def test_the_volumes_data_set_reads_the_official_splits_of_a_file_or_its_folder(tmp_path):
    path = _volumes_npz(tmp_path / "tiny3d.npz", sizes=(6, 2, 4))
    assert [len(load_datalist("volumes", path, split)) for split in ("train", "val", "test")] == [6, 2, 4]
    assert len(load_datalist("volumes", tmp_path, "val", seed=3)) == 2  # a fixed split: the seed changes nothing


def test_compact_cache_of_volume_arrays_is_keyed_by_their_content(tmp_path):
    path = _volumes_npz(tmp_path / "tiny3d.npz")
    rows = read_medmnist(path, "train")
    steps = Compose([*deterministic_transforms("volume", 8, 1), ToUint8d("image")])
    first = CompactCacheDataset(rows, steps, storage="disk", cache_dir=tmp_path / "cache")
    changed = [dict(r) for r in rows]
    changed[2]["image"] = changed[2]["image"].copy()
    changed[2]["image"][0, 0, 0] ^= 1
    second = CompactCacheDataset(changed, steps, storage="disk", cache_dir=tmp_path / "cache")
    again = CompactCacheDataset([dict(r) for r in rows], steps, storage="disk", cache_dir=tmp_path / "cache")
    assert first.path != second.path and first.path == again.path
    assert tuple(first[0]["image"].shape) == (1, 8, 8, 8) and first[0]["image"].dtype == torch.uint8
    assert torch.equal(first[0]["image"][0], torch.from_numpy(rows[0]["image"]))  # uint8 in, the same uint8 out


def test_real_adrenalmnist3d():
    path = shared_path("medmnist3d", "adrenalmnist3d.npz")
    assert hashlib.md5(path.read_bytes()).hexdigest() == ADRENAL_MD5
    sizes = {split: len(read_medmnist(path, split)) for split in ("train", "val", "test")}
    assert sizes == {"train": 1188, "val": 98, "test": 298}  # the official patient-level split
    train = read_medmnist(path, "train")
    assert train[0]["image"].shape == (28, 28, 28) and train[0]["image"].dtype == np.uint8
    assert np.bincount([r["label"] for r in train]).tolist() == [929, 259]  # ../shared/data/README.md
    rows = load_datalist("volumes", path, "test")
    assert len(rows) == 298 and rows[0]["image_id"] == "adrenalmnist3d-test-0"
