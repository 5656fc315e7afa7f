"""Plotly figures of the dashboard, built from plain frames (no Streamlit here), one module per page family.

:mod:`~dashboard.figures.base` (colours, facets, layout, heatmaps) · :mod:`~dashboard.figures.performance`
(label efficiency, probing, differences, KS distance, findings) · :mod:`~dashboard.figures.cka` (feature reuse) ·
:mod:`~dashboard.figures.training` (training curves, timings) · :mod:`~dashboard.figures.embeddings` (the
embedding explorer's scatter).
"""

from dashboard.figures.base import METHOD_COLORS, chart_config, method_color
from dashboard.figures.cka import block_matrix_figure, method_block_figure
from dashboard.figures.embeddings import embedding_figure
from dashboard.figures.performance import (
    delta_figure,
    findings_figure,
    ks_figure,
    label_efficiency_figure,
    probing_figure,
)
from dashboard.figures.training import MAX_POINTS_PER_TRACE, MIN_POINTS_TO_SMOOTH, timings_figure, training_figure

__all__ = [
    "MAX_POINTS_PER_TRACE",
    "METHOD_COLORS",
    "MIN_POINTS_TO_SMOOTH",
    "block_matrix_figure",
    "chart_config",
    "delta_figure",
    "embedding_figure",
    "findings_figure",
    "ks_figure",
    "label_efficiency_figure",
    "method_block_figure",
    "method_color",
    "probing_figure",
    "timings_figure",
    "training_figure",
]
