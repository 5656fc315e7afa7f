"""Per-dataset presets: two independent views, reproducibility, cacheable prefix, output types."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose

from monai_ilm.data import cache_boundary
from monai_ilm.transforms import (
    PRESETS,
    VIEW_KEYS,
    deterministic_transforms,
    eval_transforms,
    finetune_transforms,
    pretrain_transforms,
    view_transforms,
)
from tests.data.helpers import shared_path

PRESETS_2D = ("nih", "idc", "dr")


def _item_for(preset, xray_item, rgb_item):
    return xray_item if preset == "nih" else rgb_item


@pytest.mark.parametrize("preset", PRESETS_2D)
@pytest.mark.parametrize("channels", [1, 3])
def test_views_are_plain_float_tensors_in_unit_range(preset, channels, xray_item, rgb_item):
    out = pretrain_transforms(preset, image_size=32, channels=channels).set_random_state(0)(
        _item_for(preset, xray_item, rgb_item)
    )
    assert set(out) == set(VIEW_KEYS)
    for view in out.values():
        assert type(view) is torch.Tensor and view.dtype == torch.float32
        assert view.shape == (channels, 32, 32)
        assert 0.0 <= float(view.min()) and float(view.max()) <= 1.0


@pytest.mark.parametrize("preset", PRESETS_2D)
def test_two_views_differ_and_each_pipeline_is_reproducible(preset, xray_item, rgb_item):
    item = _item_for(preset, xray_item, rgb_item)
    transform = pretrain_transforms(preset, image_size=32)
    first = transform.set_random_state(123)(item)
    again = transform.set_random_state(123)(item)
    for key in VIEW_KEYS:
        torch.testing.assert_close(first[key], again[key], rtol=0, atol=0)
    assert not torch.equal(first["view1"], first["view2"])
    other = transform.set_random_state(124)(item)
    assert not torch.equal(first["view1"], other["view1"])
    # over many draws the views never coincide: no random step is shared between them
    draws = [transform(item) for _ in range(10)]
    assert all(not torch.equal(d["view1"], d["view2"]) for d in draws)


def test_views_use_separate_transform_instances():
    transform = pretrain_transforms("dr", image_size=16)
    per_view = {key: [t for t in transform.transforms if getattr(t, "keys", None) == (key,)] for key in VIEW_KEYS}
    assert len(per_view["view1"]) == len(per_view["view2"]) == 5  # CJ, Gray, Blur, Rot30, HFlip
    assert not {id(t) for t in per_view["view1"]} & {id(t) for t in per_view["view2"]}


@pytest.mark.parametrize("preset", list(PRESETS))
def test_deterministic_steps_come_first_and_flat(preset):
    transform = pretrain_transforms(preset, image_size=16)
    boundary = cache_boundary(transform)
    assert boundary == len(deterministic_transforms(preset, 16)) >= 4
    assert not any(isinstance(t, Compose) for t in transform.transforms)
    assert cache_boundary(eval_transforms(preset, image_size=16)) == len(
        eval_transforms(preset, image_size=16).transforms
    )


def test_cache_dataset_caches_the_resized_image_once(xray_item):
    transform = pretrain_transforms("nih", image_size=24, channels=1)
    dataset = CacheDataset([xray_item] * 3, transform, progress=False, num_workers=0)
    cached = dataset._cache[0]
    assert set(cached) >= {"image", "label"} and not set(cached) & set(VIEW_KEYS)
    assert cached["image"].shape == (1, 24, 24)
    batch = next(iter(DataLoader(dataset, batch_size=3, num_workers=0)))
    assert batch["view1"].shape == batch["view2"].shape == (3, 1, 24, 24)
    assert not torch.equal(batch["view1"], batch["view2"])


def test_validation_views_are_identical_and_idc_zooms_in(rgb_item):
    for preset in PRESETS_2D:
        out = pretrain_transforms(preset, image_size=32, augment=False)(rgb_item)
        assert torch.equal(out["view1"], out["view2"])
    plain = eval_transforms("idc", image_size=32)(rgb_item)["image"]
    zoomed = pretrain_transforms("idc", image_size=32, augment=False)(rgb_item)["view1"]
    assert plain.shape == zoomed.shape and not torch.equal(plain, zoomed)


@pytest.mark.parametrize("preset", PRESETS_2D)
def test_finetune_and_eval_outputs(preset, xray_item, rgb_item):
    item = _item_for(preset, xray_item, rgb_item)
    tuned = finetune_transforms(preset, image_size=32).set_random_state(0)(item)
    evaluated = eval_transforms(preset, image_size=32)(item)
    for out in (tuned, evaluated):
        assert set(out) == {"image", "label"} and out["image"].shape == (3, 32, 32)
    if preset == "nih":
        assert evaluated["label"].dtype == torch.float32 and evaluated["label"].shape == (14,)
    else:
        assert evaluated["label"].dtype == torch.int64 and evaluated["label"].ndim == 0
    assert torch.equal(evaluated["image"], eval_transforms(preset, image_size=32)(item)["image"])
    unlabelled = eval_transforms(preset, image_size=32)({"image": item["image"]})
    assert set(unlabelled) == {"image"}


def test_default_sizes_are_the_papers(xray_item, rgb_item):
    assert {name: spec.image_size for name, spec in PRESETS.items() if name in PRESETS_2D} == {
        "nih": 512,
        "idc": 255,
        "dr": 299,
    }
    assert eval_transforms("idc")(rgb_item)["image"].shape == (3, 255, 255)
    assert pretrain_transforms("nih", channels=1)(xray_item)["view1"].shape == (1, 512, 512)


def test_idc_pre_resize_matches_resize_256_then_centre_crop_255(rgb_item):
    image = eval_transforms("idc", channels=3)(rgb_item)["image"]
    assert image.shape == (3, 255, 255)
    steps = [type(t).__name__ for t in deterministic_transforms("idc")]
    assert steps[2:4] == ["ResizeShortSided", "CenterSpatialCropd"] and deterministic_transforms("idc")[2].size == 256


def test_normalize_option(rgb_item):
    plain = eval_transforms("dr", image_size=16)(rgb_item)["image"]
    normalised = eval_transforms("dr", image_size=16, normalize=True)(rgb_item)["image"]
    expected = (plain - torch.tensor([0.485, 0.456, 0.406])[:, None, None]) / torch.tensor([0.229, 0.224, 0.225])[
        :, None, None
    ]
    torch.testing.assert_close(normalised, expected, rtol=1e-5, atol=1e-5)
    grey = pretrain_transforms("nih", image_size=16, channels=1, normalize=True)(rgb_item)["view1"]
    assert grey.min() < 0


def test_sixteen_bit_xray_keeps_its_contrast(image_files):
    out = eval_transforms("nih", image_size=20, channels=1)({"image": str(image_files[0]["sixteen"])})["image"]
    assert 0.2 < float(out.mean()) < 0.8 and float(out.std()) > 0.05


def test_arrays_and_volumes(image_files):
    retina = {"image": np.random.default_rng(0).integers(0, 255, (28, 28, 3), dtype=np.uint8), "label": 2}
    assert pretrain_transforms("dr", image_size=32)(retina)["view2"].shape == (3, 32, 32)
    volume = pretrain_transforms("volume", image_size=8, channels=1).set_random_state(0)(
        {"image": str(image_files[0]["volume"])}
    )
    assert (
        volume["view1"].shape == (1, 8, 8, 8)
        and 0.0 <= float(volume["view1"].min())
        and float(volume["view1"].max()) <= 1.0
    )
    assert not torch.equal(volume["view1"], volume["view2"])


def test_real_medmnist_through_a_preset():
    from monai_ilm.data import read_medmnist

    rows = read_medmnist(shared_path("medmnist", "breastmnist.npz"), "test")[:4]
    batch = [pretrain_transforms("idc", image_size=32, channels=3)(r) for r in rows]
    assert all(b["view1"].shape == (3, 32, 32) for b in batch)


def test_real_idc_patch_through_a_preset():
    patch = next(shared_path("idc_samples").glob("*/*/*.png"))
    out = eval_transforms("idc", image_size=64)({"image": str(patch), "label": int(patch.parent.name)})
    assert out["image"].shape == (3, 64, 64) and out["label"].item() == int(patch.parent.name)


def test_view_transforms_factory_and_errors():
    first, second = view_transforms("nih", "view1", 32), view_transforms("nih", "view2", 32)
    assert len(first.transforms) == len(second.transforms) == 4
    with pytest.raises(ValueError, match=r"preset: expected one of \['nih', 'idc', 'dr', 'volume'\]"):
        pretrain_transforms("chexpert")
    with pytest.raises(ValueError, match="stage: expected 'pretrain' or 'finetune'"):
        view_transforms("nih", "view1", stage="probe")
    with pytest.raises(ValueError, match="image_size: expected an integer of at least 1"):
        eval_transforms("nih", image_size=0)


def test_load_error_names_the_file(tmp_path):
    """MONAI's Compose re-raises as RuntimeError("applying transform ..."); the cause names the file and key."""
    with pytest.raises(RuntimeError) as info:
        pretrain_transforms("nih", image_size=16)({"image": str(tmp_path / "missing.png")})
    assert isinstance(info.value.__cause__, FileNotFoundError)
    assert f"'{tmp_path / 'missing.png'}' does not exist. (key 'image')" in str(info.value.__cause__)
