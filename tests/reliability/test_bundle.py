"""The real bundle: a run killed with SIGKILL and resumed with the same command ends bitwise identical to
an uninterrupted run, and a bad setting stops the run before anything is built. (A resume at an epoch boundary
is checked on the engine in ``test_resume.py``.)

What this needs is in ``pretrain.json``: ``RNGState`` in the checkpoint, ``ResumableSampler`` for the
training data, ``NaNGuard``, and the settings validation in ``initialize``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from monai.bundle import run as bundle_run

from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.experiment import bundle_command
from tests.helpers import error_chain

BUNDLE = Path(__file__).resolve().parents[2] / "bundles" / "nih_chestxray_ilm"
SETTINGS = {"method": "mse", "max_epochs": 4, "epoch_length": 2}  # 6 batches per pass: epochs end mid-pass
KILLED_SETTINGS = {**SETTINGS, "checkpoint_iterations": 1}


def recipe(tmp_path: Path) -> list[str]:
    """The recipe under test: pretrain.json with quick.json on top."""
    return [str(BUNDLE / "configs" / name) for name in ("pretrain.json", "quick.json")]


def run_in_process(configs: list[str], **overrides) -> None:
    bundle_run(
        config_file=configs,
        meta_file=str(BUNDLE / "configs" / "metadata.json"),
        logging_file=False,
        bundle_root=str(BUNDLE),
        **{k: str(v) if isinstance(v, Path) else v for k, v in overrides.items()},
    )


@pytest.fixture(scope="module")
def nih_data(tmp_path_factory):
    return make_nih_sample(tmp_path_factory.mktemp("nih") / "data", n_patients=30, image_size=64, seed=0)


def final_checkpoint(output: Path) -> dict:
    path = output / "pretrain" / "mse_seed0" / "models" / "checkpoint_final.pt"
    return torch.load(path, map_location="cpu", weights_only=True)


def assert_bitwise_equal(a, b, where: str = "") -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}/{i}")
    elif torch.is_tensor(a):
        assert torch.equal(a, b), where
    else:
        assert a == b, where


def checkpoints_after(models: Path, iteration: int) -> list[Path]:
    """Iteration checkpoints of iteration >= ``iteration`` (one saved per iteration, the previous one removed)."""
    found = [p for p in models.glob("checkpoint_iteration=*.pt") if int(p.stem.split("=")[1]) >= iteration]
    return found


@dataclass(frozen=True)
class KilledRun:
    """A bundle run killed with SIGKILL after its third iteration and resumed with the same command."""

    models: Path
    final_existed_after_kill: bool
    returncode: int
    log: str
    final: dict


@pytest.fixture(scope="module")
def killed_run(nih_data, tmp_path_factory) -> KilledRun:
    """One kill and resume of the real bundle command, shared by the tests below (two subprocesses of ~10 s each).

    Epochs of 2 iterations over passes of 6 batches, a checkpoint every iteration, killed during epoch 2: the
    resumed run restarts ignite mid-epoch and the sampler mid-pass.
    """
    output = tmp_path_factory.mktemp("killed")
    command = bundle_command(
        BUNDLE,
        "pretrain.json",
        {"dataset_dir": nih_data, "output_dir": output, **KILLED_SETTINGS},
        extra_configs=["quick.json"],
    )
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    models = output / "pretrain" / "mse_seed0" / "models"
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    while not checkpoints_after(models, 3):
        assert process.poll() is None and time.monotonic() < deadline, "the run ended before its third iteration"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    final_existed = (models / "checkpoint_final.pt").exists()
    resumed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    final = final_checkpoint(output) if resumed.returncode == 0 else {}
    return KilledRun(models, final_existed, resumed.returncode, resumed.stdout + resumed.stderr, final)


@pytest.mark.slow
def test_killed_run_resumes_with_the_same_command(killed_run):
    assert not killed_run.final_existed_after_kill, "the run finished before it was killed"
    assert killed_run.returncode == 0, killed_run.log[-6000:]
    assert "Restored all variables from" in killed_run.log
    trainer = killed_run.final["trainer"]
    assert trainer["max_epochs"] == 4 and trainer["iteration"] == 4 * trainer["epoch_length"]
    assert "Epoch: 4/4" in killed_run.log and "Epoch: 1/4" not in killed_run.log  # the resumed run did not start over


@pytest.mark.slow
def test_sigkilled_bundle_run_resumes_mid_epoch_to_identical_weights(nih_data, tmp_path, killed_run):
    assert not killed_run.final_existed_after_kill, "the run finished before it was killed"
    assert killed_run.returncode == 0, killed_run.log[-6000:]
    restored = next(line for line in killed_run.log.splitlines() if "Restored all variables from" in line)
    assert "checkpoint_iteration=" in restored  # a mid-epoch checkpoint (iteration >= 3, epochs of 2)
    # uninterrupted reference, in this process (its start-up is already paid), on one thread as the subprocesses
    run_in_process(recipe(tmp_path), dataset_dir=nih_data, output_dir=tmp_path / "reference", **KILLED_SETTINGS)
    reference = final_checkpoint(tmp_path / "reference")
    final = killed_run.final
    assert final["trainer"]["iteration"] == reference["trainer"]["iteration"] == 8
    for part in ("network", "intermediate_loss", "optimizer"):
        assert_bitwise_equal(final[part], reference[part], part)


@pytest.mark.parametrize(
    "overrides, expected",
    [
        ({"method": "mes"}, "method: expected one of ['moco', 'mse', 'barlow'], got 'mes'"),
        ({"layers": ["layer3", "layer4"]}, "mse_weights: expected 2 finite weights >= 0 (one per entry of layers)"),
        ({"queue_size": 4}, "queue_size: expected an integer of at least batch_size (8)"),
        ({"momentum": 1.5}, "momentum: expected a finite number in [0, 1], got 1.5"),
        ({"dataset_dir": "missing"}, "dataset_dir: expected a NIH ChestX-ray14 folder"),
    ],
)
def test_bad_setting_stops_the_bundle_before_anything_is_built(nih_data, tmp_path, overrides, expected):
    if "dataset_dir" in overrides:
        overrides = {"dataset_dir": tmp_path / "missing"}
    settings = {"dataset_dir": nih_data, "output_dir": tmp_path / "out", "method": "mse", **overrides}
    with pytest.raises(Exception) as error:
        run_in_process(recipe(tmp_path), **settings)
    assert expected.format(tmp=tmp_path) in error_chain(error.value)
    assert not (tmp_path / "out").exists()  # no folder, log or checkpoint was written


def test_diverging_run_stops_at_the_next_nan_check_with_no_checkpoint_of_it(nih_data, tmp_path):
    """pretrain.json checks for NaN every log_interval iterations: the run stops there, naming the first bad one."""
    settings = {
        "dataset_dir": nih_data,
        "output_dir": tmp_path,
        "method": "mse",
        "learning_rate": 1e30,
        "log_interval": 3,
        "epoch_length": 6,
        "checkpoint_iterations": 3,
    }
    with pytest.raises(Exception) as error:
        run_in_process(recipe(tmp_path), **settings)
    message = error_chain(error.value)
    assert "non-finite loss at iteration " in message and "(check_every=3)" in message, message
    first, detected = (
        int(message.split(key)[1].split()[0]) for key in ("non-finite loss at iteration ", "Detected at iteration ")
    )
    assert first <= detected and detected % 3 == 0, message
    saved = sorted(p.name for p in tmp_path.rglob("*.pt"))
    assert all(int(name.split("=")[1].split(".")[0]) < first for name in saved), (saved, first)
