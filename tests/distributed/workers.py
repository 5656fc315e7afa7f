"""Code run by the 2-process tests of ``tests/test_distributed.py`` (and by the 1-process reference).

Everything here is importable by spawned workers. ``two_rank_worker`` runs every distributed check
of one launch and saves what it saw as ``rank<r>.pt``; the test process compares those files with
each other and with the same runs made in a single process on the concatenated batches.
"""

from __future__ import annotations

import copy
import itertools
import os
import traceback
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from monai_ilm.distributed import GlobalBatchNorm, all_reduce_with_grad, rank, rank_zero_only, world_size
from monai_ilm.engines import MoCoEvaluator, MoCoTrainer
from monai_ilm.handlers import (
    AtomicCheckpointSaver,
    IntermediateLayerLossHandler,
    LossPartsHandler,
    MomentumUpdateHandler,
)
from monai_ilm.losses import IntermediateBarlowTwinsLoss, IntermediateMSELoss, barlow_twins_loss
from monai_ilm.methods import trainable_parameters
from monai_ilm.networks import MoCo
from monai_ilm.networks.backbones import StageEncoder
from tests.helpers import pattern_batches

WORLD = 2
PER_RANK = 4  # B; the single-process reference uses 2B
IMAGE = 16


class TinyStageEncoder(StageEncoder):
    """A 4-stage conv-BN-ReLU network: every stage has batch statistics, and it trains in milliseconds."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (8, 16, 16, 32)) -> None:
        super().__init__()
        self.stage_channels = tuple(widths)
        chans = (8, *widths)
        self.stem = _conv_bn(in_channels, 8, 1)
        self.stages = nn.ModuleList(
            _conv_bn(a, b, 1 if i == 0 else 2) for i, (a, b) in enumerate(itertools.pairwise(chans))
        )

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = self.stem(x)
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


def _conv_bn(a: int, b: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(a, b, 3, stride, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU())


def build(method: str, batch_norm: str) -> tuple[MoCo, nn.Module | None]:
    """The same initial MoCo and intermediate loss in every process (seeded)."""
    torch.manual_seed(0)
    net = MoCo(TinyStageEncoder(), embedding_dim=16, queue_size=48, batch_norm=batch_norm)
    if method == "mse":
        return net, IntermediateMSELoss(pool_sizes=(4, 4, 2, 1))
    if method == "barlow":
        return net, IntermediateBarlowTwinsLoss(in_channels=net.stage_channels, projector_dims=(32, 32), weights=1e-2)
    return net, None


def global_batches(seed: int, num_batches: int = 2) -> list[dict]:
    return pattern_batches(num_batches, WORLD * PER_RANK, size=IMAGE, seed=seed)


def shard(batches: list[dict]) -> list[dict]:
    """This rank's rows of every global batch (rank r holds rows r·B … r·B + B − 1); all rows with one process."""
    if world_size() == 1:
        return batches
    lo = rank() * PER_RANK
    return [{key: value[lo : lo + PER_RANK] for key, value in batch.items()} for batch in batches]


class Recorder:
    """Keeps the gradients after each backward pass and the scalar outputs after each iteration."""

    def __init__(self, net: MoCo, loss: nn.Module | None) -> None:
        self.net, self.loss = net, loss
        self.grads: list[dict[str, torch.Tensor]] = []
        self.losses: list[dict[str, float]] = []

    def attach(self, engine) -> None:
        from ignite.engine import Events
        from monai.engines.utils import IterationEvents

        engine.add_event_handler(IterationEvents.BACKWARD_COMPLETED, self.on_backward)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self.on_iteration)

    def on_backward(self, engine) -> None:
        grads = {"query": _flat_grads(self.net.query_parameters())}
        if self.loss is not None and any(True for _ in self.loss.parameters()):
            grads["projectors"] = _flat_grads(self.loss.parameters())
        self.grads.append(grads)

    def on_iteration(self, engine) -> None:
        self.losses.append({key: float(value) for key, value in engine.state.output.items()})


def _flat_grads(params) -> torch.Tensor:
    return torch.cat([p.grad.detach().flatten().clone() for p in params])


