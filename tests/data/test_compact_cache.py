"""The compact uint8 cache: the loader pipeline's cached images in one array, in memory or memory-mapped on disk."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from monai.data import DataLoader
from monai.transforms import Compose, RandFlipd

from monai_ilm.data.compact_cache import CompactCacheDataset, cache_bytes, format_bytes
from monai_ilm.transforms import LabelToTensord, ToUint8d, deterministic_transforms, pretrain_pipeline


def rows(n: int = 6) -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 256, (20, 24, 3), dtype=np.uint8), "label": i % 2} for i in range(n)]


def expected_images(data: list[dict]) -> torch.Tensor:
    transform = pretrain_pipeline("dr", 16, 3, "device")[0]
    return torch.stack([transform(dict(row))["image"] for row in data])


def test_cache_bytes_of_a_full_nih_run():
    assert cache_bytes(112_120, 512, 1) == 112_120 * 512 * 512 == 29_391_585_280
    assert cache_bytes(10, 8, 3, spatial_dims=3) == 10 * 3 * 8**3
    assert format_bytes(cache_bytes(112_120, 512, 1)) == "27.4 GiB" and format_bytes(3 * 2**20) == "3.0 MiB"
    with pytest.raises(ValueError, match="image_size, channels, spatial_dims: expected a count >= 0"):
        cache_bytes(10, 0)


def test_in_memory_cache_holds_the_pipelines_uint8_images():
    data = rows()
    dataset = CompactCacheDataset(data, pretrain_pipeline("dr", 16, 3, "device")[0], num_workers=2)
    assert not dataset.on_disk and dataset.nbytes() == 6 * 3 * 16 * 16
    assert torch.equal(torch.stack([dataset[i]["image"] for i in range(6)]), expected_images(data))
    batch = next(iter(DataLoader(dataset, batch_size=3, shuffle=False)))
    assert batch["image"].shape == (3, 3, 16, 16) and batch["image"].dtype == torch.uint8


def test_over_the_memory_limit_it_goes_to_disk_and_later_runs_reuse_the_file(tmp_path):
    data = rows()
    transform = pretrain_pipeline("dr", 16, 3, "device")[0]
    with pytest.raises(ValueError, match=r"cache_dir: expected a folder for the .* cache \(over the memory limit"):
        CompactCacheDataset(data, transform, memory_limit=100)
    dataset = CompactCacheDataset(data, transform, cache_dir=tmp_path, memory_limit=100)
    assert dataset.on_disk and len(list(tmp_path.glob("compact_*.npy"))) == 1
    assert torch.equal(torch.stack([dataset[i]["image"] for i in range(6)]), expected_images(data))
    again = CompactCacheDataset(data, transform, cache_dir=tmp_path, storage="disk")
    assert isinstance(again.images, np.memmap) and again.images.mode == "r"  # reused, not refilled
    assert torch.equal(again[5]["image"], dataset[5]["image"])
    restored = pickle.loads(pickle.dumps(again))  # what a spawned loader worker receives
    assert torch.equal(restored[2]["image"], dataset[2]["image"])
    other = CompactCacheDataset(data[:5], transform, cache_dir=tmp_path, storage="disk")
    assert len(list(tmp_path.glob("compact_*.npy"))) == 2 and len(other) == 5  # another datalist, another file


def test_other_keys_are_kept_and_random_steps_run_on_every_access():
    data = rows()
    steps = [*deterministic_transforms("dr", 16, 3), ToUint8d("image"), LabelToTensord("label")]
    flip = RandFlipd("image", prob=0.5, spatial_axis=1).set_random_state(0)
    dataset = CompactCacheDataset(data, Compose([*steps, flip]))
    assert [int(dataset[i]["label"]) for i in range(6)] == [0, 1, 0, 1, 0, 1]
    assert set(dataset[0]) == {"image", "label"} and dataset.rest is not None
    cached = expected_images(data)[0]
    seen = {bool(torch.equal(torch.as_tensor(dataset[0]["image"]), cached)) for _ in range(12)}
    assert seen == {True, False}  # flipped on some accesses, not on others; the cache itself is never flipped


def test_errors():
    with pytest.raises(ValueError, match="data: expected a non-empty datalist, got 0 rows."):
        CompactCacheDataset([], Compose([]))
    with pytest.raises(ValueError, match="storage: expected 'auto', 'memory' or 'disk', got 'ram'."):
        CompactCacheDataset(rows(), Compose([]), storage="ram")
    with pytest.raises(ValueError, match="image: expected the cached steps to give a uint8 tensor, got torch.float32."):
        CompactCacheDataset(rows(), Compose(deterministic_transforms("dr", 16, 3)))
