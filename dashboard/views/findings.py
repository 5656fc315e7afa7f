"""KS distance and the AUC of each NIH finding, from the results rows."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import state, ui
from dashboard.data import order_datasets, order_methods
from dashboard.figures import findings_figure, ks_figure
from dashboard.labels import PROTOCOL_LABELS, dataset_label, fraction_label

_FINDING_PREFIX = "auc_"


def _ks(ctx: state.Context) -> None:
    st.subheader("KS distance to the 100 %-label model")
    points = ctx.collapsed[ctx.collapsed["protocol"] == "ks"]
    if points.empty:
        st.info("No KS rows (protocol 'ks') in the selection.")
        return
    ui.plot(ks_figure(points), "ks_distance")
    st.caption(
        "Kolmogorov-Smirnov statistic between the test probabilities of the model fine-tuned at a label "
        "fraction and the same method's model fine-tuned on all labels (mean over the selected seeds; "
        "0 = same distribution)."
    )
    ui.csv_download(points[["dataset", "method", "label_fraction", "metric", "value", "n", "seeds"]], "ks", key="ks")


def _findings(ctx: state.Context) -> None:
    st.subheader("AUC of each finding")
    rows = ctx.collapsed[ctx.collapsed["metric"].str.startswith(_FINDING_PREFIX) & ctx.collapsed["block"].isna()]
    if rows.empty:
        st.info("No per-finding rows (`auc_<finding>`, NIH) in the selection.")
        return
    c1, c2, c3 = st.columns(3)
    dataset = c1.selectbox("Dataset", order_datasets(rows["dataset"]), format_func=dataset_label, key="fd_dataset")
    rows = rows[rows["dataset"] == dataset]
    protocols = list(dict.fromkeys(rows["protocol"]))
    protocol = c2.selectbox("Protocol", protocols, format_func=lambda p: PROTOCOL_LABELS.get(p, p), key="fd_protocol")
    rows = rows[rows["protocol"] == protocol]
    fraction = c3.selectbox(
        "Labels", sorted(rows["label_fraction"].unique()), format_func=fraction_label, key="fd_fraction"
    )
    rows = rows[rows["label_fraction"] == fraction]
    matrix = rows.assign(finding=rows["metric"].str[len(_FINDING_PREFIX) :]).pivot_table(
        index="finding", columns="method", values="value", aggfunc="first"
    )
    matrix = matrix[order_methods(matrix.columns)]
    title = f"{dataset_label(dataset)}, {PROTOCOL_LABELS.get(protocol, protocol)}, {fraction_label(fraction)} labels"
    ui.plot(findings_figure(matrix, f"AUC per finding: {title}"), f"findings_{dataset}_{protocol}")
    st.caption("Findings absent from the test split have no AUC. Mean over the selected seeds, without an interval.")
    tidy = matrix.rename_axis(columns="method").stack().rename("auc").reset_index()
    ui.csv_download(pd.DataFrame(tidy), f"findings_{dataset}_{protocol}", key="fd")


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    if not ui.page_intro(
        ctx,
        "KS distance and findings",
        "How far low-label predictions are from full-label ones (KS distance), and the AUC of each finding.",
        ("ks", "finetune", "linear"),
    ):
        return
    _ks(ctx)
    st.divider()
    _findings(ctx)


ui.run_page(render)
