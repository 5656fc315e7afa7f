"""Step overhead: ``MoCoTrainer`` + handlers against a bare PyTorch loop doing the same math by hand.

What is measured
    Wall-clock seconds of ``--steps`` training steps of MoCo (plain), MoCo+MSE and MoCo+Barlow Twins in
    one process, from the same initial weights, on the same pre-made two-view batches (already on the
    device), at the same ``torch`` thread count:

    * ``trainer``: :class:`monai_ilm.engines.MoCoTrainer` with
      :class:`~monai_ilm.handlers.IntermediateLayerLossHandler` (MSE or Barlow Twins),
      :class:`~monai_ilm.handlers.MomentumUpdateHandler` and :class:`~monai_ilm.handlers.LossPartsHandler`;
    * ``bare``: a ``for`` loop over the same batches that writes out the same step by hand: query and
      key forward of the stage encoders, InfoNCE against the queue, the intermediate terms, backward,
      SGD step, the EMA of the key encoder (``torch._foreach`` ops), enqueue by slice assignment, and
      on-device running sums of the loss parts read once at the end.

    The two alternate step by step (bare, trainer, bare, trainer, ...) so that each pair of steps runs
    under the same load of a shared machine: the trainer's data loader runs (and times) one bare step
    before handing over each batch, and the trainer's time is the wall time of ``trainer.run()`` minus
    the bare steps inside it, so engine start-up, event dispatch and the epoch-end means all count
    against the trainer. Each of the ``--repeats`` runs starts both paths from fresh copies of the same
    initial network, loss and optimiser, after one untimed warm-up run.

    The reported ratio is the median, over every pair of adjacent steps of every run, of ``trainer
    step seconds / bare step seconds`` (a trainer step is measured between consecutive
    ``ITERATION_COMPLETED`` ends, so event dispatch and data hand-over count), with its interquartile
    range. Beside it: the median over runs of the whole-run ratio (start-up and epoch end included),
    the same in process CPU time, and the per-run fixed cost (run time beyond steps x median step).

Checks reported alongside
    * ``loss_match``: both paths run ``--check-steps`` steps from identical state; the largest absolute
      difference of the per-step total loss and of the query-encoder weights afterwards (same math =
      agreement to float rounding).
    * ``host_calls_per_step``: calls of ``Tensor.item/tolist/__float__/__int__/__bool__/numpy/cpu``
      made from Python between ``ITERATION_STARTED`` and the end of ``ITERATION_COMPLETED`` (on a GPU each
      would be a host synchronisation); the epoch-end means of ``LossPartsHandler`` are outside it.
      Also counted with the bundles' ``StatsHandler`` + ``TensorBoardStatsHandler`` attached, logging
      every iteration (``quick.json``'s ``log_interval: 1``) and every 50 iterations (``pretrain.json``'s
      default ``log_interval``), and with ``NaNGuard(check_every=1)`` (``quick.json``) and
      ``check_every=50`` (``pretrain.json``, where ``nan_check_interval`` follows ``log_interval``;
      JSON only).

Target (issue): ratio <= 1.05 for MoCo+MSE and MoCo+BT with ResNet-18, 64 px, batch 32 on CPU.

Usage::

    python benchmarks/step_overhead.py                  # defaults: resnet18, 64 px, batch 32, K = 65,536
    python benchmarks/step_overhead.py --repeats 9 --steps 10 --threads 2
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import logging
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402  (puts the repository root on sys.path)
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from ignite.engine import Events  # noqa: E402

from monai_ilm.engines import MoCoTrainer  # noqa: E402
from monai_ilm.handlers import IntermediateLayerLossHandler, LossPartsHandler, MomentumUpdateHandler  # noqa: E402
from monai_ilm.losses import InfoNCELoss, IntermediateBarlowTwinsLoss, IntermediateMSELoss  # noqa: E402
from monai_ilm.methods import trainable_parameters  # noqa: E402
from monai_ilm.networks import MoCo, resnet_encoder  # noqa: E402

NAME = "step_overhead"
RESULT_KEYS = {"moco": "moco", "mse": "moco_mse", "barlow": "moco_barlow"}
TARGET_RATIO = 1.05
HOST_CALLS = ("item", "tolist", "__float__", "__int__", "__bool__", "numpy", "cpu")


# --------------------------------------------------------------------------------------------- set-up
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--methods", nargs="+", default=["moco", "mse", "barlow"], choices=list(RESULT_KEYS))
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--image-size", type=int, default=64)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--queue-size", type=int, default=65536, help="K (the paper's 65,536)")
    p.add_argument("--pool-sizes", type=int, nargs=4, default=[8, 4, 2, 1], help="MSE pooling (the quick configs')")
    p.add_argument(
        "--projector-dims", type=int, nargs="+", default=[256, 256, 256], help="BT projector (quick configs')"
    )
    p.add_argument("--steps", type=int, default=8, help="timed steps per run")
    p.add_argument("--repeats", type=int, default=6, help="runs (each of --steps alternating step pairs)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps of each path before the first run")
    p.add_argument("--check-steps", type=int, default=3, help="steps of the loss-match check")
    p.add_argument("--threads", type=int, default=_bench.default_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output-dir", default=None, help="where <name>.json goes (default benchmarks/results)")
    return p


def make_batches(n: int, batch_size: int, image_size: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``n`` fixed two-view batches of smooth random images in [0, 1] (views differ by noise and a flip)."""
    g = torch.Generator().manual_seed(seed)
    batches = []
    for _ in range(n):
        base = F.interpolate(torch.rand(batch_size, 3, 8, 8, generator=g), size=image_size, mode="bilinear")
        noise = 0.05 * torch.randn((2, *base.shape), generator=g)
        batches.append({"view1": (base + noise[0]).clamp(0, 1), "view2": (base.flip(-1) + noise[1]).clamp(0, 1)})
    return batches


