"""Results overview: the paper's four tables regenerated from our results."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import overview, state, ui
from dashboard.cka import cka_kinds, cka_metric_name
from dashboard.data import order_methods
from dashboard.figures import delta_figure
from dashboard.labels import PROTOCOL_LABELS, dataset_label, fraction_label, method_label, metric_label
from monai_ilm.results.differences import fresh_differences


def _controls(ctx: state.Context) -> tuple[bool, bool, str]:
    methods = order_methods(ctx.selected["method"])
    c1, c2, c3 = st.columns([1, 1, 1])
    show_paper = c1.toggle("Show the paper's published numbers", value=True, key="ov_paper")
    show_delta = c2.toggle("Show Δ to the reference method", value=True, key="ov_delta")
    default = methods.index(overview.REFERENCE) if overview.REFERENCE in methods else 0
    reference = c3.selectbox("Reference method", methods, index=default, format_func=method_label, key="ov_reference")
    return show_paper, show_delta, reference


def _paired_headline(ctx: state.Context, metrics: dict, reference: str) -> bool:
    """The runner's paired differences to the reference at low label fractions, with interval, n and seeds."""
    rows = fresh_differences(ctx.selected)  # a seed re-run since the summary makes its row stale
    rows = rows[
        (rows["kind"] == "paired_difference")
        & (rows["baseline"] == reference)
        & (rows["protocol"] == "finetune")
        & (rows["label_fraction"] <= 0.06 + 1e-12)
        & rows["block"].isna()
        & (rows["metric"] == rows["dataset"].map(metrics))
    ]
    if rows.empty:
        return False
    st.markdown(f"**Fine-tuning with ≤ 6 % labels: paired differences to {method_label(reference)}**")
    cells = rows.sort_values(["dataset", "label_fraction", "method"])
    cols = st.columns(min(len(cells), 4))
    for k, row in enumerate(cells.itertuples()):
        interval = "" if pd.isna(row.ci_low) else f"95 % CI {row.ci_low * 100:+.1f} to {row.ci_high * 100:+.1f}"
        cols[k % len(cols)].metric(
            f"{method_label(row.method)} · {fraction_label(row.label_fraction)} labels"
            + (f" · {dataset_label(row.dataset)}" if cells["dataset"].nunique() > 1 else ""),
            f"{row.value * 100:+.1f} points",
            help="Paired bootstrap over the same test resamples (monai_ilm.results.seeds); the paper reports about "
            "+5 points for the intermediate-layer losses.",
        )
        cols[k % len(cols)].caption(f"{interval} · n = {row.n} · seeds {row.seeds}")
    return True


def _headline(table, reference: str) -> None:
    gains = overview.low_label_gains(table, reference)
    if not gains:
        return
    st.caption(
        "No paired differences in these results (the experiment runner writes them to summary-*.csv): "
        "means of the differences below, without an interval."
    )
    cols = st.columns(len(gains))
    for col, (method, gain) in zip(cols, gains.items()):
        col.metric(
            f"{method_label(method)} vs {method_label(reference)}, ≤ 6 % labels",
            f"{gain * 100:+.1f} points",
            help="Mean difference of the fine-tuning metric over datasets and label fractions up to 6 % "
            "(the paper reports about +5 points for the intermediate-layer losses).",
        )


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    seeds = ", ".join(map(str, ctx.filters.seeds))
    if not ui.page_intro(
        ctx,
        "Results overview",
        f"The paper's tables regenerated from our results. Seeds {seeds or '–'} are averaged: value = mean; interval "
        "= the runner's two-stage bootstrap over seeds and test resamples (one seed: its own 95 % interval; none "
        "when several seeds have no summary row). ★ marks the best method per row (per dataset and column for "
        "tables with methods as rows; never on CKA); Δ is the difference to the reference method in display units.",
    ):
        return
    show_paper, show_delta, reference = _controls(ctx)
    metrics = ui.metric_choice(overview.performance_metric_options(ctx.collapsed), key="ov_metric")
    kinds = [k for k in cka_kinds(ctx.collapsed) if (ctx.collapsed["metric"] == k).any()]
    kind = kinds[0] if kinds else cka_metric_name("linear")
    if len(kinds) > 1:
        kind = st.selectbox("CKA of Table 3", kinds, key="ov_cka_kind", format_func=metric_label)
    published = state.paper_tables() if show_paper else {}
    present = set(ctx.selected["protocol"])
    for spec in overview.TABLES:
        st.subheader(spec.title)
        protocol = spec.protocols[0]
        if protocol not in ctx.filters.protocols and protocol in ctx.options["protocols"]:
            st.info(f"Protocol '{protocol}' ({PROTOCOL_LABELS[protocol]}) is filtered out in the sidebar.")
            continue
        if protocol not in present:
            st.info(f"No {PROTOCOL_LABELS[protocol]} rows (protocol '{protocol}') in the selected results.")
            continue
        table = state.table(ctx.key, spec.name, tuple(sorted(metrics.items())), kind)
        if isinstance(table, str):
            st.error(f"Cannot build this table from the results: {table}")
            continue
        if table.value.empty:
            st.info(f"No cells for this table with the chosen metric/CKA kind ({kind}).")
            continue
        if spec.name == "finetune" and not _paired_headline(ctx, metrics, reference):
            _headline(table, reference)
        paper_table = published.get(spec.name)
        compact = paper_table is not None and spec.name in ("feature_reuse", "probe")  # wide: one cell each
        text, best = overview.display_frame(table, reference, show_delta, paper_table, compact=compact)
        st.dataframe(ui.highlight(text, best), hide_index=True, width="stretch")
        if compact:
            st.caption(
                "Each cell: ours · the paper's (– where the paper has no number); intervals and Δ are in the CSV"
                + ("; Table 2 has the fine-tuned scores' intervals." if spec.name == "feature_reuse" else ".")
            )
        if spec.name == "feature_reuse":
            st.caption(
                f"CKA: {metric_label(kind)}"
                + (
                    "; the paper's values are RBF CKA with σ = 0.8 on subsets of 1,000 images, "
                    "not comparable cell for cell."
                    if show_paper
                    else "."
                )
            )
        ui.csv_download(overview.tidy_table(table, reference, paper_table), f"table_{spec.name}", key=spec.name)
        if spec.name == "finetune" and reference in table.value.columns and table.value.shape[1] > 1:
            ui.plot(delta_figure(overview.delta_to_reference(table, reference), reference), "finetune_delta")


ui.run_page(render)
