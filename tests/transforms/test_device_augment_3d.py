"""The 3D device stage makes the volume preset's loader views: each step draws the loader step's distribution,
the views are independent, seeded and resumable, with the loader's shapes, dtypes and ranges; and MoCo trains on it.

The loader side is MONAI's own transforms, run per volume and read back (the affine from the matrix it applied,
the noise from the field it added). Distributions are compared with SciPy's two-sample Kolmogorov-Smirnov test
(continuous parameters, volume statistics) and chi-square tests (coins, integer crop boxes) on thousands of draws
with fixed seeds, so the tests are deterministic; the closed forms the preset states are checked too, and each
comparison is run against a deliberately wrong device step to show it would catch a wrong distribution.
"""

from __future__ import annotations

import copy
import functools
import math

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.data import get_track_meta, set_track_meta
from monai.transforms import (
    RandAdjustContrastd,
    RandAffined,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRotate90d,
    RandScaleCropd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    Resized,
)
from scipy import stats

from monai_ilm.engines import MoCoTrainer
from monai_ilm.networks import MoCo, resnet_encoder
from monai_ilm.transforms import DeviceAugment, get_preset, pretrain_pipeline, view_transforms
from monai_ilm.transforms.device_augment_3d import volume_device_steps

SIZE, DRAWS = 16, 3000
PASS, FAIL = 1e-3, 1e-6  # p-value thresholds: same distribution / clearly different
NOISE_LEVEL = 0.5  # the constant volume the noise is added to (the field is read back as output - 0.5)


def _decompose(matrix: np.ndarray) -> dict[str, float]:
    """Angles and scales of MONAI's ``Rx(a) Ry(b) Rz(c) diag(s)`` from the matrix it applied (float64 algebra).

    ``R^T R = I`` makes the column norms the scales; of ``R = M / s``, row 0 is ``(cb cc, -cb sc, sb)`` and
    column 2 is ``(sb, -sa cb, ca cb)``.
    """
    scales = np.linalg.norm(matrix, axis=0)
    r = matrix / scales
    angles = (math.atan2(-r[1, 2], r[2, 2]), math.asin(r[0, 2]), math.atan2(-r[0, 1], r[0, 0]))
    return {**{f"angle{i}": a for i, a in enumerate(angles)}, **{f"scale{i}": s for i, s in enumerate(scales)}}


def loader_parameters(steps: list, n: int) -> dict[str, np.ndarray]:
    """``n`` draws of a MONAI step's parameters (a crop with its resize: a pair), read back from what it applied."""
    step = copy.deepcopy(steps[0]).set_random_state(0)
    small = {"image": torch.rand(1, 4, 4, 4, generator=torch.Generator().manual_seed(0))}
    rows: list[dict] = []
    tracking = get_track_meta()
    set_track_meta(False)  # plain tensors: half the time of MONAI's metadata, the same draws
    try:
        for _ in range(n):
            rows.append(_loader_row(step, small))
    finally:
        set_track_meta(tracking)
    return _columns(rows)


@functools.cache
def cached_loader_parameters(kind: type) -> dict[str, np.ndarray]:
    """:func:`loader_parameters` of the preset's ``kind`` step, drawn once for the tests that share it."""
    return loader_parameters(_pair(kind)[0], DRAWS)


def _loader_row(step, small: dict) -> dict:
    """One call of ``step`` and the parameters it applied."""
    if isinstance(step, RandScaleCropd):
        step({"image": torch.zeros(1, SIZE, SIZE, SIZE)})
        box = step.cropper._slices
        starts = {f"start{i}": s.start for i, s in enumerate(box)}
        return {**starts, **{f"side{i}": s.stop - s.start for i, s in enumerate(box)}}
    if isinstance(step, RandGaussianNoised):
        out = step({"image": torch.full((1, SIZE, SIZE, SIZE), NOISE_LEVEL)})["image"]
        row = {"apply": bool(step._do_transform)}
        if row["apply"]:
            row["std"] = float((torch.as_tensor(out) - NOISE_LEVEL).std())
        return row
    step(small)
    row = {"apply": bool(step._do_transform)}
    if row["apply"] and isinstance(step, RandAffined):
        row.update(_decompose(step.rand_affine.rand_affine_grid.get_transformation_matrix()[:3, :3].double().numpy()))
    elif row["apply"] and isinstance(step, RandGaussianSmoothd):
        row.update({f"sigma{i}": getattr(step.rand_smooth, axis) for i, axis in enumerate("xyz")})
    elif row["apply"] and isinstance(step, RandAdjustContrastd):
        row["gamma"] = step.adjuster.gamma_value
    elif row["apply"] and isinstance(step, RandScaleIntensityd):
        row["factor"] = step.scaler.factor
    elif row["apply"] and isinstance(step, RandShiftIntensityd):
        row["offset"] = step.shifter._offset
    return row


