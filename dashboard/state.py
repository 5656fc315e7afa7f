"""Streamlit glue: cached loading and the per-session context shared by the pages.

Every expensive step is cached with ``st.cache_data`` on hashable keys (the results directory, a fingerprint
of its files and the sidebar selection), never on DataFrames, so reruns of a page with a 10,000-row table
only pay for what changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

from dashboard import cka, embeddings, health, logs, overview, paper, provenance, runs
from dashboard.config import DashboardPaths
from dashboard.data import (
    FileProblem,
    Filters,
    LoadedResults,
    apply_filters,
    collapse_seeds,
    directory_signature,
    filter_options,
    load_results,
)
from monai_ilm.results import PaperTable, read_run

__all__ = ["CONTEXT_KEY", "Context", "context", "set_context"]

CONTEXT_KEY = "monai_ilm_dashboard_context"
Signature = tuple[tuple[str, int, int], ...]


@dataclass(frozen=True)
class Context:
    """What every page needs, computed once per script run by ``app.py``.

    Attributes:
        paths: the configured folders.
        loaded: the whole results table and the skipped files.
        signature: fingerprint of the results directory (cache key).
        options: the values the filters offer.
        filters: the sidebar selection.
        selected: rows matching the filters.
        collapsed: ``selected`` with one row per cell (seeds averaged).
    """

    paths: DashboardPaths
    loaded: LoadedResults
    signature: Signature
    options: dict
    filters: Filters
    selected: pd.DataFrame
    collapsed: pd.DataFrame

    @property
    def key(self) -> tuple:
        """A hashable key of the selection for cached computations."""
        f = self.filters
        return (str(self.paths.results_dir), self.signature, f.datasets, f.methods, f.seeds, f.protocols)


def set_context(ctx: Context) -> None:
    """Publish the context for the page about to run."""
    st.session_state[CONTEXT_KEY] = ctx


def context() -> Context:
    """The context published by ``app.py`` for this run.

    Raises:
        RuntimeError: if a page is run on its own instead of through ``app.py``.
    """
    ctx = st.session_state.get(CONTEXT_KEY)
    if ctx is None:
        raise RuntimeError("this page runs inside the dashboard: streamlit run dashboard/app.py -- --results <dir>")
    return ctx


@st.cache_resource(max_entries=50_000, show_spinner=False)
def _read_file(
    path: str, csv_stat: tuple[int, int], json_stat: tuple[int, int] | None
) -> tuple[pd.DataFrame | None, str]:
    """One run file, parsed once per (size, mtime) of it and its sidecar. Returns ``(frame, "")`` or
    ``(None, problem)``; kept as a resource (not copied) because the frames are only read."""
    try:
        return read_run(path), ""
    except (ValueError, OSError) as err:
        return None, str(err)


def _cached_read(path: Path) -> pd.DataFrame:
    def stat(p: Path) -> tuple[int, int] | None:
        try:
            st_ = p.stat()
        except OSError:
            return None
        return st_.st_size, st_.st_mtime_ns

    frame, problem = _read_file(str(path), stat(path), stat(path.with_suffix(".json")))
    if frame is None:
        raise ValueError(problem)
    return frame


@st.cache_data(show_spinner="Reading the results table…", max_entries=8)
def load(results_dir: str, signature: Signature) -> LoadedResults:
    """:func:`dashboard.data.load_results`, cached on the directory fingerprint; unchanged run files are not
    parsed again when a run is added."""
    return load_results(results_dir, _cached_read)


@st.cache_data(max_entries=32)
def select(results_dir: str, signature: Signature, filters: Filters) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Filtered rows and their seed-collapsed cells."""
    frame = load(results_dir, signature).frame
    selected = apply_filters(frame, filters)
    return selected, collapse_seeds(selected)


def build_context(paths: DashboardPaths, filters_for) -> Context:
    """Load the table, let ``filters_for(options)`` render the filters, and select the rows.

    Args:
        paths: the configured folders.
        filters_for: callback rendering the sidebar filters for the given options and returning
            :class:`~dashboard.data.Filters`.

    Returns:
        The :class:`Context`.
    """
    results_dir = str(paths.results_dir)
    signature = directory_signature(results_dir)
    loaded = load(results_dir, signature)
    options = filter_options(loaded.frame)
    filters = filters_for(options)
    selected, collapsed = select(results_dir, signature, filters)
    return Context(paths, loaded, signature, options, filters, selected, collapsed)


@st.cache_data(max_entries=128)
def table(key: tuple, name: str, metrics: tuple[tuple[str, str], ...], cka_kind: str) -> PaperTable | str:
    """One of the paper's tables for the selection, or the error message of the table builder."""
    _, collapsed = select(key[0], key[1], Filters(*key[2:]))
    try:
        return overview.build_table(name, collapsed, dict(metrics), cka_kind)
    except ValueError as err:
        return str(err)


