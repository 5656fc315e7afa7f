from __future__ import annotations

import json
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from monai_ilm.results.store import (
    ResultsFileWarning,
    has_cell,
    query,
    read_results,
    results_path,
    write_results,
)
from tests.results._rows import row

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_runs(results_dir: str, prefix: str, count: int) -> None:
    """Worker for the concurrency test: write ``count`` runs of three rows each."""
    for i in range(count):
        run_id = f"{prefix}-{i}"
        rows = [row(run_id=run_id, seed=i, metric=m, value=0.5 + i / 100) for m in ("auc", "f1_macro", "loss")]
        write_results(results_dir, rows, {"worker": prefix})


class TestRoundTrip:
    def test_rows_and_sidecar(self, tmp_path):
        rows = [row(value=0.1 + 0.2), row(metric="auc", value=1 / 3, block=2, ci_low=None, ci_high=None)]
        path = write_results(
            tmp_path, rows, {"config": {"lr": np.float32(0.5)}, "seed": np.int64(3), "ckpt": Path("a/b")}
        )
        assert path == results_path(tmp_path, "run-a") == tmp_path / "run-a.csv"
        df = read_results(tmp_path)
        assert df["value"].tolist() == [0.1 + 0.2, 1 / 3]  # exact float round trip
        assert df["block"].isna().tolist() == [True, False]
        meta = json.loads((tmp_path / "run-a.json").read_text())
        assert meta["n_rows"] == 2 and meta["metadata"] == {"config": {"lr": 0.5}, "seed": 3, "ckpt": "a/b"}

    def test_missing_directory_gives_empty_table(self, tmp_path):
        df = read_results(tmp_path / "nothing")
        assert len(df) == 0 and "value" in df.columns

    def test_existing_run_is_not_overwritten(self, tmp_path):
        write_results(tmp_path, [row()])
        with pytest.raises(FileExistsError, match="run-a"):
            write_results(tmp_path, [row(value=0.2)])
        assert read_results(tmp_path)["value"].tolist() == [0.851]
        write_results(tmp_path, [row(value=0.2)], overwrite=True)
        assert read_results(tmp_path)["value"].tolist() == [0.2]

    def test_invalid_rows_write_nothing(self, tmp_path):
        with pytest.raises(ValueError, match="column 'seed'"):
            write_results(tmp_path, [row(seed="x")])
        with pytest.raises(ValueError, match="single run_id"):
            write_results(tmp_path, [row(), row(run_id="run-b")])
        with pytest.raises(ValueError, match="run_id: expected"):
            write_results(tmp_path, [row(run_id="../escape")])
        with pytest.raises(ValueError, match="rows: expected at least one"):
            write_results(tmp_path, [])
        with pytest.raises(ValueError, match="run_metadata: expected JSON-serialisable"):
            write_results(tmp_path, [row()], {"bad": object()})
        assert list(tmp_path.iterdir()) == []


