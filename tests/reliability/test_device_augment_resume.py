"""Exact resume with the device augmentation stage: a run SIGKILLed mid-epoch and resumed ends bitwise identical.

The views are made by :class:`DeviceAugment` from one uint8 image per sample; its generator state travels in
the trainer's checkpoint state. The killed run is a subprocess that sends itself SIGKILL at a fixed iteration
(after the checkpoint of the iteration before); the control resumes with the stage's generator reseeded
instead of restored, and ends with different weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointLoader
from monai.utils import set_determinism

from monai_ilm.engines import MoCoTrainer, ResumableSampler, RNGState, latest_checkpoint, training_state
from monai_ilm.handlers import AtomicCheckpointSaver, IntermediateLayerLossHandler, MomentumUpdateHandler
from monai_ilm.losses import IntermediateMSELoss
from monai_ilm.methods import trainable_parameters
from monai_ilm.networks import MoCo
from monai_ilm.transforms import pretrain_pipeline
from tests.reliability._training import SmallEncoder, image_rows, same_weights, weights

EPOCHS, KILL_AT = 3, 8  # five batches per epoch: killed in epoch 2, resumed at its 3rd iteration
ROOT = Path(__file__).resolve().parents[2]


def build(ckpt_dir: Path, resume: bool = False, kill_at: int | None = None):
    """A seeded MoCo+MSE run on 16 px DR-preset views made on the device (CPU here), checkpointing every iteration."""
    set_determinism(seed=0)
    transform, augment = pretrain_pipeline("dr", image_size=16, augment_on="device", seed=0)
    dataset = Dataset(image_rows(), transform=transform)
    loader = DataLoader(dataset, batch_size=4, drop_last=True, sampler=ResumableSampler(dataset, seed=0))
    network = MoCo(SmallEncoder(), embedding_dim=8, queue_size=16)
    loss = IntermediateMSELoss(pool_sizes=(4, 4, 2, 1))
    optimizer = torch.optim.SGD(trainable_parameters(network, loss), lr=0.05, momentum=0.9, weight_decay=1e-4)
    handlers = [IntermediateLayerLossHandler(loss), MomentumUpdateHandler(0.9), loader.sampler]
    trainer = MoCoTrainer("cpu", EPOCHS, loader, network, optimizer, train_handlers=handlers, augment=augment)
    state = training_state(network=network, optimizer=optimizer, trainer=trainer, rng=RNGState(loader))
    AtomicCheckpointSaver(str(ckpt_dir), state, save_interval=1, epoch_level=False, n_saved=1).attach(trainer)
    if resume:
        CheckpointLoader(latest_checkpoint(ckpt_dir), state, map_location="cpu").attach(trainer)
    if kill_at is not None:
        trainer.add_event_handler(
            Events.ITERATION_STARTED(once=kill_at), lambda _: os.kill(os.getpid(), signal.SIGKILL)
        )
    return trainer, network, augment


def killed_run(ckpt_dir: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "tests.reliability.test_device_augment_resume", str(ckpt_dir)]
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    assert latest_checkpoint(ckpt_dir).endswith(f"iteration={KILL_AT - 1}.pt")


def resumed_weights(ckpt_dir: Path, reseed: bool = False) -> dict[str, torch.Tensor]:
    trainer, network, augment = build(ckpt_dir, resume=True)
    if reseed:  # control: the checkpoint's augmentation state is overwritten right after it was loaded
        trainer.add_event_handler(Events.STARTED, lambda _: augment.generator.manual_seed(0))
    iterations = []
    trainer.add_event_handler(Events.ITERATION_STARTED, lambda engine: iterations.append(engine.state.iteration))
    trainer.run()
    assert iterations[0] == KILL_AT and iterations[-1] == EPOCHS * 5
    return weights(network)


def test_sigkilled_run_with_device_augmentation_resumes_bitwise(tmp_path):
    trainer, network, _ = build(tmp_path / "reference")
    trainer.run()
    reference = weights(network)
    checkpoint = torch.load(latest_checkpoint(tmp_path / "reference"), map_location="cpu", weights_only=True)
    assert checkpoint["trainer"]["augment"]["generator"].dtype == torch.uint8

    killed_run(tmp_path / "run")
    assert same_weights(resumed_weights(tmp_path / "run"), reference)

    killed_run(tmp_path / "control")
    assert not same_weights(resumed_weights(tmp_path / "control", reseed=True), reference)


if __name__ == "__main__":  # the run that SIGKILLs itself
    torch.set_num_threads(1)
    build(Path(sys.argv[1]), kill_at=KILL_AT)[0].run()
