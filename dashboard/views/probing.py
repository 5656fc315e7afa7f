"""Layer-wise probing curves: metric vs block per method with CI bars."""

from __future__ import annotations

import streamlit as st

from dashboard import state, ui
from dashboard.data import aggregate_seeds, metric_options
from dashboard.figures import probing_figure
from dashboard.labels import readable


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    if not ui.page_intro(
        ctx,
        "Layer-wise probing",
        "A linear classifier on each block's pooled features: metric vs block, mean over the selected seeds "
        "with the mean per-seed 95 % interval as error bars.",
        ("probe",),
    ):
        return
    rows = ctx.selected[(ctx.selected["protocol"] == "probe") & ctx.selected["block"].notna()]
    if rows.empty:
        st.info("The probing rows of the selection have no block.")
        return
    metrics = ui.metric_choice(metric_options(rows, "probe"), key="pr_metric")
    rows = rows[rows["metric"] == rows["dataset"].map(metrics)]
    fractions = sorted(rows["label_fraction"].unique())
    if len(fractions) > 1:
        fraction = st.selectbox("Label fraction of the probe", fractions, index=len(fractions) - 1, key="pr_fraction")
        rows = rows[rows["label_fraction"] == fraction]
    points = aggregate_seeds(rows, ["dataset", "method", "block", "metric"])
    published = None
    if st.toggle("Show the paper's published numbers (dotted)", value=False, key="pr_paper"):
        published = ui.published_points(ctx, "probe", ["dataset", "method", "block", "metric"])
    ui.plot(probing_figure(points, published), "layerwise_probing")
    with st.expander("Data"):
        shown = points.drop(columns=["run_ids"]).assign(seeds=points["seeds"].map(lambda s: " ".join(map(str, s))))
        st.dataframe(readable(shown), hide_index=True)
        ui.csv_download(shown, "layerwise_probing", key="pr")


ui.run_page(render)
