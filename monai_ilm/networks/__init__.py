"""Networks: stage-feature backbones and the MoCo wrapper."""

from __future__ import annotations

from monai_ilm.networks.backbones import (
    STAGE_NAMES,
    MonaiResNetEncoder,
    StageEncoder,
    TorchvisionResNetEncoder,
    global_pool,
    resnet_encoder,
)
from monai_ilm.networks.moco import MoCo, projection_head

__all__ = [
    "STAGE_NAMES",
    "MoCo",
    "MonaiResNetEncoder",
    "StageEncoder",
    "TorchvisionResNetEncoder",
    "global_pool",
    "projection_head",
    "resnet_encoder",
]
