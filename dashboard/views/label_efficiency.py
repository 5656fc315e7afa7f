"""Label-efficiency curves: metric vs label fraction per method with CI bands."""

from __future__ import annotations

import streamlit as st

from dashboard import state, ui
from dashboard.data import aggregate_seeds, metric_options
from dashboard.figures import label_efficiency_figure
from dashboard.labels import PROTOCOL_LABELS, readable

_PROTOCOLS = ("finetune", "linear")


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    if not ui.page_intro(
        ctx,
        "Label efficiency",
        "Metric vs fraction of labelled training data (log axis), mean over the selected seeds with the runner's "
        "95 % interval over seeds and test resamples as a band (one seed: its own interval).",
        _PROTOCOLS,
    ):
        return
    rows = ctx.selected[ctx.selected["block"].isna()]
    protocols = [p for p in _PROTOCOLS if (rows["protocol"] == p).any()]
    protocol = st.radio(
        "Protocol", protocols, horizontal=True, format_func=lambda p: PROTOCOL_LABELS[p], key="le_protocol"
    )
    rows = rows[rows["protocol"] == protocol]
    metrics = ui.metric_choice(metric_options(rows, protocol), key="le_metric")
    rows = rows[rows["metric"] == rows["dataset"].map(metrics)]
    points = aggregate_seeds(rows, ["dataset", "method", "label_fraction", "metric"])
    if points.groupby("dataset")["label_fraction"].nunique().max() < 2:
        st.info("Only one label fraction per dataset in the selection: the curves are single points.")
    published = None
    if st.toggle("Show the paper's published numbers (dotted)", value=False, key="le_paper"):
        published = ui.published_points(ctx, protocol, ["dataset", "method", "label_fraction", "metric"])
    ui.plot(label_efficiency_figure(points, PROTOCOL_LABELS[protocol], published), f"label_efficiency_{protocol}")
    with st.expander("Data"):
        shown = points.drop(columns=["run_ids"]).assign(seeds=points["seeds"].map(lambda s: " ".join(map(str, s))))
        st.dataframe(readable(shown), hide_index=True)
        ui.csv_download(shown, f"label_efficiency_{protocol}", key="le")


ui.run_page(render)
