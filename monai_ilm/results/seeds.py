"""Several seeds and paired comparisons: the summary rows behind every table of a multi-seed experiment.

One seed's number is one draw: on real fundus photographs, MoCo fine-tuned on 1 % of the labels scored an
AUC of 78.2 with seed 0 and 87.9 with seed 1, while each seed's bootstrap interval was about 7 points wide.
So a table cell is the **mean over the seeds** present, and its interval must hold both sources of
variation, the seed (split, label subset, initialisation, augmentation) and the test sample.

Interval method, chosen because it needs nothing but what each run already stores (its bootstrap
replicates over the test set) and reduces to that run's own interval for a single seed:

* **two-stage (hierarchical) bootstrap** (Davison and Hinkley, 1997, section 3.8): each of ``B`` draws
  resamples the ``S`` seeds with replacement, then takes one stored test-set replicate of each drawn seed,
  and averages them; the interval is the percentile interval of the ``B`` averages. The first stage
  carries the seed-to-seed spread, the second the test sampling. With few seeds the first stage
  under-states the seed spread (by a factor ``(S - 1) / S`` in variance), so read 2-3 seed intervals as
  optimistic; one seed gives exactly the run's own interval.
* **paired differences**: each run's test replicates come from ``resample_indices(n, B, seed)``, so two
  methods evaluated with the same seed on the same test rows share every resample. ``method - baseline`` per
  replicate is then a paired bootstrap of the difference (both models see the same resampled test set), and
  the same two-stage scheme combines seeds. Only test sets **proven** identical are paired: both runs store the
  same digest of their ordered test ids from the data (:func:`monai_ilm.evaluation.features.ids_digest`; loader
  positions give none). Otherwise no difference row is written, and a warning names both runs.

Runs with ``ci_method="standard_error"`` (the paper's ``z sd / sqrt(B)`` around the full-set value) get the same
method at every number of seeds: :func:`~monai_ilm.statistics.intervals.seed_mean_standard_error_interval`
combines the seeds' values and standard errors (across-seed plus within-seed variance; one seed gives its run's
interval), and a paired difference uses the standard error ``sd / sqrt(B)`` of its paired replicates. A cell whose
seeds mix interval methods gets no interval, with a warning.

Each summary row stores in ``config_hash`` the :func:`~monai_ilm.results.summaries.runs_stamp` of the runs it
combines, so the tables can tell a stale summary (a seed re-run since) from a fresh one.

:func:`summarize` writes these rows to ``<results>/summary-<dataset>.csv`` (``kind`` ``"seed_mean"`` and
``"paired_difference"``); the table builders read them and never show one seed as if it were the mean.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monai_ilm.results.rows import make_row, seeds_text, utc_now
from monai_ilm.results.schema import PERFORMANCE_PROTOCOLS
from monai_ilm.results.store import read_replicates, read_results, read_run_metadata, replicate_key, write_results
from monai_ilm.results.summaries import CELL_KEYS, runs_stamp
from monai_ilm.results.tables import newest_rows
from monai_ilm.statistics.intervals import PAPER_Z, percentile_interval, seed_mean_standard_error_interval

__all__ = ["BASELINES", "CELL_KEYS", "SUMMARY_PREFIX", "two_stage_interval", "summary_rows", "summarize"]

logger = logging.getLogger("monai_ilm.results")

BASELINES = ("moco", "supervised")
"""Methods every other method is compared with (paired differences)."""
SUMMARY_PREFIX = "summary-"
_COMPARED_PROTOCOLS = PERFORMANCE_PROTOCOLS
_RUN_Z = PAPER_Z  # every run's interval is at 95 % (the protocols have no confidence setting): se = half-width / z


def two_stage_interval(
    replicates: Sequence[np.ndarray], confidence: float = 0.95, n_resamples: int = 2000, seed: int = 0
) -> tuple[float, float]:
    """Percentile interval of the mean over seeds by a two-stage bootstrap (seeds, then test replicates).

    Args:
        replicates: one array of test-set bootstrap replicates per seed (NaN entries are skipped).
        confidence: confidence level.
        n_resamples: number of two-stage draws.
        seed: seed of the generator (the result is reproducible).

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: when a seed has no finite replicate.
    """
    pools = [np.asarray(r, dtype=np.float64) for r in replicates]
    pools = [r[np.isfinite(r)] for r in pools]
    if not pools or any(r.size == 0 for r in pools):
        raise ValueError(
            f"replicates: expected at least one finite replicate per seed, got {[int(r.size) for r in pools]}."
        )
    rng = np.random.default_rng(seed)
    n_seeds = len(pools)
    drawn_seeds = rng.integers(0, n_seeds, size=(n_resamples, n_seeds))
    sizes = np.array([r.size for r in pools])
    picks = np.floor(rng.random((n_resamples, n_seeds)) * sizes[drawn_seeds]).astype(np.int64)
    flat = np.concatenate(pools)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    means = flat[offsets[drawn_seeds] + picks].mean(axis=1)
    return percentile_interval(means, confidence)


def _latest_runs(results: pd.DataFrame) -> pd.DataFrame:
    """Run rows only, the newest per (cell, seed), so a re-run of one seed counts once."""
    return newest_rows(results[results["kind"] == "run"], [*CELL_KEYS, "seed"])


class _Replicates:
    """Lazy access to the replicates stored with each run."""

    def __init__(self, results_dir: Path) -> None:
        self.results_dir = results_dir
        self._cache: dict[str, dict[str, np.ndarray]] = {}
        self._methods: dict[str, str] = {}

    def runs(self, run_id: str) -> dict[str, np.ndarray]:
        if run_id not in self._cache:
            try:
                self._cache[run_id] = read_replicates(self.results_dir, run_id)
            except ValueError as err:
                logger.warning("%s; its rows get no interval", err)
                self._cache[run_id] = {}
        return self._cache[run_id]

    def of(self, row: Mapping) -> np.ndarray | None:
        return self.runs(row["run_id"]).get(replicate_key(row["metric"], row["block"]))

    def test_ids(self, row: Mapping) -> str | None:
        ids = self.runs(row["run_id"]).get("test_ids_sha256")
        return None if ids is None or not str(ids) else str(ids)

    def ci_method(self, row: Mapping) -> str:
        """The run's ``ci_method`` setting (its sidecar); ``"percentile"`` when it has none."""
        run_id = row["run_id"]
        if run_id not in self._methods:
            try:
                settings = read_run_metadata(self.results_dir, run_id).get("settings", {})
            except ValueError as err:
                logger.warning("%s; its interval method is taken as percentile", err)
                settings = {}
            self._methods[run_id] = str((settings if isinstance(settings, dict) else {}).get("ci_method", "percentile"))
        return self._methods[run_id]


