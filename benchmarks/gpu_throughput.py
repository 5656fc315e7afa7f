"""GPU throughput: images/s of MoCo+MSE (ResNet-50, 224 px) through the real pipeline, against a bare loop.

What is measured, per method and per precision x layout (``fp32``, ``fp32-cl``, ``bf16``, ``bf16-cl``; on
request ``fp16-cl`` with a gradient scaler and ``bf16-cl-compile`` with ``torch.compile``):

    * ``end to end`` (the real pipeline): :class:`~monai_ilm.engines.MoCoTrainer` with the bundles' per-step
      handlers on (intermediate-layer loss, momentum update, loss parts, data wait, representation health,
      NaN guard and StatsHandler every 50 iterations), fed by a MONAI ``DataLoader`` (``--workers``
      processes, pinned memory, ``non_blocking``) over a :class:`~monai_ilm.data.CompactCacheDataset` of
      synthetic NIH images (the uint8 grey cache of ``pretrain_pipeline("nih", size, 3, "device")``),
      the two views made on the device by :class:`~monai_ilm.transforms.DeviceAugment`;
    * ``model-only`` (the bare loop): the same network, loss and optimiser stepped by a hand-written loop on
      two-view batches already on the device (no loader, no augmentation, no engine, no handlers);
    * ``ratio`` = end to end / model-only: the share of the bare step rate the real pipeline keeps.

Images/s = training samples per second (each a pair of views, both encoded); the median over ``--repeats``
chunks of ``--steps`` iterations after ``--warmup`` iterations (cuDNN autotuning, compilation), timed between
``torch.cuda.synchronize()`` calls. Peak memory: ``torch.cuda.max_memory_allocated`` per run on CUDA, the
process's ``ru_maxrss`` so far on a CPU. On CUDA the host synchronisations per step of the pipeline are
counted with ``torch.cuda.set_sync_debug_mode("warn")`` (target 0).

Target (issue #26): >= 1,500 images/s end to end with bf16 + channels_last for MoCo+MSE on one H100.

Without a CUDA GPU the script prints that and exits 0, unless ``--device cpu`` is given;
``--device cpu --smoke`` is a tiny run (ResNet-18, 32 px, batch 4) of the same code.

Usage::

    python benchmarks/gpu_throughput.py                          # on a GPU machine (MoCo+MSE, 4 configs)
    python benchmarks/gpu_throughput.py --methods moco mse barlow --configs fp32 bf16-cl bf16-cl-compile
    python benchmarks/gpu_throughput.py --device cpu --smoke     # CPU sanity run
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402  (puts the repository root on sys.path)
import torch  # noqa: E402
from ignite.engine import Events  # noqa: E402

from monai_ilm.engines import MoCoTrainer  # noqa: E402
from monai_ilm.engines.utils import to_channels_last  # noqa: E402
from monai_ilm.handlers import (  # noqa: E402
    DataWaitHandler,
    IntermediateLayerLossHandler,
    LossPartsHandler,
    MomentumUpdateHandler,
    NaNGuard,
    RepresentationHealthHandler,
)
from monai_ilm.losses import InfoNCELoss  # noqa: E402
from monai_ilm.methods import intermediate_loss, trainable_parameters  # noqa: E402
from monai_ilm.networks import MoCo, resnet_encoder  # noqa: E402

NAME = "gpu_throughput"
TARGET = {"images_per_s": 1500.0, "method": "mse", "config": "bf16-cl", "mode": "end-to-end"}
METHOD_KEYS = {"moco": "moco", "mse": "moco_mse", "barlow": "moco_barlow"}
LOG_INTERVAL = 50  # pretrain.json's log_interval (and nan_check_interval)


@dataclass(frozen=True)
class SpeedConfig:
    """A precision / memory-format / compilation setting of the trainer."""

    name: str
    dtype: torch.dtype | None  # autocast dtype, None = float32
    channels_last: bool
    compile: bool


CONFIGS = {
    c.name: c
    for c in (
        SpeedConfig("fp32", None, False, False),
        SpeedConfig("fp32-cl", None, True, False),
        SpeedConfig("bf16", torch.bfloat16, False, False),
        SpeedConfig("bf16-cl", torch.bfloat16, True, False),
        SpeedConfig("fp16-cl", torch.float16, True, False),
        SpeedConfig("bf16-cl-compile", torch.bfloat16, True, True),
    )
}
GRID = ["fp32", "fp32-cl", "bf16", "bf16-cl"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: ResNet-18, 32 px, batch 4, 2 steps")
    p.add_argument("--methods", nargs="+", default=["mse"], choices=list(METHOD_KEYS))
    p.add_argument("--configs", nargs="+", default=GRID, choices=list(CONFIGS), help="bare-loop (model-only) configs")
    p.add_argument(
        "--e2e-configs", nargs="*", default=None, choices=list(CONFIGS), help="pipeline configs (default: --configs)"
    )
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--queue-size", type=int, default=65536)
    p.add_argument("--steps", type=int, default=20, help="iterations per timed chunk")
    p.add_argument("--repeats", type=int, default=3, help="timed chunks (the median is reported)")
    p.add_argument("--warmup", type=int, default=8, help="untimed iterations first (cuDNN autotuning, compiling)")
    p.add_argument("--workers", type=int, default=min(16, _bench.default_threads()), help="loader processes")
    p.add_argument("--e2e-images", type=int, default=2048, help="distinct synthetic images in the compact cache")
    p.add_argument("--threads", type=int, default=_bench.default_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default=None, help="where <name>.json goes (default benchmarks/results)")
    return p


def apply_smoke(args: argparse.Namespace) -> None:
    args.backbone, args.image_size, args.batch_size, args.queue_size = "resnet18", 32, 4, 64
    args.steps, args.repeats, args.warmup, args.workers, args.e2e_images = 2, 1, 1, 0, 16
    if args.configs == build_parser().get_default("configs"):
        args.configs = ["fp32", "bf16-cl"]


# ------------------------------------------------------------------------------------------- model
def build(method: str, args: argparse.Namespace, device: torch.device):
    """Network, intermediate loss and optimiser of one method (the bundles' settings), on ``device``."""
    torch.manual_seed(args.seed)
    net = MoCo(resnet_encoder(args.backbone), embedding_dim=128, queue_size=args.queue_size).to(device)
    small = args.backbone in ("resnet18", "resnet34")
    loss = intermediate_loss(
        method,
        net.stage_channels,
        mse_pool_sizes=[8, 4, 2, 1] if args.image_size < 128 else "reference",
        barlow_projector_dims=[256, 256, 256] if small else [2048, 2048, 2048],
    )
    if loss is not None:
        loss = loss.to(device)
    optimizer = torch.optim.SGD(trainable_parameters(net, loss), lr=0.03, momentum=0.9, weight_decay=1e-4)
    return net, loss, optimizer


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _peak_memory(device: torch.device) -> float:
    """GiB: the device's peak allocation since the last reset (CUDA), else this process's peak resident memory."""
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
        return peak
    return _bench.peak_rss_mib() / 1024


def chunk_rates(marks: list[float], steps: int, batch_size: int) -> list[float]:
    """Images/s of each chunk of ``steps`` iterations, from the synchronised end times of the iterations."""
    return [steps * batch_size / (marks[i + steps] - marks[i]) for i in range(0, len(marks) - steps, steps)]


# ---------------------------------------------------------------------------------------- bare loop
def model_only(method: str, args, config: SpeedConfig, device: torch.device) -> dict[str, Any]:
    """The bare loop: forward, InfoNCE (+ intermediate loss), backward, SGD, momentum update and enqueue by hand."""
    net, loss, optimizer = build(method, args, device)
    if config.channels_last:
        to_channels_last(net)
    network = torch.compile(net) if config.compile else net
    contrastive = InfoNCELoss(0.07)
    scaler = torch.amp.GradScaler(device.type) if config.dtype == torch.float16 and device.type == "cuda" else None
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    batches = [
        [torch.rand(shape, generator=g).to(device).contiguous(memory_format=fmt) for _ in range(2)] for _ in range(4)
    ]
    net.train()
    marks: list[float] = []
    for i in range(args.warmup + args.steps * args.repeats):
        x1, x2 = batches[i % len(batches)]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=config.dtype, enabled=config.dtype is not None):
            out = network(x1, x2)
            total = contrastive(out["query"], out["key"], net.queue)
            if loss is not None:
                total = total + loss(out["query_stages"], out["key_stages"])
        if scaler is not None:
            scaler.scale(total).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            total.backward()
            optimizer.step()
        net.momentum_update(0.999)
        net.enqueue(out["key"])
        if i + 1 >= args.warmup:
            _sync(device)
            marks.append(time.perf_counter())
    rates = chunk_rates(marks, args.steps, args.batch_size)
    return {"images_per_s": statistics.median(rates), "chunks": rates, "peak_memory_gib": _peak_memory(device)}


