"""GPU throughput: images/s of MoCo, MoCo+MSE and MoCo+BT (ResNet-50, 224 px) under speed settings.

What is measured
    Images/s (training samples per second; each sample is a pair of 224 px views, both encoded) of
    :class:`~monai_ilm.engines.MoCoTrainer` with the paper's settings (K = 65,536, linear head, MSE
    pooled to 16/16/4/4, Barlow Twins projectors 2048-2048-2048, SGD) for each configuration:

    * ``fp32``: float32, NCHW;
    * ``bf16``: ``amp=True, amp_kwargs={"dtype": torch.bfloat16}`` (autocast);
    * ``bf16-cl``: bf16 and ``channels_last`` (network and input batches);
    * ``bf16-cl-compile``: bf16, channels_last and ``MoCoTrainer(compile=True)`` (``torch.compile``);
    * ``fp32-cl``, ``fp16-cl`` (gradient scaler) on request.

    ``model-only``: the batches are already on the device (4 distinct random batches, cycled).
    ``end to end``: the same trainer fed by the NIH preset's two-view pipeline through a MONAI
    ``DataLoader`` (``--workers`` processes, pinned memory, ``non_blocking``) over synthetic NIH images
    written at 256 px, as the bundles' full recipe does (no cache).

    One ``trainer.run()`` per configuration: its first epoch (``--steps`` steps) warms up cuDNN and
    compiles; each of the next ``--repeats`` epochs of ``--steps`` steps is timed between
    ``torch.cuda.synchronize()`` calls and the median epoch is reported. On CUDA, a few extra steps
    run under ``torch.cuda.set_sync_debug_mode("warn")`` and the host synchronisations per step are
    counted (target 0: nothing in the step reads a value back to the host).

Target (issue): >= 1,500 images/s model-only with bf16 + channels_last for MoCo+MSE on one H100.

Without a CUDA GPU the script prints that and exits 0, unless ``--device cpu`` is given;
``--device cpu --smoke`` is a tiny sanity run (ResNet-18, 32 px, batch 4) of the same code.

Usage::

    python benchmarks/gpu_throughput.py                          # on a GPU machine
    python benchmarks/gpu_throughput.py --configs fp32 bf16-cl --batch-size 256
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
from monai_ilm.handlers import IntermediateLayerLossHandler, LossPartsHandler, MomentumUpdateHandler  # noqa: E402
from monai_ilm.losses import InfoNCELoss  # noqa: E402
from monai_ilm.methods import intermediate_loss, trainable_parameters  # noqa: E402
from monai_ilm.networks import MoCo, resnet_encoder  # noqa: E402

NAME = "gpu_throughput"
TARGET = {"images_per_s": 1500.0, "method": "mse", "config": "bf16-cl", "mode": "model-only"}
METHOD_KEYS = {"moco": "moco", "mse": "moco_mse", "barlow": "moco_barlow"}


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


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    p.add_argument("--smoke", action="store_true", help="tiny sizes: ResNet-18, 32 px, batch 4, 2 steps")
    p.add_argument("--methods", nargs="+", default=list(METHOD_KEYS), choices=list(METHOD_KEYS))
    p.add_argument(
        "--configs", nargs="+", default=["fp32", "bf16", "bf16-cl", "bf16-cl-compile"], choices=list(CONFIGS)
    )
    p.add_argument(
        "--e2e-configs", nargs="*", default=["bf16-cl"], choices=list(CONFIGS), help="configs also run end to end"
    )
    p.add_argument("--backbone", default="resnet50")
    p.add_argument("--image-size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--queue-size", type=int, default=65536)
    p.add_argument("--steps", type=int, default=30, help="timed steps per epoch")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs")
    p.add_argument("--workers", type=int, default=min(16, _bench.default_threads()), help="end-to-end loader processes")
    p.add_argument("--e2e-images", type=int, default=768, help="distinct synthetic images for the end-to-end run")
    p.add_argument("--threads", type=int, default=_bench.default_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default=None, help="where <name>.json goes (default benchmarks/results)")
    return p


def apply_smoke(args: argparse.Namespace) -> None:
    args.backbone, args.image_size, args.batch_size, args.queue_size = "resnet18", 32, 4, 64
    args.steps, args.repeats, args.workers, args.e2e_images = 2, 1, 0, 16
    if args.configs == build_parser().get_default("configs"):
        args.configs = ["fp32", "bf16-cl"]


# ------------------------------------------------------------------------------------------- model
def build(method: str, args: argparse.Namespace, config: SpeedConfig, device: torch.device):
    """Network, intermediate loss and optimiser of one method, placed and formatted for ``config``."""
    torch.manual_seed(args.seed)
    net = MoCo(resnet_encoder(args.backbone), embedding_dim=128, queue_size=args.queue_size).to(device)
    small = args.backbone in ("resnet18", "resnet34")
    loss = intermediate_loss(
        method,
        net.stage_channels,
        mse_pool_sizes=[8, 4, 2, 1] if args.image_size < 128 else "reference",
        barlow_projector_dims=[256, 256, 256] if small else [2048, 2048, 2048],
    )
    optimizer = torch.optim.SGD(trainable_parameters(net, loss), lr=0.03, momentum=0.9, weight_decay=1e-4)
    return net, loss, optimizer


def make_trainer(
    method: str, args, config: SpeedConfig, device: torch.device, data, epoch_length: int, max_epochs: int
):
    net, loss, optimizer = build(method, args, config, device)
    handlers: list[Any] = [MomentumUpdateHandler(0.999), LossPartsHandler()]
    if loss is not None:
        handlers.insert(0, IntermediateLayerLossHandler(loss))
    return MoCoTrainer(
        device=device,
        max_epochs=max_epochs,
        train_data_loader=data,
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
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def device_batches(args, config: SpeedConfig, device: torch.device, count: int = 4) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator(device="cpu").manual_seed(args.seed)
    fmt = torch.channels_last if config.channels_last else torch.contiguous_format
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    return [
        {k: torch.rand(shape, generator=g).to(device).contiguous(memory_format=fmt) for k in ("view1", "view2")}
        for _ in range(count)
    ]


# --------------------------------------------------------------------------------------- measuring
def timed_epochs(trainer: MoCoTrainer, device: torch.device, steps: int, batch_size: int) -> list[float]:
    """Run the trainer; images/s of every epoch after the first (the warm-up)."""
    starts: dict[int, float] = {}
    rates: list[float] = []

    def start(engine) -> None:
        _sync(device)
        starts[engine.state.epoch] = time.perf_counter()

    def stop(engine) -> None:
        _sync(device)
        if engine.state.epoch > 1:
            rates.append(steps * batch_size / (time.perf_counter() - starts[engine.state.epoch]))

    trainer.add_event_handler(Events.EPOCH_STARTED, start)
    trainer.add_event_handler(Events.EPOCH_COMPLETED, stop)
    trainer.run()
    return rates


def model_only(method: str, args, config: SpeedConfig, device: torch.device) -> dict[str, Any]:
    batches = device_batches(args, config, device)
    steps = args.steps
    data = [batches[i % len(batches)] for i in range(steps)]
    trainer = make_trainer(method, args, config, device, data, steps, 1 + args.repeats)
    rates = timed_epochs(trainer, device, steps, args.batch_size)
    result = {"images_per_s": statistics.median(rates), "epochs": rates}
    if device.type == "cuda":
        # a fresh compiled network would compile again: count the syncs of the eager configs only
        result["host_syncs_per_step"] = None if config.compile else count_syncs(method, args, config, device, data[:3])
        result["peak_memory_gib"] = torch.cuda.max_memory_allocated(device) / 2**30
        torch.cuda.reset_peak_memory_stats(device)
    return result


def count_syncs(method: str, args, config: SpeedConfig, device: torch.device, data: list[dict]) -> float:
    """Host synchronisations per step, counted by ``torch.cuda.set_sync_debug_mode("warn")``."""
    trainer = make_trainer(method, args, config, device, data, len(data), 2)
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda e: _arm(e, True))
    trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda e: _arm(e, False))  # after every other handler
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        trainer.run()
    torch.cuda.set_sync_debug_mode(0)
    syncs = [w for w in seen if "synchroniz" in str(w.message).lower()]
    return len(syncs) / len(data)  # epoch 2 only is armed


def _arm(engine, on: bool) -> None:
    if engine.state.epoch < 2:  # epoch 1 warms up (cuDNN autotuning may synchronise)
        return
    torch.cuda.set_sync_debug_mode("warn" if on else 0)


def end_to_end(method: str, args, config: SpeedConfig, device: torch.device, rows: list[dict]) -> dict[str, Any]:
    from monai.data import DataLoader, Dataset

    from monai_ilm.transforms import pretrain_transforms

    transform = pretrain_transforms("nih", image_size=args.image_size, channels=3)
    needed = args.batch_size * args.steps
    data = (rows * (needed // len(rows) + 1))[:needed]
    loader = DataLoader(
        Dataset(data, transform),
        batch_size=args.batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.workers,
        pin_memory=device.type == "cuda",
    )
    trainer = make_trainer(method, args, config, device, loader, args.steps, 1 + args.repeats)
    rates = timed_epochs(trainer, device, args.steps, args.batch_size)
    return {"images_per_s": statistics.median(rates), "epochs": rates}


def sample_rows(root: Path, count: int, seed: int) -> list[dict]:
    from monai_ilm.data import load_datalist
    from monai_ilm.data.synthetic import make_nih_sample

    make_nih_sample(root, n_patients=max(20, count // 2), images_per_patient=2, image_size=256, seed=seed)
    return load_datalist("nih", root, "train", seed=seed, require_all_classes=False)


# -------------------------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    logging.getLogger("monai_ilm").setLevel(logging.WARNING)
    if args.smoke:
        apply_smoke(args)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("gpu_throughput: no CUDA GPU available here; nothing measured.")
        print("(python benchmarks/gpu_throughput.py --device cpu --smoke runs the same code at toy sizes on the CPU.)")
        return {"name": NAME, "skipped": "no CUDA GPU available"}
    _bench.set_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = False  # fp32 means fp32 here; tf32 would be its own config
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
            rows = sample_rows(Path(tmp), args.e2e_images, args.seed)
            for method in args.methods:
                for name in args.e2e_configs:
                    print(f"end-to-end {method} {name} ...", flush=True)
                    results[METHOD_KEYS[method]][f"end-to-end {name}"] = end_to_end(
                        method, args, CONFIGS[name], device, rows
                    )
    table = []
    for method, entries in results.items():
        for setting, r in entries.items():
            syncs = r.get("host_syncs_per_step")
            mem = r.get("peak_memory_gib")
            table.append(
                [
                    method,
                    setting,
                    f"{r['images_per_s']:.1f}",
                    "-" if syncs is None else f"{syncs:g}",
                    "-" if mem is None else f"{mem:.1f}",
                ]
            )
    key = f"model-only {TARGET['config']}"
    achieved = results.get(METHOD_KEYS[TARGET["method"]], {}).get(key, {}).get("images_per_s")
    met = achieved is not None and device.type == "cuda" and achieved >= TARGET["images_per_s"]
    device_name = info["gpu"] if device.type == "cuda" else "CPU"
    _bench.print_report(
        f"throughput on {device_name}: {args.backbone}, {args.image_size} px, batch {args.batch_size}, "
        f"K={args.queue_size}, median of {args.repeats} epochs x {args.steps} steps",
        info,
        ["method", "setting", "images/s", "host syncs/step", "peak GiB"],
        table,
        [
            f"target: >= {TARGET['images_per_s']:.0f} images/s model-only bf16 + channels_last for MoCo+MSE "
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
