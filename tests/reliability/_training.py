"""A tiny, fully random MoCo+MSE training set-up for the reliability tests (seconds on CPU)."""

from __future__ import annotations

import itertools

import numpy as np
import torch
from ignite.engine import Events
from monai.data import DataLoader, Dataset
from monai.handlers import CheckpointLoader
from monai.utils import set_determinism
from torch import nn

from monai_ilm.engines import MoCoTrainer, ResumableSampler, RNGState, latest_checkpoint, training_state
from monai_ilm.handlers import AtomicCheckpointSaver, IntermediateLayerLossHandler, MomentumUpdateHandler
from monai_ilm.losses import IntermediateMSELoss
from monai_ilm.methods import trainable_parameters
from monai_ilm.networks import MoCo
from monai_ilm.networks.backbones import StageEncoder
from monai_ilm.transforms import pretrain_transforms

NUM_IMAGES, BATCH_SIZE = 20, 4  # five batches per pass over the data


class Killed(RuntimeError):
    """Stands in for SIGKILL: the run stops between two iterations, after its last checkpoint."""


class SmallEncoder(StageEncoder):
    """Four strided conv-BN-ReLU stages, a few thousand parameters."""

    stage_channels = (4, 8, 8, 8)

    def __init__(self) -> None:
        super().__init__()
        widths = (3, *self.stage_channels)
        self.stages = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=1 if i == 0 else 2, padding=1), nn.BatchNorm2d(b), nn.ReLU())
            for i, (a, b) in enumerate(itertools.pairwise(widths))
        )

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for stage in self.stages:
            x = stage(x)
            outputs.append(x)
        return outputs


def image_rows() -> list[dict]:
    rng = np.random.default_rng(0)
    return [{"image": rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)} for _ in range(NUM_IMAGES)]


def build(
    ckpt_dir,
    max_epochs: int = 4,
    epoch_length: int | None = None,
    resumable_sampler: bool = True,
    save_rng: bool = True,
    kill_at: int | None = None,
    resume: bool = False,
    extra_handlers: tuple = (),
    intermediate_loss: nn.Module | None = None,
    num_workers: int = 0,
):
    """Fresh objects for one run, seeded as a bundle seeds them, checkpointing every iteration.

    Augmentations (random resized crop, colour jitter, grey, blur, flip) make the data pipeline random,
    so the RNG state matters for the run's result.
    """
    set_determinism(seed=0)
    dataset = Dataset(image_rows(), transform=pretrain_transforms("idc", image_size=16))
    sampling = {"sampler": ResumableSampler(dataset, seed=0)} if resumable_sampler else {"shuffle": True}
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, num_workers=num_workers, drop_last=True, **sampling)
    network = MoCo(SmallEncoder(), embedding_dim=8, queue_size=16)
    intermediate_loss = intermediate_loss or IntermediateMSELoss(pool_sizes=(4, 4, 2, 1))
    handlers = [IntermediateLayerLossHandler(intermediate_loss), MomentumUpdateHandler(0.9)]
    handlers += [loader.sampler] if resumable_sampler else []
    handlers += list(extra_handlers)
    optimizer = torch.optim.SGD(
        trainable_parameters(network, intermediate_loss), lr=0.05, momentum=0.9, weight_decay=1e-4
    )
    trainer = MoCoTrainer(
        "cpu", max_epochs, loader, network, optimizer, epoch_length=epoch_length, train_handlers=handlers
    )
    state = training_state(
        network=network, optimizer=optimizer, trainer=trainer, rng=RNGState(loader) if save_rng else None
    )
    AtomicCheckpointSaver(str(ckpt_dir), state, save_interval=1, epoch_level=False, n_saved=1).attach(trainer)
    if resume:
        CheckpointLoader(latest_checkpoint(ckpt_dir), state, map_location="cpu").attach(trainer)
    if kill_at is not None:

        @trainer.on(Events.ITERATION_STARTED(once=kill_at))
        def kill(_):
            raise Killed(f"killed before iteration {kill_at}")

    return trainer, network, optimizer


def weights(network: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in network.state_dict().items()}


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