def build_models(method: str, args: argparse.Namespace) -> tuple[MoCo, torch.nn.Module | None]:
    """The initial network and intermediate loss every run starts from (seeded)."""
    torch.manual_seed(args.seed)
    net = MoCo(resnet_encoder(args.backbone), embedding_dim=128, queue_size=args.queue_size)
    if method == "mse":
        loss: torch.nn.Module | None = IntermediateMSELoss(weights=0.25, pool_sizes=tuple(args.pool_sizes))
    elif method == "barlow":
        loss = IntermediateBarlowTwinsLoss(in_channels=net.stage_channels, projector_dims=tuple(args.projector_dims))
    else:
        loss = None
    return net, loss


def make_optimizer(net: MoCo, loss: torch.nn.Module | None) -> torch.optim.Optimizer:
    return torch.optim.SGD(trainable_parameters(net, loss), lr=0.03, momentum=0.9, weight_decay=1e-4)


# ------------------------------------------------------------------------------------------- trainer
class TrainerPath:
    """Our engine: ``MoCoTrainer`` + ``IntermediateLayerLossHandler`` + momentum + loss-parts handlers."""

    def __init__(
        self,
        net: MoCo,
        loss: torch.nn.Module | None,
        batches,
        momentum: float = 0.999,
        epoch_length: int | None = None,
        extra_handlers: Sequence[Any] = (),
    ) -> None:
        self.net, self.loss = net, loss
        handlers: list[Any] = [MomentumUpdateHandler(momentum), LossPartsHandler(), *extra_handlers]
        if loss is not None:
            handlers.insert(0, IntermediateLayerLossHandler(loss))
        self.trainer = MoCoTrainer(
            device=torch.device("cpu"),
            max_epochs=1,
            train_data_loader=batches,
            network=net,
            optimizer=make_optimizer(net, loss),
            loss_function=InfoNCELoss(0.07),
            epoch_length=epoch_length or len(batches),
            train_handlers=handlers,
        )

    def run(self) -> list[float]:
        """Run one epoch over the batches; returns nothing useful (the losses are read in checks)."""
        self.trainer.run()
        return []

    def run_recording(self) -> list[float]:
        losses: list[float] = []
        self.trainer.add_event_handler(
            Events.ITERATION_COMPLETED, lambda e: losses.append(float(e.state.output["loss"]))
        )
        self.trainer.run()
        return losses


