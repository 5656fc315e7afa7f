"""Cost of the online kNN and the representation-health handlers, as a share of a pretraining epoch.

What is measured
    In one process, at one thread count, on pre-made in-memory batches (data loading excluded on both
    sides; the kNN bank is kept in memory after its first loading by ``knn_cache_rate: 1.0``):

    * ``step``: seconds per training sample of a ``MoCoTrainer`` step (MoCo, momentum update, loss parts),
      the median over ``--steps`` iterations after a warm-up;
    * ``knn``: seconds per image of :class:`~monai_ilm.handlers.OnlineKNNHandler` (query-encoder forward in
      eval mode, no gradient, plus the kNN vote), from one scoring of a ``--knn-images`` bank + sample;
    * ``health``: seconds per epoch spent inside :class:`~monai_ilm.handlers.RepresentationHealthHandler`
      (default 1,024 samples) during a trainer epoch: its per-iteration copies over the epoch's last
      iterations plus the epoch-end SVDs, timed around its own event handlers.

    The share of an epoch at the bundles' defaults (every epoch, bank 2,048 + 512 validation images) is
    ``(knn x 2,560 + health) / (step x n_train)`` for each data set's training split: NIH 78,468 images
    (CheXNet split), DR 45,717 (80 % of the jama16 57,146), IDC ~174,000 patches (docs/method.md §2.2 estimate).
    Both sides are forward passes of the same encoder at the same resolution, so the ratio carries over
    to a GPU roughly; on a loading-bound GPU run the bank's first loading adds 2,560 image reads once.

Target (issue 16): at most 5 % of an epoch at the default interval.

Usage::

    python benchmarks/monitoring_overhead.py                      # resnet18, 64 px, batch 32
    python benchmarks/monitoring_overhead.py --backbone resnet50 --image-size 128 --batch-size 16
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import _bench
import torch
from ignite.engine import Events

from monai_ilm.engines import MoCoTrainer
from monai_ilm.handlers import LossPartsHandler, MomentumUpdateHandler, OnlineKNNHandler, RepresentationHealthHandler
from monai_ilm.networks import MoCo, resnet_encoder

TRAIN_SIZES = {"nih": 78_468, "dr": 45_717, "idc": 174_000}
KNN_IMAGES = 2048 + 512  # the bundles' knn_bank_size + knn_val_size
TARGET = 0.05


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--queue-size", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=40, help="training iterations per timed run (>= 1024 / batch)")
    parser.add_argument("--knn-images", type=int, default=512, help="bank + validation images of the timed kNN")
    parser.add_argument("--health-samples", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=_bench.default_threads())
    parser.add_argument("--output-dir", default=None)
    return parser


class _TimedHealth(RepresentationHealthHandler):
    """The handler, timing its own work."""

    seconds = 0.0

    def collect(self, engine) -> None:
        start = time.perf_counter()
        super().collect(engine)
        self.seconds += time.perf_counter() - start

    def __call__(self, engine) -> None:
        start = time.perf_counter()
        super().__call__(engine)
        self.seconds += time.perf_counter() - start


def _run_trainer(network: MoCo, batches: list[dict], health: RepresentationHealthHandler | None) -> tuple[float, list]:
    """Seconds of one epoch over ``batches`` and the per-iteration times (the first one dropped)."""
    optimizer = torch.optim.SGD(network.query_parameters(), lr=0.01, momentum=0.9)
    handlers = [MomentumUpdateHandler(0.99), LossPartsHandler()] + ([health] if health is not None else [])
    trainer = MoCoTrainer("cpu", 1, batches, network, optimizer, train_handlers=handlers)
    marks: list[float] = []
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: marks.append(time.perf_counter()))
    start = time.perf_counter()
    trainer.run()
    return time.perf_counter() - start, [b - a for a, b in zip(marks[1:], marks[2:])]


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    _bench.set_threads(args.threads)
    info = _bench.machine_info()
    torch.manual_seed(0)
    network = MoCo(resnet_encoder(args.backbone), embedding_dim=128, queue_size=args.queue_size)
    g = torch.Generator().manual_seed(1)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    batches = [
        {"view1": torch.rand(shape, generator=g), "view2": torch.rand(shape, generator=g)} for _ in range(args.steps)
    ]
    images = [
        {"image": torch.rand(shape[1:], generator=g), "label": torch.tensor(i % 2)} for i in range(args.knn_images)
    ]
    knn = OnlineKNNHandler(
        images[: args.knn_images * 4 // 5],
        images[args.knn_images * 4 // 5 :],
        lambda d: d,
        bank_size=args.knn_images,
        val_size=args.knn_images,
        batch_size=64,
    )
    engine = type(
        "E",
        (),
        {"network": network, "state": type("S", (), {"epoch": 1, "max_epochs": 1, "device": "cpu", "metrics": {}})()},
    )()
    knn(engine)  # warm-up; loads (caches) the images once, as the bundle's first scoring does

    def time_knn() -> float:
        start = time.perf_counter()
        knn(engine)
        return (time.perf_counter() - start) / args.knn_images

    def time_health() -> float:
        handler = _TimedHealth(samples=args.health_samples)
        _run_trainer(network, batches, handler)
        return handler.seconds

    _run_trainer(network, batches[:2], None)  # warm-up
    step_times: list[float] = []
    for _ in range(args.repeats):
        step_times += _run_trainer(network, batches, None)[1]
    step = _bench.median(step_times) / args.batch_size
    runs = _bench.alternate({"knn": time_knn, "health": time_health}, args.repeats)
    knn_per_image, health = _bench.median(runs["knn"]), _bench.median(runs["health"])
    shares = {name: (knn_per_image * KNN_IMAGES + health) / (step * n) for name, n in TRAIN_SIZES.items()}
    rows = [
        [
            name,
            f"{n:,}",
            f"{step * n:,.0f}",
            f"{knn_per_image * KNN_IMAGES:.1f}",
            f"{health:.2f}",
            f"{100 * shares[name]:.2f} %",
        ]
        for name, n in TRAIN_SIZES.items()
    ]
    met = all(s <= TARGET for s in shares.values())
    notes = [
        f"per training sample {1e3 * step:.2f} ms; per kNN image {1e3 * knn_per_image:.2f} ms "
        f"({step / knn_per_image:.1f}x cheaper); health {health:.2f} s per epoch ({args.health_samples} samples)",
        f"target: <= {100 * TARGET:.0f} % of an epoch at the default interval (1) -> {'met' if met else 'NOT met'}",
    ]
    _bench.print_report(
        f"monitoring overhead: {args.backbone}, {args.image_size} px, batch {args.batch_size}, {args.threads} threads",
        info,
        ["data set", "train images", "epoch s", "kNN s", "health s", "share"],
        rows,
        notes,
    )
    payload = {
        "machine": info,
        "settings": vars(args),
        "seconds_per_training_sample": step,
        "seconds_per_knn_image": knn_per_image,
        "health_seconds_per_epoch": health,
        "knn_images": KNN_IMAGES,
        "train_sizes": TRAIN_SIZES,
        "epoch_share": shares,
        "target": TARGET,
        "met": met,
    }
    _bench.write_result("monitoring_overhead", payload, args.output_dir)
    return payload


if __name__ == "__main__":
    main()
