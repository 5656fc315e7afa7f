"""End to end: pretraining samples/s fed from disk through the real loader, over the in-memory MoCo step rate.

What is measured (NIH preset, MoCo+MSE, the bundles' quick settings but batch 32: ResNet-18, 64 px, queue 256)
    * ``in-memory``: samples/s of :class:`~monai_ilm.engines.MoCoTrainer` on two-view batches already in
      memory (the ceiling: no loading, no augmentation).
    * ``device``: samples/s of the same trainer fed by the bundle's loader with ``augment_on="device"``:
      synthetic NIH PNGs (``monai_ilm.data.synthetic``) decoded and resized once into ``CacheDataset``
      (``cache_rate=1``, ``num_workers=0`` as quick.json) as one uint8 image per sample, the two views made
      on the training device (here the CPU) by :class:`~monai_ilm.transforms.DeviceAugment`.
    * ``loader``: the same with ``augment_on="loader"``: two views augmented per sample in the loader.
    * ``ratio`` = device samples/s / in-memory samples/s (target >= 0.9 on 2 cores), ``loader ratio``
      likewise. The three kinds of run alternate (``_bench.alternate``, ``--repeats`` each); a rate is the
      batch size over the median iteration time (batch fetch included) of all its runs' timed iterations.
    * ``--large``: the same three at 224 px with ResNet-50 (fewer steps, smaller batch by default).
    * ``loader cores``: one core's seconds per sample of the loader's work at 512 px, as cores needed per
      1,000 samples/s: per-sample two-view augmentation of a cached image (``loader``), reading the uint8
      cache (``device, cached``) and decoding and resizing a 1024 px PNG (``device, uncached``).
    * ``cache``: the bytes of a full NIH run's cache (112,120 images at 512 px) as uint8
      (:func:`monai_ilm.data.compact_cache.cache_bytes`, one grey channel as the device pipeline keeps it,
      and three) and as the float32 tensors ``CacheDataset`` holds with ``augment_on="loader"``.

The last line printed is ``end-to-end ratio: X``; ``benchmarks/results/end_to_end.json`` holds every figure
with ``"ratio"`` at the top level.

Usage::

    python benchmarks/end_to_end.py --quick          # under 3 minutes on 2 idle cores
    python benchmarks/end_to_end.py --large          # adds 224 px / ResNet-50
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import _bench
import torch
from ignite.engine import Events
from monai.data import CacheDataset, DataLoader
from monai.transforms import Compose

from monai_ilm.data import load_datalist
from monai_ilm.data.compact_cache import CompactCacheDataset, cache_boundary, cache_bytes, format_bytes
from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.engines import MoCoTrainer
from monai_ilm.handlers import IntermediateLayerLossHandler, LossPartsHandler, MomentumUpdateHandler
from monai_ilm.losses import InfoNCELoss, IntermediateMSELoss
from monai_ilm.methods import trainable_parameters
from monai_ilm.networks import MoCo, resnet_encoder
from monai_ilm.transforms import pretrain_pipeline

NIH_IMAGES, NIH_SIZE = 112_120, 512
MODES = ("in-memory", "device", "loader")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--quick", action="store_true", help="fewer steps and repeats (under 3 minutes on 2 cores)")
    p.add_argument("--large", action="store_true", help="also measure 224 px / ResNet-50")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--queue-size", type=int, default=256, help="K (quick.json's)")
    p.add_argument("--steps", type=int, default=None, help="timed steps per run (default 16, --quick 8)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps at the start of every run")
    p.add_argument("--repeats", type=int, default=None, help="runs of each mode (default 6, --quick 4)")
    p.add_argument("--large-batch-size", type=int, default=8)
    p.add_argument("--large-steps", type=int, default=2)
    p.add_argument("--workers", type=int, default=0, help="loader worker processes (quick.json: 0)")
    p.add_argument("--patients", type=int, default=60, help="synthetic NIH patients (3 images each)")
    p.add_argument("--source-size", type=int, default=128, help="side of the synthetic NIH PNGs")
    p.add_argument("--core-samples", type=int, default=None, help="samples timed per loader-cores figure")
    p.add_argument("--threads", type=int, default=_bench.default_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default=None, help="where the synthetic data go (default: a temporary folder)")
    p.add_argument("--output-dir", default=None, help="where end_to_end.json goes (default benchmarks/results)")
    return p


# ----------------------------------------------------------------------------------------- training
def build_models(backbone: str, queue_size: int, seed: int) -> tuple[MoCo, IntermediateMSELoss]:
    torch.manual_seed(seed)
    net = MoCo(resnet_encoder(backbone), embedding_dim=128, queue_size=queue_size)
    return net, IntermediateMSELoss(weights=0.25, pool_sizes=(8, 4, 2, 1))


def step_times(base: tuple[MoCo, IntermediateMSELoss], data, augment, warmup: int, steps: int) -> list[float]:
    """Seconds of each of ``steps`` MoCo+MSE iterations after ``warmup`` ones (fresh model copy), batch fetch included.

    An iteration's time runs from the end of the previous one, so it holds the loader's ``next`` as well.
    """
    net, loss = copy.deepcopy(base[0]), copy.deepcopy(base[1])
    handlers = [IntermediateLayerLossHandler(loss), MomentumUpdateHandler(0.999), LossPartsHandler()]
    optimizer = torch.optim.SGD(trainable_parameters(net, loss), lr=0.03, momentum=0.9, weight_decay=1e-4)
    trainer = MoCoTrainer(
        "cpu", 1, data, net, optimizer, InfoNCELoss(0.07), epoch_length=warmup + steps, train_handlers=handlers
    )
    trainer.augment = augment
    marks: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: marks.append(time.perf_counter()))
    trainer.run()
    return [b - a for a, b in zip(marks[warmup - 1 : -1], marks[warmup:])]


def measure(args: argparse.Namespace, rows: list[dict], backbone: str, size: int, batch: int, steps: int) -> dict:
    """The in-memory, device and loader rates (medians of alternating runs) and the two ratios."""
    logging.getLogger("ignite").setLevel(logging.WARNING)
    base = build_models(backbone, max(args.queue_size, batch), args.seed)
    loaders, stages = {}, {}
    for mode in ("device", "loader"):
        transform, stages[mode] = pretrain_pipeline("nih", size, 3, mode, seed=args.seed)
        dataset = CacheDataset(rows, transform, cache_rate=1.0, num_workers=args.threads, progress=False)
        loaders[mode] = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=args.workers)
    first = next(iter(DataLoader(loaders["device"].dataset, batch_size=batch, num_workers=0)))["image"]
    memory = [dict(zip(("view1", "view2"), stages["device"](first))) for _ in range(2)]
    warmup = max(1, args.warmup)

    def run(mode: str):
        data = memory if mode == "in-memory" else loaders[mode]
        return lambda: step_times(base, data, stages.get(mode), warmup, steps)

    # the median step over all runs: a shared machine's load spikes hit single steps, not the median
    times = _bench.alternate({mode: run(mode) for mode in MODES}, args.repeats)
    median = {mode: batch / _bench.median([t for run in runs for t in run]) for mode, runs in times.items()}
    rates = {mode: [batch * len(run) / sum(run) for run in runs] for mode, runs in times.items()}
    augment_ms = time_device_stage(stages["device"], first)
    return {
        "backbone": backbone,
        "image_size": size,
        "batch_size": batch,
        "steps": steps,
        "samples_per_s": median,
        "run_samples_per_s": rates,
        "ratio": median["device"] / median["in-memory"],
        "loader_ratio": median["loader"] / median["in-memory"],
        "device_stage_ms_per_batch": augment_ms,
    }


def time_device_stage(stage, images: torch.Tensor, calls: int = 3) -> float:
    """Median ms of the device stage on one batch (both views), on this process's threads."""
    times = []
    for _ in range(calls):
        with _bench.Timer() as t:
            stage(images)
        times.append(t.seconds * 1000.0)
    return _bench.median(times)


