"""Run browser: config, checkpoint, seed and timings of every run behind a cell."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import runs, state, ui
from dashboard.figures import timings_figure
from dashboard.labels import PROTOCOL_LABELS, dataset_label, fraction_label, method_label, readable

_ANY = "(any)"


def _pick(label: str, values, key: str, fmt=str):
    options = [_ANY, *values]
    choice = st.selectbox(label, options, key=key, format_func=lambda v: v if v is _ANY or v == _ANY else fmt(v))
    return None if choice == _ANY else choice


def _cell_filter(rows: pd.DataFrame) -> list[str] | None:
    """Select boxes narrowing the runs to one cell; None when nothing is narrowed."""
    with st.expander("Narrow to the runs behind a cell", expanded=False):
        c = st.columns(6)
        with c[0]:
            protocol = _pick(
                "Protocol", list(dict.fromkeys(rows["protocol"])), "rb_protocol", lambda p: PROTOCOL_LABELS.get(p, p)
            )
        with c[1]:
            dataset = _pick("Dataset", list(dict.fromkeys(rows["dataset"])), "rb_dataset", dataset_label)
        with c[2]:
            method = _pick("Method", list(dict.fromkeys(rows["method"])), "rb_method", method_label)
        with c[3]:
            fraction = _pick("Label fraction", sorted(rows["label_fraction"].unique()), "rb_fraction", fraction_label)
        with c[4]:
            block = _pick("Block", sorted(int(b) for b in rows["block"].dropna().unique()), "rb_block")
        with c[5]:
            metric = _pick("Metric", sorted(rows["metric"].unique()), "rb_metric")
    criteria = {
        "protocol": protocol,
        "dataset": dataset,
        "method": method,
        "label_fraction": fraction,
        "block": block,
        "metric": metric,
    }
    if all(v is None for v in criteria.values()):
        return None
    return runs.runs_for_cell(rows, **criteria)


def _details(ctx: state.Context, run_id: str) -> None:
    info = runs.run_details(ctx.paths.results_dir, run_id)
    rows = ctx.loaded.frame[ctx.loaded.frame["run_id"] == run_id]
    st.subheader(f"Run `{run_id}`")
    if info["problem"]:
        st.warning(f"`{run_id}.json`: {info['problem']}")
    c1, c2, c3, c4 = st.columns(4)
    seed = info["seed"] if info["seed"] is not None else ", ".join(map(str, sorted(set(rows["seed"]))))
    c1.markdown(f"**Seed**  \n{seed}")
    checkpoint = info["checkpoint"] or ", ".join(sorted(set(rows["checkpoint"]) - {""})) or "–"
    c2.markdown(f"**Checkpoint**  \n`{checkpoint}`")
    c3.markdown(f"**Config hash**  \n`{', '.join(sorted(set(rows['config_hash']) - {''})) or '–'}`")
    written = (info["sidecar"] or {}).get("written_at", "–")
    c4.markdown(f"**Written**  \n{written}")
    if info["timings"]:
        st.markdown("**Timings**")
        st.dataframe(
            pd.DataFrame({"timing": list(info["timings"]), "value": list(info["timings"].values())}), hide_index=True
        )
    left, right = st.columns(2)
    with left:
        st.markdown("**Config**")
        st.json(info["config"] if info["config"] is not None else {}, expanded=2)
    with right:
        st.markdown("**Other metadata**")
        st.json(info["other"], expanded=1)
    st.markdown(f"**Rows** ({len(rows)})")
    st.dataframe(readable(rows), hide_index=True)
    ui.csv_download(rows, f"run_{run_id}", "Download this run's rows (CSV)", key="rb_run")


def _pretraining(ctx: state.Context) -> None:
    table = state.pretraining_runs(tuple(str(r) for r in ctx.paths.log_roots))
    st.subheader("Pretraining runs")
    if table.empty:
        st.caption("No pretraining run records (`<method>_seed<seed>/run_settings.json`) next to the results.")
        return
    for problem in table.loc[table["problem"] != "", ["run", "problem"]].itertuples():
        st.warning(f"Pretraining run `{problem.run}`: {problem.problem}")
    shown = table.drop(columns="problem").assign(method=table["method"].map(lambda m: m if m != m else method_label(m)))
    st.dataframe(shown.rename(columns=_PRETRAIN_LABELS), hide_index=True, width="stretch")
    st.caption("Settings, fingerprint and code version as the experiment runner recorded them in `run_settings.json`.")
    ui.csv_download(table, "pretraining_runs", "Download the pretraining runs (CSV)", key="rb_pretrain")
    speed = state.throughput(tuple(str(r) for r in ctx.paths.log_roots), table)
    if not speed.empty:
        st.markdown("**Throughput** (from the TensorBoard wall times; includes validation, kNN and checkpoints)")
        st.dataframe(
            speed.rename(
                columns={
                    "run": "Run",
                    "epochs": "Epochs",
                    "seconds_per_epoch": "s / epoch",
                    "iterations_per_second": "iterations / s",
                    "samples_per_second": "samples / s",
                    "data_wait_share": "waiting for data",
                }
            ),
            hide_index=True,
            width="content",
            column_config={
                name: st.column_config.NumberColumn(format="%.2f")
                for name in ("s / epoch", "iterations / s", "samples / s")
            }
            | {"waiting for data": st.column_config.NumberColumn(format="percent")},
        )
    notes = []
    if speed.empty or speed["data_wait_share"].isna().all():
        notes.append("the data-wait share (`data_wait_share`, logged by `DataWaitHandler`; older runs lack it)")
    if not table["host"].fillna("").astype(bool).any():
        notes.append("no record names its host")
    if notes:
        st.caption("Not available: " + "; ".join(notes) + ".")


_PRETRAIN_LABELS = {
    "run": "Run",
    "status": "Status",
    "method": "Method",
    "seed": "Seed",
    "backbone": "Backbone",
    "image_size": "Image size (px)",
    "max_epochs": "Epochs",
    "batch_size": "Batch",
    "learning_rate": "LR",
    "queue_size": "Queue",
    "temperature": "τ",
    "momentum": "Momentum",
    "mse_weights": "MSE λ",
    "barlow_weights": "Barlow Twins λ",
    "embedding_dim": "Embedding",
    "batch_norm": "BatchNorm",
    "host": "Host",
    "fingerprint": "Fingerprint",
    "git_commit": "Git commit",
    "monai_ilm": "monai-ilm",
    "monai": "MONAI",
    "torch": "torch",
    "python": "Python",
    "started": "Started",
    "finished": "Finished",
}


def render() -> None:
    """Draw the page."""
    ctx = state.context()
    has_rows = ui.page_intro(
        ctx,
        "Run browser",
        "Every run in the results directory with its config, checkpoint, seed and timings "
        "(from the `<run_id>.json` sidecars); skipped files are listed with the reason.",
    )
    _pretraining(ctx)
    if not has_rows and not ctx.loaded.problems:
        return
    st.subheader("Evaluation runs")
    summary = state.run_table(ctx.key, tuple(ctx.loaded.problems))
    narrowed = _cell_filter(ctx.selected) if has_rows else None
    if narrowed is not None:
        summary = summary[summary["run_id"].isin(narrowed)]
        st.caption(f"{len(narrowed)} run(s) behind the chosen cell.")
    st.dataframe(readable(summary), hide_index=True, width="stretch")
    c1, c2 = st.columns(2)
    with c1:
        ui.csv_download(summary, "runs", "Download the run list (CSV)", key="rb_runs")
    with c2:
        if has_rows:
            ui.csv_download(ctx.selected, "results_selected", "Download the selected results rows (CSV)", key="rb_rows")
    figure = timings_figure(summary)
    if figure is not None:
        ui.plot(figure, "run_timings")
    loaded_runs = set(ctx.loaded.frame["run_id"])
    ok = [r for r in summary["run_id"] if r in loaded_runs]
    if ok:
        _details(ctx, st.selectbox("Run", ok, key="rb_run_id"))


ui.run_page(render)
