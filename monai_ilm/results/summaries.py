"""One number per table cell from its seeds, with the runner's summary row where that row is up to date.

A cell (data set, method, protocol, label fraction, block, metric) holds one ``run`` row per seed. Its value is the
mean over those seeds; its interval comes from the ``seed_mean`` summary row that :mod:`monai_ilm.results.seeds`
writes, but only when that row is **fresh**: it was computed from exactly the run rows present now. A summary
stores in its ``config_hash`` column the :func:`runs_stamp` of the rows it combines (seed, run id, fingerprint,
timestamp and value of each), so a seed added, removed or re-run (a new model, a crash past a changed cell, a cell
run by ``monai.bundle run``) makes it stale: the cell then shows the mean of the runs present now without an
interval (one seed keeps its run's own), and a warning says which cells and how to refresh them. The table builders
(:mod:`monai_ilm.results.tables`, :mod:`monai_ilm.results.differences`) and the dashboard use this rule, from here.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from monai_ilm.results.rows import parse_seeds

__all__ = [
    "CELL_KEYS",
    "SUMMARY_COLUMNS",
    "combine_seeds",
    "is_fresh_summary",
    "runs_stamp",
    "stale_warning",
    "summaries_by_cell",
]

logger = logging.getLogger("monai_ilm.results")

CELL_KEYS = ["dataset", "method", "protocol", "label_fraction", "block", "metric"]
"""The columns that identify a table cell (one ``run`` row per seed)."""

SUMMARY_COLUMNS = ("n_seeds", "value", "ci_low", "ci_high")
"""The columns :func:`combine_seeds` adds to the cell keys."""


def _cell(values: Iterable[Any]) -> tuple:
    """A cell key with missing values as None (NaN never equals itself, so it cannot key a dict)."""
    return tuple(None if pd.isna(v) else v for v in values)


def summaries_by_cell(summaries: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, dict[str, Any]]:
    """The summary rows keyed by their cell (missing values as None).

    Args:
        summaries: ``seed_mean`` rows, at most one per cell (the newest, e.g. through ``tables.newest_rows``).
        keys: the columns that identify a cell.

    Returns:
        ``{cell key tuple: row dict}``.
    """
    return {_cell(rec[k] for k in keys): rec for rec in summaries.to_dict("records")}


def _stamp_field(value: Any) -> str:
    return "" if value is None or (not isinstance(value, str) and pd.isna(value)) else str(value)


def runs_stamp(runs: pd.DataFrame) -> str:
    """A digest of the run rows a summary combines: any seed added, removed or re-run changes it.

    Each row contributes its method, seed, run id, ``config_hash`` (the cell's fingerprint), timestamp and value;
    the rows are sorted, so the order of the frame does not matter. Missing columns count as empty.

    Args:
        runs: the ``run`` rows of one cell (or of the two cells of a paired difference), newest per seed.

    Returns:
        16 hex digits.
    """
    lines = []
    for rec in runs.to_dict("records"):
        stamp = rec.get("timestamp")
        lines.append(
            "|".join(
                [
                    _stamp_field(rec.get("method")),
                    str(int(rec["seed"])),
                    _stamp_field(rec.get("run_id")),
                    _stamp_field(rec.get("config_hash")),
                    "" if _stamp_field(stamp) == "" else pd.Timestamp(stamp).isoformat(),
                    repr(float(rec["value"])),
                ]
            )
        )
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


def is_fresh_summary(summary: Mapping[str, Any] | None, runs: pd.DataFrame) -> bool:
    """Whether a summary row was computed from exactly ``runs`` (so its value and interval describe them).

    Args:
        summary: a ``seed_mean`` or ``paired_difference`` row (its ``config_hash`` holds the :func:`runs_stamp`
            of the rows it combines), or None.
        runs: the cell's ``run`` rows now, newest per seed.

    Returns:
        True when ``summary`` exists, combines the seeds of ``runs`` and carries their stamp.
    """
    if summary is None or parse_seeds(summary.get("seeds")) != frozenset(int(s) for s in runs["seed"]):
        return False
    return _stamp_field(summary.get("config_hash")) == runs_stamp(runs)


def stale_warning(kind: str, cells: Sequence[tuple], consequence: str) -> None:
    """Log that summary rows describe other runs than those present, naming the first cells and the remedy."""
    if not cells:
        return
    shown = "; ".join(", ".join(_stamp_field(v) for v in cell) for cell in cells[:3])
    more = f" and {len(cells) - 3} more" if len(cells) > 3 else ""
    logger.warning(
        "%d %s row(s) are stale: they combine other runs than the results hold now (a seed added, removed or "
        "re-run), e.g. cell(s) %s%s; %s. Run monai_ilm.results.seeds.summarize(<results dir>) (or the experiment "
        "runner) to refresh them.",
        len(cells),
        kind,
        shown,
        more,
        consequence,
    )


def combine_seeds(
    runs: pd.DataFrame, summaries: pd.DataFrame, keys: Sequence[str], summary_only: bool = True
) -> pd.DataFrame:
    """One record per cell: the mean over its seeds, with the summary row's interval when it is fresh.

    Args:
        runs: ``run`` rows, one per cell and seed (re-runs of a seed already reduced to the newest).
        summaries: ``seed_mean`` rows, at most one per cell.
        keys: the columns that identify a cell.
        summary_only: also return the cells given only by a summary row (e.g. a table already collapsed over
            seeds); False keeps the cells that have run rows.

    Returns:
        Columns ``keys`` + :data:`SUMMARY_COLUMNS`: ``value`` is the summary's value when it is fresh, else the
        mean over the seeds; ``ci_low``/``ci_high`` the fresh summary's interval, the run's own one for a single
        seed, else NaN. Stale summaries are named in a warning (:func:`stale_warning`).
    """
    keys = list(keys)
    fresh = summaries_by_cell(summaries, keys)
    cells, stale = [], []
    for key, group in runs.groupby(keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        seeds = {int(s) for s in group["seed"]}
        summary = fresh.pop(_cell(key), None)
        record = dict(zip(keys, key), n_seeds=len(seeds), value=float(group["value"].mean()))
        if is_fresh_summary(summary, group):
            record.update(value=summary["value"], ci_low=summary["ci_low"], ci_high=summary["ci_high"])
        elif len(group) == 1:
            record.update(ci_low=group["ci_low"].iloc[0], ci_high=group["ci_high"].iloc[0])
        else:
            record.update(ci_low=np.nan, ci_high=np.nan)
        if summary is not None and not is_fresh_summary(summary, group):
            stale.append(_cell(key))
        cells.append(record)
    stale_warning(
        "seed_mean", stale, "they show the mean of the runs present now, without an interval (one seed: its own)"
    )
    for summary in fresh.values() if summary_only else ():
        cells.append(
            dict(
                {k: summary[k] for k in keys},
                n_seeds=len(parse_seeds(summary["seeds"])),
                value=summary["value"],
                ci_low=summary["ci_low"],
                ci_high=summary["ci_high"],
            )
        )
    return pd.DataFrame(cells, columns=[*keys, *SUMMARY_COLUMNS])
