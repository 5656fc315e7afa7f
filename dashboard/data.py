"""Loading, checking, filtering and seed-aggregating the results table (no Streamlit here).

Each run file is read and checked with :func:`monai_ilm.results.read_run` (the reader behind
``read_results``); files it rejects (malformed CSV, checksum mismatch, schema violations, unreadable sidecar)
become :class:`FileProblem` records so that the page can say which file is wrong and why instead of failing.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.labels import DATASET_LABELS, METHOD_LABELS
from monai_ilm.datasets import paper_datasets
from monai_ilm.results import PROTOCOLS, empty_frame, parse_seeds, read_run, seeds_text, validate
from monai_ilm.results.summaries import combine_seeds
from monai_ilm.results.tables import newest_rows

__all__ = [
    "CELL_KEYS",
    "FileProblem",
    "Filters",
    "LoadedResults",
    "aggregate_seeds",
    "apply_filters",
    "collapse_seeds",
    "default_metric",
    "directory_signature",
    "filter_options",
    "load_results",
    "metric_options",
    "order_datasets",
    "order_methods",
]

PREFERRED_METRICS = ("mean_auc", "auc", "roc_auc", "f1", "f1_macro", "accuracy", "balanced_accuracy")
# The paper's metric per dataset (paper_results.md): mean AUC, AUC, F1; from monai_ilm.datasets.
DATASET_METRICS = {dataset.name: dataset.metrics for dataset in paper_datasets()}
# The columns that identify one cell of a table; everything else varies between seeds and reruns.
CELL_KEYS = ["dataset", "method", "protocol", "label_fraction", "block", "metric"]


@dataclass(frozen=True)
class FileProblem:
    """A file the dashboard could not use.

    Attributes:
        file: the file name (relative to the folder it was found in).
        problem: what is wrong with it.
    """

    file: str
    problem: str


@dataclass(frozen=True)
class LoadedResults:
    """The merged results table and what went wrong while reading it.

    Attributes:
        frame: the validated long-form table (possibly empty).
        problems: files skipped, each with the reason.
        exists: whether the results directory exists.
        n_files: number of ``*.csv`` run files found (including skipped ones).
    """

    frame: pd.DataFrame
    problems: tuple[FileProblem, ...] = field(default_factory=tuple)
    exists: bool = True
    n_files: int = 0


@dataclass(frozen=True)
class Filters:
    """The sidebar selection; each field holds the selected values."""

    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: tuple[int, ...]
    protocols: tuple[str, ...]


def order_methods(methods: Iterable[str]) -> list[str]:
    """The paper's method order (MoCo, + MSE, + Barlow Twins, Supervised), then other methods alphabetically."""
    present = list(dict.fromkeys(methods))
    known = [m for m in METHOD_LABELS if m in present]
    return known + sorted(m for m in present if m not in METHOD_LABELS)


def order_datasets(datasets: Iterable[str]) -> list[str]:
    """The paper's dataset order (NIH, DR, IDC), then other datasets alphabetically."""
    present = list(dict.fromkeys(datasets))
    return [d for d in DATASET_LABELS if d in present] + sorted(d for d in present if d not in DATASET_LABELS)


def _result_files(directory: Path) -> list[Path]:
    return sorted(p for p in directory.glob("*.csv") if not p.name.startswith("."))