def run_training(method: str, batch_norm: str = "sync", save_dir: str | None = None) -> dict:
    """Two epochs of two MoCo steps, then a validation pass; returns everything the tests compare.

    With one process the batches are the global ones (2B); under torch.distributed each rank
    trains a DDP-wrapped copy on its B rows, as the bundles' ``multi_gpu.json`` does.
    """
    net, loss = build(method, batch_norm)
    network = DistributedDataParallel(net) if world_size() > 1 else net
    optimizer = torch.optim.SGD(trainable_parameters(net, loss), lr=0.05, momentum=0.9, weight_decay=1e-4)
    recorder = Recorder(net, loss)
    handlers: list = [MomentumUpdateHandler(0.99), LossPartsHandler(), recorder]
    if loss is not None:
        handlers.insert(0, IntermediateLayerLossHandler(loss))
    if save_dir is not None:
        from monai.handlers import StatsHandler

        saver = AtomicCheckpointSaver(
            save_dir,
            {"network": net},
            save_interval=1,
            n_saved=2,
            save_final=True,
            final_filename="checkpoint_final.pt",
        )
        handlers = rank_zero_only([*handlers, StatsHandler(name="dist_test", output_transform=lambda out: out), saver])
    trainer = MoCoTrainer("cpu", 2, shard(global_batches(seed=1)), network, optimizer, train_handlers=handlers)
    trainer.run()
    val_handlers: list = [LossPartsHandler(prefix="val_")]
    if loss is not None:
        val_handlers.insert(0, IntermediateLayerLossHandler(loss))
    evaluator = MoCoEvaluator("cpu", shard(global_batches(seed=2)), network, val_handlers=val_handlers)
    evaluator.run()
    return {
        "grads": recorder.grads,
        "losses": recorder.losses,
        "metrics": dict(trainer.state.metrics),
        "val_metrics": dict(evaluator.state.metrics),
        "queue": net.queue.clone(),
        "queue_ptr": int(net.queue_ptr),
        "query_params": torch.cat([p.detach().flatten() for p in net.query_parameters()]),
        "key_params": torch.cat([p.detach().flatten() for p in net.key_parameters()]),
        "handlers": [type(h).__name__ for h in handlers],
    }


def batch_norm_cases() -> dict[str, tuple[torch.Tensor, torch.Tensor, nn.Module]]:
    """Inputs, targets and an initialised nn.BatchNorm layer for 2B rows, identical in every process."""
    torch.manual_seed(3)
    cases = {}
    for name, shape, ref_layer in (
        ("2d", (WORLD * PER_RANK, 5, 6, 6), nn.BatchNorm2d(5)),
        ("1d", (WORLD * PER_RANK, 7), nn.BatchNorm1d(7)),
    ):
        x = torch.randn(shape) * 3 + 1
        target = torch.randn(shape)
        with torch.no_grad():
            ref_layer.weight.uniform_(0.5, 1.5)
            ref_layer.bias.uniform_(-0.5, 0.5)
        cases[name] = (x, target, ref_layer)
    return cases


def check_global_batch_norm() -> dict:
    """GlobalBatchNorm on B rows per rank (compared with nn.BatchNorm on 2B rows by the test)."""
    out = {}
    for name, (x, target, ref_layer) in batch_norm_cases().items():
        layer = GlobalBatchNorm(x.shape[1])
        layer.load_state_dict(ref_layer.state_dict())
        lo = rank() * PER_RANK
        x_local = x[lo : lo + PER_RANK].clone().requires_grad_(True)
        y = layer(x_local)
        # the per-rank loss is a mean over the local rows: averaged over ranks it is the global mean
        ((y - target[lo : lo + PER_RANK]) ** 2).mean().backward()
        grads = torch.cat([x_local.grad.flatten(), layer.weight.grad, layer.bias.grad])
        out[name] = {
            "y": y.detach(),
            "grads": grads,
            "running_mean": layer.running_mean.clone(),
            "running_var": layer.running_var.clone(),
        }
    return out


def barlow_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    torch.manual_seed(4)
    return torch.randn(WORLD * PER_RANK, 6), torch.randn(WORLD * PER_RANK, 6)


def check_barlow_twins() -> dict:
    """barlow_twins_loss(global_batch=True) on B rows per rank: the loss and the gradient of each rank's z."""
    z1, z2 = barlow_inputs()
    lo = rank() * PER_RANK
    a = z1[lo : lo + PER_RANK].clone().requires_grad_(True)
    b = z2[lo : lo + PER_RANK].clone().requires_grad_(True)
    value = barlow_twins_loss(a, b, 1.0, 5e-3, global_batch=True)
    value.backward()
    return {"loss": value.detach(), "grad_z1": a.grad, "grad_z2": b.grad}


