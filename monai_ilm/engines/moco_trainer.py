"""An Ignite/MONAI trainer for MoCo pretraining."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import torch
from monai.engines import SupervisedTrainer
from monai.engines.utils import IterationEvents
from monai.engines.workflow import Workflow
from monai.inferers import Inferer
from monai.utils import CommonKeys as Keys
from torch.optim import Optimizer
from torch.utils.data import DataLoader

from monai_ilm import distributed
from monai_ilm.checks import check_bool, check_int, checks_arguments
from monai_ilm.engines.utils import VIEW_KEYS, forward_views, scalar_output, to_channels_last
from monai_ilm.losses.infonce import InfoNCELoss
from monai_ilm.networks.moco import MoCo
from monai_ilm.transforms.device_augment import DeviceAugment
from monai_ilm.utils import unwrap_network

__all__ = ["MoCoTrainer"]


@checks_arguments(
    max_epochs=check_int, epoch_length=check_int, amp=check_bool, compile=check_bool, channels_last=check_bool
)
class MoCoTrainer(SupervisedTrainer):
    """MONAI trainer whose iteration is one MoCo step on a batch of two augmented views.

    Each iteration moves ``batch[view_keys[0]]`` (query view) and ``batch[view_keys[1]]`` (key view)
    to the device, runs ``network(x1, x2)`` through the inferer, computes InfoNCE against the queue,
    back-propagates ``output["loss"]`` and steps the optimiser, firing MONAI's ``IterationEvents``
    in the same order as ``SupervisedTrainer`` (forward, loss, backward, model completed). Handlers
    extend the step: :class:`~monai_ilm.handlers.IntermediateLayerLossHandler` adds the
    intermediate-layer terms on ``LOSS_COMPLETED``; :class:`~monai_ilm.handlers.MomentumUpdateHandler`
    updates the key encoder on ``ITERATION_COMPLETED``. Finally the keys are enqueued, so the queue
    used for the logits is the one before this batch (He et al., CVPR 2020).

    With a device augmentation stage (``augment``), the loader yields one uint8 image per sample and
    the two views are made from it on the device at the start of each iteration (docs/method.md §3);
    the stage's generator state is saved and restored with the trainer's own (``state_dict()["augment"]``),
    so a resumed run makes the same views as an uninterrupted one.

    ``engine.state.output`` ends each iteration as a dict of detached scalars (``loss``,
    ``loss_infonce`` and one entry per intermediate term) that ``StatsHandler(output_transform=
    lambda x: x)`` and ``TensorBoardStatsHandler`` log; nothing is synchronised with the host here.

    Args:
        device: where to run.
        max_epochs: epochs to train.
        train_data_loader: yields dicts holding both view keys.
        network: a :class:`~monai_ilm.networks.MoCo` (possibly wrapped in DDP or ``torch.compile``).
        optimizer: over the query encoder and projector, plus any intermediate-loss projectors.
        loss_function: the contrastive loss, called as ``loss(q, k, queue)``; InfoNCE(0.07) by default.
        view_keys: the batch keys of the query and the key view.
        amp: autocast on the device; ``amp_kwargs`` go to ``torch.autocast`` (e.g. ``{"dtype": torch.bfloat16}``).
            A gradient scaler is used for float16 only.
        channels_last: store the network's weights and feed the views channels-last (NHWC / NDHWC),
            the layout GPU tensor cores convolve fastest; results equal the default layout's up to
            floating-point rounding. The network is converted in place, so the optimiser stays valid.
        compile: ``torch.compile`` the network (``compile_kwargs`` go to it). Checkpoints should
            keep naming the uncompiled network, whose parameters the compiled one shares.
        augment: a :class:`~monai_ilm.transforms.DeviceAugment` making the two views from the batch's
            image on the device, or None when the loader makes them (``augment_on="loader"``).
        epoch_length, non_blocking, inferer, key_train_metric, additional_metrics, metric_cmp_fn,
        train_handlers, event_names, event_to_attr, optim_set_to_none, amp_kwargs, compile_kwargs: as in
        ``SupervisedTrainer``.

    Raises:
        ValueError: when ``network`` is not a MoCo network or ``view_keys`` does not name two keys.
    """

    def __init__(
        self,
        device: str | torch.device,
        max_epochs: int,
        train_data_loader: DataLoader | Sequence,
        network: torch.nn.Module,
        optimizer: Optimizer,
        loss_function: Callable | None = None,
        view_keys: Sequence[str] = VIEW_KEYS,
        epoch_length: int | None = None,
        non_blocking: bool = False,
        inferer: Inferer | None = None,
        key_train_metric: dict | None = None,
        additional_metrics: dict | None = None,
        metric_cmp_fn: Callable | None = None,
        train_handlers: Sequence | None = None,
        amp: bool = False,
        event_names: list | None = None,
        event_to_attr: dict | None = None,
        optim_set_to_none: bool = True,
        amp_kwargs: dict | None = None,
        compile: bool = False,
        compile_kwargs: dict | None = None,
        channels_last: bool = False,
        augment: DeviceAugment | None = None,
    ) -> None:
        if not isinstance(unwrap_network(network), MoCo):
            raise ValueError(f"network: expected a monai_ilm.networks.MoCo, got {type(network).__name__}.")
        if len(view_keys) != 2:
            raise ValueError(f"view_keys: expected two keys (query view, key view), got {list(view_keys)}.")
        extra = {} if metric_cmp_fn is None else {"metric_cmp_fn": metric_cmp_fn}
        if channels_last:
            to_channels_last(network)
        super().__init__(
            device=device,
            max_epochs=max_epochs,
            train_data_loader=train_data_loader,
            network=network,
            optimizer=optimizer,
            loss_function=loss_function or InfoNCELoss(),
            epoch_length=epoch_length,
            non_blocking=non_blocking,
            inferer=inferer,
            key_train_metric=key_train_metric,
            additional_metrics=additional_metrics,
            train_handlers=train_handlers,
            amp=False,  # MONAI's CUDA-only GradScaler set-up is replaced below
            event_names=event_names,
            event_to_attr=event_to_attr,
            decollate=False,
            optim_set_to_none=optim_set_to_none,
            amp_kwargs=amp_kwargs,
            compile=compile,
            compile_kwargs=compile_kwargs,
            **extra,
        )
        self.amp = amp
        self.channels_last = channels_last
        self.view_keys = tuple(view_keys)
        if augment is not None and not isinstance(augment, DeviceAugment):
            raise ValueError(
                f"augment: expected a monai_ilm.transforms.DeviceAugment or None, got {type(augment).__name__}."
            )
        self.augment = augment
        if augment is not None:
            augment.view_keys = self.view_keys

    def state_dict(self) -> dict:
        """Ignite's engine state, plus the device augmentation's generator state under ``"augment"``."""
        state = super().state_dict()
        if self.augment is not None:
            state["augment"] = self.augment.state_dict()
        return state

    def load_state_dict(self, state_dict: Mapping) -> None:
        """Restore :meth:`state_dict` output; without ``"augment"`` in it, the stage's generator stays as seeded."""
        state = dict(state_dict)
        augment = state.pop("augment", None)
        super().load_state_dict(state)
        if self.augment is None:
            return
        if augment is None:
            warnings.warn(
                "augment: the checkpoint holds no device augmentation state (written with augment_on='loader'?); "
                "the views continue from the stage's seed.",
                stacklevel=2,
            )
            return
        self.augment.load_state_dict(augment, rank=distributed.rank())

    def run(self) -> None:
        # a gradient scaler only for float16 on CUDA (MONAI builds a CUDA scaler whenever amp is on)
        float16 = self.amp_kwargs.get("dtype", torch.float16) == torch.float16
        self.scaler = (
            torch.amp.GradScaler("cuda") if self.amp and float16 and self.state.device.type == "cuda" else None
        )
        Workflow.run(self)

    def _iteration(self, engine: MoCoTrainer, batchdata: dict) -> dict:
        if batchdata is None:
            raise ValueError("Must provide batch data for current iteration.")
        if not engine.network.training:  # Module.train() walks every submodule: ~1 ms a step for two ResNets
            engine.network.train()
        engine.optimizer.zero_grad(set_to_none=engine.optim_set_to_none)
        if engine.augment is not None:
            batchdata = engine.augment.views(batchdata, engine.state.device, engine.non_blocking)
        forward_views(engine, batchdata)
        loss = engine.state.output[Keys.LOSS]
        if engine.scaler is not None:
            engine.scaler.scale(loss).backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.scaler.step(engine.optimizer)
            engine.scaler.update()
        else:
            loss.backward()
            engine.fire_event(IterationEvents.BACKWARD_COMPLETED)
            engine.optimizer.step()
        engine.fire_event(IterationEvents.MODEL_COMPLETED)
        unwrap_network(engine.network).enqueue(engine.state.output[Keys.PRED]["key"])
        return scalar_output(engine.state.output)