# ------------------------------------------------------------------------------------------- loader
def loader_cores(folder: Path, samples: int, seed: int) -> dict[str, Any]:
    """One core's seconds per sample of the loader's work at 512 px, and the cores per 1,000 samples/s."""
    make_nih_sample(folder, n_patients=2, images_per_patient=2, image_size=1024, seed=seed)
    rows = [{"image": str(path)} for path in sorted(folder.rglob("*.png"))[:1]]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loader_transform, _ = pretrain_pipeline("nih", NIH_SIZE, 3, "loader")
        device_transform, _ = pretrain_pipeline("nih", NIH_SIZE, 3, "device")
        boundary = cache_boundary(loader_transform)
        cached = Compose(loader_transform.transforms[:boundary])(dict(rows[0]))
        augment = Compose(loader_transform.transforms[boundary:]).set_random_state(seed)
        compact = CompactCacheDataset(rows, device_transform, storage="memory")
        work = {
            "loader (two views, cached image)": lambda: augment(dict(cached)),
            "device, cached (uint8 read)": lambda: compact[0],
            "device, uncached (decode + resize)": lambda: device_transform(dict(rows[0])),
        }
        figures = {}
        for name, call in work.items():
            call()
            with _bench.Timer() as t:
                for _ in range(samples):
                    call()
            per_sample = t.seconds / samples
            figures[name] = {"s_per_sample": per_sample, "cores_per_1000_samples_s": 1000.0 * per_sample}
    finally:
        torch.set_num_threads(threads)
    return figures


