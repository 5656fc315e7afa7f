"""Figures of the CKA page: method x block feature reuse and the block x block matrix of a pair of encoders.

CKA describes how similar two sets of features are; no cell is marked "best". Cells whose pretrained features
collapsed (``dashboard.health``) carry a ⚠: their CKA is near 1 whatever fine-tuning did.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import plotly.graph_objects as go

from dashboard.cka import EncoderPair
from dashboard.data import order_datasets
from dashboard.figures.base import facets, heatmap, layout, zrange
from dashboard.labels import dataset_label, fraction_label, method_label, metric_label

__all__ = ["CKA_COLORSCALE", "block_matrix_figure", "method_block_figure"]

CKA_COLORSCALE = "Blues"  # sequential and calm; CKA runs from 0 (unrelated) to 1 (the same up to rotation)


def _coloraxis(fig: go.Figure, kind: str, zmin: float, zmax: float) -> None:
    fig.update_layout(
        coloraxis={"colorscale": CKA_COLORSCALE, "cmin": zmin, "cmax": zmax, "colorbar": {"title": metric_label(kind)}}
    )


def method_block_figure(
    matrices: Mapping[str, pd.DataFrame],
    kind: str,
    label_fraction: float,
    flags: Mapping[str, pd.DataFrame] | None = None,
) -> go.Figure:
    """Feature-reuse heatmaps, method x block, one panel per dataset.

    Args:
        matrices: ``{dataset: frame}`` from :func:`dashboard.cka.method_block_matrix`.
        kind: the CKA metric shown.
        label_fraction: the fine-tuning label fraction shown.
        flags: ``{dataset: boolean frame}`` (method x block) of cells to mark with ⚠ (collapsed features).

    Returns:
        The figure.
    """
    items = [(d, matrices[d]) for d in order_datasets(matrices) if not matrices[d].empty]
    fig, cols = facets(
        max(len(items), 1), [dataset_label(d) for d, _ in items] or [""], horizontal_spacing=0.04, shared_yaxes=True
    )
    zmin, zmax = zrange([m for _, m in items])
    for k, (dataset, matrix) in enumerate(items):
        y = [method_label(m) for m in matrix.index]
        x = [f"B{b}" for b in matrix.columns]
        trace = heatmap(matrix, x, y, zmin, zmax, dataset, (flags or {}).get(dataset))
        fig.add_trace(trace, row=k // cols + 1, col=k % cols + 1)
        fig.update_yaxes(autorange="reversed", row=k // cols + 1, col=k % cols + 1)
    _coloraxis(fig, kind, zmin, zmax)
    return layout(
        fig,
        f"Feature reuse, {metric_label(kind)}: pretrained vs fine-tuned, {fraction_label(label_fraction)} labels",
        height=380,
    )


def block_matrix_figure(
    matrix: pd.DataFrame, pair: EncoderPair, kind: str, dataset: str, flags: pd.DataFrame | None = None
) -> go.Figure:
    """The block x block CKA matrix of an encoder pair.

    Args:
        matrix: from :func:`dashboard.cka.block_matrix` (index: blocks of A, columns: blocks of B).
        pair: the encoder pair.
        kind: the CKA metric.
        dataset: the dataset.
        flags: boolean frame shaped like ``matrix``: cells to mark with ⚠ (a block of A or B collapsed), e.g.
            from :func:`dashboard.health.pair_flags`.

    Returns:
        The figure.
    """
    a, b = pair.labels
    zmin, zmax = zrange([matrix])
    x, y = [f"B{j}" for j in matrix.columns], [f"B{i}" for i in matrix.index]
    cells = heatmap(matrix, x, y, zmin, zmax, "cka", flags)
    fig = go.Figure(cells)
    _coloraxis(fig, kind, zmin, zmax)
    fig.update_xaxes(title_text=b, side="bottom")
    fig.update_yaxes(title_text=a, autorange="reversed")
    fig = layout(fig, f"{metric_label(kind)}, {dataset_label(dataset)}: block × block", height=460)
    fig.update_layout(width=None)
    return fig
