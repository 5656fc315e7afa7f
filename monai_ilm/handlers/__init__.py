"""MONAI/Ignite handlers: the public "import as MONAI handlers" surface of monai-ilm."""

from __future__ import annotations

from monai_ilm.handlers.checkpoint_saver import AtomicCheckpointSaver
from monai_ilm.handlers.data_wait import DataWaitHandler
from monai_ilm.handlers.embedding_saver import EmbeddingSaver
from monai_ilm.handlers.intermediate_layer_loss import IntermediateLayerLossHandler
from monai_ilm.handlers.loss_parts import LossPartsHandler
from monai_ilm.handlers.momentum_update import MomentumUpdateHandler, momentum_at
from monai_ilm.handlers.nan_guard import NaNGuard, NonFiniteLossError
from monai_ilm.handlers.online_knn import OnlineKNNHandler, knn_metric_for
from monai_ilm.handlers.representation_health import RepresentationCollapseError, RepresentationHealthHandler

__all__ = [
    "AtomicCheckpointSaver",
    "EmbeddingSaver",
    "IntermediateLayerLossHandler",
    "LossPartsHandler",
    "MomentumUpdateHandler",
    "momentum_at",
]
__all__ += ["DataWaitHandler"]
__all__ += ["NaNGuard", "NonFiniteLossError"]
__all__ += ["OnlineKNNHandler", "knn_metric_for"]
__all__ += ["RepresentationCollapseError", "RepresentationHealthHandler"]
