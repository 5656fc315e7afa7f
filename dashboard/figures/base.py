"""Shared pieces of the dashboard's Plotly figures: colours, facets, layout, interval text and heatmaps.

Colours are fixed per method across all figures; performance values are shown in percent, CKA unscaled.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.labels import dataset_label, method_label, metric_unit_label

__all__ = [
    "DASHES",
    "EXTRA_COLORS",
    "METHOD_COLORS",
    "chart_config",
    "ci_text",
    "dataset_facets",
    "facets",
    "heatmap",
    "layout",
    "method_color",
    "metric_title",
    "pct",
    "published_trace",
    "rgba",
    "zrange",
]

METHOD_COLORS = {"moco": "#4C72B0", "mse": "#DD8452", "barlow": "#55A868", "supervised": "#7F7F7F"}
EXTRA_COLORS = ("#C44E52", "#8172B3", "#937860", "#DA8BC3", "#CCB974", "#64B5CD")
DASHES = ("solid", "dot", "dash", "dashdot", "longdash", "longdashdot")


def method_color(method: str) -> str:
    """The colour of a method; unknown methods get a stable colour from a second palette."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return EXTRA_COLORS[sum(map(ord, method)) % len(EXTRA_COLORS)]


def rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def chart_config(filename: str) -> dict:
    """``st.plotly_chart(config=...)``: the mode bar's camera button downloads a 2x PNG named ``filename``."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2},
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    }


def facets(n: int, titles: Sequence[str], cols: int | None = None, **kwargs) -> tuple[go.Figure, int]:
    cols = max(1, min(n, cols or n))
    rows = max(1, math.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), **kwargs)
    return fig, cols


def dataset_facets(datasets: Sequence[str], **kwargs) -> tuple[go.Figure, list[tuple[str, int, int]]]:
    """One panel per data set, titled with its label: the figure and ``(dataset, row, col)`` of each panel."""
    fig, cols = facets(max(len(datasets), 1), [dataset_label(d) for d in datasets] or [""], **kwargs)
    return fig, [(d, k // cols + 1, k % cols + 1) for k, d in enumerate(datasets)]


def layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    plot_height = max(height - 150, 100)
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 60, "r": 20, "t": 80, "b": 70},
        legend={"orientation": "h", "yanchor": "top", "y": -75 / plot_height, "x": 0.0},
        hovermode="closest",
    )
    return fig


def pct(values) -> np.ndarray:
    return np.asarray(values, dtype=float) * 100.0


def ci_text(row: pd.Series, scale: float = 100.0, decimals: int = 1) -> str:
    text = f"{row['value'] * scale:.{decimals}f}"
    if not (pd.isna(row["ci_low"]) or pd.isna(row["ci_high"])):
        text += f" ({row['ci_low'] * scale:.{decimals}f}–{row['ci_high'] * scale:.{decimals}f})"
    seeds = row.get("seeds")
    if isinstance(seeds, tuple) and len(seeds) > 1:
        text += f"<br>mean of seeds {', '.join(map(str, seeds))}"
    return text


def metric_title(points: pd.DataFrame, dataset: str) -> str:
    return metric_unit_label(sorted(points.loc[points["dataset"] == dataset, "metric"].unique()))


def published_trace(
    fig: go.Figure, pts: pd.DataFrame, x: np.ndarray, method: str, shown: set[str], row: int, col: int, what: str
) -> None:
    """The paper's numbers of one method as a dotted line with open markers."""
    key = f"{method} (paper)"
    fig.add_trace(
        go.Scatter(
            x=x,
            y=pct(pts["value"]),
            mode="lines+markers",
            name=f"{method_label(method)} (paper)",
            legendgroup=key,
            showlegend=key not in shown,
            line={"color": method_color(method), "width": 1.2, "dash": "dot"},
            marker={"size": 8, "symbol": "circle-open"},
            text=[ci_text(row) for _, row in pts.iterrows()],
            hovertemplate=f"<b>{method_label(method)}, published</b><br>{what}: %{{text}}<extra></extra>",
        ),
        row=row,
        col=col,
    )
    shown.add(key)


def heatmap(
    z: pd.DataFrame, x: list[str], y: list[str], zmin: float, zmax: float, name: str, flags: pd.DataFrame | None = None
) -> go.Heatmap:
    values = z.to_numpy(dtype=float)
    marks = np.zeros(values.shape, dtype=bool)
    if flags is not None:
        marks = flags.reindex(index=z.index, columns=z.columns).fillna(False).to_numpy(dtype=bool)
    text = [
        ["" if np.isnan(v) else f"{v:.2f}" + (" ⚠" if m else "") for v, m in zip(row, mrow)]
        for row, mrow in zip(values, marks)
    ]
    return go.Heatmap(
        z=values,
        x=x,
        y=y,
        text=text,
        texttemplate="%{text}",
        coloraxis="coloraxis",
        name=name,
        hovertemplate="%{y} · %{x}: %{z:.3f}<extra></extra>",
        xgap=2,
        ygap=2,
    )


def zrange(frames: Sequence[pd.DataFrame]) -> tuple[float, float]:
    values = np.concatenate([f.to_numpy(dtype=float).ravel() for f in frames if not f.empty] or [np.array([0.0])])
    finite = values[np.isfinite(values)]
    low = float(min(0.0, finite.min())) if finite.size else 0.0
    return low, 1.0