# ---------------------------------------------------------------------------------------- bare loop
class BarePath:
    """The same MoCo step written out by hand with plain PyTorch, as a user without the engine would."""

    def __init__(self, net: MoCo, loss: torch.nn.Module | None, batches: list[dict], momentum: float = 0.999) -> None:
        self.net, self.loss, self.batches, self.momentum = net, loss, batches, momentum
        self.optimizer = make_optimizer(net, loss)
        self.query_params, self.key_params = net.query_parameters(), net.key_parameters()
        self.temperature = 0.07
        self.ptr = 0
        self.target = torch.zeros(batches[0]["view1"].shape[0], dtype=torch.long)

    def _intermediate(self, q_stages: list[torch.Tensor], k_stages: list[torch.Tensor]) -> list[torch.Tensor]:
        if isinstance(self.loss, IntermediateMSELoss):
            return [
                w * F.mse_loss(F.adaptive_avg_pool2d(q, s), F.adaptive_avg_pool2d(k, s))
                for q, k, w, s in zip(q_stages, k_stages, self.loss.weights, self.loss.pool_sizes)
            ]
        if isinstance(self.loss, IntermediateBarlowTwinsLoss):
            terms = []
            for q, k, proj, w in zip(q_stages, k_stages, self.loss.projectors, self.loss.weights):
                z1, z2 = proj(q.mean(dim=(2, 3))), proj(k.mean(dim=(2, 3)))
                v1, m1 = torch.var_mean(z1, dim=0, unbiased=False)
                v2, m2 = torch.var_mean(z2, dim=0, unbiased=False)
                c = ((z1 - m1) / torch.sqrt(v1 + 1e-5)).t() @ ((z2 - m2) / torch.sqrt(v2 + 1e-5)) / z1.shape[0]
                diag = torch.diagonal(c)
                lam = w * self.loss.scale
                on, off = (1.0 - diag).pow(2).sum(), c.pow(2).sum() - diag.pow(2).sum()
                terms.append(lam * on + lam * self.loss.offdiag_weight * off)
            return terms
        return []

    def step(
        self, batch: dict[str, torch.Tensor], sums: list[torch.Tensor] | None
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        net = self.net
        x1, x2 = batch["view1"], batch["view2"]
        self.optimizer.zero_grad(set_to_none=True)
        q_stages = net.encoder_q.forward_stages(x1)
        q = net.projector_q(q_stages[-1].mean(dim=(2, 3)))
        with torch.no_grad():
            k_stages = net.encoder_k.forward_stages(x2)
            k = F.normalize(net.projector_k(k_stages[-1].mean(dim=(2, 3))), dim=1)
        q = F.normalize(q, dim=1)
        logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ net.queue], dim=1) / self.temperature
        infonce = F.cross_entropy(logits, self.target)
        terms = self._intermediate(q_stages, k_stages)
        total = infonce + sum(terms) if terms else infonce
        total.backward()
        self.optimizer.step()
        with torch.no_grad():
            torch._foreach_mul_(self.key_params, self.momentum)
            torch._foreach_add_(self.key_params, self.query_params, alpha=1.0 - self.momentum)
            n, size = k.shape[0], net.queue.shape[1]
            if self.ptr + n <= size:
                net.queue[:, self.ptr : self.ptr + n] = k.t()
            else:
                net.queue[:, (torch.arange(n) + self.ptr) % size] = k.t()
            self.ptr = (self.ptr + n) % size
        parts = [total.detach(), infonce.detach(), *(t.detach() for t in terms)]
        return total, parts if sums is None else [s + p for s, p in zip(sums, parts)]

    def run_recording(self) -> list[float]:
        self.net.train()
        if self.loss is not None:
            self.loss.train()
        return [float(self.step(batch, None)[0].detach()) for batch in self.batches]


