"""The device stage makes the loader pipeline's views: same parameter distributions per step, independent views,
seeded and resumable, the same shapes, dtypes and value ranges.

Distributions are compared with SciPy's two-sample Kolmogorov-Smirnov test (continuous parameters and image
statistics) and chi-square tests of homogeneity (coin flips, orders), on thousands of draws with fixed seeds,
so the tests are deterministic; each comparison is also run against a deliberately wrong device step to show it
would catch a wrong distribution.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from scipy import stats

from monai_ilm.transforms import (
    AUGMENT_ON,
    DeviceAugment,
    RandColorJitterd,
    RandGaussianBlurd,
    RandResizedCropd,
    RandRotationd,
    get_preset,
    pretrain_pipeline,
    pretrain_transforms,
)
from monai_ilm.transforms.device_augment import device_steps

PRESETS_2D = ("nih", "idc", "dr")
SIZE, DRAWS = 64, 4000
PASS, FAIL = 1e-3, 1e-6  # p-value thresholds: same distribution / clearly different
_JITTER = ("brightness", "contrast", "saturation", "hue")


def loader_parameters(step, n: int, shape=(SIZE, SIZE)) -> dict[str, np.ndarray]:
    """``n`` draws of a loader transform's random parameters, named as :func:`device_parameters` names them."""
    step = copy.deepcopy(step).set_random_state(0)
    rows: list[dict] = []
    for _ in range(n):
        if isinstance(step, RandResizedCropd):
            step.randomize(shape)
            rows.append(dict(zip(("top", "left", "height", "width"), step._box)))
            continue
        step.randomize(None)
        row = {"apply": bool(step._do_transform)}
        if isinstance(step, RandColorJitterd) and step._do_transform:
            row["order"] = "".join(name[0] for name, _ in step._steps)
            row.update(dict(step._steps))
        elif isinstance(step, RandGaussianBlurd) and step._do_transform:
            row["sigma"] = step._value
        elif isinstance(step, RandRotationd) and step._do_transform:
            row["angle"] = step.angle
        rows.append(row)
    return _columns(rows)


def device_parameters(step, n: int, seed: int = 1, shape=(SIZE, SIZE)) -> dict[str, np.ndarray]:
    """``n`` draws of a device step's parameters, the loader's names and only where the loader draws them."""
    p = step.draw(n, torch.Generator().manual_seed(seed), (n, 3, *shape))
    rows = []
    for i in range(n):
        if "boxes" in p:
            rows.append(dict(zip(("top", "left", "height", "width"), p["boxes"][i].tolist())))
            continue
        row = {"apply": bool(p["apply"][i])}
        if row["apply"] and "order" in p:
            row["order"] = "".join(_JITTER[int(op)][0] for op in p["order"][i])
            row.update({name: float(p["factors"][i, op]) for op, name in enumerate(_JITTER)})
        elif row["apply"] and "sigma" in p:
            row["sigma"] = float(p["sigma"][i])
        elif row["apply"] and "angle" in p:
            row["angle"] = float(p["angle"][i])
        rows.append(row)
    return _columns(rows)


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    keys = sorted({k for row in rows for k in row})
    return {k: np.asarray([row[k] for row in rows if k in row]) for k in keys}


def same_distribution_p(a: np.ndarray, b: np.ndarray) -> float:
    """Homogeneity p-value: chi-square on categories (booleans, strings), else two-sample KS."""
    if a.dtype.kind in "bUS":
        categories = sorted(set(a.tolist()) | set(b.tolist()))
        table = [[int(np.sum(x == c)) for c in categories] for x in (a, b)]
        return 1.0 if len(categories) == 1 else float(stats.chi2_contingency(table).pvalue)
    return float(stats.ks_2samp(a, b).pvalue)


def pairs(preset: str):
    """(loader step, device step) of each step of ``preset``'s pretraining view."""
    return list(zip(get_preset(preset).pretrain_view("image", SIZE), device_steps(preset, SIZE)))


@pytest.mark.parametrize("preset", PRESETS_2D)
def test_every_step_draws_the_loaders_parameter_distributions(preset):
    compared = []
    for loader_step, device_step in pairs(preset):
        expected, drawn = loader_parameters(loader_step, DRAWS), device_parameters(device_step, DRAWS)
        assert expected.keys() == drawn.keys(), type(loader_step).__name__
        for name in expected:
            p = same_distribution_p(expected[name], drawn[name])
            assert p > PASS, f"{preset} {type(loader_step).__name__} {name}: p = {p:.2g}"
            compared.append(name)
    assert {"apply", "brightness", "hue", "order", "sigma"} <= set(compared)


WRONG = [  # (preset, step index, attribute, wrong value, parameter that must then differ)
    ("nih", 0, "prob", 0.7, "apply"),
    ("nih", 0, "ranges", [(0.5, 1.5), (0.6, 1.4), (0.6, 1.4), (-0.1, 0.1)], "brightness"),
    ("nih", 1, "prob", 0.25, "apply"),
    ("nih", 2, "sigma", (0.1, 2.4), "sigma"),
    ("nih", 3, "degrees", 25.0, "angle"),
    ("idc", 0, "scale", (0.3, 1.0), "height"),
    ("idc", 4, "prob", 0.4, "apply"),
]


