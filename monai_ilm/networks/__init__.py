"""Networks: stage-feature backbones, the MoCo wrapper and its query side for inference."""

from __future__ import annotations

from monai_ilm.utils import lazy_package

# each name is loaded from its module on first use: importing one module of the package loads only what it needs
__all__ = lazy_package(
    __name__,
    {
        "backbones": (
            "MonaiResNetEncoder",
            "STAGE_NAMES",
            "StageEncoder",
            "TorchvisionResNetEncoder",
            "global_pool",
            "resnet_encoder",
        ),
        "moco": ("MoCo", "projection_head"),
        "query": ("MoCoQueryNetwork", "query_state_dict"),
    },
)
