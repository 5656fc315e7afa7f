"""Every random number generator a training run draws from, as a checkpointable object.

A resumed run only continues exactly where the interrupted one stopped if the random streams do:
the data loader's shuffling and worker seeds come from torch's global generator, MONAI's
``set_determinism`` seeds numpy and Python's ``random`` as well, and every MONAI random transform
draws from its own ``numpy.random.RandomState`` (``Randomizable.R``), which no global seed reaches
once the run has started. :class:`RNGState` collects all of them.

Its ``state_dict`` holds only tensors, numbers, strings and lists, so a checkpoint that contains it
still loads with ``torch.load(..., weights_only=True)`` (no pickled numpy or Python objects).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator, Mapping

import numpy as np
import torch
from monai.transforms import Transform
from monai.transforms.transform import Randomizable
from torch.utils.data import DataLoader, Dataset

__all__ = ["RNGState", "transform_random_states"]

_NUMPY_ALGORITHM = "MT19937"


def _numpy_state_to_dict(state: tuple) -> dict[str, object]:
    """``RandomState.get_state()`` as tensors and numbers."""
    algorithm, keys, pos, has_gauss, cached_gaussian = state
    if algorithm != _NUMPY_ALGORITHM:
        raise ValueError(f"numpy random state: expected the {_NUMPY_ALGORITHM} algorithm, got {algorithm!r}.")
    return {
        "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached_gaussian),
    }


def _numpy_state_from_dict(state: Mapping) -> tuple:
    keys = torch.as_tensor(state["keys"]).cpu().numpy().astype(np.uint32)
    return (_NUMPY_ALGORITHM, keys, int(state["pos"]), int(state["has_gauss"]), float(state["cached_gaussian"]))


def _children(obj: object) -> Iterator[object]:
    """The objects a data pipeline holds that may hold random transforms (never the data itself)."""
    if isinstance(obj, (list, tuple)):
        yield from obj
    elif isinstance(obj, dict):
        yield from obj.values()
    elif isinstance(obj, DataLoader):
        yield obj.dataset
    elif isinstance(obj, Dataset):
        for name in ("transform", "dataset", "datasets"):
            if hasattr(obj, name):
                yield getattr(obj, name)
    elif isinstance(obj, (Transform, Randomizable)):
        yield from vars(obj).values()


def transform_random_states(*objects: object) -> list[np.random.RandomState]:
    """The distinct ``RandomState`` of every MONAI random transform reachable from ``objects``.

    Data loaders lead to their dataset, datasets to their ``transform`` (and wrapped ``dataset``),
    transforms to the transforms they hold (``Compose``, per-view pipelines...). The order is the
    traversal order, so two pipelines built from the same configuration list their generators in
    the same order. Transforms that share one generator (MONAI's class-level default) appear once.

    Args:
        objects: data loaders, datasets or transforms.
    """
    found: list[np.random.RandomState] = []
    seen_objects: set[int] = set()
    seen_states: set[int] = set()
    stack = list(reversed(objects))
    while stack:
        obj = stack.pop()
        if (
            id(obj) in seen_objects
            or obj is None
            or isinstance(obj, (str, bytes, int, float, torch.Tensor, np.ndarray))
        ):
            continue
        seen_objects.add(id(obj))
        generator = getattr(obj, "R", None) if isinstance(obj, Randomizable) else None
        if isinstance(generator, np.random.RandomState) and id(generator) not in seen_states:
            seen_states.add(id(generator))
            found.append(generator)
        stack.extend(reversed(list(_children(obj))))
    return found


class RNGState:
    """The random state of a run: torch (CPU and CUDA), numpy, Python ``random`` and the data pipeline.

    Add it to the checkpoint's ``save_dict`` next to the network and optimiser; ignite's
    ``Checkpoint`` calls :meth:`state_dict` when saving and MONAI's ``CheckpointLoader`` calls
    :meth:`load_state_dict` at ``STARTED`` when resuming. In a bundle::

        "checkpoint_saver": {"save_dict": {"_target_": "monai_ilm.engines.training_state",
                                           "rng": {"_target_": "monai_ilm.engines.RNGState",
                                                   "data": "@train#dataloader"}, ...}}

    Args:
        data: data loaders, datasets or transforms whose random transforms' generators are saved too
            (see :func:`transform_random_states`). With ``num_workers=0`` the transforms run in the
            main process and their generators carry the augmentation stream from one iteration to
            the next; with workers, each epoch's workers are seeded from torch's generator instead.
        cuda: also save the CUDA generators of every visible device (when CUDA is available).

    Raises:
        ValueError: on loading a state whose data pipeline holds a different number of random
            transforms than this one (a different configuration).
    """

    def __init__(self, data: object = None, cuda: bool = True) -> None:
        self.data = () if data is None else data if isinstance(data, (list, tuple)) else (data,)
        self.cuda = cuda

    def state_dict(self) -> dict[str, object]:
        """The current state of every generator, as tensors, numbers and lists."""
        version, internal, gauss_next = random.getstate()
        state: dict[str, object] = {
            "torch": torch.get_rng_state(),
            "numpy": _numpy_state_to_dict(np.random.get_state()),
            "python": {
                "version": int(version),
                "internal": torch.tensor(internal, dtype=torch.int64),
                "gauss_next": gauss_next,
            },
            "transforms": [_numpy_state_to_dict(r.get_state()) for r in transform_random_states(*self.data)],
        }
        if self.cuda and torch.cuda.is_available():
            state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
        return state

    def load_state_dict(self, state: Mapping) -> None:
        """Restore every generator from :meth:`state_dict` output (possibly mapped to another device).

        CUDA states are restored when this process sees as many devices as the saving one did,
        otherwise they are skipped with a warning (e.g. a GPU checkpoint resumed on CPU).

        Raises:
            ValueError: when the number of data-pipeline generators differs from the saved one.
        """
        generators = transform_random_states(*self.data)
        saved = list(state.get("transforms", []))
        if len(saved) != len(generators):
            raise ValueError(
                f"rng: the checkpoint holds {len(saved)} random-transform generator(s) but this run's data pipeline "
                f"has {len(generators)}; resume with the configuration that wrote the checkpoint."
            )
        torch.set_rng_state(torch.as_tensor(state["torch"]).cpu())
        np.random.set_state(_numpy_state_from_dict(state["numpy"]))
        python = state["python"]
        internal = tuple(int(v) for v in torch.as_tensor(python["internal"]).tolist())
        random.setstate((int(python["version"]), internal, python["gauss_next"]))
        for generator, generator_state in zip(generators, saved):
            generator.set_state(_numpy_state_from_dict(generator_state))
        self._load_cuda(state.get("cuda"))

    def _load_cuda(self, states: list | None) -> None:
        if not states or not self.cuda:
            return
        if not torch.cuda.is_available() or torch.cuda.device_count() != len(states):
            warnings.warn(
                f"rng: the checkpoint holds {len(states)} CUDA generator state(s) but this process sees "
                f"{torch.cuda.device_count() if torch.cuda.is_available() else 0} device(s); "
                "CUDA generators not restored.",
                stacklevel=2,
            )
            return
        torch.cuda.set_rng_state_all([torch.as_tensor(s).cpu() for s in states])
