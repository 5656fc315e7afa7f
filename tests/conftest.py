"""What the whole suite needs of the machine, said before any test runs."""

from __future__ import annotations

import os
import shutil
import tempfile

import pytest

PEAK_TEMPORARY_GIB = 6.5  # measured with `make test` on 2 workers (pyproject's tmp_path_retention_policy = "failed")


def _free_gib(config: pytest.Config) -> tuple[str, float]:
    base = config.option.basetemp or tempfile.gettempdir()
    return base, shutil.disk_usage(base if os.path.isdir(base) else tempfile.gettempdir()).free / 2**30


def pytest_report_header(config: pytest.Config) -> str:
    """The free disk where the temporary files go, beside the suite's peak use (shown without ``-q``)."""
    base, free = _free_gib(config)
    return f"temporary files: {free:.1f} GiB free under {base} (the suite needs about {PEAK_TEMPORARY_GIB} GiB)"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Say so first, ``-q`` or not, when the disk cannot hold the suite's temporary files: a full disk otherwise
    shows up as scattered failures (or an xdist INTERNALERROR) late in the run, far from its cause."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")  # None in an xdist worker
    base, free = _free_gib(session.config)
    if reporter is not None and free < PEAK_TEMPORARY_GIB:
        reporter.write_line(
            f"temporary files: only {free:.1f} GiB free under {base}, the suite needs about {PEAK_TEMPORARY_GIB} GiB: "
            "tests that write runs may fail for lack of space",
            yellow=True,
        )
