"""One number per table cell from its seeds, with the runner's summary row where that row is up to date.

A cell (data set, method, protocol, label fraction, block, metric) holds one ``run`` row per seed. Its value is the
mean over those seeds; its interval comes from the ``seed_mean`` summary row that :mod:`monai_ilm.results.seeds`
writes (a two-stage bootstrap over seeds and test replicates), but only when that row is **fresh**: it combines
exactly the seeds present now. A summary written before a seed was added or removed describes other numbers, so
the cell then has no interval (one seed keeps its run's own interval). The table builders
(:mod:`monai_ilm.results.tables`) and the dashboard both use this rule, from here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from monai_ilm.results.rows import parse_seeds

__all__ = ["SUMMARY_COLUMNS", "combine_seeds", "is_fresh_summary", "summaries_by_cell"]

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


def is_fresh_summary(summary: Mapping[str, Any] | None, seeds: Iterable[int]) -> bool:
    """Whether a summary row combines exactly ``seeds`` (so its interval describes the mean of these seeds).

    Args:
        summary: a ``seed_mean`` row (its ``seeds`` column lists the seeds it combines), or None.
        seeds: the seeds of the cell now.

    Returns:
        True when ``summary`` exists and its seeds equal ``seeds``.
    """
    return summary is not None and parse_seeds(summary["seeds"]) == frozenset(int(s) for s in seeds)


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
        seed, else NaN.
    """
    keys = list(keys)
    fresh = summaries_by_cell(summaries, keys)
    cells = []
    for key, group in runs.groupby(keys, dropna=False, sort=False):
        key = key if isinstance(key, tuple) else (key,)
        seeds = {int(s) for s in group["seed"]}
        summary = fresh.pop(_cell(key), None)
        record = dict(zip(keys, key), n_seeds=len(seeds), value=float(group["value"].mean()))
        if is_fresh_summary(summary, seeds):
            record.update(value=summary["value"], ci_low=summary["ci_low"], ci_high=summary["ci_high"])
        elif len(group) == 1:
            record.update(ci_low=group["ci_low"].iloc[0], ci_high=group["ci_high"].iloc[0])
        else:
            record.update(ci_low=np.nan, ci_high=np.nan)
        cells.append(record)
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
