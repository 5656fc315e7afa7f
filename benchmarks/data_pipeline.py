"""Data pipeline: samples/s of each preset's two-view pipeline against the training step's consumption.

What is measured (at the bundles' quick settings: ResNet-18, 64 px, batch 8, 3 channels)
    * ``step rate``: samples/s that :class:`~monai_ilm.engines.MoCoTrainer` consumes when the batches
      are already in memory (MoCo, MoCo+MSE, MoCo+BT with the quick configs' queue, pooling and
      projector sizes). The fastest method is the most demanding consumer and sets the bar.
    * ``loader``: samples/s of one epoch of ``pretrain_transforms(preset, 64)`` (load, resize, two
      independently augmented views) through each combination of dataset (plain ``Dataset``,
      ``CacheDataset`` with ``cache_rate=1``, ``PersistentDataset`` with a warm disk cache) and loader
      (MONAI ``DataLoader`` or ``ThreadDataLoader``) with 0, 1 or 2 worker processes, batch 8,
      ``shuffle=True, drop_last=True`` as in the bundles. Each epoch creates its iterator, so worker
      start-up counts as it does in training (the bundles do not keep workers alive).
      ``ratio`` = loader samples/s / step rate; target >= 1.5 on 2 cores.
    * ``end to end`` (``--e2e-presets``, by default the first preset only, as it is the slow part):
      samples/s of a MoCo+MSE ``MoCoTrainer`` epoch fed by that loader, the figure a 2-core run
      actually gets (loader and model share the cores), and its share of the in-memory rate.
    * ``setup``: seconds to build the dataset (CacheDataset fills its cache, PersistentDataset writes
      its disk cache on a first pass); not part of the rates.
    * ``correct``: every configuration is checked on 16 copies of one image over two epochs: tensors
      (8, 3, 64, 64) float32 in [0, 1]; view1 != view2; all 16 outputs of an epoch distinct (workers do
      not replay the same random stream); epoch 2 differs from epoch 1 (the cache holds only the
      deterministic steps).
    * ``rotation`` (``--rotation-sizes``): ms per view of the presets' 30-degree rotation,
      ``RandRotationd`` (torchvision's tensor kernel), against MONAI's ``RandRotated`` with the same
      settings (nearest, zero padding), which the presets used before, one (3, s, s) image at a time.

Every measurement is repeated ``--repeats`` times, the configurations in alternating order, and the
median is reported. Data are the synthetic look-alikes of ``monai_ilm.data.synthetic`` written to a
temporary folder (NIH and EyePACS 96 px, IDC 50 px patches, like the real tiles).

Usage::

    python benchmarks/data_pipeline.py
    python benchmarks/data_pipeline.py --presets nih --repeats 5 --max-batches 24
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import logging
import math
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402  (puts the repository root on sys.path)
import torch  # noqa: E402
from monai.data import CacheDataset, DataLoader, Dataset, PersistentDataset, ThreadDataLoader  # noqa: E402

from monai_ilm.data import load_datalist  # noqa: E402
from monai_ilm.data.synthetic import make_dr_sample, make_idc_sample, make_nih_sample  # noqa: E402
from monai_ilm.engines import MoCoTrainer  # noqa: E402
from monai_ilm.handlers import IntermediateLayerLossHandler, LossPartsHandler, MomentumUpdateHandler  # noqa: E402
from monai_ilm.losses import InfoNCELoss  # noqa: E402
from monai_ilm.methods import intermediate_loss, trainable_parameters  # noqa: E402
from monai_ilm.networks import MoCo, resnet_encoder  # noqa: E402
from monai_ilm.transforms import pretrain_transforms  # noqa: E402

NAME = "data_pipeline"
TARGET_RATIO = 1.5
BUNDLE_QUICK_DEFAULT = "cache+loader w0"  # bundles/*/configs/pretrain.json + quick.json
# the quick configs' model settings (bundles/*/configs/quick.json)
QUICK = {
    "backbone": "resnet18",
    "queue_size": 256,
    "mse_pool_sizes": [8, 4, 2, 1],
    "barlow_projector_dims": [256, 256, 256],
}


@dataclass(frozen=True)
class LoaderConfig:
    """One way of feeding the trainer: dataset kind, loader kind and worker processes."""

    dataset: str  # "plain", "cache" or "persistent"
    loader: str  # "loader" (monai DataLoader) or "thread" (monai ThreadDataLoader)
    workers: int

    @property
    def name(self) -> str:
        return f"{self.dataset}+{self.loader} w{self.workers}"


def all_configs(workers: Sequence[int]) -> list[LoaderConfig]:
    configs = [LoaderConfig(ds, "loader", w) for ds in ("plain", "cache", "persistent") for w in workers]
    return configs + [LoaderConfig("cache", "thread", w) for w in workers]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--presets", nargs="+", default=["nih", "idc", "dr"], choices=["nih", "idc", "dr"])
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--configs", nargs="*", default=None, help="only these configurations, by name (e.g. 'cache+loader w0')"
    )
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--max-batches", type=int, default=12, help="batches per measured epoch")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--patients", type=int, default=100, help="NIH / EyePACS patients of the synthetic data (IDC: /8)")
    p.add_argument("--source-size", type=int, default=96, help="side of the synthetic NIH / EyePACS images")
    p.add_argument(
        "--methods", nargs="+", default=["moco", "mse", "barlow"], help="methods whose step rate is measured"
    )
    p.add_argument(
        "--e2e-presets", nargs="*", default=None, help="presets measured end to end (default: the first one)"
    )
    p.add_argument(
        "--rotation-sizes", type=int, nargs="*", default=[64, 299, 512], help="image sides of the rotation timing"
    )
    p.add_argument("--threads", type=int, default=_bench.default_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where to write the synthetic data (default: a temporary folder)")
    p.add_argument("--output-dir", default=None, help="where <name>.json goes (default benchmarks/results)")
    return p


# ----------------------------------------------------------------------------------------------- data
def write_sample(preset: str, root: Path, patients: int, source_size: int, seed: int) -> list[dict]:
    """Write the preset's synthetic data set under ``root`` and return its training datalist."""
    folder = root / preset
    if preset == "nih":
        make_nih_sample(folder, n_patients=patients, image_size=source_size, seed=seed)
    elif preset == "idc":
        make_idc_sample(folder, n_patients=max(2, patients // 8), patches_per_patient=20, seed=seed)
    else:
        make_dr_sample(folder, n_patients=patients, image_size=source_size, seed=seed)
    # tiny samples may miss a class in a split; the pipeline does not care about labels
    extra = {} if preset == "idc" else {"require_all_classes": False}
    return load_datalist(preset, folder, "train", seed=seed, **extra)


def build_dataset(kind: str, rows: list[dict], transform, cache_dir: Path) -> tuple[Dataset, float]:
    """The dataset of ``kind`` and the seconds its set-up took (cache fill, or a first pass to disk)."""
    start = time.perf_counter()
    if kind == "plain":
        dataset: Dataset = Dataset(rows, transform)
    elif kind == "cache":
        dataset = CacheDataset(rows, transform, cache_rate=1.0, num_workers=0, progress=False)
    else:
        cache_dir.mkdir(parents=True, exist_ok=True)
        dataset = PersistentDataset(rows, transform, cache_dir=cache_dir)
        for i in range(len(dataset)):  # write the disk cache (the first epoch of a real run)
            dataset[i]
    return dataset, time.perf_counter() - start


def make_loader(config: LoaderConfig, dataset: Dataset, batch_size: int, shuffle: bool = True, drop_last: bool = True):
    kwargs = {"batch_size": batch_size, "shuffle": shuffle, "drop_last": drop_last, "num_workers": config.workers}
    if config.loader == "thread":
        return ThreadDataLoader(dataset, buffer_size=1, **kwargs)
    return DataLoader(dataset, **kwargs)


# ------------------------------------------------------------------------------------------ measures
def loader_rate(config: LoaderConfig, dataset: Dataset, batch_size: int, max_batches: int) -> float:
    """Samples/s of one epoch (at most ``max_batches``), iterator creation included."""
    start = time.perf_counter()
    samples = 0
    for i, batch in enumerate(make_loader(config, dataset, batch_size)):
        samples += batch["view1"].shape[0]
        if i + 1 >= max_batches:
            break
    return samples / (time.perf_counter() - start)


def build_model(method: str, seed: int) -> tuple[MoCo, torch.nn.Module | None]:
    torch.manual_seed(seed)
    net = MoCo(resnet_encoder(QUICK["backbone"]), embedding_dim=128, queue_size=QUICK["queue_size"])
    loss = intermediate_loss(
        method,
        net.stage_channels,
        mse_pool_sizes=QUICK["mse_pool_sizes"],
        barlow_projector_dims=QUICK["barlow_projector_dims"],
    )
    return net, loss


def trainer_rate(base: tuple[MoCo, torch.nn.Module | None], data, steps: int, batch_size: int) -> float:
    """Samples/s of a ``MoCoTrainer`` epoch of ``steps`` iterations over ``data`` (fresh model copy)."""
    net, loss = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    handlers: list[Any] = [MomentumUpdateHandler(0.999), LossPartsHandler()]
    if loss is not None:
        handlers.insert(0, IntermediateLayerLossHandler(loss))
    optimizer = torch.optim.SGD(trainable_parameters(net, loss), lr=0.03, momentum=0.9, weight_decay=1e-4)
    trainer = MoCoTrainer(
        torch.device("cpu"),
        1,
        data,
        net,
        optimizer,
        loss_function=InfoNCELoss(0.07),
        epoch_length=steps,
        train_handlers=handlers,
    )
    start = time.perf_counter()
    trainer.run()
    return steps * batch_size / (time.perf_counter() - start)


def in_memory_batches(dataset: Dataset, batch_size: int, steps: int) -> list[dict]:
    """``steps`` real batches of the pipeline, materialised once (the step-rate measurement's input)."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, drop_last=True, num_workers=0)
    batches = []
    while len(batches) < steps:
        for batch in loader:
            batches.append({k: batch[k] for k in ("view1", "view2")})
            if len(batches) == steps:
                break
    return batches


def rotation_costs(sizes: Sequence[int], repeats: int, calls: int = 10) -> dict[int, dict[str, float]]:
    """Median ms per view of the 30-degree rotation: ``RandRotationd`` vs MONAI's ``RandRotated``."""
    from monai.transforms import RandRotated

    from monai_ilm.transforms import RandRotationd

    costs = {}
    for size in sizes:
        image = {"image": torch.rand(3, size, size)}
        transforms = {
            "monai_RandRotated": RandRotated(
                "image", range_x=math.radians(30.0), prob=1.0, mode="nearest", padding_mode="zeros", keep_size=True
            ).set_random_state(0),
            "RandRotationd": RandRotationd("image", degrees=30.0).set_random_state(0),
        }

        def per_call(transform, image=image) -> float:
            with _bench.Timer() as timer:
                for _ in range(calls):
                    transform(image)
            return 1000.0 * timer.seconds / calls

        runs = _bench.alternate({name: (lambda t=t: per_call(t)) for name, t in transforms.items()}, 2 * repeats + 1)
        costs[size] = {name: _bench.median(values) for name, values in runs.items()}
    return costs


def _digest(t: torch.Tensor) -> str:
    return hashlib.sha1(t.contiguous().numpy().tobytes()).hexdigest()


def check_correct(
    config: LoaderConfig, row: dict, transform, cache_dir: Path, image_size: int, batch_size: int
) -> dict[str, Any]:
    """Run the configuration on 16 copies of one image for two epochs and check the outputs (see module doc)."""
    rows = [dict(row) for _ in range(16)]
    dataset, _ = build_dataset(config.dataset, rows, transform, cache_dir)
    # one loader for both epochs, as in training: with 0 workers MONAI's DataLoader seeds the transforms
    # when it is built and then resets torch's default generator to its initial seed, so a loader built
    # afresh for each epoch can replay the previous epoch's augmentations
    loader = make_loader(config, dataset, batch_size, shuffle=False, drop_last=False)
    epochs = []
    shape_ok = True
    for _ in range(2):
        digests = []
        for batch in loader:
            v1, v2 = batch["view1"], batch["view2"]
            shape_ok &= tuple(v1.shape[1:]) == (3, image_size, image_size) and v1.dtype == torch.float32
            shape_ok &= bool(torch.isfinite(v1).all()) and float(v1.min()) >= -1e-6 and float(v1.max()) <= 1 + 1e-6
            shape_ok &= v1.shape == v2.shape and not any(torch.equal(a, b) for a, b in zip(v1, v2))
            digests += [_digest(v) for v in v1]
        epochs.append(digests)
    checks = {
        "shape_dtype_range_two_views": bool(shape_ok),
        "distinct_within_epoch": len(set(epochs[0])) == len(epochs[0]) == 16,
        "fresh_each_epoch": not set(epochs[0]) & set(epochs[1]),
    }
    return {"correct": all(checks.values()), **checks}


# --------------------------------------------------------------------------------------------- main
def measure_preset(
    preset: str,
    rows: list[dict],
    args: argparse.Namespace,
    root: Path,
    configs: list[LoaderConfig],
    base_mse,
    model_rate_mse: float,
) -> dict[str, Any]:
    transform = pretrain_transforms(preset, image_size=args.image_size, channels=3)
    datasets, setup = {}, {}
    for kind in sorted({c.dataset for c in configs}):
        datasets[kind], setup[kind] = build_dataset(kind, rows, transform, root / "cache" / preset / kind)
    steps = min(args.max_batches, len(rows) // args.batch_size)
    loader_runs = {c.name: (lambda c=c: loader_rate(c, datasets[c.dataset], args.batch_size, steps)) for c in configs}
    e2e_runs = {
        c.name: (
            lambda c=c: trainer_rate(
                base_mse, make_loader(c, datasets[c.dataset], args.batch_size), steps, args.batch_size
            )
        )
        for c in configs
    }
    loader = _bench.alternate(loader_runs, args.repeats)
    e2e = _bench.alternate(e2e_runs, args.repeats) if preset in args.e2e_presets else {}
    out: dict[str, Any] = {"train_rows": len(rows), "batches_per_epoch": steps, "setup_s": setup, "configs": {}}
    for c in configs:
        check = check_correct(
            c, rows[0], transform, root / "check" / preset / c.name.replace(" ", "_"), args.image_size, args.batch_size
        )
        rate = _bench.median(loader[c.name])
        entry = {
            "loader_samples_per_s": rate,
            "loader_runs": loader[c.name],
            "checks": check,
            "correct": check["correct"],
        }
        if e2e:
            entry["e2e_samples_per_s"] = _bench.median(e2e[c.name])
            entry["e2e_runs"] = e2e[c.name]
            entry["e2e_share_of_in_memory"] = entry["e2e_samples_per_s"] / model_rate_mse
        out["configs"][c.name] = entry
    return out


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.e2e_presets is None:
        args.e2e_presets = args.presets[:1]
    logging.getLogger("monai_ilm").setLevel(logging.WARNING)
    _bench.set_threads(args.threads)
    info = _bench.machine_info()
    configs = [c for c in all_configs(args.workers) if args.configs is None or c.name in args.configs]
    with tempfile.TemporaryDirectory(prefix="ilm_bench_data_", dir=args.data_dir) as tmp:
        root = Path(tmp)
        # the consumption rate, measured on real in-memory batches of the first preset's pipeline
        datalists = {
            p: write_sample(p, root / "data", args.patients, args.source_size, args.seed) for p in args.presets
        }
        first = args.presets[0]
        memory = in_memory_batches(
            Dataset(datalists[first], pretrain_transforms(first, args.image_size, 3)), args.batch_size, args.max_batches
        )
        bases = {m: build_model(m, args.seed) for m in dict.fromkeys([*args.methods, "mse"])}
        for m in bases:  # warm-up
            trainer_rate(bases[m], memory[:2], 2, args.batch_size)
        step = _bench.alternate(
            {m: (lambda m=m: trainer_rate(bases[m], memory, len(memory), args.batch_size)) for m in bases}, args.repeats
        )
        step_rate = {m: _bench.median(v) for m, v in step.items()}
        bar = max(step_rate[m] for m in args.methods)
        presets = {
            p: measure_preset(p, datalists[p], args, root, configs, bases["mse"], step_rate["mse"])
            for p in args.presets
        }
    for p in presets.values():
        for entry in p["configs"].values():
            entry["ratio_vs_step"] = entry["loader_samples_per_s"] / bar
    fastest, met = {}, True
    for preset, p in presets.items():
        correct = {n: e for n, e in p["configs"].items() if e["correct"]}
        key = "e2e_samples_per_s" if preset in args.e2e_presets else "loader_samples_per_s"
        fastest[preset] = max(correct, key=lambda n: correct[n][key]) if correct else None
        default = p["configs"].get(BUNDLE_QUICK_DEFAULT)
        if default is not None:
            met &= default["ratio_vs_step"] >= TARGET_RATIO
        rows_out = []
        for name, e in p["configs"].items():
            rows_out.append(
                [
                    name,
                    f"{e['loader_samples_per_s']:.0f}",
                    f"{e['ratio_vs_step']:.2f}",
                    "-" if "e2e_samples_per_s" not in e else f"{e['e2e_samples_per_s']:.1f}",
                    "-" if "e2e_share_of_in_memory" not in e else f"{100 * e['e2e_share_of_in_memory']:.0f}%",
                    f"{p['setup_s'][name.split('+')[0]]:.1f}",
                    "yes" if e["correct"] else "NO " + ",".join(k for k, v in e["checks"].items() if v is False),
                ]
            )
        _bench.print_report(
            f"data pipeline '{preset}': {args.image_size} px, batch {args.batch_size}, "
            f"{p['batches_per_epoch']} batches/epoch, {p['train_rows']} train rows, median of {args.repeats}",
            info,
            [
                "config",
                "loader samples/s",
                "ratio vs step",
                "end-to-end samples/s",
                "of in-memory",
                "setup s",
                "correct",
            ],
            rows_out,
            [
                f"fastest correct ({'end to end' if preset in args.e2e_presets else 'loader alone'}): "
                + f"{fastest[preset]}; bundle quick default: {BUNDLE_QUICK_DEFAULT}"
            ],
        )
    rotation = rotation_costs(args.rotation_sizes, args.repeats)
    if rotation:
        _bench.print_report(
            f"30-degree rotation, ms per (3, s, s) view, median of {2 * args.repeats + 1}",
            info,
            ["side s", "MONAI RandRotated", "RandRotationd", "speed-up"],
            [
                [
                    s,
                    f"{c['monai_RandRotated']:.2f}",
                    f"{c['RandRotationd']:.2f}",
                    f"{c['monai_RandRotated'] / c['RandRotationd']:.1f}x",
                ]
                for s, c in rotation.items()
            ],
        )
    step_line = ", ".join(f"{m} {r:.1f}" for m, r in step_rate.items())
    print(f"\nstep consumption (in-memory batches, samples/s): {step_line}; bar = fastest = {bar:.1f}")
    print(
        f"target: bundle default loader >= {TARGET_RATIO} x step rate on every preset -> {'MET' if met else 'NOT MET'}"
    )
    payload = {
        "name": NAME,
        "command": "python benchmarks/data_pipeline.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "settings": {
            **{k: v for k, v in vars(args).items() if k not in ("output_dir", "data_dir")},
            "quick_model": QUICK,
        },
        "step_samples_per_s": step_rate,
        "step_runs": step,
        "bar_samples_per_s": bar,
        "presets": presets,
        "rotation_ms_per_view": rotation,
        "fastest_correct": fastest,
        "bundle_quick_default": BUNDLE_QUICK_DEFAULT,
        "target": {"min_ratio": TARGET_RATIO, "met": met},
    }
    _bench.write_result(NAME, payload, args.output_dir)
    return payload


if __name__ == "__main__":
    main()
