"""``python -m monai_ilm dashboard``: Streamlit's command line on the packaged app, and its checks before it starts.

Streamlit's entry point is replaced by a recorder here; the installed wheel serving the app for real, and Chromium
rendering it, is tests/test_wheel.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from monai_ilm import cli

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _keep_excepthook(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # cli.main installs its own; restored after each test


@pytest.fixture
def streamlit_calls(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """The argument lists Streamlit's command line would have been started with (nothing is served)."""
    streamlit_cli = pytest.importorskip("streamlit.web.cli", reason="streamlit is not installed")
    calls: list[list[str]] = []
    monkeypatch.setattr(streamlit_cli, "main", lambda args, prog_name: calls.append(list(args)))
    return calls


def test_dashboard_runs_streamlit_on_the_app_beside_the_package(streamlit_calls, tmp_path: Path) -> None:
    cli.main(["dashboard", "--results", str(tmp_path), "--port", "8600", "--headless"])
    app = str(REPO / "dashboard" / "app.py")  # this checkout's app, whatever the current directory
    assert streamlit_calls == [
        ["run", app, "--server.port", "8600", "--server.headless", "true", "--", "--results", str(tmp_path)]
    ]


def test_dashboard_without_results_leaves_the_choice_to_the_app(streamlit_calls) -> None:
    cli.main(["dashboard"])  # the app then reads $MONAI_ILM_RESULTS, else demo_output/results
    assert streamlit_calls == [["run", str(REPO / "dashboard" / "app.py")]]


def test_dashboard_refuses_a_missing_results_directory(streamlit_calls, tmp_path: Path) -> None:
    missing = tmp_path / "no_results"
    with pytest.raises(SystemExit, match=f"--results: expected a results directory .*, got {re.escape(str(missing))}"):
        cli.main(["dashboard", "--results", str(missing)])
    assert streamlit_calls == []


@pytest.mark.parametrize("port", ["0", "65536"])
def test_dashboard_refuses_a_port_out_of_range(streamlit_calls, tmp_path: Path, port: str) -> None:
    with pytest.raises(SystemExit, match=f"--port: expected a port number from 1 to 65535, got {port}"):
        cli.main(["dashboard", "--results", str(tmp_path), "--port", port])
    assert streamlit_calls == []


def test_dashboard_without_streamlit_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in ("streamlit", "streamlit.web", "streamlit.web.cli"):
        monkeypatch.setitem(sys.modules, name, None)  # what an import finds when streamlit is not installed
    with pytest.raises(SystemExit, match=r"dashboard: expected streamlit, .*pip install 'monai-ilm\[dashboard\]'"):
        cli.main(["dashboard", "--results", str(tmp_path)])