def check_shuffle_bn() -> dict:
    """Shuffle-BN returns each sample's key and stage outputs to its own rank and row."""
    net, _ = build("moco", "shuffle")
    batch = global_batches(seed=5, num_batches=1)[0]
    x1, x2 = shard([batch])[0]["view1"], shard([batch])[0]["view2"]
    result = {}

    # eval-mode key encoder: every output is per-sample, so shuffling must change nothing at all
    net.train()
    net.encoder_k.eval()
    out = net(x1, x2)
    with torch.no_grad():
        key, stages = net._encode_key(x2)
    result["eval_key_error"] = (out["key"] - key).abs().max().item()
    result["eval_stage_errors"] = [(a - b).abs().max().item() for a, b in zip(out["key_stages"], stages)]

    # train-mode key encoder: the outputs are those of the shards of one shared permutation (drawn on rank 0)
    net.train()
    reference = copy.deepcopy(net.encoder_k), copy.deepcopy(net.projector_k)
    local = copy.deepcopy(net.encoder_k), copy.deepcopy(net.projector_k)
    torch.manual_seed(11)
    out = net(x1, x2)
    torch.manual_seed(11)
    order = torch.randperm(WORLD * PER_RANK)
    shuffled = batch["view2"][order]
    expected_key = out["key"].new_empty(WORLD * PER_RANK, out["key"].shape[1])
    expected_stages = [None] * len(out["key_stages"])
    with torch.no_grad():
        for r in range(WORLD):
            rows = order[r * PER_RANK : (r + 1) * PER_RANK]
            encoder, projector = copy.deepcopy(reference[0]), copy.deepcopy(reference[1])
            stages = encoder.forward_stages(shuffled[r * PER_RANK : (r + 1) * PER_RANK])
            expected_key[rows] = projector(stages[-1].flatten(2).mean(2))
            for i, s in enumerate(stages):
                if expected_stages[i] is None:
                    expected_stages[i] = s.new_empty((WORLD * PER_RANK, *s.shape[1:]))
                expected_stages[i][rows] = s
        local_stages = local[0].forward_stages(x2)
    lo = rank() * PER_RANK
    result["train_key_error"] = (out["key"] - expected_key[lo : lo + PER_RANK]).abs().max().item()
    result["train_stage_errors"] = [
        (a - b[lo : lo + PER_RANK]).abs().max().item() for a, b in zip(out["key_stages"], expected_stages)
    ]
    # and the shuffled statistics really differ from this rank's own (per-rank BN would give local_stages)
    result["differs_from_local_bn"] = (out["key_stages"][0] - local_stages[0]).abs().max().item()

    # unequal batches are refused on every rank, before any other collective
    try:
        net(x1[: PER_RANK - rank()], x2[: PER_RANK - rank()])
        result["unequal_error"] = ""
    except ValueError as err:
        result["unequal_error"] = str(err)
    return result


def check_all_reduce_backward() -> dict:
    """The backward pass of all_reduce_with_grad sums the incoming gradients over ranks."""
    x = torch.full((3,), float(rank() + 1), requires_grad=True)
    total = all_reduce_with_grad(x)
    (total * (rank() + 1)).sum().backward()
    return {"forward": total.detach(), "grad": x.grad}


def two_rank_worker(local_rank: int, port: int, out_dir: str) -> None:
    """Entry point of each spawned process: initialise gloo, run every check, save ``rank<r>.pt``."""
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=local_rank, world_size=WORLD)
    try:
        from monai_ilm.handlers import checkpoint_saver

        writes: list[str] = []
        original = checkpoint_saver._AtomicDiskSaver.__call__

        def counting_call(self, checkpoint, filename, metadata=None):
            writes.append(self.filename or filename)
            return original(self, checkpoint, filename, metadata)

        checkpoint_saver._AtomicDiskSaver.__call__ = counting_call
        results = {
            "all_reduce": check_all_reduce_backward(),
            "global_bn": check_global_batch_norm(),
            "barlow": check_barlow_twins(),
            "shuffle": check_shuffle_bn(),
            "mse_sync": run_training("mse", "sync", save_dir=str(Path(out_dir) / "checkpoints")),
            "barlow_sync": run_training("barlow", "sync"),
            "barlow_shuffle": run_training("barlow", "shuffle"),
        }
        results["writes"] = writes
        torch.save(results, Path(out_dir) / f"rank{local_rank}.pt")
    except Exception:
        (Path(out_dir) / f"rank{local_rank}.error").write_text(traceback.format_exc())
        raise
    finally:
        dist.destroy_process_group()