# ------------------------------------------------------------------------------------ real pipeline
def pipeline_trainer(method: str, args, config: SpeedConfig, device: torch.device, loader, augment, epoch_length):
    """The bundles' trainer with their per-step handlers, fed by ``loader`` and ``augment`` (the device stage)."""
    from monai.handlers import StatsHandler

    net, loss, optimizer = build(method, args, device)
    handlers: list[Any] = [MomentumUpdateHandler(0.999), LossPartsHandler(), DataWaitHandler()]
    if loss is not None:
        handlers.insert(0, IntermediateLayerLossHandler(loss))
    handlers += [
        RepresentationHealthHandler(samples=min(1024, args.batch_size * args.steps)),
        StatsHandler(
            name="gpu_throughput",
            tag_name="train_loss",
            output_transform=lambda output: output,
            iteration_log=lambda engine, iteration: iteration % LOG_INTERVAL == 0,
        ),
        NaNGuard(check_every=LOG_INTERVAL, modules=loss),
    ]
    return MoCoTrainer(
        device=device,
        max_epochs=1,
        train_data_loader=loader,
        network=net,
        optimizer=optimizer,
        loss_function=InfoNCELoss(0.07),
        epoch_length=epoch_length,
        non_blocking=device.type == "cuda",
        train_handlers=handlers,
        amp=config.dtype is not None,
        amp_kwargs={"dtype": config.dtype} if config.dtype is not None else None,
        compile=config.compile,
        channels_last=config.channels_last,
        augment=augment,
    )


