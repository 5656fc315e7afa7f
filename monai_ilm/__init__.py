"""monai-ilm: MoCo pretraining with intermediate-layer losses, as MONAI building blocks.

Implements Kaku, Upadhya and Razavian, "Intermediate Layers Matter in Momentum Contrastive
Self-Supervised Learning", NeurIPS 2021 (arXiv:2110.14805).
"""

from __future__ import annotations

__version__ = "0.1.0"
