"""The compact uint8 cache: the loader pipeline's cached images in one array, in memory or memory-mapped on disk."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose, Lambdad, RandFlipd

from monai_ilm.data.compact_cache import CACHE_MODES, CompactCacheDataset, cache_bytes, format_bytes, training_dataset
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


@pytest.mark.parametrize("cache", CACHE_MODES)
def test_every_cache_mode_gives_the_items_of_cache_dataset(cache, tmp_path):
    """Cache placement never changes a number: each mode's items equal MONAI ``CacheDataset``'s, key by key."""
    data = [{**row, "image_id": f"r{i}"} for i, row in enumerate(rows())]
    transform = Compose([*deterministic_transforms("dr", 16, 3), ToUint8d("image"), LabelToTensord("label")])
    reference = CacheDataset(data, transform, cache_rate=1.0, num_workers=0, progress=False)
    dataset = training_dataset(data, transform, cache=cache, cache_rate=0.5, cache_dir=tmp_path / "cache")
    expected_type = CacheDataset if cache == "cache_rate" else CompactCacheDataset
    assert type(dataset) is expected_type and len(dataset) == len(reference)
    assert (cache == "disk") == bool(list((tmp_path / "cache").glob("compact_*.npy")))
    for index in range(len(data)):
        item, expected = dataset[index], reference[index]
        assert set(item) == set(expected)
        assert item["image"].dtype == expected["image"].dtype == torch.uint8
        assert torch.equal(torch.as_tensor(item["image"]), torch.as_tensor(expected["image"]))
        assert torch.equal(torch.as_tensor(item["label"]), torch.as_tensor(expected["label"]))
        assert item["image_id"] == expected["image_id"]


def test_loader_augmentation_falls_back_to_cache_dataset_or_is_refused(tmp_path):
    """``augment_on="loader"`` gives float views after the cache boundary: ``"auto"`` uses ``CacheDataset``."""
    transform = pretrain_pipeline("dr", 16, 3, "loader")[0]
    dataset = training_dataset(rows(), transform, cache="auto", cache_rate=1.0, cache_dir=tmp_path)
    assert type(dataset) is CacheDataset and not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="image: expected the cached steps to give a uint8 tensor, got torch.float32."):
        training_dataset(rows(), transform, cache="disk", cache_dir=tmp_path)
    with pytest.raises(
        ValueError, match=r"^cache: expected one of \['auto', 'memory', 'disk', 'cache_rate'\], got 'ram'\.$"
    ):
        training_dataset(rows(), transform, cache="ram")


def test_auto_chooses_the_compact_cache_by_the_dtype_the_cached_steps_give(tmp_path):
    """Any deterministic steps that end in a uint8 image get the compact cache, not only :class:`ToUint8d`."""
    as_uint8 = Lambdad("image", lambda image: (image * 255).round().to(torch.uint8))
    transform = Compose([*deterministic_transforms("dr", 16, 3), as_uint8, RandFlipd("image", prob=0.5)])
    dataset = training_dataset(rows(), transform, cache="auto", cache_dir=tmp_path)
    assert type(dataset) is CompactCacheDataset and dataset.shape == (3, 16, 16)
    float_steps = Compose([*deterministic_transforms("dr", 16, 3), RandFlipd("image", prob=0.5)])
    assert type(training_dataset(rows(), float_steps, cache="auto", cache_dir=tmp_path)) is CacheDataset


@pytest.mark.parametrize("cache", ["auto", "memory", "disk"])
def test_an_empty_datalist_is_refused_before_anything_is_cached(cache, tmp_path):
    transform = pretrain_pipeline("dr", 16, 3, "loader")[0]
    with pytest.raises(ValueError, match=r"^data: expected a non-empty datalist, got 0 rows\.$"):
        training_dataset([], transform, cache=cache, cache_dir=tmp_path)


class FailsAt:
    """A deterministic step that fails on one image, as a run killed while its cache fills."""

    def __init__(self, index: int) -> None:
        self.index, self.seen = index, 0

    def __call__(self, item: dict) -> dict:
        self.seen += 1
        if self.seen > self.index:
            raise RuntimeError("killed")
        return item


def test_an_interrupted_fill_leaves_no_cache_under_the_final_name(tmp_path):
    """The array is filled under a name of its process's own and renamed when complete (ranks never share one)."""
    data, transform = rows(), pretrain_pipeline("dr", 16, 3, "device")[0]
    failing = Compose([*transform.transforms, Lambdad("image", FailsAt(3))])
    with pytest.raises(RuntimeError):
        CompactCacheDataset(data, failing, cache_dir=tmp_path, storage="disk")
    assert not list(tmp_path.iterdir())  # neither a cache a later run would take as complete nor a partial file
    dataset = CompactCacheDataset(data, transform, cache_dir=tmp_path, storage="disk")
    assert torch.equal(torch.stack([dataset[i]["image"] for i in range(6)]), expected_images(data))
    assert sorted(p.name.split(".", 1)[1] for p in tmp_path.iterdir()) == ["extras.pt", "npy"]


def _write_pngs(folder, values) -> list[dict]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, value in enumerate(values):
        path = folder / f"{i}.png"
        Image.fromarray(np.full((20, 24), value, dtype=np.uint8)).save(path)
        out.append({"image": str(path)})
    return out


def _disk_images(data, transform, cache_dir) -> torch.Tensor:
    dataset = CompactCacheDataset(data, transform, cache_dir=cache_dir, storage="disk")
    return torch.stack([dataset[i]["image"] for i in range(len(dataset))])


def test_images_overwritten_in_place_give_a_new_cache(tmp_path):
    data = _write_pngs(tmp_path / "images", [40, 80, 120])
    transform = pretrain_pipeline("dr", 16, 3, "device")[0]
    assert int(_disk_images(data, transform, tmp_path / "cache")[1, 0, 0, 0]) == 80
    _write_pngs(tmp_path / "images", [40, 200, 120])  # same names, new pixels
    assert int(_disk_images(data, transform, tmp_path / "cache")[1, 0, 0, 0]) == 200
    assert len(list((tmp_path / "cache").glob("compact_*.npy"))) == 2


def test_a_loader_setting_gives_a_new_cache(tmp_path):
    from PIL import Image

    path = tmp_path / "grey.png"
    Image.fromarray(np.tile(np.arange(100, 124, dtype=np.uint8), (20, 1))).save(path)  # values 100..123
    data = [{"image": str(path)}]
    seen = {}
    for intensity in ("auto", "minmax"):
        transform = pretrain_pipeline("dr", 16, 3, "device", intensity=intensity)[0]
        seen[intensity] = _disk_images(data, transform, tmp_path / "cache")
        assert torch.equal(seen[intensity][0], transform(dict(data[0]))["image"])  # the pipeline's own, uncached
    assert int(seen["auto"].max()) <= 123 < int(seen["minmax"].max())  # min-max stretches 100..123 towards 0..255


def test_in_memory_arrays_that_differ_only_in_the_middle_get_their_own_cache(tmp_path):
    first = [{"image": np.full((40, 40, 3), 50, dtype=np.uint8)}]
    second = [{"image": first[0]["image"].copy()}]
    second[0]["image"][10:30, 10:30] = 250  # str(ndarray) abbreviates both to the same text
    assert str(first[0]["image"]) == str(second[0]["image"])
    transform = pretrain_pipeline("dr", 16, 3, "device")[0]
    assert int(_disk_images(first, transform, tmp_path)[0].max()) == 50
    assert int(_disk_images(second, transform, tmp_path)[0].max()) == 250
