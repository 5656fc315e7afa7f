"""Formatting a table cell as the paper prints it."""

from __future__ import annotations

import numpy as np

from monai_ilm.results.paper_table import format_cell


def test_format_cell():
    assert format_cell(0.744, 0.739, 0.750, dash="-") == "74.4 (73.9-75.0)"
    assert format_cell(0.81, scale=1.0, decimals=2) == "0.81"
    assert format_cell(np.nan) == ""
    assert format_cell(0.5, 0.4, 0.6) == "50.0 (40.0–60.0)"
