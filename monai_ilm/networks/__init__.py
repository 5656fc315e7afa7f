"""Networks: stage-feature backbones, the MoCo wrapper and its query side for inference."""

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
from monai_ilm.networks.query import MoCoQueryNetwork, query_state_dict

__all__ = [
    "STAGE_NAMES",
    "MoCo",
    "MoCoQueryNetwork",
    "MonaiResNetEncoder",
    "StageEncoder",
    "TorchvisionResNetEncoder",
    "global_pool",
    "projection_head",
    "query_state_dict",
    "resnet_encoder",
]