@pytest.mark.parametrize("preset, index, attribute, value, parameter", WRONG)
def test_the_comparison_catches_a_wrong_distribution(preset, index, attribute, value, parameter):
    loader_step, device_step = pairs(preset)[index]
    setattr(device_step, attribute, value)
    p = same_distribution_p(
        loader_parameters(loader_step, DRAWS)[parameter], device_parameters(device_step, DRAWS)[parameter]
    )
    assert p < FAIL, p


def test_jitter_orders_are_uniform_permutations():
    _, jitter = pairs("dr")[0]
    orders = device_parameters(jitter, DRAWS)["order"]
    counts = np.unique(orders, return_counts=True)[1]
    assert len(counts) == 24 and stats.chisquare(counts).pvalue > PASS


def _image(preset: str, size: int = SIZE) -> np.ndarray:
    """A test image with structure: grey for NIH, colour otherwise."""
    rows, cols = np.mgrid[0:size, 0:size] / size
    channels = [0.5 + 0.4 * np.sin(6 * rows + k) * np.cos(4 * cols - k) for k in range(3)]
    image = np.stack(channels, axis=-1)
    image = image.mean(axis=-1) if preset == "nih" else image
    return np.round(255 * image).astype(np.uint8)


def _statistics(views: torch.Tensor) -> dict[str, np.ndarray]:
    grey, half = views.mean(dim=1), views.shape[-1] // 2
    return {
        "mean": views.mean(dim=(1, 2, 3)).numpy(),
        "std": views.std(dim=(1, 2, 3)).numpy(),
        "channel_spread": (views.amax(dim=1) - views.amin(dim=1)).mean(dim=(1, 2)).numpy(),
        "zero_fraction": (views.amax(dim=1) == 0).float().mean(dim=(1, 2)).numpy(),
        "edge_energy": (grey[:, :, 1:] - grey[:, :, :-1]).abs().mean(dim=(1, 2)).numpy(),
        "left_right": (grey[:, :, :half].mean(dim=(1, 2)) - grey[:, :, half:].mean(dim=(1, 2))).numpy(),
    }


def _image_statistics_p(preset: str, drop: str | None = None) -> dict[str, float]:
    """The smallest p-value of each image statistic over both views: loader pipeline vs device stage."""
    n, size, row = 300, 32, {"image": _image(preset, 32)}
    loader = pretrain_transforms(preset, size).set_random_state(0)
    expected = _statistics(torch.stack([loader(row)["view1"] for _ in range(n)]))
    transform, stage = pretrain_pipeline(preset, size, augment_on="device", seed=0)
    stage.steps = [step for step in stage.steps if type(step).__name__ != drop]
    image = transform(row)["image"]
    views = [_statistics(view) for view in stage(image.expand(n, *image.shape))]
    return {name: min(same_distribution_p(expected[name], drawn[name]) for drawn in views) for name in expected}


@pytest.mark.parametrize("preset", PRESETS_2D)
def test_views_have_the_loader_pipelines_image_statistics(preset):
    p = _image_statistics_p(preset)
    assert min(p.values()) > PASS, p


def test_the_image_statistics_catch_a_missing_step():
    assert _image_statistics_p("dr", drop="_Rotate")["zero_fraction"] < FAIL


def test_the_two_views_are_drawn_independently():
    stage = DeviceAugment.from_preset("dr", SIZE, seed=0)
    first, second = stage.draw((DRAWS, 3, SIZE, SIZE))
    rotate = [i for i, step in enumerate(stage.steps) if type(step).__name__ == "_Rotate"][0]
    angle1, angle2 = first[rotate]["angle"].numpy(), second[rotate]["angle"].numpy()
    assert abs(stats.pearsonr(angle1, angle2).statistic) < 0.06  # 4 standard errors at n = 4000
    assert abs(stats.pearsonr(angle1, angle1 * 0.5 + angle2 * 0.5).statistic) > 0.5  # what a shared draw looks like
    for index in range(len(stage.steps)):
        if "apply" in first[index] and 0 < first[index]["apply"].float().mean() < 1:
            a, b = first[index]["apply"].numpy(), second[index]["apply"].numpy()
            table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
            assert stats.chi2_contingency(table).pvalue > PASS
    image = torch.from_numpy(_image("dr")).permute(2, 0, 1)
    view1, view2 = stage(image.expand(16, *image.shape))
    assert not any(torch.equal(a, b) for a, b in zip(view1, view2))
    assert not torch.equal(view1[0], view1[1])  # and each sample of a batch has its own parameters