@st.cache_data(max_entries=4)
def paper_tables() -> dict[str, PaperTable]:
    """The published tables, shaped like ours."""
    data = paper.load_paper_json()
    frame = paper.paper_frame(data)
    return {
        spec.name: overview.build_table(spec.name, frame, data["metrics"], data.get("cka_metric", "cka_rbf"))
        for spec in overview.TABLES
    }


@st.cache_data(max_entries=4)
def paper_rows() -> pd.DataFrame:
    """The published numbers as results rows."""
    return paper.paper_frame()


@st.cache_data(max_entries=16)
def run_table(key: tuple, problems: tuple[FileProblem, ...]) -> pd.DataFrame:
    """The run browser's summary of the selected runs."""
    selected, _ = select(key[0], key[1], Filters(*key[2:]))
    return runs.run_summaries(key[0], selected, problems)


def discover_training_runs(roots: tuple[str, ...]) -> list[logs.TrainingRun]:
    """Training runs below the log roots (a directory listing; cheap, not cached so new runs show up)."""
    return logs.discover_runs(roots)


@st.cache_data(show_spinner="Reading training logs…", max_entries=16)
def training_logs(found: tuple[logs.TrainingRun, ...], signature: tuple) -> tuple[pd.DataFrame, list[FileProblem]]:
    """Loss curves of the runs, cached on the log files' fingerprint."""
    return logs.load_runs(list(found))


@st.cache_data(max_entries=64)
def cka_views(key: tuple, dataset: str, kind: str) -> list[cka.EncoderPair]:
    """Encoder pairs with block x block entries for a dataset and kind."""
    selected, _ = select(key[0], key[1], Filters(*key[2:]))
    return cka.encoder_pairs(selected, dataset, kind)


@st.cache_data(max_entries=32)
def caveats(key: tuple) -> list[str]:
    """Why the selected numbers are a demonstration (sample data, quick settings, one seed, small n)."""
    selected, _ = select(key[0], key[1], Filters(*key[2:]))
    return provenance.caveats(key[0], selected)


def pretraining_runs(roots: tuple[str, ...]) -> pd.DataFrame:
    """The pretraining runs with their recorded settings and code version (small JSON files; not cached)."""
    return provenance.pretraining_runs(roots)


def _found_logs(roots: tuple[str, ...]) -> tuple[tuple[logs.TrainingRun, ...], tuple]:
    """The training runs below the log roots and their files' fingerprint (the cache key of their logs)."""
    found = discover_training_runs(roots)
    return tuple(found), logs.logs_signature(found)


@st.cache_data(max_entries=16)
def _block_ranks(found: tuple[logs.TrainingRun, ...], signature: tuple) -> pd.DataFrame:
    frame = training_logs(found, signature)[0] if found else pd.DataFrame()
    return health.block_ranks(frame)


@st.cache_data(max_entries=16)
def _throughput(found: tuple[logs.TrainingRun, ...], signature: tuple, runs: pd.DataFrame) -> pd.DataFrame:
    frame = training_logs(found, signature)[0] if found else pd.DataFrame()
    return provenance.throughput(frame, runs)


def block_ranks(roots: tuple[str, ...]) -> pd.DataFrame:
    """Last effective rank per pretraining run and block, from the training logs (cached on their fingerprint)."""
    return _block_ranks(*_found_logs(roots))


def throughput(roots: tuple[str, ...], runs: pd.DataFrame) -> pd.DataFrame:
    """Seconds per epoch and samples per second of the pretraining runs, from the training logs (cached)."""
    return _throughput(*_found_logs(roots), runs)


def embedding_files(results_dir: str) -> tuple[tuple[str, int, int], ...]:
    """The embedding files next to the results as ``(path, size, mtime_ns)`` (a directory listing; not cached)."""
    out = []
    for path in embeddings.discover(results_dir):
        try:
            stat = path.stat()
        except OSError:
            continue
        out.append((str(path), stat.st_size, stat.st_mtime_ns))
    return tuple(out)


@st.cache_data(show_spinner="Reading embeddings…", max_entries=8)
def embedding_set(files: tuple[tuple[str, int, int], ...], root: str) -> tuple[embeddings.EmbeddingSet, list]:
    """The points of the chosen embedding files and the files that could not be read."""
    return embeddings.load_embeddings([Path(p) for p, _, _ in files], Path(root))


@st.cache_data(show_spinner="Projecting…", max_entries=16)
def projection(files: tuple[tuple[str, int, int], ...], root: str, method: str) -> tuple:
    """2-D coordinates of the chosen files' points (``dashboard.embeddings.project_2d``)."""
    points, _ = embedding_set(files, root)
    return embeddings.project_2d(points.vectors, method)
