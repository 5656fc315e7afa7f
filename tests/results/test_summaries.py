"""Which summary row stands for a cell: fresh (computed from exactly the runs present) or not."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd
import pytest

from monai_ilm.results.summaries import combine_seeds, is_fresh_summary, runs_stamp

KEYS = ["dataset", "method", "block"]
T0 = "2025-01-31T12:00:00+00:00"


def _runs(*values: tuple[int, float], stamp: str = T0, fingerprint: str = "f") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "dataset": "nih",
                "method": "mse",
                "block": np.nan,
                "seed": s,
                "value": v,
                "ci_low": v - 0.1,
                "ci_high": v,
                "run_id": f"nih-mse-seed{s}",
                "config_hash": fingerprint,
                "timestamp": stamp,
            }
            for s, v in values
        ]
    )


def _summary(runs: pd.DataFrame, seeds: str, value: float = 0.5) -> pd.DataFrame:
    row = {"dataset": "nih", "method": "mse", "block": np.nan, "seeds": seeds, "value": value}
    return pd.DataFrame([{**row, "ci_low": 0.1, "ci_high": 0.9, "config_hash": runs_stamp(runs)}])


def test_runs_stamp_is_a_digest_of_the_sorted_run_lines() -> None:
    # independent reference: SHA-256 of "method|seed|run_id|config_hash|timestamp|repr(value)" lines, sorted
    runs = _runs((1, 0.6), (0, 0.4))
    lines = sorted(f"mse|{s}|nih-mse-seed{s}|f|{T0}|{v!r}" for s, v in ((0, 0.4), (1, 0.6)))
    assert runs_stamp(runs) == hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
    assert runs_stamp(runs.iloc[::-1]) == runs_stamp(runs)


def test_fresh_summary_gives_the_interval() -> None:
    runs = _runs((0, 0.4), (1, 0.6))
    cell = combine_seeds(runs, _summary(runs, "0,1"), KEYS).iloc[0]
    assert (cell["ci_low"], cell["ci_high"], cell["n_seeds"]) == (0.1, 0.9, 2)
    assert cell["value"] == pytest.approx(0.5)


def test_stale_summary_is_ignored(caplog) -> None:
    # written before seed 2 was added: it describes seeds 0 and 1 only
    old = _runs((0, 0.4), (1, 0.6))
    with caplog.at_level("WARNING", logger="monai_ilm.results"):
        cell = combine_seeds(_runs((0, 0.4), (1, 0.6), (2, 0.8)), _summary(old, "0,1"), KEYS).iloc[0]
    assert np.isnan(cell["ci_low"]) and cell["value"] == pytest.approx(0.6) and cell["n_seeds"] == 3
    assert "1 seed_mean row(s) are stale" in caplog.text
    one = combine_seeds(_runs((1, 0.6)), _summary(old, "0,1"), KEYS).iloc[0]
    assert (one["ci_low"], one["ci_high"]) == pytest.approx((0.5, 0.6))  # one seed: its own interval


@pytest.mark.parametrize(
    "rerun",
    [
        {"value": 0.9},  # a better model, same fingerprint and time (e.g. edited by hand)
        {"config_hash": "g"},  # a changed cell
        {"timestamp": "2025-02-01T09:00:00+00:00"},  # re-run (e.g. monai.bundle run) with the same numbers
        {"run_id": "other"},
    ],
)
def test_any_changed_run_makes_the_summary_stale(rerun) -> None:
    runs = _runs((0, 0.4), (1, 0.6))
    summary = _summary(runs, "0,1").iloc[0].to_dict()
    assert is_fresh_summary(summary, runs)
    changed = runs.copy()
    for column, value in rerun.items():
        changed.loc[0, column] = value
    assert not is_fresh_summary(summary, changed)
    assert not is_fresh_summary({**summary, "config_hash": ""}, runs)  # written before stamps existed
    assert not is_fresh_summary(None, runs)


def test_summary_only_cells() -> None:
    empty = _runs().reindex(columns=[*KEYS, "seed", "value", "ci_low", "ci_high"])
    summary = _summary(_runs((0, 0.4), (1, 0.6), (2, 0.8)), "0,1,2")
    assert len(combine_seeds(empty, summary, KEYS)) == 1
    assert combine_seeds(empty, summary, KEYS, summary_only=False).empty