def test_same_seed_same_views_and_state_dict_round_trip():
    image = torch.from_numpy(_image("idc")).permute(2, 0, 1).expand(8, 3, SIZE, SIZE)
    views = [DeviceAugment.from_preset("idc", SIZE, seed=seed)(image) for seed in (3, 3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(views[0], views[1]))
    assert not torch.equal(views[0][0], views[2][0])
    stage = DeviceAugment.from_preset("idc", SIZE, seed=3)
    state = copy.deepcopy(stage.state_dict())
    first = stage(image)
    assert not torch.equal(stage(image)[0], first[0])  # the generator moved on
    stage.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(stage(image), first))


def test_restored_state_gives_each_distributed_rank_its_own_views():
    # only rank 0's generator is checkpointed: restoring it unchanged on every rank would make all ranks' views equal
    image = torch.from_numpy(_image("idc")).permute(2, 0, 1).expand(8, 3, SIZE, SIZE)
    state = copy.deepcopy(DeviceAugment.from_preset("idc", SIZE, seed=3).state_dict())
    views = []
    for rank in (0, 1, 2, 1):
        stage = DeviceAugment.from_preset("idc", SIZE, seed=99)
        stage.load_state_dict(state, rank=rank)
        views.append(stage(image)[0])
    assert torch.equal(views[0], DeviceAugment.from_preset("idc", SIZE, seed=3)(image)[0])  # rank 0 resumes bitwise
    assert not torch.equal(views[0], views[1]) and not torch.equal(views[1], views[2])
    assert torch.equal(views[1], views[3])  # and every rank's restored stream is reproducible


@pytest.mark.parametrize("preset", PRESETS_2D)
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("normalize", [False, True])
def test_shapes_dtypes_and_ranges_match_the_loader_pipeline(preset, channels, normalize):
    torch.manual_seed(0)  # the loader pipeline draws from the global generators: the same draws in any test order
    np.random.seed(0)
    row = {"image": _image(preset)}
    expected = pretrain_transforms(preset, 32, channels, normalize=normalize)(row)
    transform, stage = pretrain_pipeline(preset, 32, channels, "device", normalize=normalize)
    image = transform(row)
    assert set(image) == {"image"} and image["image"].dtype == torch.uint8  # one compact copy per sample
    views = stage(torch.stack([image["image"]] * 4))
    for key, view in zip(("view1", "view2"), views):
        assert view.shape[1:] == expected[key].shape and view.dtype == expected[key].dtype == torch.float32
        low, high = float(view.min()), float(view.max())
        bounds = (float(expected[key].min()), float(expected[key].max()))
        if normalize:
            assert low < 0 < high and -2.2 < low and high < 2.7  # (x - mean) / std of [0, 1] with ImageNet stats
        else:
            # the loader's float32 resampling may overshoot 1 by a rounding step (1.0000002 was seen); the device
            # stage's bounds stay exact
            assert 0.0 <= low and high <= 1.0 and 0.0 <= bounds[0] and bounds[1] <= 1.0 + 1e-6


def test_nih_caches_one_grey_channel_and_the_device_repeats_it():
    row = {"image": _image("nih")}
    transform, stage = pretrain_pipeline("nih", SIZE, 3, "device")
    cached = transform(row)["image"]
    assert cached.shape == (1, SIZE, SIZE)
    view = DeviceAugment([], channels=3)(cached[None])[0]
    expected = pretrain_transforms("nih", SIZE, 3, augment=False)(row)["view1"]
    assert view.shape == (1, 3, SIZE, SIZE) and torch.allclose(view[0], expected, atol=0.5 / 255)


def test_a_grey_batch_is_augmented_on_one_channel_like_its_three_channel_copy():
    grey = torch.from_numpy(_image("nih")).expand(16, 1, SIZE, SIZE)
    views = DeviceAugment.from_preset("nih", SIZE, channels=3, seed=0)(grey)
    expected = DeviceAugment.from_preset("nih", SIZE, channels=3, seed=0)(grey.expand(16, 3, SIZE, SIZE))
    for view, reference in zip(views, expected):
        assert view.shape == reference.shape == (16, 3, SIZE, SIZE) and view.is_contiguous()
        assert (view - reference).abs().max() < 5e-4  # the luma weights' 0.9999 against 1


def test_pipeline_choices_and_errors():
    assert AUGMENT_ON == ("device", "loader")
    transform, stage = pretrain_pipeline("dr", 32, augment_on="loader")
    assert stage is None and "view1" in transform({"image": _image("dr")})
    with pytest.raises(ValueError, match=r"augment_on: expected one of \['device', 'loader'\], got 'gpu'\."):
        pretrain_pipeline("dr", 32, augment_on="gpu")
    assert (
        pretrain_pipeline("volume", 16, augment_on="device")[1].spatial_dims == 3
    )  # tests/.../test_device_augment_3d.py
    with pytest.raises(ValueError, match=r"image: expected a \(N, C, H, W\) batch"):
        DeviceAugment.from_preset("dr", 32)(torch.zeros(3, 32, 32))
    with pytest.raises(ValueError, match="view_keys: expected two distinct keys"):
        DeviceAugment([], view_keys=("a", "a"))
