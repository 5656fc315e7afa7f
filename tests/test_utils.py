"""Small shared helpers: available memory as the kernel reports it, packages that load their names on first use."""

from __future__ import annotations

import os

import pytest

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


def _package(root, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


LAZY_INIT = (
    "from monai_ilm.utils import lazy_package\n"
    "__all__ = lazy_package(__name__, {'heavy': ('heavy', 'Heavy'), 'light': ('light_value',)})\n"
)


def test_lazy_package_loads_a_submodule_only_when_one_of_its_names_is_used(tmp_path, monkeypatch):
    import sys

    _package(
        tmp_path / "lazypkg",
        {
            "__init__.py": LAZY_INIT,
            "heavy.py": "def heavy():\n    return 'function'\n\nclass Heavy:\n    pass\n",
            "light.py": "light_value = 3\n",
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import lazypkg

    assert lazypkg.__all__ == ["Heavy", "heavy", "light_value"] and "lazypkg.heavy" not in sys.modules
    assert lazypkg.light_value == 3 and "lazypkg.light" in sys.modules and "lazypkg.heavy" not in sys.modules
    # importing the submodule named like its function binds no module over the exported function
    import lazypkg.heavy  # noqa: F401
    from lazypkg import heavy

    assert callable(heavy) and heavy() == "function" and "Heavy" in dir(lazypkg)
    with pytest.raises(AttributeError, match="module 'lazypkg' has no attribute 'missing'"):
        lazypkg.missing  # noqa: B018


def test_lazy_package_refuses_a_name_exported_by_two_submodules(tmp_path, monkeypatch):
    _package(
        tmp_path / "twice",
        {
            "__init__.py": "from monai_ilm.utils import lazy_package\n"
            "lazy_package(__name__, {'a': ('x',), 'b': ('x',)})\n"
        },
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ValueError, match=r"^exports: expected each name from one submodule, got 'x' from a and b\.$"):
        import twice  # noqa: F401
