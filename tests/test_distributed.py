"""MoCo and the intermediate-layer losses under DDP: 2 processes on CPU with gloo against 1 process.

One launch of 2 spawned processes (``tests/distributed/workers.py``) runs every check; the tests
below compare what each rank saved with each other and with the same code run here in a single
process on the concatenated batches (per-rank batch B = 4 against one batch of 2B = 8). With
``batch_norm="sync"`` (GlobalBatchNorm) and the global Barlow Twins cross-correlation, the
2-process run must reproduce the single-process losses, gradients, parameters and queue up to float
rounding. A second test runs the NIH bundle's quick recipe with ``torchrun --nproc_per_node=2``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from monai_ilm.distributed import GlobalBatchNorm, exchange_rows
from monai_ilm.losses import IntermediateBarlowTwinsLoss, barlow_twins_loss
from tests.distributed import workers
from tests.distributed.workers import PER_RANK, WORLD

REPO = Path(__file__).resolve().parents[1]
SPAWN_TIMEOUT_S = 150
TORCHRUN_TIMEOUT_S = 240
TOL = {"rtol": 1e-4, "atol": 1e-6}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(fn, out_dir: Path, timeout: float = SPAWN_TIMEOUT_S) -> None:
    """Spawn ``WORLD`` processes running ``fn(rank, port, out_dir)``, each saving ``rank<r>.pt`` last; kill them
    all past ``timeout``.

    A process killed by a signal after every rank saved its results (and none wrote ``rank<r>.error``) is
    reported as a warning, not an error: that is the interpreter's teardown, after ``destroy_process_group``
    (seen once on 2 cores: "terminate called without an active exception", SIGABRT, both results written).
    """
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("OMP_NUM_THREADS", "1")
        context = mp.start_processes(
            fn, args=(free_port(), str(out_dir)), nprocs=WORLD, join=False, start_method="spawn"
        )
        deadline = time.monotonic() + timeout
        try:
            while not _joined(context, max(deadline - time.monotonic(), 0.1), out_dir):
                if time.monotonic() > deadline:
                    errors = "\n".join(p.read_text() for p in out_dir.glob("*.error"))
                    pytest.fail(f"the {WORLD} processes did not finish within {timeout} s.\n{errors}")
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.kill()


def _joined(context, timeout: float, out_dir: Path) -> bool:
    try:
        return context.join(timeout=timeout)
    except mp.ProcessExitedException as exited:
        finished = all((out_dir / f"rank{r}.pt").is_file() for r in range(WORLD))
        if exited.signal_name is None or not finished or any(out_dir.glob("*.error")):
            raise
        message = f"rank {exited.error_index} died of {exited.signal_name} after every rank saved its results"
        warnings.warn(message, stacklevel=2)
        return True


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> tuple[list[dict], Path]:
    out_dir = tmp_path_factory.mktemp("two_ranks")
    launch(workers.two_rank_worker, out_dir)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)], out_dir


@pytest.fixture(scope="module")
def reference() -> dict[str, dict]:
    """The same training runs in this (single) process, on the global batches of 2B."""
    return {
        "mse_sync": workers.run_training("mse", "sync"),
        "barlow_sync": workers.run_training("barlow", "sync"),
    }


def assert_close_to_scale(actual: torch.Tensor, expected: torch.Tensor, rel: float = 2e-5) -> None:
    """Equal up to float32 rounding: every element within ``rel`` of the largest |expected| (a wrong
    gradient scale, such as an off-by-world-size factor, is off by the order of that largest value)."""
    torch.testing.assert_close(actual, expected, rtol=1e-4, atol=rel * expected.abs().max().item())


def rows(r: int) -> slice:
    return slice(r * PER_RANK, (r + 1) * PER_RANK)


def test_all_reduce_with_grad_sums_gradients_over_ranks(ranks):
    results, _ = ranks
    for r in range(WORLD):
        torch.testing.assert_close(results[r]["all_reduce"]["forward"], torch.full((3,), 3.0))
        # rank r's loss is (r + 1)·Σx: the gradient reaching each input sums 1 + 2 over the ranks
        torch.testing.assert_close(results[r]["all_reduce"]["grad"], torch.full((3,), 3.0))


def test_global_batch_norm_equals_batch_norm_on_the_global_batch(ranks):
    results, _ = ranks
    for name, (x, target, ref_layer) in workers.batch_norm_cases().items():
        x = x.clone().requires_grad_(True)
        y = ref_layer(x)
        ((y - target) ** 2).mean().backward()
        averaged = sum(results[r]["global_bn"][name]["grads"][-2 * x.shape[1] :] for r in range(WORLD)) / WORLD
        torch.testing.assert_close(averaged, torch.cat([ref_layer.weight.grad, ref_layer.bias.grad]), **TOL)
        for r in range(WORLD):
            got = results[r]["global_bn"][name]
            torch.testing.assert_close(got["y"], y.detach()[rows(r)], **TOL)
            # each rank's input gradient is W times that of the global mean (DDP divides by W downstream)
            x_grad = got["grads"][: -2 * x.shape[1]].view_as(x[rows(r)]) / WORLD
            torch.testing.assert_close(x_grad, x.grad[rows(r)], **TOL)
            torch.testing.assert_close(got["running_mean"], ref_layer.running_mean, **TOL)
            torch.testing.assert_close(got["running_var"], ref_layer.running_var, **TOL)


def test_global_batch_norm_is_batch_norm_in_one_process():
    torch.manual_seed(0)
    ref = nn.BatchNorm2d(4)
    layer = GlobalBatchNorm(4)
    x = torch.randn(6, 4, 3, 3)
    torch.testing.assert_close(layer(x), ref(x), rtol=0, atol=0)
    torch.testing.assert_close(layer.running_var, ref.running_var, rtol=0, atol=0)
    assert set(layer.state_dict()) == set(ref.state_dict())


def test_exchange_rows_in_one_process_is_a_permutation():
    x = torch.arange(5.0)
    destination = torch.tensor([2, 0, 4, 1, 3])
    out = exchange_rows(x, destination)
    for g, d in enumerate(destination.tolist()):
        assert out[d] == x[g]


def test_batch_norm_modes_are_identical_in_one_process():
    batch = workers.global_batches(seed=6, num_batches=1)[0]
    outputs = {}
    for mode in ("shuffle", "sync", "local"):
        net, _ = workers.build("moco", mode)
        outputs[mode] = net(batch["view1"], batch["view2"])
    for mode in ("sync", "local"):
        for key in ("query", "key"):
            torch.testing.assert_close(outputs[mode][key], outputs["shuffle"][key], rtol=0, atol=0)
        for a, b in zip(outputs[mode]["key_stages"], outputs["shuffle"]["key_stages"]):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match="batch_norm"):
        workers.build("moco", "ghost")


def test_global_barlow_twins_loss_is_unchanged_in_one_process():
    feats = [torch.randn(6, c, 2, 2) for c in (8, 16)]
    keys = [torch.randn(6, c, 2, 2) for c in (8, 16)]
    values, losses = [], []
    for global_batch in (True, False):
        torch.manual_seed(0)
        losses.append(
            IntermediateBarlowTwinsLoss(in_channels=(8, 16), projector_dims=(12, 12), global_batch=global_batch)
        )
        values.append(losses[-1](feats, keys))
    assert any(isinstance(m, GlobalBatchNorm) for m in losses[0].projectors.modules())
    assert losses[0].state_dict().keys() == losses[1].state_dict().keys()
    torch.testing.assert_close(values[0], values[1], rtol=0, atol=0)


def test_barlow_twins_cross_correlation_over_the_global_batch(ranks):
    results, _ = ranks
    z1, z2 = (z.clone().requires_grad_(True) for z in workers.barlow_inputs())
    expected = barlow_twins_loss(z1, z2, 1.0, 5e-3)
    expected.backward()
    for r in range(WORLD):
        got = results[r]["barlow"]
        torch.testing.assert_close(got["loss"], expected.detach(), **TOL)
        torch.testing.assert_close(got["grad_z1"] / WORLD, z1.grad[rows(r)], **TOL)
        torch.testing.assert_close(got["grad_z2"] / WORLD, z2.grad[rows(r)], **TOL)


def test_shuffle_bn_unshuffles_keys_and_every_stage(ranks):
    results, _ = ranks
    for r in range(WORLD):
        got = results[r]["shuffle"]
        assert got["eval_key_error"] < 1e-6 and max(got["eval_stage_errors"]) < 1e-6
        assert got["train_key_error"] < 1e-5 and max(got["train_stage_errors"]) < 1e-5
        assert got["differs_from_local_bn"] > 1e-3
        assert "same batch size on every rank" in got["unequal_error"]


@pytest.mark.parametrize("method", ["mse", "barlow"])
def test_two_ranks_of_b_equal_one_process_of_2b(ranks, reference, method):
    results, _ = ranks
    ref = reference[f"{method}_sync"]
    runs = [results[r][f"{method}_sync"] for r in range(WORLD)]
    assert len(ref["losses"]) == len(runs[0]["losses"]) == 4
    for step, expected in enumerate(ref["losses"]):
        for key, value in expected.items():
            mean = sum(run["losses"][step][key] for run in runs) / WORLD
            assert mean == pytest.approx(value, rel=1e-4, abs=1e-6), (step, key)
    for step, expected in enumerate(ref["grads"]):
        for group, grad in expected.items():
            for run in runs:
                assert_close_to_scale(run["grads"][step][group], grad)
    for run in runs:
        torch.testing.assert_close(run["query_params"], ref["query_params"], **TOL)
        torch.testing.assert_close(run["key_params"], ref["key_params"], **TOL)
        torch.testing.assert_close(run["queue"], ref["queue"], **TOL)
        assert run["queue_ptr"] == ref["queue_ptr"] == 4 * WORLD * PER_RANK
        assert run["metrics"] == pytest.approx(ref["metrics"], rel=1e-4, abs=1e-6)
        assert run["val_metrics"].keys() == ref["val_metrics"].keys()
    if method == "mse":  # per-sample means in eval mode: the validation loss is the global one too
        assert runs[0]["val_metrics"] == pytest.approx(ref["val_metrics"], rel=1e-4, abs=1e-6)
    # epoch means are all-reduced, so every rank logs and selects checkpoints on the same values
    assert runs[0]["metrics"] == runs[1]["metrics"] and runs[0]["val_metrics"] == runs[1]["val_metrics"]


def test_shuffle_bn_training_keeps_queues_and_weights_identical(ranks):
    results, _ = ranks
    first, second = (results[r]["barlow_shuffle"] for r in range(WORLD))
    torch.testing.assert_close(first["queue"], second["queue"], rtol=0, atol=0)
    torch.testing.assert_close(first["query_params"], second["query_params"], rtol=0, atol=0)
    torch.testing.assert_close(first["key_params"], second["key_params"], rtol=0, atol=0)
    assert first["queue_ptr"] == second["queue_ptr"] == 4 * WORLD * PER_RANK
    assert first["metrics"] == second["metrics"]
    assert all(torch.isfinite(torch.tensor(list(step.values()))).all() for step in first["losses"])


def test_checkpoints_written_once(ranks):
    results, out_dir = ranks
    assert "AtomicCheckpointSaver" in results[0]["mse_sync"]["handlers"]
    assert "AtomicCheckpointSaver" not in results[1]["mse_sync"]["handlers"]
    assert "StatsHandler" not in results[1]["mse_sync"]["handlers"]
    assert results[1]["writes"] == []
    written = results[0]["writes"]
    assert sorted(written) == sorted(set(written)) == sorted(os.listdir(out_dir / "checkpoints"))
    assert {"network_epoch=1.pt", "network_epoch=2.pt", "checkpoint_final.pt"} == set(written)


def test_quick_bundle_with_torchrun_two_processes(tmp_path):
    from monai_ilm.data.synthetic import make_nih_sample

    data, output = make_nih_sample(tmp_path / "data", n_patients=30, image_size=64), tmp_path / "out"
    bundle = REPO / "bundles" / "nih_chestxray_ilm"
    configs = [str(bundle / "configs" / name) for name in ("pretrain.json", "quick.json", "multi_gpu.json")]
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nnodes=1",
        f"--nproc_per_node={WORLD}",
        "-m",
        "monai.bundle",
        "run",
        "--config_file",
        str(configs),
        "--bundle_root",
        str(bundle),
        "--dataset_dir",
        str(data),
        "--output_dir",
        str(output),
        "--method",
        "barlow",
        "--epoch_length",
        "2",
    ]
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=TORCHRUN_TIMEOUT_S)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-4000:]
    models = output / "pretrain" / "barlow_seed0" / "models"
    assert sorted(os.listdir(models)) == [
        "checkpoint_epoch=1.pt",
        "checkpoint_epoch=2.pt",
        "checkpoint_final.pt",
        "model.pt",
    ]
    assert log.count("saved final checkpoint") == 1  # only rank 0 has a saver
    state = torch.load(models / "checkpoint_final.pt", map_location="cpu", weights_only=False)
    assert not any(key.startswith("module.") for key in state["network"])


def test_handlers_that_only_log_save_or_monitor_run_on_rank_zero_only(monkeypatch, tmp_path):
    """monai-ilm's handlers say ``rank_zero_only`` themselves; those in collectives stay on every rank."""
    from monai.handlers import StatsHandler, ValidationHandler

    import monai_ilm.distributed as distributed
    from monai_ilm.handlers import (
        AtomicCheckpointSaver,
        EmbeddingSaver,
        IntermediateLayerLossHandler,
        LossPartsHandler,
        OnlineKNNHandler,
        RepresentationHealthHandler,
    )

    only_rank_zero = (AtomicCheckpointSaver, EmbeddingSaver, OnlineKNNHandler, RepresentationHealthHandler)
    everywhere = (IntermediateLayerLossHandler, LossPartsHandler, ValidationHandler)
    assert all(cls.rank_zero_only is True for cls in only_rank_zero)
    assert not any(getattr(cls, "rank_zero_only", False) for cls in everywhere)
    assert not {cls.__name__ for cls in (*only_rank_zero, *everywhere)} & set(distributed.RANK_ZERO_HANDLERS)

    kept = LossPartsHandler()
    handlers = [kept, StatsHandler(name="x"), EmbeddingSaver(str(tmp_path / "e.npz")), RepresentationHealthHandler()]
    assert distributed.rank_zero_only(handlers) == handlers  # one process is rank 0
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.rank_zero_only(handlers) == [kept]


def _abort_after_saving(rank: int, port: int, out_dir: str) -> None:
    torch.save({"rank": rank}, Path(out_dir) / f"rank{rank}.pt")
    if rank == 0:
        while not all((Path(out_dir) / f"rank{r}.pt").is_file() for r in range(WORLD)):
            time.sleep(0.05)
        os.abort()  # as torch's teardown did once: SIGABRT with every rank's results written


def _abort_before_saving(rank: int, port: int, out_dir: str) -> None:
    if rank == 0:
        os.abort()
    torch.save({"rank": rank}, Path(out_dir) / f"rank{rank}.pt")


def test_launch_tolerates_a_crash_only_after_every_rank_saved(tmp_path):
    with pytest.warns(UserWarning, match="rank 0 died of SIGABRT after every rank saved its results"):
        (tmp_path / "after").mkdir()
        launch(_abort_after_saving, tmp_path / "after")
    (tmp_path / "before").mkdir()
    with pytest.raises(mp.ProcessExitedException, match="SIGABRT"):
        launch(_abort_before_saving, tmp_path / "before")