def _combined(
    values: list[float], replicates: list[np.ndarray | None], single: tuple, confidence: float, seed: int
) -> tuple[float, float | None, float | None]:
    """Mean over seeds with its interval: the run's own interval for one seed, two-stage for several."""
    if len(values) == 1:
        return values[0], single[0], single[1]
    if any(r is None for r in replicates):
        return float(np.mean(values)), None, None
    low, high = two_stage_interval(replicates, confidence=confidence, seed=seed)
    return float(np.mean(values)), low, high


def _standard_error_combined(
    values: list[float], standard_errors: list[float | None], confidence: float
) -> tuple[float, float | None, float | None]:
    """Mean over seeds with the ``"standard_error"`` interval of the mean (none if a seed has no standard error)."""
    if any(se is None or not np.isfinite(se) for se in standard_errors):
        return float(np.mean(values)), None, None
    mean, low, high = seed_mean_standard_error_interval(values, standard_errors, confidence)
    return mean, low, high


def _run_standard_error(record: Mapping) -> float | None:
    """A ``"standard_error"`` run's standard error: its interval's half-width over z (None without an interval)."""
    if pd.isna(record["ci_low"]) or pd.isna(record["ci_high"]):
        return None
    return (float(record["ci_high"]) - float(record["ci_low"])) / (2.0 * _RUN_Z)


