"""Helpers shared by the data and transform tests: where the real sample data lives, and skipping without it."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_DATA = (REPO_ROOT / ".." / "shared" / "data").resolve()


def shared_path(*parts: str) -> Path:
    """The path of a real sample file under ``../shared/data``, skipping the test with a reason when it is absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"real sample data '{path}' is not available (it lives in ../shared/data beside the repository)")
    return path