def cache_figures() -> dict[str, Any]:
    grey, rgb = cache_bytes(NIH_IMAGES, NIH_SIZE, 1), cache_bytes(NIH_IMAGES, NIH_SIZE, 3)
    return {
        "images": NIH_IMAGES,
        "image_size": NIH_SIZE,
        "uint8_grey_bytes": grey,
        "uint8_rgb_bytes": rgb,
        "float32_rgb_bytes": 4 * rgb,
    }


# --------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    args.steps = args.steps or (8 if args.quick else 16)
    args.repeats = args.repeats or (4 if args.quick else 6)
    args.core_samples = args.core_samples or (4 if args.quick else 12)
    _bench.set_threads(args.threads)
    info = _bench.machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.data_dir) if args.data_dir else Path(tmp)
        make_nih_sample(root / "nih", n_patients=args.patients, image_size=args.source_size, seed=args.seed)
        rows = load_datalist("nih", root / "nih", "train", seed=args.seed, require_all_classes=False)
        quick = measure(args, rows, args.backbone, args.image_size, args.batch_size, args.steps)
        large = None
        if args.large:
            large = measure(args, rows, "resnet50", 224, args.large_batch_size, args.large_steps)
        cores = loader_cores(root / "nih_1024", args.core_samples, args.seed)
    payload = {
        "ratio": quick["ratio"],
        "loader_ratio": quick["loader_ratio"],
        "target": 0.9,
        "met": quick["ratio"] >= 0.9,
        "quick": quick,
        "large": large,
        "loader_cores_512px": cores,
        "cache": cache_figures(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("output_dir", "data_dir")},
        "machine": info,
    }
    report(payload, info)
    _bench.write_result("end_to_end", payload, args.output_dir)
    print(f"end-to-end ratio: {quick['ratio']:.3f}")
    sys.stdout.flush()
    return payload


def report(payload: dict[str, Any], info: dict[str, Any]) -> None:
    rows = []
    for figures in (payload["quick"], payload["large"]):
        if figures is None:
            continue
        rates = figures["samples_per_s"]
        rows.append(
            [
                f"{figures['backbone']} {figures['image_size']} px b{figures['batch_size']}",
                *(f"{rates[mode]:.1f}" for mode in MODES),
                f"{figures['ratio']:.3f}",
                f"{figures['loader_ratio']:.3f}",
                f"{figures['device_stage_ms_per_batch']:.1f}",
            ]
        )
    headers = ["setting", *(f"{m} samples/s" for m in MODES), "ratio", "loader ratio", "device stage ms"]
    _bench.print_report("end to end: pretraining fed from disk vs in memory (NIH, MoCo+MSE)", info, headers, rows)
    cores = [
        [name, f"{f['s_per_sample'] * 1000:.1f}", f"{f['cores_per_1000_samples_s']:.1f}"]
        for name, f in payload["loader_cores_512px"].items()
    ]
    cache = payload["cache"]
    notes = [
        f"full NIH cache ({cache['images']:,} images at {cache['image_size']} px): "
        f"{format_bytes(cache['uint8_grey_bytes'])} uint8 grey (device pipeline), "
        f"{format_bytes(cache['uint8_rgb_bytes'])} uint8 RGB, {format_bytes(cache['float32_rgb_bytes'])} float32 RGB "
        "(CacheDataset with augment_on=loader)"
    ]
    _bench.print_report(
        "loader cores per 1,000 samples/s at 512 px (one core)", info, ["work", "ms/sample", "cores"], cores, notes
    )


if __name__ == "__main__":
    main()
