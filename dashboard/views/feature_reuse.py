"""CKA feature reuse: method x block heatmaps and the block x block matrix of a pair of encoders."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import cka, health, state, ui
from dashboard.data import order_datasets
from dashboard.figures import block_matrix_figure, method_block_figure
from dashboard.labels import dataset_label, fraction_label, method_label, metric_label


def _kind_picker(rows: pd.DataFrame) -> str:
    kinds = cka.cka_kinds(rows, present_only=True)  # only kernels the evaluation computed
    return (
        st.segmented_control("CKA kernel", kinds, default=kinds[0], format_func=metric_label, key="fr_kind") or kinds[0]
    )


def _method_block(ctx: state.Context, rows: pd.DataFrame, kind: str) -> None:
    st.subheader("Feature reuse per method and block")
    plain = rows[rows["metric"] == kind]
    fractions = sorted(plain["label_fraction"].unique())
    if not fractions:
        st.info(f"No feature-reuse rows with {metric_label(kind)} in the selection.")
        return
    fraction = st.selectbox(
        "Label fraction of the fine-tuning", fractions, format_func=fraction_label, key="fr_fraction"
    )
    datasets = order_datasets(plain["dataset"])
    matrices = {d: cka.method_block_matrix(rows, d, fraction, kind) for d in datasets}
    flags = _collapse_flags(ctx)
    ui.plot(
        method_block_figure(matrices, kind, fraction, {d: flags for d in matrices} if not flags.empty else None),
        f"feature_reuse_{kind}_{fraction_label(fraction)}",
    )
    if not flags.empty and flags.to_numpy().any():
        st.caption(
            f"⚠ = the pretrained features of this block collapsed (effective rank < {health.COLLAPSE_RANK:g} "
            "at the end of pretraining, see below): CKA near 1 there says little about feature reuse."
        )
    tidy = pd.concat(
        [
            m.rename_axis(index="method", columns="block").stack().rename("value").reset_index().assign(dataset=d)
            for d, m in matrices.items()
            if not m.empty
        ],
        ignore_index=True,
    )[["dataset", "method", "block", "value"]].assign(metric=kind, label_fraction=fraction)
    ui.csv_download(tidy, f"feature_reuse_{kind}", key="fr_mb")
    st.caption("CKA describes similarity, not quality: no cell is marked best.")


def _block_block(ctx: state.Context, rows: pd.DataFrame, kind: str) -> None:
    st.subheader("Block × block CKA of a pair of encoders")
    datasets = [d for d in order_datasets(rows["dataset"]) if state.cka_views(ctx.key, d, kind)]
    if not datasets:
        st.info(
            f"No block × block matrix of {metric_label(kind)} in these results. The "
            "feature-reuse evaluation writes it (linear CKA and its configured kernel); results written by older "
            "versions hold only the diagonal. Run the feature-reuse cells again to get it."
        )
        return
    c1, c2 = st.columns([1, 2])
    dataset = c1.selectbox("Dataset", datasets, format_func=dataset_label, key="fr_dataset")
    pairs = cka.pair_options(state.cka_views(ctx.key, dataset, kind))
    title = c2.selectbox("Encoders (A vs B)", list(pairs), key="fr_pair")
    pair = pairs[title]
    matrix = cka.block_matrix(rows, dataset, kind, pair)
    if matrix.empty:
        st.info("This pair has no entries.")
        return
    flags = health.pair_flags(matrix, pair, _collapse_flags(ctx))
    ui.plot(block_matrix_figure(matrix, pair, kind, dataset, flags), f"cka_matrix_{dataset}_{kind}")
    if flags.to_numpy().any():
        st.caption(
            f"⚠ = a block of a pretrained encoder in this pair collapsed (effective rank < {health.COLLAPSE_RANK:g}): "
            "CKA with its features is near 1 whatever the network does. The fine-tuned encoders' health is not "
            "logged, so their blocks are not flagged."
        )
    tidy = matrix.rename_axis(index="block_a", columns="block_b").stack().rename("value").reset_index()
    tidy = tidy.assign(dataset=dataset, encoder_a=pair.labels[0], encoder_b=pair.labels[1], metric=kind)
    ui.csv_download(tidy, f"cka_matrix_{dataset}_{kind}", key="fr_bb")


def _selected_ranks(ctx: state.Context) -> pd.DataFrame:
    ranks = state.block_ranks(tuple(str(r) for r in ctx.paths.log_roots))
    if ranks.empty:
        return ranks
    keep = ranks["method"].isin(ctx.filters.methods) & ranks["seed"].isin(list(ctx.filters.seeds))
    return ranks[keep]


def _collapse_flags(ctx: state.Context) -> pd.DataFrame:
    return health.collapsed_blocks(_selected_ranks(ctx))


def _health(ctx: state.Context) -> None:
    st.subheader("Representation health of the pretrained encoders")
    ranks = _selected_ranks(ctx)
    if ranks.empty:
        st.info(
            "No effective rank per block in the pretraining logs (`health/effective_rank_layer<k>`, logged by "
            "RepresentationHealthHandler); the evaluation does not record the health of the fine-tuned encoders."
        )
        return
    table = ranks.assign(
        Method=ranks["method"].map(method_label),
        Seed=ranks["seed"],
        Block=ranks["block"].map(lambda b: f"B{int(b)}"),
    ).pivot_table(index=["Method", "Seed"], columns="Block", values="effective_rank", aggfunc="first")
    collapsed = table < health.COLLAPSE_RANK
    st.dataframe(
        table.style.format("{:.1f}").apply(
            lambda _: collapsed.replace({True: "background-color: rgba(214, 150, 60, 0.25)", False: ""}), axis=None
        ),
        width="content",
    )
    n = int(collapsed.to_numpy().sum())
    st.caption(
        f"Effective rank (Roy & Vetterli 2007) of each stage's pooled features at the last pretraining epoch; "
        f"shaded: below {health.COLLAPSE_RANK:g} (collapsed, {n} cell(s)). Near 1, one direction holds almost all "
        "the variance and any CKA with these features is close to 1. The evaluation does not record the health of "
        "the fine-tuned encoders, so only the pretrained side is shown."
    )


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    if not ui.page_intro(
        ctx,
        "CKA feature reuse",
        "Centred kernel alignment between the features of a block before and after fine-tuning (high = the "
        "fine-tuned block reuses the pretrained features), mean over the selected seeds.",
        ("feature_reuse",),
    ):
        return
    rows = ctx.selected[(ctx.selected["protocol"] == "feature_reuse") & ctx.selected["block"].notna()]
    kind = _kind_picker(rows)
    _method_block(ctx, rows, kind)
    st.divider()
    _block_block(ctx, rows, kind)
    st.divider()
    _health(ctx)


ui.run_page(render)
