"""Figures of the performance pages: label efficiency, layer-wise probing, differences, KS distance and findings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.data import order_datasets, order_methods
from dashboard.figures.base import (
    ci_text,
    dataset_facets,
    heatmap,
    layout,
    method_color,
    metric_title,
    pct,
    published_trace,
    rgba,
)
from dashboard.labels import fraction_label, method_label

__all__ = ["delta_figure", "findings_figure", "ks_figure", "label_efficiency_figure", "probing_figure"]


def label_efficiency_figure(
    points: pd.DataFrame, protocol: str = "finetune", published: pd.DataFrame | None = None
) -> go.Figure:
    """Metric vs label fraction (log axis) per method with CI bands, one panel per dataset.

    Args:
        points: one row per (dataset, method, label_fraction) with ``metric``, ``value``, ``ci_low``,
            ``ci_high`` (and optionally ``seeds``), e.g. from :func:`dashboard.data.aggregate_seeds`.
        protocol: shown in the title.
        published: the paper's numbers in the same form, drawn dotted (optional).

    Returns:
        The figure.
    """
    fig, panels = dataset_facets(order_datasets(points["dataset"]), horizontal_spacing=0.07)
    shown: set[str] = set()
    for dataset, r, c in panels:
        sub = points[points["dataset"] == dataset]
        for method in order_methods(sub["method"]):
            pts = sub[sub["method"] == method].sort_values("label_fraction")
            x = pts["label_fraction"].to_numpy(dtype=float)
            color = method_color(method)
            has_ci = pts["ci_low"].notna().to_numpy() & pts["ci_high"].notna().to_numpy()
            if has_ci.any():
                lo, hi = pct(pts["ci_low"])[has_ci], pct(pts["ci_high"])[has_ci]
                fig.add_trace(
                    go.Scatter(
                        x=np.concatenate([x[has_ci], x[has_ci][::-1]]),
                        y=np.concatenate([hi, lo[::-1]]),
                        mode="lines",
                        fill="toself",
                        fillcolor=rgba(color, 0.18),
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=method,
                        name=f"{method_label(method)} CI",
                    ),
                    row=r,
                    col=c,
                )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=pct(pts["value"]),
                    mode="lines+markers",
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=method not in shown,
                    line={"color": color, "width": 2},
                    marker={"size": 7},
                    text=[ci_text(row) for _, row in pts.iterrows()],
                    hovertemplate=f"<b>{method_label(method)}</b><br>%{{x:.0%}} labels: %{{text}}<extra></extra>",
                ),
                row=r,
                col=c,
            )
            shown.add(method)
            if published is not None:
                pub = published[(published["dataset"] == dataset) & (published["method"] == method)]
                pub = pub.sort_values("label_fraction")
                if not pub.empty:
                    published_trace(
                        fig, pub, pub["label_fraction"].to_numpy(dtype=float), method, shown, r, c, "labels"
                    )
        fractions = sorted(sub["label_fraction"].unique())
        fig.update_xaxes(
            type="log",
            tickvals=fractions,
            ticktext=[fraction_label(f) for f in fractions],
            title_text="label fraction",
            row=r,
            col=c,
        )
        fig.update_yaxes(title_text=metric_title(points, dataset), row=r, col=c)
    return layout(fig, f"Label efficiency ({protocol}): metric vs label fraction, mean over seeds with CI bands")


def probing_figure(points: pd.DataFrame, published: pd.DataFrame | None = None) -> go.Figure:
    """Metric vs block per method with CI error bars, one panel per dataset.

    Args:
        points: one row per (dataset, method, block) with ``metric``, ``value``, ``ci_low``, ``ci_high``.
        published: the paper's numbers in the same form, drawn dotted (optional).

    Returns:
        The figure.
    """
    fig, panels = dataset_facets(order_datasets(points["dataset"]), horizontal_spacing=0.07)
    shown: set[str] = set()
    for dataset, r, c in panels:
        sub = points[points["dataset"] == dataset]
        methods = order_methods(sub["method"])
        for m_i, method in enumerate(methods):
            pts = sub[sub["method"] == method].sort_values("block")
            blocks = pts["block"].to_numpy(dtype=float)
            offset = (m_i - (len(methods) - 1) / 2) * 0.07  # dodge overlapping error bars
            value = pct(pts["value"])
            lo = np.where(pts["ci_low"].isna(), np.nan, value - pct(pts["ci_low"]))
            hi = np.where(pts["ci_high"].isna(), np.nan, pct(pts["ci_high"]) - value)
            fig.add_trace(
                go.Scatter(
                    x=blocks + offset,
                    y=value,
                    mode="lines+markers",
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=method not in shown,
                    line={"color": method_color(method), "width": 2},
                    marker={"size": 7},
                    error_y={
                        "type": "data",
                        "symmetric": False,
                        "array": hi,
                        "arrayminus": lo,
                        "thickness": 1.5,
                        "width": 4,
                    },
                    text=[ci_text(row) for _, row in pts.iterrows()],
                    customdata=blocks.astype(int),
                    hovertemplate=f"<b>{method_label(method)}</b><br>block %{{customdata}}: %{{text}}<extra></extra>",
                ),
                row=r,
                col=c,
            )
            shown.add(method)
            if published is not None:
                pub = published[(published["dataset"] == dataset) & (published["method"] == method)]
                pub = pub.sort_values("block")
                if not pub.empty:
                    published_trace(fig, pub, pub["block"].to_numpy(dtype=float) + offset, method, shown, r, c, "block")
        blocks = sorted(int(b) for b in sub["block"].unique())
        fig.update_xaxes(tickvals=blocks, ticktext=[f"B{b}" for b in blocks], title_text="block", row=r, col=c)
        fig.update_yaxes(title_text=metric_title(points, dataset), row=r, col=c)
    return layout(
        fig, "Layer-wise probing: linear classifier on each block's pooled features (mean over seeds, CI bars)"
    )


def delta_figure(delta: pd.DataFrame, reference: str, scale: float = 100.0) -> go.Figure:
    """Difference of each method to the reference in the fine-tuning table, grouped bars per label fraction,
    one panel per dataset.

    Args:
        delta: unscaled differences indexed by ``(dataset, label_fraction)`` with one column per method
            (:func:`dashboard.overview.delta_to_reference` of the fine-tuning table).
        reference: the reference method (left out).
        scale: display multiplier (percentage points).

    Returns:
        The figure.
    """
    datasets = order_datasets(delta.index.get_level_values("dataset"))
    fig, panels = dataset_facets(datasets, horizontal_spacing=0.06, shared_yaxes=True)
    methods = [m for m in order_methods(delta.columns) if m != reference and delta[m].notna().any()]
    for dataset, r, c in panels:
        sub = delta.xs(dataset, level="dataset").sort_index()
        labels = [fraction_label(f) for f in sub.index]
        for method in methods:
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=sub[method].to_numpy(dtype=float) * scale,
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=dataset == datasets[0],
                    marker_color=method_color(method),
                    hovertemplate=f"<b>{method_label(method)}</b><br>%{{x}} labels: %{{y:+.1f}} points<extra></extra>",
                ),
                row=r,
                col=c,
            )
        fig.update_xaxes(title_text="label fraction", type="category", row=r, col=c)
    fig.update_yaxes(title_text=f"Δ to {method_label(reference)} (points)", row=1, col=1)
    fig.update_yaxes(zeroline=True, zerolinewidth=1.5, zerolinecolor="#888")
    fig.update_layout(barmode="group")
    return layout(fig, f"Fine-tuning: difference to {method_label(reference)} by label fraction", height=360)


def ks_figure(points: pd.DataFrame) -> go.Figure:
    """KS distance of each method's test probabilities to its own 100 %-label model, per label fraction.

    Args:
        points: seed-averaged ``protocol="ks"`` rows (``dataset``, ``method``, ``label_fraction``, ``value``).

    Returns:
        The figure: grouped bars, one panel per dataset.
    """
    datasets = order_datasets(points["dataset"])
    fig, panels = dataset_facets(datasets, horizontal_spacing=0.06)
    for dataset, r, c in panels:
        rows = points[points["dataset"] == dataset]
        for method in order_methods(rows["method"]):
            m = rows[rows["method"] == method].sort_values("label_fraction")
            fig.add_trace(
                go.Bar(
                    x=[fraction_label(f) for f in m["label_fraction"]],
                    y=m["value"],
                    name=method_label(method),
                    marker_color=method_color(method),
                    legendgroup=method,
                    showlegend=dataset == datasets[0],
                    hovertemplate=f"{method_label(method)} · %{{x}}: %{{y:.3f}}<extra></extra>",
                ),
                row=r,
                col=c,
            )
        fig.update_xaxes(title_text="labels", row=r, col=c)
        fig.update_yaxes(title_text="KS distance to 100 % labels", rangemode="tozero", row=r, col=c)
    fig.update_layout(barmode="group")
    return layout(fig, "KS distance of the test probabilities: label fraction vs 100 % labels", height=400)


def findings_figure(matrix: pd.DataFrame, title: str) -> go.Figure:
    """Per-finding AUC heatmap, finding x method (in percent).

    Args:
        matrix: index = findings, columns = methods, values = AUC in [0, 1].
        title: the figure title.

    Returns:
        The figure.
    """
    z = matrix * 100.0
    heat = heatmap(z, [method_label(m) for m in matrix.columns], list(matrix.index), 50.0, 100.0, "auc")
    heat.text = [["" if np.isnan(v) else f"{v:.1f}" for v in row] for row in z.to_numpy(dtype=float)]
    fig = go.Figure(heat)
    fig.update_layout(coloraxis={"colorscale": "Blues", "cmin": 50.0, "cmax": 100.0, "colorbar": {"title": "AUC (%)"}})
    fig.update_yaxes(autorange="reversed")
    return layout(fig, title, height=max(360, 26 * len(matrix) + 160))
