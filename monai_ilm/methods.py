"""The three pretraining methods of the paper, as configuration.

``moco`` is MoCo alone; ``mse`` adds :class:`~monai_ilm.losses.IntermediateMSELoss` and ``barlow``
adds :class:`~monai_ilm.losses.IntermediateBarlowTwinsLoss` between the stage outputs of the two
encoders (Kaku et al., NeurIPS 2021). Bundles pick one with ``--method``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial

from torch import nn

from monai_ilm.checks import (
    as_list,
    check_choice,
    check_layers,
    check_pool_sizes,
    check_real,
    check_weights,
    checks_arguments,
    fail,
    is_int,
)
from monai_ilm.losses.barlow_twins import REFERENCE_SCALE, REFERENCE_WEIGHT, IntermediateBarlowTwinsLoss
from monai_ilm.losses.intermediate_mse import IntermediateMSELoss
from monai_ilm.networks.backbones import STAGE_NAMES

__all__ = ["METHODS", "check_intermediate_loss", "check_method", "intermediate_loss", "trainable_parameters"]

METHODS: tuple[str, ...] = ("moco", "mse", "barlow")

# chest and DR maps pooled to 16x16 (layers 1-2) and 4x4 (layers 3-4), docs/method.md §5.1
REFERENCE_POOL_SIZES = {"layer1": 16, "layer2": 16, "layer3": 4, "layer4": 4}


def check_method(method: str) -> str:
    """Return ``method`` if it names one of :data:`METHODS`.

    Raises:
        ValueError: naming the ``method`` setting and the allowed values.
    """
    return check_choice("method", method, METHODS)


def check_intermediate_loss(given: Mapping[str, object]) -> None:
    """The settings of the intermediate-layer loss that ``given["method"]`` uses (none for plain MoCo).

    The per-layer settings (``mse_weights``, ``mse_pool_sizes``, ``barlow_weights``) take one value or one per
    entry of ``layers`` (all four stages when ``layers`` is not given).

    Args:
        given: ``{argument: value}`` of :func:`intermediate_loss`, those given.

    Raises:
        ValueError: for the first bad setting, naming it and what is allowed.
    """
    method = given.get("method")
    if method is not None:
        check_method(method)
    layers = STAGE_NAMES if given.get("layers") is None else check_layers("layers", given["layers"], STAGE_NAMES)
    if method is None or method == "moco":
        return
    per_layer = partial(check_weights, num_layers=len(layers))
    rules = {
        "mse": {"mse_weights": per_layer, "mse_pool_sizes": partial(check_pool_sizes, num_layers=len(layers))},
        "barlow": {
            "barlow_weights": per_layer,
            "barlow_scale": partial(check_real, low=0.0, low_open=True),
            "barlow_offdiag_weight": partial(check_real, low=0.0),
        },
    }[method]
    for name, check in rules.items():
        if given.get(name) is not None:
            check(name, given[name])
    dims = given.get("barlow_projector_dims") if method == "barlow" else None
    if dims is not None:
        listed = as_list("barlow_projector_dims", dims, "positive layer widths")
        if not listed or not all(is_int(d) and d >= 1 for d in listed):
            raise fail("barlow_projector_dims", "a non-empty list of positive layer widths", dims)


@checks_arguments(joint=check_intermediate_loss)
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
    layers = (layers,) if isinstance(layers, str) else tuple(layers)
    if len(stage_channels) != len(STAGE_NAMES):
        raise ValueError(f"stage_channels: expected {len(STAGE_NAMES)} channel counts, got {list(stage_channels)}.")
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