PATHS = {"trainer": TrainerPath, "bare": BarePath}


def fresh(path: str, base_net: MoCo, base_loss: torch.nn.Module | None, batches: list[dict]):
    """A path object over deep copies of the initial network and loss (built outside any timing)."""
    return PATHS[path](copy.deepcopy(base_net), copy.deepcopy(base_loss), batches)


class _Interleaved:
    """Re-iterable data for the trainer that runs one bare step (timed) before handing over each batch."""

    def __init__(self, batches: list[dict], bare: BarePath) -> None:
        self.batches, self.bare = batches, bare
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.sums: list[torch.Tensor] | None = None

    def __iter__(self) -> Iterator[dict]:
        for batch in self.batches:
            wall, cpu = time.perf_counter(), time.process_time()
            _, self.sums = self.bare.step(batch, self.sums)
            self.wall.append(time.perf_counter() - wall)
            self.cpu.append(time.process_time() - cpu)
            yield batch


def interleaved_run(base_net: MoCo, base_loss: torch.nn.Module | None, batches: list[dict]) -> dict[str, Any]:
    """One trainer epoch whose data loader runs a bare step right before each trainer step.

    Trainer and bare steps alternate (B T B T ...), so each pair runs under the same machine load.
    The trainer's time is the wall (and process CPU) time of ``trainer.run()`` minus the bare steps
    inside it, so engine start-up and epoch-end handlers count against the trainer.
    """
    bare = fresh("bare", base_net, base_loss, batches)
    bare.net.train()
    if bare.loss is not None:
        bare.loss.train()
    data = _Interleaved(batches, bare)
    runner = TrainerPath(copy.deepcopy(base_net), copy.deepcopy(base_loss), data, epoch_length=len(batches))
    ends: list[float] = []
    runner.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: ends.append(time.perf_counter()))
    wall, cpu = time.perf_counter(), time.process_time()
    runner.run()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    inside_wall, inside_cpu = sum(data.wall), sum(data.cpu)
    read_wall, read_cpu = time.perf_counter(), time.process_time()
    [float(s) for s in data.sums or []]  # the bare loop reads its epoch means once, as LossPartsHandler does
    read_wall, read_cpu = time.perf_counter() - read_wall, time.process_time() - read_cpu
    # per-step trainer times from consecutive ITERATION_COMPLETED stamps, minus the bare step in between
    step_times = [ends[i] - ends[i - 1] - data.wall[i] for i in range(1, len(ends))]
    steps = [t / b for t, b in zip(step_times, data.wall[1:])]
    # what the run cost beyond its steps: engine start-up, first-step extras, epoch-end handlers
    fixed = (wall - inside_wall) - len(batches) * _bench.median(step_times) if step_times else None
    return {
        "trainer_s": wall - inside_wall,
        "bare_s": inside_wall + read_wall,
        "trainer_cpu_s": cpu - inside_cpu,
        "bare_cpu_s": inside_cpu + read_cpu,
        "step_ratios": steps,
        "fixed_overhead_s": fixed,
    }


# ------------------------------------------------------------------------------------------- checks
def loss_match(base_net: MoCo, base_loss: torch.nn.Module | None, batches: list[dict]) -> dict[str, float]:
    """Largest per-step loss difference and query-weight difference after the same steps on both paths."""
    trainer = fresh("trainer", base_net, base_loss, batches)
    bare = fresh("bare", base_net, base_loss, batches)
    loss_t, loss_b = trainer.run_recording(), bare.run_recording()
    with torch.no_grad():
        weight_diff = max(
            float((a - b).abs().max()) for a, b in zip(trainer.net.query_parameters(), bare.net.query_parameters())
        )
    queue_diff = float((trainer.net.queue - bare.net.queue).abs().max())
    return {
        "max_loss_diff": max(abs(a - b) for a, b in zip(loss_t, loss_b)),
        "max_query_weight_diff": weight_diff,
        "max_queue_diff": queue_diff,
        "losses_trainer": loss_t,
        "losses_bare": loss_b,
    }


