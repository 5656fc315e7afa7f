"""Plotly figures of the dashboard, built from plain frames (no Streamlit here).

Colours are fixed per method across all figures; performance values are shown in percent, CKA unscaled.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from dashboard.cka import EncoderPair
from dashboard.data import dataset_label, fraction_label, method_label, order_datasets, order_methods
from dashboard.logs import loss_part_label, smooth

__all__ = [
    "METHOD_COLORS",
    "block_matrix_figure",
    "chart_config",
    "delta_figure",
    "findings_figure",
    "ks_figure",
    "label_efficiency_figure",
    "method_block_figure",
    "probing_figure",
    "timings_figure",
    "training_figure",
]

METHOD_COLORS = {"moco": "#4C72B0", "mse": "#DD8452", "barlow": "#55A868", "supervised": "#7F7F7F"}
_EXTRA_COLORS = ("#C44E52", "#8172B3", "#937860", "#DA8BC3", "#CCB974", "#64B5CD")
_DASHES = ("solid", "dot", "dash", "dashdot", "longdash", "longdashdot")
MAX_POINTS_PER_TRACE = 4000
MIN_POINTS_TO_SMOOTH = 20  # short series (e.g. one point per epoch) are drawn raw, with markers


def method_color(method: str) -> str:
    """The colour of a method; unknown methods get a stable colour from a second palette."""
    if method in METHOD_COLORS:
        return METHOD_COLORS[method]
    return _EXTRA_COLORS[sum(map(ord, method)) % len(_EXTRA_COLORS)]


def _rgba(hex_color: str, alpha: float) -> str:
    r, g, b = (int(hex_color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({r},{g},{b},{alpha})"


def chart_config(filename: str) -> dict:
    """``st.plotly_chart(config=...)``: the mode bar's camera button downloads a 2x PNG named ``filename``."""
    return {
        "displaylogo": False,
        "toImageButtonOptions": {"format": "png", "filename": filename, "scale": 2},
        "modeBarButtonsToRemove": ["lasso2d", "select2d"],
    }


def _facets(n: int, titles: Sequence[str], cols: int | None = None, **kwargs) -> tuple[go.Figure, int]:
    cols = max(1, min(n, cols or n))
    rows = max(1, math.ceil(n / cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), **kwargs)
    return fig, cols


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    plot_height = max(height - 150, 100)
    fig.update_layout(
        title={"text": title, "x": 0.0, "xanchor": "left"},
        height=height,
        margin={"l": 60, "r": 20, "t": 80, "b": 70},
        legend={"orientation": "h", "yanchor": "top", "y": -75 / plot_height, "x": 0.0},
        hovermode="closest",
    )
    return fig


def _pct(values) -> np.ndarray:
    return np.asarray(values, dtype=float) * 100.0


def _ci_text(row: pd.Series, scale: float = 100.0, decimals: int = 1) -> str:
    text = f"{row['value'] * scale:.{decimals}f}"
    if not (pd.isna(row["ci_low"]) or pd.isna(row["ci_high"])):
        text += f" ({row['ci_low'] * scale:.{decimals}f}–{row['ci_high'] * scale:.{decimals}f})"
    seeds = row.get("seeds")
    if isinstance(seeds, tuple) and len(seeds) > 1:
        text += f"<br>mean of seeds {', '.join(map(str, seeds))}"
    return text


def _metric_title(points: pd.DataFrame, dataset: str) -> str:
    metrics = sorted(points.loc[points["dataset"] == dataset, "metric"].unique())
    return f"{', '.join(metrics)} (%)" if metrics else ""


