"""Adds the intermediate-layer loss to a MoCo engine's loss."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import torch
from ignite.engine import Engine
from monai.engines.utils import IterationEvents
from monai.utils import CommonKeys as Keys

from monai_ilm.checks import check_layers, checks_arguments
from monai_ilm.distributed import average_gradients, world_size
from monai_ilm.handlers.utils import attach_once
from monai_ilm.networks.backbones import STAGE_NAMES

__all__ = ["IntermediateLayerLossHandler", "moco_stages"]


def moco_stages(output: dict) -> tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]:
    """``(output["pred"]["query_stages"], output["pred"]["key_stages"])``: a MoCo engine's stage outputs."""
    pred = output[Keys.PRED]
    return pred["query_stages"], pred["key_stages"]


@checks_arguments(layers=partial(check_layers, allowed=STAGE_NAMES))
class IntermediateLayerLossHandler:
    """The intermediate-layer loss of Kaku et al. (NeurIPS 2021) as a MONAI handler.

    On ``LOSS_COMPLETED`` of a :class:`~monai_ilm.engines.MoCoTrainer` (or ``MoCoEvaluator``) it
    takes the stage outputs that the MoCo forward returned for the query encoder (view 1, with
    gradient) and the key encoder (view 2, no gradient), selects ``layers``, computes
    ``loss(q_feats, k_feats)`` and adds it to ``output["loss"]`` before the backward pass. Each
    weighted term is also stored as ``output["loss_<layer>"]`` so StatsHandler and TensorBoard log
    every part. In a distributed run the gradients of the loss's own parameters are averaged over
    ranks after the backward pass, as DDP does for the network. Only the query encoder and the loss's own parameters
    (Barlow Twins projectors) receive its gradient; the key encoder is changed by the momentum update alone
    (docs/method.md §5).
    Pairing is query-vs-key and one direction, as the reference; a MoCo built with
    ``symmetric=True`` returns both directions and the loss then averages them.

    Args:
        loss: an ``IntermediateMSELoss`` or ``IntermediateBarlowTwinsLoss`` (anything with
            ``layer_losses(q_feats, k_feats)`` returning one term per layer).
        layers: the stages compared, by name; the loss must have one term per layer.
        output_transform: maps ``engine.state.output`` to ``(query_stages, key_stages)``, the outputs of every
            stage in :data:`~monai_ilm.networks.backbones.STAGE_NAMES` order, as the ``output_transform`` of MONAI's
            handlers; the default is :func:`moco_stages`. The terms are still written to ``output["loss_<layer>"]``
            and added to ``output["loss"]``.

    Raises:
        ValueError: for an unknown layer name, a repeated one, or a loss whose number of terms differs.
    """

    def __init__(
        self,
        loss: torch.nn.Module,
        layers: Sequence[str] = STAGE_NAMES,
        output_transform: Callable[[Any], tuple[Sequence[torch.Tensor], Sequence[torch.Tensor]]] = moco_stages,
    ) -> None:
        layers = (layers,) if isinstance(layers, str) else tuple(layers)
        num_terms = getattr(loss, "num_layers", None)
        if num_terms is not None and num_terms != len(layers):
            raise ValueError(
                f"layers: expected {num_terms} names (the loss has {num_terms} per-layer terms), got {len(layers)}."
            )
        self.loss = loss
        self.layers = layers
        self.indices = tuple(STAGE_NAMES.index(name) for name in layers)
        self.output_transform = output_transform

    def attach(self, engine: Engine) -> None:
        self.loss.to(engine.state.device)
        attach_once(engine, IterationEvents.LOSS_COMPLETED, self)
        if world_size() > 1:
            attach_once(engine, IterationEvents.BACKWARD_COMPLETED, self._average_loss_gradients)

    def _average_loss_gradients(self, engine: Engine) -> None:
        """Average the gradients of the loss's own parameters over ranks: its projectors live outside the
        DDP-wrapped network, so DDP does not."""
        average_gradients(self.loss.parameters())

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        query_stages, key_stages = self.output_transform(output)
        q_feats = [query_stages[i] for i in self.indices]
        k_feats = [key_stages[i] for i in self.indices]
        if self.loss.training != engine.network.training:  # no walk over the projectors every step
            self.loss.train(engine.network.training)
        terms = self.loss.layer_losses(q_feats, k_feats)
        for name, term in zip(self.layers, terms):
            output[f"loss_{name}"] = term.detach()
        output[Keys.LOSS] = output[Keys.LOSS] + torch.stack(terms).sum()
