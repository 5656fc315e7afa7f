"""A shuffling sampler that a resumed run can put back where the interrupted run stopped.

Ignite 0.5.5 resumes a run from the restored ``engine.state.iteration``: it starts the epoch
``iteration // epoch_length + 1``, creates a **fresh** iterator over the data loader and runs only
the ``epoch_length - iteration % epoch_length`` iterations left in that epoch
(``Engine._setup_engine`` sets ``_init_iter``). With torch's ``RandomSampler`` the fresh iterator
draws a new permutation from torch's global generator and starts at its first batch, so after a
mid-epoch resume the rest of the epoch sees other images than the interrupted run would have.

:class:`ResumableSampler` draws the permutation of every pass over the data from ``(seed, pass)``
alone, and when attached to the trainer it computes, from the restored iteration count, which pass
and which position in it the interrupted run had reached, so the fresh iterator continues that
pass. The stream of batches is then the same whether or not the run was interrupted, whatever the
epoch length (ignite starts a new pass whenever the previous one is exhausted, so batch ``i`` of
the run is always batch ``i % len(loader)`` of pass ``i // len(loader)``).

What a resume guarantees (``tests/reliability/test_resume.py`` and ``test_bundle.py``):

* With :class:`~monai_ilm.engines.RNGState` in the checkpoint and this sampler, on CPU with
  ``num_workers=0``, a run resumed from any checkpoint, at an epoch end or mid-epoch (iteration
  checkpoints), whatever ``epoch_length``, ends with the same weights, bit for bit, as the
  uninterrupted run.
* With torch's ``RandomSampler`` (``shuffle=True``) instead, resume is exact only from a checkpoint
  at the end of an epoch that is one full pass over the loader (``epoch_length`` null); from
  anywhere else the rest of the run sees other batches.
* With ``num_workers > 0`` the order of the samples is still exact. Augmentations are exact after a
  resume at an epoch boundary (each epoch's workers are seeded from torch's generator, which
  ``RNGState`` restores); after a mid-epoch resume they differ (a worker's generator position is
  not checkpointable), for the rest of the run.
* On CUDA, ``RNGState`` restores the CUDA generators too, but bitwise equality also needs
  deterministic kernels (``torch.use_deterministic_algorithms(True)``); otherwise the runs agree
  only to floating-point tolerance. Not verified on a GPU here.
* In a distributed run every rank restores rank 0's generators (only rank 0 saves), so ranks other
  than 0 continue with other random streams than they would have.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator, Mapping, Sized

import numpy as np
import torch
import torch.distributed as dist
from ignite.engine import Engine, Events
from torch.utils.data import Sampler

__all__ = ["ResumableSampler"]


def _check_non_negative_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise ValueError(f"{name}: expected a non-negative integer, got {value!r}.")
    return int(value)


class ResumableSampler(Sampler[int]):
    """Seeded shuffling sampler whose position is recovered from the trainer's iteration count.

    Pass ``p`` over the data is ``torch.randperm`` seeded by ``(seed, p)``; in a distributed run
    each rank takes every ``num_replicas``-th index of it, as ``DistributedSampler`` does. Use it as
    the training data loader's ``sampler`` (with ``shuffle=False``) and attach it to the trainer
    (list it among the trainer's handlers): at the first ``EPOCH_STARTED`` of every ``run`` (after
    ``CheckpointLoader`` has restored the iteration at ``STARTED``) it moves to the pass and
    position the restored iteration count points at. It assumes one batch per iteration.

    Args:
        data_source: the dataset (anything with ``len``).
        shuffle: permute each pass (otherwise every pass is ``0 .. n-1``).
        seed: the seed of every pass's permutation.
        num_replicas: ranks sharing the data (default: the distributed world size, or 1).
        rank: this process's rank (default: the distributed rank, or 0).
        even_divisible: pad each pass by repeating its first indices so that every rank gets the
            same number of samples; otherwise the tail that does not divide evenly is dropped.

    Raises:
        ValueError: for a negative seed, a rank outside ``[0, num_replicas)`` or an empty data source.
    """

    def __init__(
        self,
        data_source: Sized,
        shuffle: bool = True,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
        even_divisible: bool = True,
    ) -> None:
        distributed = dist.is_available() and dist.is_initialized()
        self.num_replicas = num_replicas if num_replicas is not None else (dist.get_world_size() if distributed else 1)
        self.rank = rank if rank is not None else (dist.get_rank() if distributed else 0)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank: expected a value in [0, {self.num_replicas}), got {self.rank}.")
        self.size = len(data_source)
        if self.size == 0:
            raise ValueError("data_source: expected a non-empty dataset, got 0 samples.")
        self.data_source = data_source
        self.shuffle = shuffle
        self.seed = _check_non_negative_int("seed", seed)
        self.even_divisible = even_divisible
        self.next_pass = 0
        self._skip = 0
        self._armed = False

    def __len__(self) -> int:
        if self.even_divisible:
            return math.ceil(self.size / self.num_replicas)
        return self.size // self.num_replicas

    def pass_order(self, pass_index: int) -> list[int]:
        """This rank's indices for pass ``pass_index``, in order."""
        if self.shuffle:
            seed = int(np.random.SeedSequence([self.seed, pass_index]).generate_state(1, np.uint64)[0] >> 1)
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(seed)).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.num_replicas
        while len(order) < total:  # pad by wrapping around (only when even_divisible)
            order += order[: total - len(order)]
        return order[:total][self.rank :: self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        order = self.pass_order(self.next_pass)
        start = self._skip
        self.next_pass += 1
        self._skip = 0
        return iter(order[start:])

    def set_position(self, pass_index: int, skip: int) -> None:
        """Make the next iterator continue pass ``pass_index`` after its first ``skip`` samples.

        Raises:
            ValueError: for a negative value or a ``skip`` beyond the pass.
        """
        pass_index = _check_non_negative_int("pass_index", pass_index)
        skip = _check_non_negative_int("skip", skip)
        if skip > len(self):
            raise ValueError(f"skip: expected at most {len(self)} samples (one pass), got {skip}.")
        self.next_pass, self._skip = pass_index, skip

    def attach(self, engine: Engine) -> None:
        """Follow ``engine``'s iteration count at the start of every run (see the class docstring)."""
        engine.add_event_handler(Events.STARTED, self._arm)
        engine.add_event_handler(Events.EPOCH_STARTED, self._sync)

    def _arm(self, engine: Engine) -> None:
        self._armed = True

    def _sync(self, engine: Engine) -> None:
        if not self._armed:
            return
        self._armed = False
        loader = engine.state.dataloader
        if getattr(loader, "sampler", None) is not self or getattr(loader, "batch_size", None) is None:
            raise ValueError(
                "sampler: expected this ResumableSampler as the sampler of the trainer's data loader "
                "(DataLoader(..., sampler=<it>, batch_size=<n>, shuffle=False)), got a loader with sampler "
                f"{type(getattr(loader, 'sampler', None)).__name__} and batch_size "
                f"{getattr(loader, 'batch_size', None)}."
            )
        batches_per_pass = len(loader)
        done = engine.state.iteration
        self.set_position(done // batches_per_pass, (done % batches_per_pass) * loader.batch_size)

    def state_dict(self) -> dict[str, int]:
        """What identifies the sample stream (the position itself follows the trainer's iteration count)."""
        return {"seed": self.seed, "size": self.size, "num_replicas": self.num_replicas, "shuffle": int(self.shuffle)}

    def load_state_dict(self, state: Mapping) -> None:
        """Warn when the checkpoint was written with another seed or data set: the resumed stream will differ."""
        current = self.state_dict()
        changed = {k: (state[k], current[k]) for k in current if k in state and int(state[k]) != current[k]}
        if changed:
            details = ", ".join(f"{k}: {old} in the checkpoint, {new} now" for k, (old, new) in changed.items())
            warnings.warn(
                f"sampler: the data stream differs from the checkpoint's ({details}); resume is not exact.",
                stacklevel=2,
            )
