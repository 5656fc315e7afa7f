"""Figures of the training page (loss, kNN and health curves) and the run browser (timings)."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from dashboard.figures.base import DASHES, EXTRA_COLORS, METHOD_COLORS, facets, layout, method_color, rgba
from dashboard.labels import method_label
from dashboard.logs import loss_part_label, smooth

__all__ = ["MAX_POINTS_PER_TRACE", "MIN_POINTS_TO_SMOOTH", "timings_figure", "training_figure"]

MAX_POINTS_PER_TRACE = 4000
MIN_POINTS_TO_SMOOTH = 20  # short series (e.g. one point per epoch) are drawn raw, with markers


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
    fig, cols = facets(
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
            dash = DASHES[seeds_by_method[method].index(run) % len(DASHES)]
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
                        line={"color": rgba(color, 0.25), "width": 1},
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
    return layout(fig, "Training curves: iteration values and per-epoch values", height=max(320 * rows, 380))


def _run_label(run: str, pts: pd.DataFrame) -> str:
    seed = pts["seed"].iloc[0]
    if seed is None or pd.isna(seed):
        return run
    return f"{method_label(pts['method'].iloc[0])} · seed {int(seed)}"


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
    palette = list(METHOD_COLORS.values()) + list(EXTRA_COLORS)
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
    return layout(fig, "Timings of the listed runs, by protocol", height=360)