class TestCrashSafety:
    def test_crash_mid_write_leaves_only_an_ignored_temp_file(self, tmp_path):
        write_results(tmp_path, [row(run_id="done")])
        # a separate process dies (os._exit, no cleanup) after writing the temporary file but before publishing it
        script = textwrap.dedent(f"""
            import os
            from monai_ilm.results import store
            from tests.results._rows import row
            os.fsync = lambda fd: os._exit(3)
            store.write_results({str(tmp_path)!r}, [row(run_id="crashed")])
            """)
        proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, timeout=60)
        assert proc.returncode == 3, proc.stderr.decode()
        leftovers = [p.name for p in tmp_path.iterdir() if p.suffix == ".tmp"]
        assert len(leftovers) == 1 and leftovers[0].startswith(".crashed.")
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the leftover temp file must not even cause a warning
            df = read_results(tmp_path)
        assert df["run_id"].tolist() == ["done"]
        assert not has_cell(tmp_path, run_id="crashed")

    def test_failed_publish_cleans_up(self, tmp_path, monkeypatch):
        def boom(*args, **kwargs):
            raise KeyboardInterrupt

        monkeypatch.setattr(os, "link", boom)
        with pytest.raises(KeyboardInterrupt):
            write_results(tmp_path, [row()])
        assert list(tmp_path.iterdir()) == []

    def test_truncated_file_is_skipped_with_warning(self, tmp_path):
        write_results(tmp_path, [row(run_id="good")])
        path = write_results(tmp_path, [row(run_id="cut", seed=s) for s in range(5)])
        data = path.read_bytes()
        path.write_bytes(data[: data.rindex(b"\n", 0, len(data) - 1) + 1])  # drop the last row cleanly
        with pytest.warns(ResultsFileWarning, match=r"cut\.csv: content: expected the checksum in its \.json sidecar"):
            df = read_results(tmp_path)
        assert df["run_id"].tolist() == ["good"]

    @pytest.mark.parametrize(
        "content, problem",
        [
            (b"dataset,method\nnih", r"missing column\(s\)"),
            (b"", "unreadable CSV"),
            (b"\xff\xfe\x00garbage", "unreadable CSV"),
        ],
    )
    def test_malformed_file_without_sidecar_is_skipped(self, tmp_path, content, problem):
        write_results(tmp_path, [row(run_id="good")])
        (tmp_path / "broken.csv").write_bytes(content)
        with pytest.warns(ResultsFileWarning, match=rf"broken\.csv: .*{problem}"):
            df = read_results(tmp_path)
        assert df["run_id"].tolist() == ["good"]

    def test_cut_mid_row_without_sidecar_is_skipped(self, tmp_path):
        path = write_results(tmp_path, [row(run_id="cut")])
        (tmp_path / "cut.json").unlink()
        path.write_bytes(path.read_bytes()[:-12])
        with pytest.warns(ResultsFileWarning, match=r"cut\.csv: .*column 'timestamp'"):
            assert len(read_results(tmp_path)) == 0

    def test_run_id_must_match_file_name(self, tmp_path):
        path = write_results(tmp_path, [row(run_id="one")])
        (tmp_path / "one.json").unlink()
        path.rename(tmp_path / "two.csv")
        with pytest.warns(ResultsFileWarning, match=r"two\.csv: run_id: expected 'two' .*got \['one'\]"):
            assert len(read_results(tmp_path)) == 0


class TestConcurrency:
    def test_threads_lose_no_rows(self, tmp_path):
        threads = [threading.Thread(target=write_runs, args=(str(tmp_path), f"t{k}", 5)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        df = read_results(tmp_path)
        assert len(df) == 8 * 5 * 3
        assert df["run_id"].nunique() == 40

    def test_processes_lose_no_rows(self, tmp_path):
        ctx = multiprocessing.get_context("spawn")
        procs = [ctx.Process(target=write_runs, args=(str(tmp_path), f"p{k}", 10)) for k in range(3)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=60)
        assert [p.exitcode for p in procs] == [0, 0, 0]
        df = read_results(tmp_path)
        assert len(df) == 3 * 10 * 3
        assert sorted(set(df["run_id"])) == sorted(f"p{k}-{i}" for k in range(3) for i in range(10))

    def test_same_run_id_race_has_one_winner(self, tmp_path):
        errors = []

        def attempt(value):
            try:
                write_results(tmp_path, [row(run_id="same", value=value)])
            except FileExistsError:
                errors.append(value)

        threads = [threading.Thread(target=attempt, args=(v / 10,)) for v in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(errors) == 5
        df = read_results(tmp_path)  # winner's file is complete and matches its sidecar
        assert len(df) == 1


class TestQuery:
    @pytest.fixture
    def results(self, tmp_path):
        write_results(tmp_path, [row(run_id="r1", label_fraction=0.01), row(run_id="r1", block=2, protocol="probe")])
        write_results(tmp_path, [row(run_id="r2", label_fraction=1.0, seed=1)])
        return tmp_path

    def test_has_cell(self, results):
        assert has_cell(results, method="mse", protocol="finetune", label_fraction=0.1 * 0.1, seed=0)
        assert not has_cell(results, protocol="finetune", label_fraction=0.06)
        assert has_cell(results, protocol="probe", block=2)
        assert has_cell(read_results(results), protocol="finetune", block=None, seed=1)
        assert not has_cell(results, protocol="probe", block=None)

    def test_query(self, results):
        df = query(results, run_id="r1")
        assert len(df) == 2
        assert isinstance(df, pd.DataFrame)
        with pytest.raises(ValueError, match=r"criteria: expected column names .*got unknown column\(s\) \['fraction'"):
            query(results, fraction=0.01)
