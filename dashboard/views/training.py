"""Training curves: every loss part of the pretraining runs, from TensorBoard event files or metrics.csv."""

from __future__ import annotations

import streamlit as st

from dashboard import logs, state, ui
from dashboard.figures import training_figure


def _default_runs(ctx: state.Context, found: list[logs.TrainingRun]) -> list[str]:
    """Runs matching the sidebar's methods and seeds (all runs if none match)."""
    chosen = [
        r.name for r in found if r.method in ctx.filters.methods and (r.seed is None or r.seed in ctx.filters.seeds)
    ]
    return chosen or [r.name for r in found]


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    st.title("Training curves")
    st.caption(
        "Every loss part (InfoNCE, each stage's intermediate term, validation) per logged step, and per epoch "
        "the online kNN score (knn/) and the representation health (health/), from the "
        "pretraining runs' TensorBoard event files or metrics.csv."
    )
    ui.show_problems(list(ctx.loaded.problems), str(ctx.paths.results_dir))
    roots = tuple(str(r) for r in ctx.paths.log_roots)
    found = state.discover_training_runs(roots)
    if not found:
        st.info(
            "No training logs found. Looked for `<method>_seed<seed>/` run folders with TensorBoard event files "
            "(e.g. `tensorboard/events.out.tfevents.*`) or a `metrics.csv` (step, tag, value) in: "
            + ", ".join(f"`{r}`" for r in roots)
        )
        return
    frame, problems = state.training_logs(tuple(found), logs.logs_signature(found))
    ui.show_problems(problems, " or ".join(roots), what="training log")
    if frame.empty:
        st.warning("The training logs hold no scalar whose tag contains 'loss'.")
        return
    by_name = {r.name: r for r in found if r.name in set(frame["run"])}
    names = st.multiselect(
        "Runs",
        list(by_name),
        default=[n for n in _default_runs(ctx, found) if n in by_name],
        format_func=lambda n: by_name[n].label,
        key="tr_runs",
    )
    tags = sorted(frame.loc[frame["run"].isin(names), "tag"].unique())
    chosen_tags = st.multiselect(
        "Loss parts", tags, default=tags, format_func=lambda t: f"{t} · {logs.loss_part_label(t)}", key="tr_tags"
    )
    c1, c2, c3 = st.columns(3)
    weight = c1.slider("Smoothing", 0.0, 0.95, 0.6, 0.05, key="tr_smooth", help="TensorBoard-style moving average")
    log_y = c2.toggle("Log loss axis", value=False, key="tr_logy")
    x_axis = c3.radio(
        "x axis",
        ["step", "wall_time"],
        horizontal=True,
        key="tr_x",
        format_func=lambda x: "step" if x == "step" else "wall time",
    )
    shown = frame[frame["run"].isin(names) & frame["tag"].isin(chosen_tags)]
    if shown.empty:
        st.info("Choose at least one run and one loss part.")
        return
    ui.plot(training_figure(shown, weight, log_y, x_axis), "training_curves")
    with st.expander("Sources"):
        st.dataframe(
            shown.groupby(["run", "source", "tag"], as_index=False).agg(
                points=("step", "size"), last_step=("step", "max")
            ),
            hide_index=True,
        )
        ui.csv_download(shown, "training_curves", key="tr")


ui.run_page(render)
