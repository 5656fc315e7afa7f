"""The embedding explorer's scatter: a 2-D projection of pooled features, one colour per group."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.base import EXTRA_COLORS, METHOD_COLORS, layout, method_color
from dashboard.labels import method_label

__all__ = ["embedding_figure"]

_PALETTE = (*METHOD_COLORS.values(), *EXTRA_COLORS)


def embedding_figure(points: pd.DataFrame, color_by: str, title: str, axis_titles: tuple[str, str]) -> go.Figure:
    """A scatter of projected embeddings, one trace per value of ``color_by``, selectable by box or lasso.

    Args:
        points: columns ``x``, ``y``, ``id`` (shown on hover), ``point`` (the row number in the embeddings file,
            returned by a selection as ``customdata``) and ``color_by``.
        color_by: the column whose values colour the points (methods keep their colours across the dashboard).
        title: the figure title.
        axis_titles: titles of the x and y axes (e.g. ``"PC 1 (34 %)"``).

    Returns:
        The figure, in box-select mode.
    """
    fig = go.Figure()
    groups = sorted(points[color_by].astype(str).unique()) if len(points) else []
    for i, group in enumerate(groups):
        rows = points[points[color_by].astype(str) == group]
        color = method_color(group) if color_by == "method" else _PALETTE[i % len(_PALETTE)]
        fig.add_trace(
            go.Scattergl(
                x=rows["x"],
                y=rows["y"],
                mode="markers",
                name=method_label(group) if color_by == "method" else group,
                marker={"color": color, "size": 7, "opacity": 0.8, "line": {"width": 0}},
                customdata=rows["point"],
                text=rows["id"],
                hovertemplate="%{text}<extra>" + group + "</extra>",
            )
        )
    fig.update_xaxes(title_text=axis_titles[0], zeroline=False)
    fig.update_yaxes(title_text=axis_titles[1], zeroline=False, scaleanchor="x", scaleratio=1)
    fig = layout(fig, title, height=560)
    fig.update_layout(dragmode="select", legend_title_text=color_by.replace("_", " "))
    return fig
