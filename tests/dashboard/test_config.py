"""Where the dashboard reads from."""

from __future__ import annotations

from pathlib import Path

from dashboard.config import DEFAULT_RESULTS, ENV_VAR, resolve_paths


def test_argument_wins_over_environment(tmp_path: Path) -> None:
    paths = resolve_paths(["--results", "runs/results"], {ENV_VAR: "/elsewhere"}, cwd=tmp_path)
    assert paths.results_dir == tmp_path / "runs" / "results"
    assert paths.source == "--results"


def test_environment_then_demo_default(tmp_path: Path) -> None:
    env = resolve_paths([], {ENV_VAR: " /data/results "}, cwd=tmp_path)
    assert env.results_dir == Path("/data/results") and env.source == f"${ENV_VAR}"
    default = resolve_paths([], {ENV_VAR: ""}, cwd=tmp_path)
    assert default.results_dir == tmp_path / DEFAULT_RESULTS and default.source == "default"


def test_log_roots_cover_results_and_demo_layout(tmp_path: Path) -> None:
    paths = resolve_paths(["--results", "out/results", "--logs", "logs"], {}, cwd=tmp_path)
    assert paths.log_roots == (tmp_path / "logs", tmp_path / "out/results/pretrain", tmp_path / "out/pretrain")


def test_foreign_arguments_are_ignored_and_never_exit(tmp_path: Path) -> None:
    # e.g. pytest's own argv when the app runs under streamlit.testing; -h must not print help and exit
    paths = resolve_paths(["-q", "-h", "--res", "x", "tests/dashboard"], {}, cwd=tmp_path)
    assert paths.source == "default"
