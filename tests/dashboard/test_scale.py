"""A 10,000-row results table stays snappy thanks to the caches."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard.config import ENV_VAR
from dashboard.data import load_results
from dashboard.sample import SampleLayout
from monai_ilm.results import write_results

from .conftest import APP


@pytest.fixture(scope="module")
def large(sample: SampleLayout, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sample's rows for 8 seeds (10,032 rows), one file per seed."""
    base = load_results(sample.results_dir).frame
    base = base[base["seed"] == 0]
    out = tmp_path_factory.mktemp("large") / "results"
    for seed in range(8):
        rows = base.assign(seed=seed, run_id=f"bulk-s{seed}", value=(base["value"] + 0.001 * seed).clip(upper=1.0))
        rows = rows.assign(
            ci_high=pd.concat([rows["ci_high"], rows["value"]], axis=1).max(axis=1).where(rows["ci_high"].notna())
        )
        write_results(out, rows)
    return out


def test_ten_thousand_rows(large: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENV_VAR, str(large))
    monkeypatch.setattr(sys, "argv", [str(APP)])
    at = AppTest.from_file(str(APP), default_timeout=120)
    start = time.perf_counter()
    at.run()
    first = time.perf_counter() - start
    assert not at.exception and "10,032 rows" in "\n".join(c.value for c in at.sidebar.caption)
    start = time.perf_counter()
    at.run()  # e.g. a widget change: everything comes from the caches
    rerun = time.perf_counter() - start
    assert not at.exception
    print(f"first run {first:.2f} s, rerun {rerun:.2f} s")
    assert rerun < max(0.5 * first, 1.5), (first, rerun)
    for page in ("views/label_efficiency.py", "views/probing.py", "views/feature_reuse.py", "views/runs.py"):
        start = time.perf_counter()
        at.switch_page(page).run()
        assert not at.exception and not at.error
        assert time.perf_counter() - start < 5.0, page