def device_parameters(step, n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """``n`` draws of a device step's parameters, with the loader's names and only where the loader has them."""
    p = step.draw(n, torch.Generator().manual_seed(seed), (n, 1, SIZE, SIZE, SIZE))
    if "boxes" in p:
        boxes = p["boxes"].numpy()
        return {**{f"start{i}": boxes[:, i] for i in range(3)}, **{f"side{i}": boxes[:, 3 + i] for i in range(3)}}
    apply = p["apply"].numpy()
    out = {"apply": apply}
    if "std" in p:  # the field the device adds, read back as the loader's is
        constant = torch.full((n, 1, SIZE, SIZE, SIZE), NOISE_LEVEL)
        field = step.apply(constant, p) - NOISE_LEVEL
        out["std"] = field.flatten(1).std(dim=1).numpy()[apply]
    for name, column in (("angles", "angle"), ("scales", "scale"), ("sigmas", "sigma")):
        if name in p:
            out.update({f"{column}{i}": p[name][:, i].numpy()[apply] for i in range(3)})
    for name in ("gamma", "factor", "offset"):
        if name in p:
            out[name] = p[name].numpy()[apply]
    return out


def _columns(rows: list[dict]) -> dict[str, np.ndarray]:
    keys = sorted({k for row in rows for k in row})
    return {k: np.asarray([row[k] for row in rows if k in row]) for k in keys}


def same_distribution_p(a: np.ndarray, b: np.ndarray) -> float:
    """Homogeneity p-value: chi-square on categories (booleans, integers), else two-sample KS."""
    if a.dtype.kind in "biu":
        categories = sorted(set(a.tolist()) | set(b.tolist()))
        table = [[int(np.sum(x == c)) for c in categories] for x in (a, b)]
        return 1.0 if len(categories) == 1 else float(stats.chi2_contingency(table).pvalue)
    return float(stats.ks_2samp(a, b).pvalue)


def pairs() -> list[tuple[list, object]]:
    """(loader steps, device step) of each random step of the volume view; the crop is one device step for two."""
    loader = get_preset("volume").pretrain_view("image", SIZE)
    device = volume_device_steps(loader)
    grouped = [loader[:2]] + [[step] for step in loader[2:]]  # RandScaleCropd + Resized
    return [(g, d) for g, d in zip(grouped, device) if hasattr(g[0], "set_random_state")]


def _pair(kind: type) -> tuple[list, object]:
    return next(p for p in pairs() if isinstance(p[0][0], kind))


STEP_KINDS = [RandScaleCropd, RandFlipd, RandAffined, RandGaussianSmoothd, RandAdjustContrastd, RandScaleIntensityd]
STEP_KINDS += [RandShiftIntensityd, RandGaussianNoised]


def test_the_volume_view_has_every_op_and_each_a_device_step():
    names = [type(step).__name__ for step in get_preset("volume").pretrain_view("image", SIZE)]
    assert names[:2] == ["RandScaleCropd", "Resized"] and names.count("RandFlipd") == 3
    assert {kind.__name__ for kind in STEP_KINDS} <= set(names)
    assert len(volume_device_steps(get_preset("volume").pretrain_view("image", SIZE))) == len(names) - 1


@pytest.mark.parametrize("kind", STEP_KINDS, ids=lambda k: k.__name__)
def test_every_step_draws_the_loaders_parameter_distributions(kind):
    expected, drawn = cached_loader_parameters(kind), device_parameters(_pair(kind)[1], DRAWS)
    assert expected.keys() == drawn.keys()
    for name in expected:
        p = same_distribution_p(expected[name], drawn[name])
        assert p > PASS, f"{kind.__name__} {name}: p = {p:.2g}"


WRONG = [  # (step kind, attribute, wrong value, parameter that must then differ)
    (RandScaleCropd, "roi_scale", (0.6, 0.6, 0.6), "side0"),
    (RandFlipd, "prob", 0.42, "apply"),
    (RandAffined, "rotate", [(-0.35, 0.35)] * 3, "angle1"),
    (RandAffined, "scale", [(0.8, 1.2)] * 3, "scale2"),
    (RandGaussianSmoothd, "sigma", [(0.25, 1.2)] * 3, "sigma0"),
    (RandAdjustContrastd, "gamma", (0.6, 1.5), "gamma"),
    (RandScaleIntensityd, "factors", (-0.3, 0.3), "factor"),
    (RandShiftIntensityd, "prob", 0.7, "apply"),
    (RandGaussianNoised, "std", 0.06, "std"),
]


@pytest.mark.parametrize("kind, attribute, value, parameter", WRONG, ids=lambda v: getattr(v, "__name__", None))
def test_the_comparison_catches_a_wrong_distribution(kind, attribute, value, parameter):
    device_step = _pair(kind)[1]
    setattr(device_step, attribute, value)
    p = same_distribution_p(cached_loader_parameters(kind)[parameter], device_parameters(device_step, DRAWS)[parameter])
    assert p < FAIL, p


def test_flips_are_fair_and_independent_coins_on_each_axis():
    flips = [device for loader, device in pairs() if isinstance(loader[0], RandFlipd)]
    assert sorted(step.dims for step in flips) == [(2,), (3,), (4,)]  # (N, C, D, H, W): one per spatial axis
    generator = torch.Generator().manual_seed(5)
    coins = np.stack([step.draw(DRAWS, generator, (DRAWS, 1, SIZE, SIZE, SIZE))["apply"].numpy() for step in flips])
    for axis in coins:  # Binomial(3000, 0.5): standard deviation 27.4; 4.5 of them is a 7e-6 two-sided chance
        assert abs(int(axis.sum()) - DRAWS / 2) < 4.5 * math.sqrt(DRAWS * 0.25)
    combinations = np.unique(coins[0] * 4 + coins[1] * 2 + coins[2], return_counts=True)[1]
    assert len(combinations) == 8 and stats.chisquare(combinations).pvalue > PASS  # each of the 8 with 1/8


def test_crop_boxes_follow_the_stated_closed_form():
    # RandScaleCropd(roi_scale=0.7): side ~ U{ceil(0.7 * 16) = 12, ..., 16}; corner ~ U{0, ..., 16 - side}
    _, crop = _pair(RandScaleCropd)
    p = device_parameters(crop, DRAWS, seed=3)
    for axis in range(3):
        sides, starts = p[f"side{axis}"], p[f"start{axis}"]
        assert sides.min() == 12 and sides.max() == 16
        assert stats.chisquare(np.bincount(sides)[12:]).pvalue > PASS
        assert np.all(starts + sides <= SIZE) and np.all(starts >= 0)
        for side in (12, 14):  # the corner is uniform given the side
            assert stats.chisquare(np.bincount(starts[sides == side], minlength=SIZE - side + 1)).pvalue > PASS
    fraction = p["side0"] * p["side1"] * p["side2"] / SIZE**3
    assert (12 / 16) ** 3 <= fraction.min() < 0.5 and fraction.max() == 1.0


@pytest.mark.parametrize(
    "kind, parameter, low, high",
    [
        (RandAffined, "angle0", -math.pi / 12, math.pi / 12),
        (RandAffined, "angle2", -math.pi / 12, math.pi / 12),
        (RandAffined, "scale1", 0.85, 1.15),
        (RandGaussianSmoothd, "sigma2", 0.25, 1.0),
        (RandAdjustContrastd, "gamma", 0.7, 1.5),
        (RandScaleIntensityd, "factor", -0.25, 0.25),
        (RandShiftIntensityd, "offset", -0.1, 0.1),
    ],
    ids=lambda v: getattr(v, "__name__", v if isinstance(v, str) else None),
)
def test_continuous_parameters_are_the_stated_uniforms(kind, parameter, low, high):
    values = device_parameters(_pair(kind)[1], DRAWS, seed=4)[parameter]
    assert low <= values.min() and values.max() <= high
    assert stats.kstest(values, "uniform", args=(low, high - low)).pvalue > PASS


@pytest.mark.parametrize("kind, prob", [(RandAffined, 0.8), (RandGaussianSmoothd, 0.5), (RandGaussianNoised, 0.5)])
def test_steps_apply_with_the_stated_probability(kind, prob):
    apply = device_parameters(_pair(kind)[1], DRAWS, seed=6)["apply"]
    assert stats.binomtest(int(apply.sum()), DRAWS, prob).pvalue > PASS


def _volume(size: int = SIZE) -> np.ndarray:
    """A test volume in uint8: a blob off the centre on every axis (flips show) on a grey background."""
    grid = np.stack(np.meshgrid(*[np.arange(size) / size] * 3, indexing="ij"))
    blob = np.exp(-((grid - np.array([0.3, 0.65, 0.35])[:, None, None, None]) ** 2).sum(0) / (2 * 0.15**2))
    return np.round(255 * (0.15 + 0.7 * blob)).astype(np.uint8)


def _statistics(views: torch.Tensor) -> dict[str, np.ndarray]:
    v, half = views[:, 0], views.shape[-1] // 2
    out = {
        "mean": v.mean(dim=(1, 2, 3)),
        "std": v.flatten(1).std(dim=1),
        "zero_fraction": (v <= 0).float().mean(dim=(1, 2, 3)),
        "laplacian": (
            6 * v[:, 1:-1, 1:-1, 1:-1]
            - sum(
                v[:, 1 + a : SIZE - 1 + a, 1 + b : SIZE - 1 + b, 1 + c : SIZE - 1 + c]
                for a, b, c in ((1, 0, 0), (-1, 0, 0), (0, 1, 0), (0, -1, 0), (0, 0, 1), (0, 0, -1))
            )
        )
        .abs()
        .mean(dim=(1, 2, 3)),
    }
    for axis in range(3):
        x = v.movedim(axis + 1, 1)
        out[f"edge{axis}"] = (x[:, 1:] - x[:, :-1]).abs().mean(dim=(1, 2, 3))
        out[f"asymmetry{axis}"] = x[:, :half].mean(dim=(1, 2, 3)) - x[:, half:].mean(dim=(1, 2, 3))
    return {k: t.numpy() for k, t in out.items()}


def _volume_statistics_p(drop: int | None = None) -> dict[str, float]:
    """The smallest p-value of each volume statistic over both device views: loader steps vs device stage."""
    n = 300
    image = torch.from_numpy(_volume())[None]
    loader = view_transforms("volume", "image", SIZE)
    loader.set_random_state(0)
    start = {"image": image.float() / 255.0}  # the device stage's input: the same uint8 volume
    expected = _statistics(torch.stack([torch.as_tensor(loader(dict(start))["image"]) for _ in range(n)]))
    stage = DeviceAugment.from_preset("volume", SIZE, seed=0)
    if drop is not None:
        del stage.steps[drop]
    views = [_statistics(view) for view in stage(image.expand(n, *image.shape))]
    return {name: min(same_distribution_p(expected[name], drawn[name]) for drawn in views) for name in expected}


def test_views_have_the_loader_pipelines_volume_statistics():
    p = _volume_statistics_p()
    assert min(p.values()) > PASS, p


@pytest.mark.parametrize("dropped, statistic", [(1, "asymmetry0"), (9, "laplacian")], ids=["flip0", "noise"])
def test_the_volume_statistics_catch_a_missing_step(dropped, statistic):
    names = [type(step).__name__ for step in DeviceAugment.from_preset("volume", SIZE).steps]
    assert names[dropped] == {"asymmetry0": "_Flip", "laplacian": "_Noise"}[statistic]
    assert _volume_statistics_p(drop=dropped)[statistic] < FAIL


def _batch(n: int = 4) -> torch.Tensor:
    return torch.from_numpy(_volume()).expand(n, 1, SIZE, SIZE, SIZE)


def test_the_two_views_are_drawn_independently_and_every_sample_has_its_own():
    stage = DeviceAugment.from_preset("volume", SIZE, seed=0)
    first, second = stage.draw((DRAWS, 1, SIZE, SIZE, SIZE))
    affine = [i for i, step in enumerate(stage.steps) if type(step).__name__ == "_Affine"][0]
    angle1, angle2 = first[affine]["angles"][:, 0].numpy(), second[affine]["angles"][:, 0].numpy()
    assert abs(stats.pearsonr(angle1, angle2).statistic) < 4 / math.sqrt(DRAWS)  # 4 standard errors of r = 0
    for index in range(len(stage.steps)):
        if "apply" in first[index]:
            a, b = first[index]["apply"].numpy(), second[index]["apply"].numpy()
            table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
            assert stats.chi2_contingency(table).pvalue > PASS
    view1, view2 = stage(_batch(8))
    assert not any(torch.equal(a, b) for a, b in zip(view1, view2))
    assert not torch.equal(view1[0], view1[1])


def test_same_seed_same_views_and_state_dict_round_trip():
    batch = _batch()
    views = [DeviceAugment.from_preset("volume", SIZE, seed=seed)(batch) for seed in (3, 3, 4)]
    assert all(torch.equal(a, b) for a, b in zip(views[0], views[1]))  # the noise field included
    assert not torch.equal(views[0][0], views[2][0])
    stage = DeviceAugment.from_preset("volume", SIZE, seed=3)
    state = copy.deepcopy(stage.state_dict())
    first = stage(batch)
    assert not torch.equal(stage(batch)[0], first[0])
    stage.load_state_dict(state)
    assert all(torch.equal(a, b) for a, b in zip(stage(batch), first))


@pytest.mark.parametrize("source", ["uint8", "float"])
@pytest.mark.parametrize("normalize", [False, True])
def test_shapes_dtypes_and_ranges_match_the_loader_pipeline(source, normalize):
    torch.manual_seed(0)
    np.random.seed(0)
    transform, stage = pretrain_pipeline("volume", SIZE, channels=1, augment_on="device", normalize=normalize)
    assert isinstance(stage, DeviceAugment) and stage.spatial_dims == 3
    image = torch.from_numpy(_volume())[None]
    batch = torch.stack([image] * 4) if source == "uint8" else torch.stack([image.float() / 255.0] * 4)
    expected = view_transforms("volume", "view1", SIZE)({"view1": image.float() / 255.0})["view1"]
    for view in stage(batch):
        assert view.shape == (4, *expected.shape) == (4, 1, SIZE, SIZE, SIZE)
        assert view.dtype == torch.float32 and view.is_contiguous()
        low, high = float(view.min()), float(view.max())
        if normalize:  # (x - 0.449) / 0.226 of [0, 1]
            assert -0.449 / 0.226 - 1e-5 <= low < 0 < high <= 0.551 / 0.226 + 1e-5
        else:
            assert 0.0 <= low and high <= 1.0


def test_the_device_pipeline_caches_one_uint8_volume():
    transform, _ = pretrain_pipeline("volume", SIZE, channels=1, augment_on="device")
    cached = transform({"image": _volume(20)})  # a MedMNIST-like (D, H, W) uint8 array
    assert set(cached) == {"image"} and cached["image"].dtype == torch.uint8
    assert cached["image"].shape == (1, SIZE, SIZE, SIZE)


def test_errors():
    stage = DeviceAugment.from_preset("volume", SIZE)
    with pytest.raises(ValueError, match=r"image: expected a \(N, C, D, H, W\) batch, got shape \(2, 1, 16, 16\)\."):
        stage(torch.zeros(2, 1, SIZE, SIZE))
    with pytest.raises(ValueError, match=r"spatial_dims: expected 2 or 3, got 4\."):
        DeviceAugment([], spatial_dims=4)
    with pytest.raises(ValueError, match="augment_on: expected 'loader' for preset 'volume' .RandRotate90d has no"):
        volume_device_steps([RandRotate90d("image")])
    sheared = RandAffined("image", prob=1.0, shear_range=(0.1,) * 6)
    with pytest.raises(ValueError, match=r"RandAffined.shear_range: expected None on the device, got"):
        volume_device_steps([sheared])
    lonely = RandScaleCropd("image", roi_scale=0.7, random_size=True)  # no Resized after it: sizes would differ
    with pytest.raises(ValueError, match="RandScaleCropd has no device version"):
        volume_device_steps([lonely])
    with pytest.raises(ValueError, match=r"Resized.mode: expected 'trilinear' on the device, got"):
        volume_device_steps([lonely, Resized("image", spatial_size=SIZE, mode="nearest")])


@pytest.mark.parametrize("channels_last", [False, True])
def test_moco_pretrains_a_3d_resnet_on_device_views(channels_last):
    torch.manual_seed(0)
    network = MoCo(resnet_encoder("resnet10", spatial_dims=3, in_channels=1, backend="monai"), 16, queue_size=32)
    _, augment = pretrain_pipeline("volume", SIZE, channels=1, augment_on="device", seed=0)
    generator = torch.Generator().manual_seed(0)
    data = [{"image": torch.randint(0, 256, (4, 1, SIZE, SIZE, SIZE), generator=generator).to(torch.uint8)}] * 2
    seen, losses = [], []
    original = augment.views
    augment.views = lambda *args, **kwargs: seen.append(original(*args, **kwargs)) or seen[-1]
    optimizer = torch.optim.SGD(network.parameters(), lr=0.01)
    trainer = MoCoTrainer("cpu", 1, data, network, optimizer, augment=augment, channels_last=channels_last)
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"])))
    trainer.run()
    assert len(losses) == 2 and all(math.isfinite(loss) for loss in losses)
    assert [tuple(v.shape) for v in seen[0].values()] == [(4, 1, SIZE, SIZE, SIZE)] * 2
    assert "augment" in trainer.state_dict()