@contextlib.contextmanager
def count_host_calls(counter: dict[str, int], active: list[bool]) -> Iterator[None]:
    """Count Python-level calls of tensor-to-host methods while ``active[0]`` is true."""
    saved = {name: torch.Tensor.__dict__.get(name) for name in HOST_CALLS}

    def wrap(name: str):
        original = getattr(torch.Tensor, name)

        def counted(self, *args, **kwargs):
            if active[0]:
                counter[name] = counter.get(name, 0) + 1
            return original(self, *args, **kwargs)

        return counted

    for name in HOST_CALLS:
        setattr(torch.Tensor, name, wrap(name))
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, value)


def host_calls_per_step(
    base_net: MoCo, base_loss: torch.nn.Module | None, batches: list[dict], extra_handlers: Sequence[Any] = ()
) -> dict[str, Any]:
    """Host calls made inside the trainer's iterations (between ITERATION_STARTED and ITERATION_COMPLETED)."""
    runner = TrainerPath(copy.deepcopy(base_net), copy.deepcopy(base_loss), batches, extra_handlers=extra_handlers)
    counter: dict[str, int] = {}
    active = [False]
    runner.trainer.add_event_handler(Events.ITERATION_STARTED, lambda _: active.__setitem__(0, True))
    runner.trainer.add_event_handler(Events.ITERATION_COMPLETED, lambda _: active.__setitem__(0, False))
    with count_host_calls(counter, active):
        runner.run()
    return {"per_step": sum(counter.values()) / len(batches), "by_method": counter}


def bundle_logging_host_calls(
    base_net: MoCo, base_loss: torch.nn.Module | None, batches: list[dict]
) -> dict[str, float]:
    """Host calls per step once the bundles' StatsHandler + TensorBoardStatsHandler are attached.

    Logging an iteration reads each loss part with ``.item()``; with ``iteration_log`` set to an
    interval filter, as ``bundles/*/configs/pretrain.json`` does with ``log_interval``, they read
    nothing in between. The logger is silenced (level INFO, no output), so only the reads are measured.
    """
    from monai.handlers import StatsHandler, TensorBoardStatsHandler

    logger = logging.getLogger("ilm_bench_stats")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    out = {}
    with tempfile.TemporaryDirectory(prefix="ilm_bench_tb_") as tmp:
        for label, every in (("every_iteration", True), ("interval_50", lambda engine, it: it % 50 == 0)):
            handlers = [
                StatsHandler(
                    iteration_log=every,
                    name="ilm_bench_stats",
                    output_transform=lambda o: o,
                    state_attributes=["moco_momentum"],
                ),
                TensorBoardStatsHandler(log_dir=tmp, iteration_log=every, output_transform=lambda o: o),
            ]
            out[label] = host_calls_per_step(base_net, base_loss, batches, handlers)["per_step"]
    from monai_ilm.handlers import NaNGuard

    for every in (1, 50):
        guard = NaNGuard(check_every=every, modules=base_loss)  # a copy of the loss is used; only reads are counted
        out[f"nan_guard_check_every_{every}"] = host_calls_per_step(base_net, base_loss, batches, [guard])["per_step"]
    return out


