"""3D device augmentation: samples/s of the volume preset's two views made on the device vs per sample in the loader,
and of 3D MoCo pretraining steps vs a bare forward/backward loop, measured side by side in one run.

What is measured (defaults: 28^3 volumes, AdrenalMNIST3D's size; batch 16; 3D ResNet-10, 1 channel)
    * ``augment``: samples/s of making both views of a batch.
      ``device``: :class:`~monai_ilm.transforms.DeviceAugment` (``pretrain_pipeline("volume", augment_on="device")``)
      on uint8 batches already on the device (the figure of the stage alone);
      ``loader wN``: one epoch of ``pretrain_transforms("volume")`` (MONAI's per-sample steps, two views a sample)
      through a ``CacheDataset`` (the deterministic steps cached) and MONAI's ``DataLoader`` with N workers,
      iterator start-up included, as the bundles run it;
      ``device loader wN``: the device route's loader (cached uint8 volumes, nothing random) with N workers,
      followed by the device stage: what the device route delivers end to end.
    * ``steps``: samples/s of pretraining steps on in-memory batches.
      ``bare``: a hand-written loop on pre-made views (forward of both encoders, InfoNCE, backward, SGD step,
      momentum update, enqueue), the floor of what any trainer costs;
      ``trainer device aug``: :class:`~monai_ilm.engines.MoCoTrainer` with the device stage on uint8 batches
      (views made in the step); ``trainer views``: the same trainer on pre-made views (``augment_on="loader"``'s
      step, the loader's cost excluded). The ratios say what the trainer and the augmentation add to the bare loop.

Every figure is the median of ``--repeats`` runs, the compared configurations in alternating order
(``_bench.alternate``). Data are smooth random uint8 volumes made in memory (no files).

Usage::

    python benchmarks/device_augment_3d.py
    python benchmarks/device_augment_3d.py --size 64 --batch-size 8 --backbone resnet18 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402  (puts the repository root on sys.path)
import torch  # noqa: E402
from monai.data import CacheDataset, DataLoader  # noqa: E402

from monai_ilm.engines import MoCoTrainer  # noqa: E402
from monai_ilm.handlers import MomentumUpdateHandler  # noqa: E402
from monai_ilm.losses import InfoNCELoss  # noqa: E402
from monai_ilm.networks import MoCo, resnet_encoder  # noqa: E402
from monai_ilm.transforms import pretrain_pipeline, pretrain_transforms  # noqa: E402

NAME = "device_augment_3d"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", type=int, default=28, help="volume side (AdrenalMNIST3D: 28)")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--batches", type=int, default=6, help="batches per measured run")
    p.add_argument("--volumes", type=int, default=None, help="volumes in the data set (default: batches x batch size)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--backbone", default="resnet10", help="MONAI ResNetFeatures depth (resnet10, resnet18, ...)")
    p.add_argument("--queue-size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default=None, help="cpu or cuda (default: cuda when available)")
    p.add_argument("--channels-last", action="store_true", help="run the trainer channels-last (NDHWC)")
    p.add_argument("--threads", type=int, default=_bench.default_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default=None, help="where <name>.json goes (default benchmarks/results)")
    return p


# ----------------------------------------------------------------------------------------------- data
def make_volumes(n: int, size: int, seed: int) -> list[dict]:
    """``n`` smooth random uint8 ``(D, H, W)`` volumes, MedMNIST 3D's layout."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 1, 4, 4, 4, generator=g)
    volumes = torch.nn.functional.interpolate(coarse, size=(size,) * 3, mode="trilinear", align_corners=False)
    return [{"image": (255 * v[0]).round().to(torch.uint8).numpy()} for v in volumes]


def _sync(device: torch.device):
    return torch.cuda.synchronize if device.type == "cuda" else None


