"""The part of a pretrained MoCo network that inference needs: the query encoder and its projection head.

A MoCo checkpoint also holds the momentum key encoder, its head and the queue of negative keys (He et al.,
CVPR 2020), which only pretraining uses. :class:`MoCoQueryNetwork` keeps the query side under the same
parameter names (``encoder_q.*``, ``projector_q.*``), so it loads the matching subset of a MoCo state dict
unchanged, is what an exported bundle's ``models/model.pt`` holds, and compiles with TorchScript in script
mode (the MONAI model zoo's export check).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from monai_ilm.checks import check_int, checks_arguments
from monai_ilm.networks.backbones import StageEncoder
from monai_ilm.networks.moco import check_head, projection_head

__all__ = ["QUERY_PREFIXES", "MoCoQueryNetwork", "query_state_dict"]

QUERY_PREFIXES: tuple[str, ...] = ("encoder_q.", "projector_q.")
"""The keys of a MoCo state dict that :class:`MoCoQueryNetwork` holds."""


def query_state_dict(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The query encoder and projection head entries of a :class:`~monai_ilm.networks.MoCo` state dict.

    Args:
        state: a MoCo ``state_dict()`` (key encoder and queue included).

    Returns:
        ``{name: tensor}`` for the ``encoder_q.*`` and ``projector_q.*`` entries, names unchanged.

    Raises:
        ValueError: when ``state`` holds no query encoder entry.
    """
    query = {key: value for key, value in state.items() if key.startswith(QUERY_PREFIXES)}
    if not any(key.startswith("encoder_q.") for key in query):
        raise ValueError(f"state: expected a MoCo state dict with 'encoder_q.*' entries, got keys {list(state)[:5]}.")
    return query


@checks_arguments(embedding_dim=check_int, head=check_head)
class MoCoQueryNetwork(nn.Module):
    """The query encoder and projection head of MoCo, for inference and export.

    ``forward(x)`` returns the pooled output of the encoder's last stage, (N, 2048) for ResNet-50, the
    representation that linear probes and fine-tuning use (Kaku et al., NeurIPS 2021), exactly as
    ``MoCo.forward(x)`` does with one input; :meth:`embed` returns the contrastive embedding (N, 128).

    Args:
        encoder: a :class:`~monai_ilm.networks.backbones.StageEncoder` built as the pretraining encoder was.
        embedding_dim: size of the contrastive embedding.
        head: ``"linear"`` or ``"mlp"``, see :func:`~monai_ilm.networks.moco.projection_head`.
        head_hidden_dim: hidden width of the MLP head.

    Raises:
        ValueError: when ``encoder`` exposes no stages or ``head`` is unknown.
    """

    def __init__(
        self, encoder: StageEncoder, embedding_dim: int = 128, head: str = "linear", head_hidden_dim: int | None = None
    ) -> None:
        super().__init__()
        if not hasattr(encoder, "forward_stages") or not getattr(encoder, "stage_channels", ()):
            raise ValueError(
                "encoder: expected a StageEncoder with forward_stages() and stage_channels, "
                f"got {type(encoder).__name__}."
            )
        self.encoder_q = encoder
        self.projector_q = projection_head(encoder.feature_dim, embedding_dim, head, head_hidden_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.encoder_q(x)

    @torch.jit.export
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The (unnormalised) contrastive embedding of ``x``, as the query side of MoCo computes it."""
        return self.projector_q(self.encoder_q(x))