def end_to_end(method: str, args, config: SpeedConfig, device: torch.device, dataset) -> dict[str, Any]:
    """Images/s of the real pipeline: compact cache -> DataLoader -> device augmentation -> trainer + handlers."""
    from monai.data import DataLoader

    from monai_ilm.transforms import DeviceAugment

    loader = DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
        persistent_workers=args.workers > 0,
    )
    augment = DeviceAugment.from_preset("nih", args.image_size, channels=3, seed=args.seed)
    epoch_length = args.warmup + args.steps * args.repeats
    trainer = pipeline_trainer(method, args, config, device, loader, augment, epoch_length)
    marks: list[float] = []

    def mark(engine) -> None:
        if engine.state.iteration >= args.warmup:
            _sync(device)
            marks.append(time.perf_counter())

    trainer.add_event_handler(Events.ITERATION_COMPLETED, mark)
    trainer.run()
    rates = chunk_rates(marks, args.steps, args.batch_size)
    result = {
        "images_per_s": statistics.median(rates),
        "chunks": rates,
        "peak_memory_gib": _peak_memory(device),
        "data_wait_share": trainer.state.metrics.get("data_wait_share"),
    }
    if device.type == "cuda" and not config.compile:  # a fresh compiled network would compile again
        result["host_syncs_per_step"] = count_syncs(method, args, config, device, loader, augment)
    return result


def count_syncs(method: str, args, config: SpeedConfig, device: torch.device, loader, augment) -> float:
    """Host synchronisations per step of the pipeline, counted by ``torch.cuda.set_sync_debug_mode("warn")``."""
    steps = 4
    trainer = pipeline_trainer(method, args, config, device, loader, augment, 2 + steps)
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: _arm(e, True))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: _arm(e, False))  # after every other handler
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer.run()
    torch.cuda.set_sync_debug_mode(0)
    return len([w for w in seen if "synchroniz" in str(w.message).lower()]) / steps


def _arm(engine, on: bool) -> None:
    if engine.state.iteration <= 2:  # the first iterations warm up (cuDNN autotuning may synchronise)
        return
    torch.cuda.set_sync_debug_mode("warn" if on else 0)