# ------------------------------------------------------------------------------------------ measures
def loader_rate(dataset: CacheDataset, batch_size: int, workers: int, batches: int, stage=None, device=None) -> float:
    """Samples/s of one epoch of at most ``batches`` batches (iterator start-up included), then ``stage`` if given."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers)
    samples = 0
    with _bench.Timer(_sync(device) if device is not None else None) as timer:
        for i, batch in enumerate(loader):
            if stage is not None:
                stage(batch["image"].to(device))
            samples += next(iter(batch.values())).shape[0]
            if i + 1 >= batches:
                break
    return samples / timer.seconds


def stage_rate(stage, batches: list[torch.Tensor], device: torch.device) -> float:
    """Samples/s of the device stage on uint8 batches already on ``device``."""
    with _bench.Timer(_sync(device)) as timer:
        for batch in batches:
            stage(batch)
    return sum(b.shape[0] for b in batches) / timer.seconds


def build_network(args: argparse.Namespace) -> MoCo:
    torch.manual_seed(args.seed)
    encoder = resnet_encoder(args.backbone, spatial_dims=3, in_channels=1, backend="monai")
    return MoCo(encoder, embedding_dim=128, queue_size=args.queue_size)


def bare_rate(base: MoCo, views: list[dict], device: torch.device, channels_last: bool) -> float:
    """Samples/s of a hand-written MoCo loop on pre-made views: the floor of any trainer."""
    net = copy.deepcopy(base).to(device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last_3d)
    loss_fn = InfoNCELoss(0.07)
    optimizer = torch.optim.SGD(net.query_parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    layout = torch.channels_last_3d if channels_last else torch.preserve_format
    net.train()
    with _bench.Timer(_sync(device)) as timer:
        for batch in views:
            x1, x2 = (batch[k].to(device, memory_format=layout) for k in ("view1", "view2"))
            optimizer.zero_grad(set_to_none=True)
            out = net(x1, x2)
            loss = loss_fn(out["query"], out["key"], net.queue)
            loss.backward()
            optimizer.step()
            net.momentum_update(0.999)
            net.enqueue(out["key"])
    return sum(b["view1"].shape[0] for b in views) / timer.seconds


def trainer_rate(base: MoCo, data: list[dict], device: torch.device, channels_last: bool, augment=None) -> float:
    """Samples/s of a :class:`MoCoTrainer` epoch over ``data`` (uint8 images with ``augment``, else views)."""
    net = copy.deepcopy(base).to(device)
    optimizer = torch.optim.SGD(net.query_parameters(), lr=0.03, momentum=0.9, weight_decay=1e-4)
    trainer = MoCoTrainer(
        device,
        1,
        data,
        net,
        optimizer,
        loss_function=InfoNCELoss(0.07),
        train_handlers=[MomentumUpdateHandler(0.999)],
        channels_last=channels_last,
        augment=copy.deepcopy(augment),
    )
    with _bench.Timer(_sync(device)) as timer:
        trainer.run()
    return sum(next(iter(b.values())).shape[0] for b in data) / timer.seconds


# --------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    logging.getLogger("monai_ilm").setLevel(logging.WARNING)
    logging.getLogger("ignite").setLevel(logging.WARNING)
    _bench.set_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    info = _bench.machine_info()
    n = args.volumes or args.batches * args.batch_size
    rows = make_volumes(n, args.size, args.seed)

    # views made per sample in the loader (MONAI), or cached uint8 volumes for the device stage
    loader_transform = pretrain_transforms("volume", args.size, channels=1)
    device_transform, stage = pretrain_pipeline("volume", args.size, channels=1, augment_on="device", seed=args.seed)
    loader_data = CacheDataset(rows, loader_transform, cache_rate=1.0, num_workers=0, progress=False)
    device_data = CacheDataset(rows, device_transform, cache_rate=1.0, num_workers=0, progress=False)
    uint8 = [
        torch.stack([device_data[i]["image"] for i in range(b * args.batch_size, (b + 1) * args.batch_size)]).to(device)
        for b in range(min(args.batches, n // args.batch_size))
    ]
    stage_rate(stage, uint8[:1], device)  # warm-up

    runs = {"device": lambda: stage_rate(stage, uint8, device)}
    for w in args.workers:
        runs[f"loader w{w}"] = lambda w=w: loader_rate(loader_data, args.batch_size, w, args.batches)
        runs[f"device loader w{w}"] = lambda w=w: loader_rate(
            device_data, args.batch_size, w, args.batches, stage, device
        )
    augment = {name: _bench.median(v) for name, v in _bench.alternate(runs, args.repeats).items()}

    # pretraining steps on in-memory batches
    base = build_network(args)
    views = [dict(zip(("view1", "view2"), (v.cpu() for v in stage(b)))) for b in uint8]
    images = [{"image": b} for b in uint8]
    step_runs = {
        "bare": lambda: bare_rate(base, views, device, args.channels_last),
        "trainer views": lambda: trainer_rate(base, views, device, args.channels_last),
        "trainer device aug": lambda: trainer_rate(base, images, device, args.channels_last, stage),
    }
    for run in step_runs.values():  # warm-up
        run()
    steps = {name: _bench.median(v) for name, v in _bench.alternate(step_runs, args.repeats).items()}

    best_loader = max(augment[f"loader w{w}"] for w in args.workers)
    title = f"{args.size}^3 volumes, batch {args.batch_size}, {len(uint8)} batches/run, device {device}"
    _bench.print_report(
        f"3D two-view augmentation: {title}, median of {args.repeats}",
        info,
        ["config", "samples/s", "vs best loader"],
        [[name, f"{rate:.1f}", f"{rate / best_loader:.2f}x"] for name, rate in augment.items()],
        ["loader wN: MONAI's per-sample volume view steps in N workers; device: the batched stage alone"],
    )
    _bench.print_report(
        f"3D MoCo pretraining steps ({args.backbone}, queue {args.queue_size}): {title}, median of {args.repeats}",
        info,
        ["config", "samples/s", "vs bare"],
        [[name, f"{rate:.1f}", f"{rate / steps['bare']:.2f}"] for name, rate in steps.items()],
        [
            f"device augmentation ratio (stage samples/s / trainer-with-augmentation samples/s): "
            f"{augment['device'] / steps['trainer device aug']:.1f}; "
            f"best loader / trainer on views: {best_loader / steps['trainer views']:.2f}"
        ],
    )
    payload = {
        "name": NAME,
        "command": "python benchmarks/device_augment_3d.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "settings": {**{k: v for k, v in vars(args).items() if k != "output_dir"}, "device": str(device)},
        "augment_samples_per_s": augment,
        "step_samples_per_s": steps,
        "step_vs_bare": {name: rate / steps["bare"] for name, rate in steps.items()},
        "device_augmentation_ratio": augment["device"] / steps["trainer device aug"],
    }
    _bench.write_result(NAME, payload, args.output_dir)
    return payload


if __name__ == "__main__":
    main()