def _published_trace(
    fig: go.Figure, pts: pd.DataFrame, x: np.ndarray, method: str, shown: set[str], row: int, col: int, what: str
) -> None:
    """The paper's numbers of one method as a dotted line with open markers."""
    key = f"{method} (paper)"
    fig.add_trace(
        go.Scatter(
            x=x,
            y=_pct(pts["value"]),
            mode="lines+markers",
            name=f"{method_label(method)} (paper)",
            legendgroup=key,
            showlegend=key not in shown,
            line={"color": method_color(method), "width": 1.2, "dash": "dot"},
            marker={"size": 8, "symbol": "circle-open"},
            text=[_ci_text(row) for _, row in pts.iterrows()],
            hovertemplate=f"<b>{method_label(method)}, published</b><br>{what}: %{{text}}<extra></extra>",
        ),
        row=row,
        col=col,
    )
    shown.add(key)


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
    datasets = order_datasets(points["dataset"])
    fig, cols = _facets(len(datasets), [dataset_label(d) for d in datasets], horizontal_spacing=0.07)
    shown: set[str] = set()
    for k, dataset in enumerate(datasets):
        r, c = k // cols + 1, k % cols + 1
        sub = points[points["dataset"] == dataset]
        for method in order_methods(sub["method"]):
            pts = sub[sub["method"] == method].sort_values("label_fraction")
            x = pts["label_fraction"].to_numpy(dtype=float)
            color = method_color(method)
            has_ci = pts["ci_low"].notna().to_numpy() & pts["ci_high"].notna().to_numpy()
            if has_ci.any():
                lo, hi = _pct(pts["ci_low"])[has_ci], _pct(pts["ci_high"])[has_ci]
                fig.add_trace(
                    go.Scatter(
                        x=np.concatenate([x[has_ci], x[has_ci][::-1]]),
                        y=np.concatenate([hi, lo[::-1]]),
                        mode="lines",
                        fill="toself",
                        fillcolor=_rgba(color, 0.18),
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
                    y=_pct(pts["value"]),
                    mode="lines+markers",
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=method not in shown,
                    line={"color": color, "width": 2},
                    marker={"size": 7},
                    text=[_ci_text(row) for _, row in pts.iterrows()],
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
                    _published_trace(
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
        fig.update_yaxes(title_text=_metric_title(points, dataset), row=r, col=c)
    return _layout(fig, f"Label efficiency ({protocol}): metric vs label fraction, mean over seeds with CI bands")


def probing_figure(points: pd.DataFrame, published: pd.DataFrame | None = None) -> go.Figure:
    """Metric vs block per method with CI error bars, one panel per dataset.

    Args:
        points: one row per (dataset, method, block) with ``metric``, ``value``, ``ci_low``, ``ci_high``.
        published: the paper's numbers in the same form, drawn dotted (optional).

    Returns:
        The figure.
    """
    datasets = order_datasets(points["dataset"])
    fig, cols = _facets(len(datasets), [dataset_label(d) for d in datasets], horizontal_spacing=0.07)
    shown: set[str] = set()
    for k, dataset in enumerate(datasets):
        r, c = k // cols + 1, k % cols + 1
        sub = points[points["dataset"] == dataset]
        methods = order_methods(sub["method"])
        for m_i, method in enumerate(methods):
            pts = sub[sub["method"] == method].sort_values("block")
            blocks = pts["block"].to_numpy(dtype=float)
            offset = (m_i - (len(methods) - 1) / 2) * 0.07  # dodge overlapping error bars
            value = _pct(pts["value"])
            lo = np.where(pts["ci_low"].isna(), np.nan, value - _pct(pts["ci_low"]))
            hi = np.where(pts["ci_high"].isna(), np.nan, _pct(pts["ci_high"]) - value)
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
                    text=[_ci_text(row) for _, row in pts.iterrows()],
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
                    _published_trace(
                        fig, pub, pub["block"].to_numpy(dtype=float) + offset, method, shown, r, c, "block"
                    )
        blocks = sorted(int(b) for b in sub["block"].unique())
        fig.update_xaxes(tickvals=blocks, ticktext=[f"B{b}" for b in blocks], title_text="block", row=r, col=c)
        fig.update_yaxes(title_text=_metric_title(points, dataset), row=r, col=c)
    return _layout(
        fig, "Layer-wise probing: linear classifier on each block's pooled features (mean over seeds, CI bars)"
    )


def _heatmap(
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


def _zrange(frames: Sequence[pd.DataFrame]) -> tuple[float, float]:
    values = np.concatenate([f.to_numpy(dtype=float).ravel() for f in frames if not f.empty] or [np.array([0.0])])
    finite = values[np.isfinite(values)]
    low = float(min(0.0, finite.min())) if finite.size else 0.0
    return low, 1.0


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
    fig, cols = _facets(
        max(len(items), 1), [dataset_label(d) for d, _ in items] or [""], horizontal_spacing=0.04, shared_yaxes=True
    )
    zmin, zmax = _zrange([m for _, m in items])
    for k, (dataset, matrix) in enumerate(items):
        y = [method_label(m) for m in matrix.index]
        x = [f"B{b}" for b in matrix.columns]
        heatmap = _heatmap(matrix, x, y, zmin, zmax, dataset, (flags or {}).get(dataset))
        fig.add_trace(heatmap, row=k // cols + 1, col=k % cols + 1)
        fig.update_yaxes(autorange="reversed", row=k // cols + 1, col=k % cols + 1)
    fig.update_layout(coloraxis={"colorscale": "Viridis", "cmin": zmin, "cmax": zmax, "colorbar": {"title": kind}})
    return _layout(
        fig,
        f"Feature reuse ({kind}) between pretrained and fine-tuned blocks, {fraction_label(label_fraction)} labels",
        height=380,
    )


def block_matrix_figure(matrix: pd.DataFrame, pair: EncoderPair, kind: str, dataset: str) -> go.Figure:
    """The block x block CKA matrix of an encoder pair.

    Args:
        matrix: from :func:`dashboard.cka.block_matrix` (index: blocks of A, columns: blocks of B).
        pair: the encoder pair.
        kind: the CKA metric.
        dataset: the dataset.

    Returns:
        The figure.
    """
    a, b = pair.labels
    zmin, zmax = _zrange([matrix])
    fig = go.Figure(
        _heatmap(matrix, [f"B{j}" for j in matrix.columns], [f"B{i}" for i in matrix.index], zmin, zmax, "cka")
    )
    fig.update_layout(coloraxis={"colorscale": "Viridis", "cmin": zmin, "cmax": zmax, "colorbar": {"title": kind}})
    fig.update_xaxes(title_text=b, side="bottom")
    fig.update_yaxes(title_text=a, autorange="reversed")
    fig = _layout(fig, f"{kind}, {dataset_label(dataset)}: block x block", height=460)
    fig.update_layout(width=None)
    return fig


def _thin(x: np.ndarray, y: np.ndarray, limit: int = MAX_POINTS_PER_TRACE) -> tuple[np.ndarray, np.ndarray]:
    """Keep at most ``limit`` evenly spaced points (always the last one), so long runs stay responsive."""
    if len(x) <= limit:
        return x, y
    idx = np.unique(np.append(np.linspace(0, len(x) - 1, limit).astype(int), len(x) - 1))
    return x[idx], y[idx]


def _panels(logs: pd.DataFrame) -> list[tuple[str, str, str]]:
    """``(tag, axis, family)`` of every panel: iteration and epoch values apart, and a stage term of each
    intermediate loss (MSE, Barlow Twins: different scales) in its own panel."""
    if "axis" not in logs:
        logs = logs.assign(axis="iteration")
    stage = logs["tag"].map(lambda t: loss_part_label(t).startswith("stage"))
    family = logs["method"].where(stage, "").astype(str)
    keys = set(zip(logs["tag"], logs["axis"], family))

    def order(key: tuple[str, str, str]) -> tuple:
        tag, axis, fam = key
        return (
            tag.lower().startswith(("knn/", "health/")),
            loss_part_label(tag).startswith("stage"),
            "val" in tag.lower(),
            axis == "epoch",
            tag,
            fam,
        )

    return sorted(keys, key=order)


def _panel_title(tag: str, axis: str, family: str) -> str:
    label = loss_part_label(tag)
    title = f"{tag} · {label}" if label != tag else tag
    if axis == "epoch" and not _is_epoch_tag(tag):
        title += " (epoch mean)"
    return f"{title} · {method_label(family)}" if family else title


def _is_epoch_tag(tag: str) -> bool:
    return bool(re.match(r"^(val[_/]|validation[_/]|knn/|health/)", tag, re.IGNORECASE))


def training_figure(
    logs: pd.DataFrame,
    smoothing: float = 0.0,
    log_y: bool = False,
    x_axis: str = "step",
    columns: int = 3,
) -> go.Figure:
    """Training curves: one panel per tag and step kind, one line per run (colour = method, dash = seed).

    Iteration values (x = iteration) and per-epoch values (epoch means, validation, kNN, health; x = epoch)
    are never drawn on one line, and the stage terms of different intermediate losses get separate panels,
    so each y-scale fits its curve.

    Args:
        logs: the frame of :func:`dashboard.logs.load_runs` (already restricted to the runs and tags to show).
        smoothing: TensorBoard-style EMA weight in [0, 1) (the raw curve is drawn faintly behind); series with
            fewer than 20 points are not smoothed.
        log_y: logarithmic y axes (ticks as plain numbers).
        x_axis: ``"step"`` (iteration or epoch) or ``"wall_time"`` (minutes since the run's first logged point).
        columns: panels per row.

    Returns:
        The figure.
    """
    if "axis" not in logs:
        logs = logs.assign(axis="iteration")
    panels = _panels(logs)
    titles = [_panel_title(*key) for key in panels]
    n_rows = math.ceil(max(len(panels), 1) / max(1, min(len(panels), columns)))
    # plotly refuses a spacing above 1 / (rows - 1): many tags (losses, kNN, health) need a tighter one
    spacing = min(0.12, 0.5 / max(n_rows - 1, 1))
    fig, cols = _facets(
        max(len(panels), 1), titles or [""], cols=columns, horizontal_spacing=0.06, vertical_spacing=spacing
    )
    runs = list(dict.fromkeys(logs["run"]))
    seeds_by_method: dict[str, list] = {}
    for run in runs:
        first = logs[logs["run"] == run].iloc[0]
        seeds_by_method.setdefault(first["method"], []).append(run)
    shown: set[str] = set()
    for k, (tag, axis, family) in enumerate(panels):
        r, c = k // cols + 1, k % cols + 1
        for run in runs:
            pts = logs[(logs["run"] == run) & (logs["tag"] == tag) & (logs["axis"] == axis)]
            if family:
                pts = pts[pts["method"] == family]
            if pts.empty:
                continue
            wall = x_axis == "wall_time" and pts["wall_time"].notna().all()
            pts = pts.sort_values(["wall_time", "step"] if wall else ["step", "wall_time"])
            method = pts["method"].iloc[0]
            color = method_color(method)
            dash = _DASHES[seeds_by_method[method].index(run) % len(_DASHES)]
            if wall:
                x = (pts["wall_time"].to_numpy() - logs.loc[logs["run"] == run, "wall_time"].min()) / 60.0
            else:
                x = pts["step"].to_numpy(dtype=float)
            y = pts["value"].to_numpy(dtype=float)
            label = _run_label(run, pts)
            if smoothing > 0 and len(y) >= MIN_POINTS_TO_SMOOTH:
                xr, yr = _thin(x, y)
                fig.add_trace(
                    go.Scatter(
                        x=xr,
                        y=yr,
                        mode="lines",
                        line={"color": _rgba(color, 0.25), "width": 1},
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=run,
                    ),
                    row=r,
                    col=c,
                )
                y = smooth(y, smoothing)
            xs, ys = _thin(x, y)
            x_name = "minutes" if wall else axis
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="lines" if len(xs) >= MIN_POINTS_TO_SMOOTH else "lines+markers",
                    name=label,
                    legendgroup=run,
                    showlegend=run not in shown,
                    line={"color": color, "width": 1.8, "dash": dash},
                    hovertemplate=f"<b>{label}</b><br>{tag}<br>{x_name} %{{x}}: %{{y:.4g}}<extra></extra>",
                ),
                row=r,
                col=c,
            )
            shown.add(run)
        if x_axis == "wall_time":
            fig.update_xaxes(title_text="minutes", row=r, col=c)
        else:  # whole epochs / iterations only: no 1.5 ticks
            last = logs.loc[(logs["tag"] == tag) & (logs["axis"] == axis), "step"].max()
            fig.update_xaxes(title_text=axis, tickformat="d", dtick=1 if last <= 12 else None, row=r, col=c)
        if log_y:  # plain numbers, not plotly's digit-only "5 2 1" labels between decades
            fig.update_yaxes(type="log", tickformat=".2~g", row=r, col=c)
    rows = math.ceil(max(len(panels), 1) / cols)
    return _layout(fig, "Training curves: iteration values and per-epoch values", height=max(320 * rows, 380))


def _run_label(run: str, pts: pd.DataFrame) -> str:
    seed = pts["seed"].iloc[0]
    if seed is None or pd.isna(seed):
        return run
    return f"{method_label(pts['method'].iloc[0])} · seed {int(seed)}"


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
    fig, cols = _facets(
        max(len(datasets), 1), [dataset_label(d) for d in datasets] or [""], horizontal_spacing=0.06, shared_yaxes=True
    )
    methods = [m for m in order_methods(delta.columns) if m != reference and delta[m].notna().any()]
    for k, dataset in enumerate(datasets):
        sub = delta.xs(dataset, level="dataset").sort_index()
        labels = [fraction_label(f) for f in sub.index]
        for method in methods:
            fig.add_trace(
                go.Bar(
                    x=labels,
                    y=sub[method].to_numpy(dtype=float) * scale,
                    name=method_label(method),
                    legendgroup=method,
                    showlegend=k == 0,
                    marker_color=method_color(method),
                    hovertemplate=f"<b>{method_label(method)}</b><br>%{{x}} labels: %{{y:+.1f}} points<extra></extra>",
                ),
                row=k // cols + 1,
                col=k % cols + 1,
            )
        fig.update_xaxes(title_text="label fraction", type="category", row=k // cols + 1, col=k % cols + 1)
    fig.update_yaxes(title_text=f"Δ to {method_label(reference)} (points)", row=1, col=1)
    fig.update_yaxes(zeroline=True, zerolinewidth=1.5, zerolinecolor="#888")
    fig.update_layout(barmode="group")
    return _layout(fig, f"Fine-tuning: difference to {method_label(reference)} by label fraction", height=360)


def timings_figure(summary: pd.DataFrame) -> go.Figure | None:
    """Distribution of the runs' timings (one box with all points per timing and protocol).

    Args:
        summary: the run browser's table (:func:`dashboard.runs.run_summaries`), timing columns ``"time: <name>"``.

    Returns:
        The figure, or None when no run has a numeric timing.
    """
    columns = [c for c in summary.columns if str(c).startswith("time: ")]
    numeric = {c: pd.to_numeric(summary[c], errors="coerce") for c in columns}
    columns = [c for c in columns if numeric[c].notna().any()]
    if not columns:
        return None
    fig = go.Figure()
    protocols = list(dict.fromkeys(summary["protocols"].fillna("")))
    palette = list(METHOD_COLORS.values()) + list(_EXTRA_COLORS)
    for i, protocol in enumerate(protocols):
        mask = (summary["protocols"].fillna("") == protocol).to_numpy()
        xs, ys, ids = [], [], []
        for c in columns:
            values = numeric[c][mask]
            keep = values.notna().to_numpy()
            xs += [c.removeprefix("time: ")] * int(keep.sum())
            ys += list(values[keep])
            ids += list(summary.loc[mask, "run_id"][keep])
        if not ys:
            continue
        fig.add_trace(
            go.Box(
                x=xs,
                y=ys,
                name=protocol or "(unknown)",
                boxpoints="all",
                jitter=0.4,
                pointpos=0,
                marker={"color": palette[i % len(palette)], "size": 5},
                line={"width": 1},
                text=ids,
                hovertemplate="%{text}<br>%{x}: %{y:.4g}<extra></extra>",
            )
        )
    fig.update_layout(boxmode="group")
    fig.update_yaxes(title_text="value (as logged, e.g. seconds)")
    return _layout(fig, "Timings of the listed runs, by protocol", height=360)


def ks_figure(points: pd.DataFrame) -> go.Figure:
    """KS distance of each method's test probabilities to its own 100 %-label model, per label fraction.

    Args:
        points: seed-averaged ``protocol="ks"`` rows (``dataset``, ``method``, ``label_fraction``, ``value``).

    Returns:
        The figure: grouped bars, one panel per dataset.
    """
    datasets = order_datasets(points["dataset"])
    fig, cols = _facets(max(len(datasets), 1), [dataset_label(d) for d in datasets] or [""], horizontal_spacing=0.06)
    for k, dataset in enumerate(datasets):
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
                    showlegend=k == 0,
                    hovertemplate=f"{method_label(method)} · %{{x}}: %{{y:.3f}}<extra></extra>",
                ),
                row=k // cols + 1,
                col=k % cols + 1,
            )
        fig.update_xaxes(title_text="labels", row=k // cols + 1, col=k % cols + 1)
        fig.update_yaxes(
            title_text="KS distance to 100 % labels", rangemode="tozero", row=k // cols + 1, col=k % cols + 1
        )
    fig.update_layout(barmode="group")
    return _layout(fig, "KS distance of the test probabilities: label fraction vs 100 % labels", height=400)


def findings_figure(matrix: pd.DataFrame, title: str) -> go.Figure:
    """Per-finding AUC heatmap, finding x method (in percent).

    Args:
        matrix: index = findings, columns = methods, values = AUC in [0, 1].
        title: the figure title.

    Returns:
        The figure.
    """
    z = matrix * 100.0
    heat = _heatmap(z, [method_label(m) for m in matrix.columns], list(matrix.index), 50.0, 100.0, "auc")
    heat.text = [["" if np.isnan(v) else f"{v:.1f}" for v in row] for row in z.to_numpy(dtype=float)]
    fig = go.Figure(heat)
    fig.update_layout(coloraxis={"colorscale": "Blues", "cmin": 50.0, "cmax": 100.0, "colorbar": {"title": "AUC (%)"}})
    fig.update_yaxes(autorange="reversed")
    return _layout(fig, title, height=max(360, 26 * len(matrix) + 160))