def compact_cache(root: Path, args) -> Any:
    """The uint8 grey cache of ``args.e2e_images`` synthetic NIH images (written at 256 px), as the bundles fill it."""
    from monai_ilm.data import CompactCacheDataset, load_datalist
    from monai_ilm.data.synthetic import make_nih_sample
    from monai_ilm.transforms import pretrain_pipeline

    make_nih_sample(
        root, n_patients=max(20, args.e2e_images // 2), images_per_patient=2, image_size=256, seed=args.seed
    )
    rows = load_datalist("nih", root, "train", seed=args.seed, require_all_classes=False)
    transform, _ = pretrain_pipeline("nih", args.image_size, 3, "device", seed=args.seed)
    return CompactCacheDataset(rows, transform, storage="memory", num_workers=args.threads)


# -------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    logging.getLogger("monai_ilm").setLevel(logging.WARNING)
    logging.getLogger("ignite").setLevel(logging.WARNING)
    if args.smoke:
        apply_smoke(args)
    if args.e2e_configs is None:
        args.e2e_configs = list(args.configs)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_throughput: no CUDA GPU available here; nothing measured.")
        print("(python benchmarks/gpu_throughput.py --device cpu --smoke runs the same code at toy sizes on the CPU.)")
        return {"name": NAME, "skipped": "no CUDA GPU available"}
    _bench.set_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here; tf32 would be its own config
        torch.backends.cudnn.allow_tf32 = False
    info = _bench.machine_info()
    results: dict[str, dict[str, Any]] = {}
    for method in args.methods:
        for name in args.configs:
            print(f"model-only {method} {name} ...", flush=True)
            results.setdefault(METHOD_KEYS[method], {})[f"model-only {name}"] = model_only(
                method, args, CONFIGS[name], device
            )
    if args.e2e_configs:
        with tempfile.TemporaryDirectory(prefix="ilm_gpu_bench_") as tmp:
            dataset = compact_cache(Path(tmp), args)
            for method in args.methods:
                for name in args.e2e_configs:
                    print(f"end-to-end {method} {name} ...", flush=True)
                    entry = end_to_end(method, args, CONFIGS[name], device, dataset)
                    bare = results.get(METHOD_KEYS[method], {}).get(f"model-only {name}")
                    entry["ratio_to_bare"] = entry["images_per_s"] / bare["images_per_s"] if bare else None
                    results.setdefault(METHOD_KEYS[method], {})[f"end-to-end {name}"] = entry
    table = []
    for method, entries in results.items():
        for setting, r in entries.items():
            syncs, ratio, wait = r.get("host_syncs_per_step"), r.get("ratio_to_bare"), r.get("data_wait_share")
            table.append(
                [
                    method,
                    setting,
                    f"{r['images_per_s']:.1f}",
                    "-" if ratio is None else f"{ratio:.3f}",
                    "-" if wait is None else f"{100 * wait:.1f} %",
                    "-" if syncs is None else f"{syncs:g}",
                    f"{r['peak_memory_gib']:.2f}",
                ]
            )
    method_results = results.get(METHOD_KEYS[TARGET["method"]], {})
    achieved = method_results.get(f"{TARGET['mode']} {TARGET['config']}", {}).get("images_per_s")
    met = achieved is not None and device.type == "cuda" and achieved >= TARGET["images_per_s"]
    device_name = info["gpu"] if device.type == "cuda" else "CPU"
    memory = "peak GiB (device)" if device.type == "cuda" else "peak GiB (host RSS)"
    _bench.print_report(
        f"throughput on {device_name}: {args.backbone}, {args.image_size} px, batch {args.batch_size}, "
        f"K={args.queue_size}, {args.workers} loader workers, median of {args.repeats} x {args.steps} steps",
        info,
        ["method", "setting", "images/s", "ratio to bare", "data wait", "host syncs/step", memory],
        table,
        [
            f"target: >= {TARGET['images_per_s']:.0f} images/s end to end, bf16 + channels_last, MoCo+MSE "
            + "on an H100 -> "
            + ("MET" if met else ("NOT MET" if device.type == "cuda" else "not applicable on CPU"))
        ],
    )
    payload = {
        "name": NAME,
        "command": "python benchmarks/gpu_throughput.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "device": device_name,
        "settings": {k: v for k, v in vars(args).items() if k != "output_dir"},
        "results": results,
        "target": {**TARGET, "achieved": achieved, "met": met},
    }
    _bench.write_result(NAME, payload, args.output_dir)
    return payload


if __name__ == "__main__":
    main()
