"""Pieces shared by the MoCo trainer and evaluator."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import torch
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from monai_ilm.transforms.views import VIEW_KEYS
from monai_ilm.utils import unwrap_network

__all__ = [
    "VIEW_KEYS",
    "autocast_context",
    "channels_last_format",
    "forward_views",
    "prepare_views",
    "to_channels_last",
]


def channels_last_format(ndim: int) -> torch.memory_format:
    """The channels-last memory format of an ``ndim``-D tensor: NHWC for 4-D, NDHWC for 5-D, else contiguous."""
    return {4: torch.channels_last, 5: torch.channels_last_3d}.get(ndim, torch.contiguous_format)


@torch.no_grad()
def to_channels_last(module: torch.nn.Module) -> torch.nn.Module:
    """Store every 4-D and 5-D parameter and buffer of ``module`` channels-last, in place.

    Convolutions on channels-last tensors use the tensor cores' native layout (NHWC) on recent GPUs.
    Unlike ``module.to(memory_format=torch.channels_last)``, this also handles 3-D networks (5-D
    weights) and keeps every ``Parameter`` object, so an optimiser built before the call stays valid.
    """
    for tensor in [*module.parameters(), *module.buffers()]:
        memory_format = channels_last_format(tensor.ndim)
        if memory_format is not torch.contiguous_format:
            tensor.data = tensor.data.contiguous(memory_format=memory_format)
    return module


def prepare_views(
    batchdata: dict,
    view_keys: Sequence[str],
    device: torch.device,
    non_blocking: bool,
    channels_last: bool = False,
) -> list[torch.Tensor]:
    """Take the two views out of a batch and move them to ``device`` (channels-last if asked).

    Raises:
        ValueError: when the batch is not a dict holding both view keys.
    """
    if not isinstance(batchdata, dict) or any(key not in batchdata for key in view_keys):
        found = sorted(batchdata) if isinstance(batchdata, dict) else type(batchdata).__name__
        raise ValueError(f"view_keys: expected a batch dict with keys {list(view_keys)}, got {found}.")
    views = []
    for key in view_keys:
        view = batchdata[key]
        view = view.as_tensor() if hasattr(view, "as_tensor") else view
        layout = channels_last_format(view.ndim) if channels_last else torch.preserve_format
        views.append(view.to(device, non_blocking=non_blocking, memory_format=layout))  # one copy, layout included
    return views


def autocast_context(engine) -> contextlib.AbstractContextManager:
    """``torch.autocast`` on the engine's device when ``amp`` is on, else a no-op context."""
    if not engine.amp:
        return contextlib.nullcontext()
    device_type = torch.device(engine.state.device).type
    return torch.autocast(device_type, **engine.amp_kwargs)


def forward_views(engine, batchdata: dict) -> None:
    """Run both views through the MoCo network and compute InfoNCE into ``engine.state.output``.

    Fires ``FORWARD_COMPLETED`` after the forward and ``LOSS_COMPLETED`` after the loss, where
    :class:`~monai_ilm.handlers.IntermediateLayerLossHandler` adds its terms to ``output["loss"]``.
    """
    x1, x2 = prepare_views(batchdata, engine.view_keys, engine.state.device, engine.non_blocking, engine.channels_last)
    engine.state.output = {}
    with autocast_context(engine):
        pred = engine.inferer(x1, engine.network, x2)
        engine.state.output[Keys.PRED] = pred
        engine.fire_event(IterationEvents.FORWARD_COMPLETED)
        queue = unwrap_network(engine.network).queue
        loss = engine.loss_function(pred["query"], pred["key"], queue)
        engine.state.output[Keys.LOSS] = loss
        engine.state.output["loss_infonce"] = loss.detach()
        engine.fire_event(IterationEvents.LOSS_COMPLETED)


def scalar_output(output: dict) -> dict:
    """Keep the detached scalar entries of an iteration's output (what StatsHandler can print).

    Dropping the prediction frees the stage activations before the next iteration.
    """
    return {key: value.detach() for key, value in output.items() if torch.is_tensor(value) and value.numel() == 1}