def _paired_standard_error(paired: np.ndarray | None) -> float | None:
    """The paper's standard error ``sd / sqrt(B)`` (ddof 0) of the paired replicate differences."""
    if paired is None:
        return None
    finite = paired[np.isfinite(paired)]
    return float(finite.std() / np.sqrt(finite.size)) if finite.size >= 2 else None


def _one_method(records: list[Mapping], store: _Replicates, what: str) -> str | None:
    """The interval method all ``records`` were computed with, or None (with a warning) when they mix."""
    methods = {store.ci_method(r) for r in records}
    if len(methods) == 1:
        return methods.pop()
    logger.warning(
        "%s: expected one ci_method for runs %s, got %s; no interval",
        what,
        ", ".join(str(r["run_id"]) for r in records),
        sorted(methods),
    )
    return None


def _row_fields(first: Mapping, **fields) -> dict:
    keys = {k: (None if pd.isna(first[k]) else first[k]) for k in CELL_KEYS}
    return {**keys, **fields}


def _seed_mean(records: list[dict], store: _Replicates, confidence: float, seed: int) -> tuple:
    """Value and interval of one cell's mean over seeds, by its runs' interval method."""
    values = [r["value"] for r in records]
    method = _one_method(records, store, f"cell {[records[0][k] for k in CELL_KEYS]}")
    if method is None:
        return float(np.mean(values)), None, None
    if method == "standard_error":
        return _standard_error_combined(values, [_run_standard_error(r) for r in records], confidence)
    first = records[0]
    return _combined(values, [store.of(r) for r in records], (first["ci_low"], first["ci_high"]), confidence, seed)


def summary_rows(
    results: pd.DataFrame, results_dir: str | os.PathLike, confidence: float = 0.95, seed: int = 0
) -> list[dict]:
    """The ``seed_mean`` and ``paired_difference`` rows of a results table.

    Args:
        results: the results table (rows of every kind; only ``run`` rows are used).
        results_dir: where the runs' replicates are stored.
        confidence: confidence level of the intervals.
        seed: seed of the two-stage bootstrap.

    Returns:
        Row dicts (``run_id`` ``summary-<dataset>``; ``config_hash`` the stamp of the runs each combines).
    """
    runs = _latest_runs(results)
    store = _Replicates(Path(results_dir))
    stamp = utc_now()
    rows: list[dict] = []
    for _, cell in runs.groupby(CELL_KEYS, dropna=False, sort=False):
        records = cell.sort_values("seed").to_dict("records")
        first = records[0]
        value, low, high = _seed_mean(records, store, confidence, seed)
        rows.append(
            make_row(
                **_row_fields(first),
                seed=None,
                value=value,
                ci_low=low,
                ci_high=high,
                n=int(min(r["n"] for r in records)),
                run_id=f"{SUMMARY_PREFIX}{first['dataset']}",
                config_hash=runs_stamp(cell),
                kind="seed_mean",
                seeds=seeds_text([r["seed"] for r in records]),
                timestamp=stamp,
            )
        )
    rows += _difference_rows(runs, store, confidence, seed, stamp)
    return rows


def _difference_rows(runs: pd.DataFrame, store: _Replicates, confidence: float, seed: int, stamp: str) -> list[dict]:
    rows = []
    compared = runs[runs["protocol"].isin(_COMPARED_PROTOCOLS)]
    context = [k for k in CELL_KEYS if k != "method"]
    for _, cell in compared.groupby(context, dropna=False, sort=False):
        by_method = {m: group.set_index("seed") for m, group in cell.groupby("method", sort=False)}
        for baseline in BASELINES:
            if baseline not in by_method:
                continue
            for method, group in by_method.items():
                if method in (baseline, "supervised"):
                    continue
                row = _difference(group, by_method[baseline], baseline, store, confidence, seed)
                if row is not None:
                    rows.append({**row, "timestamp": stamp})
    return rows


