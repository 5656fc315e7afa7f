"""Small Streamlit helpers shared by the pages: messages, guarded rendering, charts and downloads."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import state
from dashboard.data import FileProblem, aggregate_seeds, default_metric
from dashboard.figures import chart_config
from dashboard.labels import PROTOCOL_LABELS, dataset_label, metric_label
from dashboard.state import Context

__all__ = [
    "csv_download",
    "highlight",
    "metric_choice",
    "page_intro",
    "plot",
    "published_points",
    "run_page",
    "show_problems",
]

_MAX_LISTED = 8
_BEST_STYLE = "background-color: rgba(85, 168, 104, 0.22); font-weight: 600"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


def show_problems(problems: Sequence[FileProblem], folder: str, what: str = "results file") -> None:
    """One error box per skipped file (the first few, the rest in an expander), naming the file and the problem."""
    if not problems:
        return

    def one(p: FileProblem) -> None:
        st.error(f"Skipped {what} `{p.file}` in `{folder}`: {p.problem}", icon="⚠️")

    for p in problems[:_MAX_LISTED]:
        one(p)
    if len(problems) > _MAX_LISTED:
        with st.expander(f"{len(problems) - _MAX_LISTED} more skipped files"):
            for p in problems[_MAX_LISTED:]:
                one(p)


def page_intro(ctx: Context, title: str, description: str, protocols: Sequence[str] = ()) -> bool:
    """Title, description and the state of the results; False when the page has nothing to show.

    Shows, in order: skipped files (which file, what is wrong), a missing or empty results directory, an
    empty selection, and protocols the page needs that are missing or filtered out.

    Args:
        ctx: the page context.
        title: page title.
        description: one line under the title.
        protocols: protocols the page needs (any of them suffices).

    Returns:
        Whether there are rows to show.
    """
    st.title(title)
    st.caption(description)
    folder = str(ctx.paths.results_dir)
    show_problems(list(ctx.loaded.problems), folder)
    if not ctx.loaded.exists:
        st.warning(
            f"The results directory `{folder}` does not exist (taken from {ctx.paths.source}). Start the dashboard "
            "with `python -m monai_ilm dashboard --results <dir>` or set `MONAI_ILM_RESULTS`; `make demo` writes "
            "`demo_output/results`."
        )
        return False
    if ctx.loaded.frame.empty:
        if ctx.loaded.problems:
            st.warning(f"No usable results in `{folder}`: every results file was skipped (see above).")
        else:
            st.info(f"No results yet in `{folder}`: no `<run_id>.csv` files. Run an experiment or `make demo`.")
        return False
    if ctx.selected.empty:
        st.info("No results match the filters in the sidebar.")
        return False
    notes = state.caveats(ctx.key)
    if notes:
        st.info("**Read these numbers as a demonstration.** " + " ".join(notes), icon="⚠️")
    if protocols:
        present = set(ctx.selected["protocol"])
        if not present.intersection(protocols):
            names = " or ".join(f"'{p}' ({PROTOCOL_LABELS.get(p, p)})" for p in protocols)
            filtered_out = [p for p in protocols if p in ctx.options["protocols"] and p not in ctx.filters.protocols]
            if filtered_out:
                st.info(f"This page needs protocol {names}; it is filtered out in the sidebar.")
            else:
                st.info(f"No rows with protocol {names} in the selected results.")
            return False
    return True


def run_page(render: Callable[[], None]) -> None:
    """Run a page body; an unexpected error becomes a message in the page (details folded away)."""
    try:
        render()
    except Exception as err:  # noqa: BLE001 - the page must never show a bare traceback
        st.error(f"This page could not be drawn: {type(err).__name__}: {err}")
        with st.expander("Technical details"):
            st.code(traceback.format_exc(), language="text")


def plot(fig: go.Figure, name: str, key: str | None = None) -> None:
    """Show a figure (mode bar camera = PNG) with a button for a self-contained interactive HTML file."""
    slug = _slug(name)
    st.plotly_chart(fig, config=chart_config(slug), key=key or f"chart_{slug}")
    st.download_button(
        "Download figure (HTML)",
        data=lambda: fig.to_html(include_plotlyjs=True, full_html=True).encode("utf-8"),
        file_name=f"{slug}.html",
        mime="text/html",
        key=f"dl_fig_{key or slug}",
        on_click="ignore",
    )


def csv_download(frame: pd.DataFrame, name: str, label: str = "Download table (CSV)", key: str | None = None) -> None:
    """A download button for a tidy table as CSV (generated on click)."""
    slug = _slug(name)
    st.download_button(
        label,
        data=lambda: frame.to_csv(index=False).encode("utf-8"),
        file_name=f"{slug}.csv",
        mime="text/csv",
        key=f"dl_csv_{key or slug}",
        on_click="ignore",
    )


def highlight(text: pd.DataFrame, best: pd.DataFrame):
    """A Styler that shades the best cells of a display table."""
    styles = np.where(best.to_numpy(dtype=bool), _BEST_STYLE, "")
    return text.style.apply(lambda _: pd.DataFrame(styles, index=text.index, columns=text.columns), axis=None)


def metric_choice(options: Mapping[str, Sequence[str]], key: str) -> dict[str, str]:
    """The metric per dataset: the paper's metric by default, a select box where a dataset has several.

    Args:
        options: ``{dataset: metric names}``.
        key: widget key prefix.

    Returns:
        ``{dataset: metric}`` for every dataset of ``options`` with at least one metric.
    """
    chosen = {d: default_metric(m, d) for d, m in options.items() if m}
    ambiguous = {d: m for d, m in options.items() if len(m) > 1}
    if ambiguous:
        with st.expander("Metric per dataset", expanded=False):
            for dataset, names in ambiguous.items():
                chosen[dataset] = st.selectbox(
                    dataset_label(dataset),
                    list(names),
                    index=list(names).index(chosen[dataset]),
                    format_func=metric_label,
                    key=f"{key}_{dataset}",
                )
    return chosen


def published_points(ctx: Context, protocol: str, keys: Sequence[str]) -> pd.DataFrame:
    """The paper's numbers of one protocol for the selected datasets and methods, shaped like our points.

    For ``protocol="linear"`` the paper's fully trained Supervised column (a fine-tuning row) is left out.
    """
    rows = state.paper_rows()
    rows = rows[
        (rows["protocol"] == protocol)
        & rows["dataset"].isin(ctx.filters.datasets)
        & rows["method"].isin(ctx.filters.methods)
    ]
    return aggregate_seeds(rows, keys)
