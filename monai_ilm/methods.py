"""The three pretraining methods of the paper, as configuration.

``moco`` is MoCo alone; ``mse`` adds :class:`~monai_ilm.losses.IntermediateMSELoss` and ``barlow``
adds :class:`~monai_ilm.losses.IntermediateBarlowTwinsLoss` between the stage outputs of the two
encoders (Kaku et al., NeurIPS 2021). Bundles pick one with ``--method``.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from monai_ilm.losses.barlow_twins import REFERENCE_SCALE, REFERENCE_WEIGHT, IntermediateBarlowTwinsLoss
from monai_ilm.losses.intermediate_mse import IntermediateMSELoss
from monai_ilm.networks.backbones import STAGE_NAMES

__all__ = ["METHODS", "check_method", "intermediate_loss", "trainable_parameters"]

METHODS: tuple[str, ...] = ("moco", "mse", "barlow")

# chest and DR maps pooled to 16x16 (layers 1-2) and 4x4 (layers 3-4), docs/method.md §5.1
REFERENCE_POOL_SIZES = {"layer1": 16, "layer2": 16, "layer3": 4, "layer4": 4}


def check_method(method: str) -> str:
    """Return ``method`` if it names one of :data:`METHODS`.

    Raises:
        ValueError: naming the ``method`` setting and the allowed values.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {list(METHODS)}, got {method!r}.")
    return method


def intermediate_loss(
    method: str,
    stage_channels: Sequence[int] = (256, 512, 1024, 2048),
    layers: Sequence[str] = STAGE_NAMES,
    mse_weights: Sequence[float] | float = 0.25,
    mse_pool_sizes: Sequence[int | None] | int | str | None = "reference",
    barlow_weights: Sequence[float] | float = REFERENCE_WEIGHT,
    barlow_scale: float = REFERENCE_SCALE,
    barlow_offdiag_weight: float = 1.0,
    barlow_projector_dims: Sequence[int] = (2048, 2048, 2048),
) -> nn.Module | None:
    """The intermediate-layer loss of ``method`` (None for plain MoCo), with the paper's defaults.

    Args:
        method: ``"moco"``, ``"mse"`` or ``"barlow"``.
        stage_channels: channels of all four stages (``MoCo.stage_channels``).
        layers: the compared stages, a subset of ``layer1`` ... ``layer4``.
        mse_weights, mse_pool_sizes: see :class:`~monai_ilm.losses.IntermediateMSELoss`;
            ``"reference"`` pools to 16, 16, 4, 4 per stage as the reference's chest and DR code.
        barlow_weights, barlow_scale, barlow_offdiag_weight, barlow_projector_dims: see
            :class:`~monai_ilm.losses.IntermediateBarlowTwinsLoss`.

    Raises:
        ValueError: for an unknown method or inconsistent sizes.
    """
    check_method(method)
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    unknown = [name for name in layers if name not in STAGE_NAMES]
    if unknown or len(stage_channels) != len(STAGE_NAMES):
        raise ValueError(
            f"layers: expected names from {list(STAGE_NAMES)} and 4 stage_channels, "
            f"got {list(layers)} and {list(stage_channels)}."
        )
    if method == "mse":
        if mse_pool_sizes == "reference":
            mse_pool_sizes = [REFERENCE_POOL_SIZES[name] for name in layers]
        return IntermediateMSELoss(weights=mse_weights, pool_sizes=mse_pool_sizes, num_layers=len(layers))
    if method == "barlow":
        return IntermediateBarlowTwinsLoss(
            in_channels=[stage_channels[STAGE_NAMES.index(name)] for name in layers],
            weights=barlow_weights,
            scale=barlow_scale,
            offdiag_weight=barlow_offdiag_weight,
            projector_dims=barlow_projector_dims,
        )
    return None


def trainable_parameters(network: nn.Module, loss: nn.Module | None = None) -> list[nn.Parameter]:
    """Parameters the optimiser updates: the network's trainable ones and the loss's (projectors)."""
    modules = [network] if loss is None else [network, loss]
    return [p for module in modules for p in module.parameters() if p.requires_grad]