# --------------------------------------------------------------------------------------------- main
def measure_method(method: str, args: argparse.Namespace) -> dict[str, Any]:
    base_net, base_loss = build_models(method, args)
    batches = make_batches(args.steps, args.batch_size, args.image_size, args.seed)
    warm = batches[: max(1, args.warmup)]
    interleaved_run(base_net, base_loss, warm)  # untimed warm-up of both paths (allocator, oneDNN primitives)
    check = loss_match(base_net, base_loss, batches[: max(1, min(args.check_steps, len(batches)))])
    few = batches[: max(1, min(2, len(batches)))]
    host = host_calls_per_step(base_net, base_loss, few)
    host["bundle_logging_per_step"] = bundle_logging_host_calls(base_net, base_loss, few)
    runs = [interleaved_run(base_net, base_loss, batches) for _ in range(args.repeats)]
    run_ratios = [r["trainer_s"] / r["bare_s"] for r in runs]
    step_ratios = [x for r in runs for x in r["step_ratios"]]
    fixed = [r["fixed_overhead_s"] for r in runs if r["fixed_overhead_s"] is not None]
    return {
        # headline: median over every (bare, trainer) pair of adjacent steps, the figure least moved by load
        "ratio_median": _bench.median(step_ratios) if step_ratios else _bench.median(run_ratios),
        "step_ratios": step_ratios,
        "run_ratio_median": _bench.median(run_ratios),
        "run_ratios": run_ratios,
        "cpu_ratio_median": _bench.median([r["trainer_cpu_s"] / r["bare_cpu_s"] for r in runs]),
        "fixed_overhead_ms": 1000.0 * _bench.median(fixed) if fixed else None,
        "ms_per_step": {
            "trainer": 1000.0 * _bench.median([r["trainer_s"] for r in runs]) / args.steps,
            "bare": 1000.0 * _bench.median([r["bare_s"] for r in runs]) / args.steps,
        },
        "runs": runs,
        "loss_match": check,
        "host_calls": host,
    }


def _host_calls(host: dict[str, Any]) -> str:
    logging_calls = host["bundle_logging_per_step"]
    return f"{host['per_step']:.0f} / {logging_calls['every_iteration']:.0f} / {logging_calls['interval_50']:.0f}"


def _quartiles(values: list[float]) -> str:
    if len(values) < 4:
        return "-"
    q = statistics.quantiles(values, n=4)
    return f"{q[0]:.3f}-{q[2]:.3f}"


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    _bench.set_threads(args.threads)
    info = _bench.machine_info()
    settings = {k: v for k, v in vars(args).items() if k != "output_dir"}
    results = {method: measure_method(method, args) for method in args.methods}
    ratios = {RESULT_KEYS[m]: r["ratio_median"] for m, r in results.items()}
    met = all(ratios[k] <= TARGET_RATIO for k in ("moco_mse", "moco_barlow") if k in ratios)
    rows = []
    for method, r in results.items():
        rows.append(
            [
                RESULT_KEYS[method],
                f"{r['ms_per_step']['trainer']:.1f}",
                f"{r['ms_per_step']['bare']:.1f}",
                f"{r['ratio_median']:.3f}",
                _quartiles(r["step_ratios"]),
                f"{r['run_ratio_median']:.3f}",
                f"{r['cpu_ratio_median']:.3f}",
                "-" if r["fixed_overhead_ms"] is None else f"{r['fixed_overhead_ms']:.0f}",
                f"{r['loss_match']['max_loss_diff']:.1e}",
                _host_calls(r["host_calls"]),
            ]
        )
    headers = [
        "method",
        "trainer ms/step",
        "bare ms/step",
        "median step ratio",
        "IQR",
        "run ratio",
        "run CPU ratio",
        "per-run fixed ms",
        "|loss diff|",
        "host calls/step (+log every it / every 50)",
    ]
    title = (
        f"step overhead: {args.backbone}, {args.image_size} px, batch {args.batch_size}, K={args.queue_size}, "
        f"{args.repeats} runs of {args.steps} alternating steps"
    )
    notes = [f"target: median ratio <= {TARGET_RATIO} for moco_mse and moco_barlow -> {'MET' if met else 'NOT MET'}"]
    _bench.print_report(title, info, headers, rows, notes)
    payload = {
        "name": NAME,
        "command": "python benchmarks/step_overhead.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "settings": settings,
        "ratios": ratios,
        "target": {"max_ratio": TARGET_RATIO, "met": met},
        "methods": {RESULT_KEYS[m]: r for m, r in results.items()},
    }
    _bench.write_result(NAME, payload, args.output_dir)
    return payload


if __name__ == "__main__":
    main()
