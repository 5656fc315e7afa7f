"""Small shared helpers: available memory as the kernel reports it."""

from __future__ import annotations

import os

from monai_ilm.utils import available_memory


def test_available_memory_reads_memavailable_not_the_free_pages(tmp_path):
    # a machine that has read many files: few free pages, most of the memory in a page cache the kernel can drop
    report = tmp_path / "meminfo"
    report.write_text("MemTotal:       24683520 kB\nMemFree:          248320 kB\nMemAvailable:   23500800 kB\n")
    assert available_memory(report) == 23500800 * 1024


def test_available_memory_falls_back_to_the_free_pages_without_a_report(tmp_path):
    free = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    assert abs(available_memory(tmp_path / "missing") - free) < 0.5 * free + 2**28  # free pages move between calls
    (tmp_path / "old").write_text("MemTotal: 1000 kB\nMemFree: 500 kB\n")
    assert available_memory(tmp_path / "old") > 0
