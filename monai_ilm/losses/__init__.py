"""Losses: InfoNCE with a queue and the two intermediate-layer losses."""

from __future__ import annotations

from monai_ilm.losses.barlow_twins import IntermediateBarlowTwinsLoss, barlow_twins_loss, barlow_twins_projector
from monai_ilm.losses.infonce import InfoNCELoss
from monai_ilm.losses.intermediate_mse import IntermediateMSELoss, pool_to
from monai_ilm.losses.layerwise import LayerwiseLoss, check_pairs

__all__ = [
    "InfoNCELoss",
    "IntermediateBarlowTwinsLoss",
    "IntermediateMSELoss",
    "LayerwiseLoss",
    "barlow_twins_loss",
    "barlow_twins_projector",
    "check_pairs",
    "pool_to",
]
