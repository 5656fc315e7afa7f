"""Which summary row stands for a cell: fresh (same seeds) or not."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from monai_ilm.results.summaries import combine_seeds, is_fresh_summary

KEYS = ["dataset", "method", "block"]


def _runs(*values: tuple[int, float]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"dataset": "nih", "method": "mse", "block": np.nan, "seed": s, "value": v, "ci_low": v - 0.1, "ci_high": v}
            for s, v in values
        ]
    )


def _summary(seeds: str, value: float = 0.5) -> pd.DataFrame:
    row = {"dataset": "nih", "method": "mse", "block": np.nan, "seeds": seeds, "value": value}
    return pd.DataFrame([{**row, "ci_low": 0.1, "ci_high": 0.9}])


def test_fresh_summary_gives_the_interval() -> None:
    cell = combine_seeds(_runs((0, 0.4), (1, 0.6)), _summary("0,1"), KEYS).iloc[0]
    assert (cell["ci_low"], cell["ci_high"], cell["n_seeds"]) == (0.1, 0.9, 2)
    assert cell["value"] == pytest.approx(0.5)


def test_stale_summary_is_ignored() -> None:
    # written before seed 2 was added: it describes seeds 0 and 1 only
    cell = combine_seeds(_runs((0, 0.4), (1, 0.6), (2, 0.8)), _summary("0,1"), KEYS).iloc[0]
    assert np.isnan(cell["ci_low"]) and cell["value"] == pytest.approx(0.6) and cell["n_seeds"] == 3
    one = combine_seeds(_runs((1, 0.6)), _summary("0,1"), KEYS).iloc[0]
    assert (one["ci_low"], one["ci_high"]) == pytest.approx((0.5, 0.6))  # one seed: its own interval


def test_summary_only_cells() -> None:
    empty = _runs().reindex(columns=[*KEYS, "seed", "value", "ci_low", "ci_high"])
    assert len(combine_seeds(empty, _summary("0,1,2"), KEYS)) == 1
    assert combine_seeds(empty, _summary("0,1,2"), KEYS, summary_only=False).empty
    assert is_fresh_summary({"seeds": "2,0"}, [0, 2]) and not is_fresh_summary(None, [0])
