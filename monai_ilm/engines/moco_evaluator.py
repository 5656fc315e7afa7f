"""Validation of MoCo pretraining that leaves MoCo's state alone."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from monai.engines import SupervisedEvaluator
from monai.engines.utils import IterationEvents
from monai.inferers import Inferer
from torch.utils.data import DataLoader

from monai_ilm.checks import check_bool, checks_arguments
from monai_ilm.engines.utils import VIEW_KEYS, forward_views, scalar_output, to_channels_last
from monai_ilm.losses.infonce import InfoNCELoss

__all__ = ["MoCoEvaluator"]


@checks_arguments(amp=check_bool, channels_last=check_bool)
class MoCoEvaluator(SupervisedEvaluator):
    """Computes the pretraining loss on validation pairs without touching the queue or the key encoder.

    The reference ran validation through the training forward, which updated the key encoder and
    enqueued evaluation-mode keys of un-augmented images (docs/method.md D10). Here the network runs
    in eval mode under ``no_grad``, nothing is enqueued and no momentum update happens. Handlers
    attached to the evaluator (e.g. an ``IntermediateLayerLossHandler``) add their terms on
    ``LOSS_COMPLETED`` exactly as in training. Use a metric such as
    ``ignite.metrics.Average(output_transform=lambda out: out["loss"])`` as ``key_val_metric``.

    Args:
        device: where to run.
        val_data_loader: yields dicts holding both view keys.
        network: the :class:`~monai_ilm.networks.MoCo` being trained.
        loss_function: called as ``loss(q, k, queue)``; InfoNCE(0.07) by default.
        view_keys: the batch keys of the query and the key view.
        amp: autocast on the device, with ``amp_kwargs``.
        channels_last: feed the views (and store the network) channels-last, as ``MoCoTrainer``.
        other arguments: as in ``SupervisedEvaluator``.
    """

    def __init__(
        self,
        device: str | torch.device,
        val_data_loader: DataLoader | Sequence,
        network: torch.nn.Module,
        loss_function: Callable | None = None,
        view_keys: Sequence[str] = VIEW_KEYS,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        inferer: Inferer | None = None,
        key_val_metric: dict | None = None,
        additional_metrics: dict | None = None,
        val_handlers: Sequence | None = None,
        amp: bool = False,
        amp_kwargs: dict | None = None,
        channels_last: bool = False,
    ) -> None:
        if channels_last:
            to_channels_last(network)
        super().__init__(
            device=device,
            val_data_loader=val_data_loader,
            network=network,
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            inferer=inferer,
            key_val_metric=key_val_metric,
            additional_metrics=additional_metrics,
            val_handlers=val_handlers,
            amp=False,
            decollate=False,
            amp_kwargs=amp_kwargs,
        )
        self.amp = amp
        self.channels_last = channels_last
        self.loss_function = loss_function or InfoNCELoss()
        self.view_keys = tuple(view_keys)

    def _iteration(self, engine: MoCoEvaluator, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        with engine.mode(engine.network), torch.no_grad():
            forward_views(engine, batchdata)
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        return scalar_output(engine.state.output)