def directory_signature(results_dir: str | os.PathLike) -> tuple[tuple[str, int, int], ...]:
    """A cheap fingerprint of the results directory: ``(name, size, mtime_ns)`` of every CSV and JSON file.

    Used as a cache key, so that the cached table is re-read as soon as a run is added or changed.

    Args:
        results_dir: the results directory.

    Returns:
        A sorted tuple; empty when the directory does not exist.
    """
    directory = Path(results_dir)
    if not directory.is_dir():
        return ()
    out = []
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.name.startswith(".") or not entry.name.endswith((".csv", ".json")):
                continue
            try:
                st = entry.stat()
            except OSError:
                continue
            out.append((entry.name, st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


FileReader = Callable[[Path], pd.DataFrame]


def load_results(results_dir: str | os.PathLike, read_file: FileReader = read_run) -> LoadedResults:
    """Read a results directory file by file, collecting the files that were skipped and why.

    Same rules as :func:`monai_ilm.results.read_results` (every ``<run_id>.csv`` except hidden ones, each
    checked by :func:`monai_ilm.results.read_run`: sidecar checksum, CSV parsing, schema, run id), but a bad
    file becomes a :class:`FileProblem` instead of a warning, and ``read_file`` may be a cached wrapper of
    ``read_run`` so that only new or changed files are parsed again.

    Args:
        results_dir: the results directory.
        read_file: reads and validates one run file, raising ``ValueError``/``OSError`` for a bad one.

    Returns:
        The :class:`LoadedResults`; never raises for bad files (an unreadable directory is reported as a
        problem of ``"."``).
    """
    directory = Path(results_dir)
    if not directory.is_dir():
        return LoadedResults(empty_frame(), (), exists=False, n_files=0)
    try:
        files = _result_files(directory)
    except OSError as err:
        return LoadedResults(empty_frame(), (FileProblem(".", f"cannot list the directory ({err})"),), True, 0)
    frames, problems = [], []
    for path in files:
        try:
            frame = read_file(path)
        except (ValueError, OSError) as err:
            problems.append(FileProblem(path.name, str(err)))
            continue
        if len(frame):
            frames.append(frame)
    # every frame was validated on its own and has the schema's dtypes, so the concatenation is valid too
    table = pd.concat(frames, ignore_index=True) if frames else empty_frame()
    return LoadedResults(table, tuple(problems), True, len(files))


def filter_options(df: pd.DataFrame) -> dict[str, list]:
    """The values offered by the sidebar filters, in display order.

    Args:
        df: the results table.

    Returns:
        ``{"datasets": [...], "methods": [...], "seeds": [...], "protocols": [...]}``.
    """
    return {
        "datasets": order_datasets(df["dataset"]),
        "methods": order_methods(df["method"]),
        "seeds": sorted(int(s) for s in df["seed"].dropna().unique()),
        "protocols": [p for p in PROTOCOLS if p in set(df["protocol"])],
    }


def apply_filters(df: pd.DataFrame, filters: Filters) -> pd.DataFrame:
    """Rows matching every filter.

    Args:
        df: the results table.
        filters: the selection.

    Returns:
        The matching rows (index reset).
    """
    chosen = {int(s) for s in filters.seeds}
    # rows that combine seeds (seed_mean, paired_difference) stay when every seed they combine is selected
    covered = df["seeds"].map(lambda v: bool(parse_seeds(v)) and parse_seeds(v) <= chosen).astype(bool)
    combined = df["seed"].isna() & covered
    mask = (
        df["dataset"].isin(filters.datasets)
        & df["method"].isin(filters.methods)
        & (df["seed"].isin(list(filters.seeds)) | combined)
        & df["protocol"].isin(filters.protocols)
    )
    return df[mask.fillna(False).astype(bool)].reset_index(drop=True)


def metric_options(df: pd.DataFrame, protocol: str) -> dict[str, list[str]]:
    """Metric names available per dataset for one protocol (CKA block-pair metrics ``...@...`` excluded).

    Args:
        df: the results table.
        protocol: the protocol.

    Returns:
        ``{dataset: sorted metric names}`` in display order of the datasets.
    """
    rows = df[(df["protocol"] == protocol) & ~df["metric"].str.contains("@", regex=False).fillna(False)]
    return {d: sorted(rows.loc[rows["dataset"] == d, "metric"].unique()) for d in order_datasets(rows["dataset"])}


def default_metric(available: Sequence[str], dataset: str | None = None) -> str:
    """The metric shown by default: the paper's metric of the dataset if present, else the first of a
    preference list (mean AUC, AUC, F1, ...), else the first name.

    Args:
        available: metric names (non-empty).
        dataset: the dataset, for the paper's choice.

    Returns:
        One of ``available``.
    """
    for name in (*DATASET_METRICS.get(dataset or "", ()), *PREFERRED_METRICS):
        if name in available:
            return name
    return min(available)


def aggregate_seeds(df: pd.DataFrame, keys: Sequence[str] = tuple(CELL_KEYS)) -> pd.DataFrame:
    """Average the rows of each cell over seeds, by the table builders' rule.

    Value and interval come from :func:`monai_ilm.results.summaries.combine_seeds` (re-runs of one seed count
    once, the newest): the mean over the seeds, with the interval of the runner's ``seed_mean`` row when it
    combines exactly these seeds (a two-stage bootstrap, :mod:`monai_ilm.results.seeds`), one seed's own
    interval, else none. Nothing is computed here. ``value_std`` is the standard deviation over the seeds (0 for
    one) and ``seeds`` lists them.

    Args:
        df: results rows.
        keys: the columns that identify a cell.

    Returns:
        One row per cell with ``keys`` plus ``value``, ``ci_low``, ``ci_high``, ``value_std``, ``n_rows``,
        ``seeds``, ``n``, ``run_ids`` and ``timestamp`` (the newest).
    """
    keys = list(keys)
    cols = keys + ["value", "ci_low", "ci_high", "value_std", "n_rows", "seeds", "n", "run_ids", "timestamp"]
    summaries = df[df["kind"] == "seed_mean"] if "kind" in df else df.iloc[:0]
    runs = df[df["kind"] == "run"] if "kind" in df else df
    if runs.empty:
        return pd.DataFrame(columns=cols)
    if set(keys) != set(CELL_KEYS):  # summary rows describe whole cells only
        summaries = summaries.iloc[:0]
    latest = newest_rows(runs, [*keys, "seed"])
    combined = combine_seeds(latest, newest_rows(summaries, keys), keys, summary_only=False)
    extras = (
        runs.assign(_value=runs["value"].astype("float64"))
        .groupby(keys, dropna=False, sort=False)
        .agg(
            n_rows=("_value", "size"),
            n=("n", "min"),
            run_ids=("run_id", lambda s: tuple(dict.fromkeys(s))),
            timestamp=("timestamp", "max"),
        )
        .reset_index()
    )
    spread = latest.assign(_value=latest["value"].astype("float64")).groupby(keys, dropna=False, sort=False)
    spread = spread.agg(
        value_std=("_value", lambda s: float(s.std(ddof=0))),
        seeds=("seed", lambda s: tuple(sorted({int(x) for x in s}))),
    ).reset_index()
    out = combined.drop(columns="n_seeds").astype({k: runs[k].dtype for k in keys})
    for part in (spread, extras):  # same keys, same groups: align on the key columns (NaN blocks match)
        out = out.merge(part, on=keys, how="left")
    for col in ("seeds", "run_ids"):  # plain tuples (pandas may infer an Arrow list type for string items)
        out[col] = pd.Series([tuple(v) for v in out[col]], index=out.index, dtype=object)
    for col in ("value", "ci_low", "ci_high"):
        out[col] = out[col].astype("float64")
    return out[cols]


def collapse_seeds(df: pd.DataFrame) -> pd.DataFrame:
    """One schema-valid row per cell (see :func:`aggregate_seeds`), ready for the ``monai_ilm.results`` tables.

    The table builders keep the newest row of a cell or average values without intervals; collapsing
    first keeps an interval for every cell when several seeds are selected.

    Args:
        df: results rows.

    Returns:
        A validated results frame with one ``seed_mean`` row per cell (``seeds`` lists the contributing seeds
        and ``run_id`` names the first contributing run).
    """
    if df.empty:
        return empty_frame()
    agg = aggregate_seeds(df)
    if "kind" in df:
        df = df[df["kind"] == "run"]
    first = df.drop_duplicates(CELL_KEYS)[CELL_KEYS + ["run_id", "checkpoint", "config_hash"]]
    merged = agg.merge(first, on=CELL_KEYS, how="left", suffixes=("", "_first"))
    merged["run_id"] = merged["run_ids"].map(lambda s: s[0])
    merged = merged.assign(seed=None, kind="seed_mean", baseline="", seeds=merged["seeds"].map(seeds_text))
    return validate(merged[list(empty_frame().columns)])


def cells_for(df: pd.DataFrame, criteria: Mapping[str, object]) -> pd.DataFrame:
    """Rows whose columns equal ``criteria`` (floats within 1e-9, ``None`` matches missing values).

    Args:
        df: results rows.
        criteria: ``{column: value}``.

    Returns:
        The matching rows.
    """
    mask = pd.Series(True, index=df.index)
    for name, wanted in criteria.items():
        col = df[name]
        if wanted is None:
            mask &= col.isna()
        elif name in ("label_fraction", "value", "ci_low", "ci_high"):
            mask &= pd.Series(np.isclose(col.to_numpy(dtype=float), float(wanted), atol=1e-9), index=df.index)
        else:
            mask &= (col == wanted).fillna(False).astype(bool)
    return df[mask]