def _unproven(pairs: list[tuple[dict, dict]], store: _Replicates) -> list[str]:
    """The run pairs whose test sets nothing proves identical (no or different test-id digests)."""
    out = []
    for a, b in pairs:
        ids_a, ids_b = store.test_ids(a), store.test_ids(b)
        if ids_a is None or ids_a != ids_b:
            reason = "no test ids from the data" if ids_a is None or ids_b is None else "different test ids"
            out.append(f"{a['run_id']} and {b['run_id']} ({reason})")
    return out


def _difference(
    method_rows: pd.DataFrame,
    base_rows: pd.DataFrame,
    baseline: str,
    store: _Replicates,
    confidence: float,
    seed: int,
) -> dict | None:
    """``method - baseline`` over the seeds both have, only where every pair of runs scored the same test rows."""
    seeds = sorted(set(method_rows.index) & set(base_rows.index))
    if not seeds:
        return None
    pairs = []
    for s in seeds:
        a, b = method_rows.loc[s].to_dict(), base_rows.loc[s].to_dict()
        a["seed"], b["seed"] = s, s
        a["run_id"], b["run_id"] = method_rows.loc[s, "run_id"], base_rows.loc[s, "run_id"]
        pairs.append((a, b))
    unproven = _unproven(pairs, store)
    if unproven:
        logger.warning(
            "no paired difference %s - %s: the test sets of %s are not proven identical",
            method_rows["method"].iloc[0],
            baseline,
            "; ".join(unproven),
        )
        return None
    values = [a["value"] - b["value"] for a, b in pairs]
    paired = []
    for a, b in pairs:
        ra, rb = store.of(a), store.of(b)
        paired.append(ra - rb if ra is not None and rb is not None and ra.shape == rb.shape else None)
    method = _one_method([r for pair in pairs for r in pair], store, f"difference to {baseline}")
    if method is None:
        value, low, high = float(np.mean(values)), None, None
    elif method == "standard_error":
        value, low, high = _standard_error_combined(values, [_paired_standard_error(d) for d in paired], confidence)
    elif len(seeds) == 1 and paired[0] is not None and np.isfinite(paired[0]).sum() >= 2:
        low, high = percentile_interval(paired[0][np.isfinite(paired[0])], confidence)
        value = values[0]
    else:
        value, low, high = _combined(values, paired, (None, None), confidence, seed)
    first = method_rows.loc[seeds[0]].to_dict()
    first["method"] = method_rows["method"].iloc[0]
    first["block"] = method_rows["block"].iloc[0]
    both = pd.concat([method_rows.loc[seeds].reset_index(), base_rows.loc[seeds].reset_index()], ignore_index=True)
    return make_row(
        **_row_fields(first),
        seed=None,
        value=value,
        ci_low=low,
        ci_high=high,
        n=int(min(method_rows.loc[seeds, "n"].min(), base_rows.loc[seeds, "n"].min())),
        run_id=f"{SUMMARY_PREFIX}{first['dataset']}",
        config_hash=runs_stamp(both),
        kind="paired_difference",
        baseline=baseline,
        seeds=seeds_text(seeds),
    )


def summarize(results_dir: str | os.PathLike, confidence: float = 0.95, seed: int = 0) -> list[Path]:
    """Write (or refresh) the summary rows of every data set in a results directory.

    Args:
        results_dir: the results directory.
        confidence: confidence level of the intervals.
        seed: seed of the two-stage bootstrap.

    Returns:
        The ``summary-<dataset>.csv`` files written.
    """
    results = read_results(results_dir)
    written = []
    rows = summary_rows(results, results_dir, confidence=confidence, seed=seed)
    frame = pd.DataFrame(rows)
    for _dataset, part in frame.groupby("dataset", sort=False) if len(frame) else []:
        metadata = {
            "method": (
                "percentile runs: two-stage bootstrap over seeds and test replicates; standard_error runs: "
                "mean +/- z sqrt(s^2/S + sum se_i^2/S^2); paired differences share the test resamples of test "
                "sets proven identical"
            ),
            "confidence": confidence,
            "seed": seed,
        }
        written.append(write_results(results_dir, part, metadata, overwrite=True))
    return written
