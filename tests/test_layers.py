"""Layers that only look down: no import cycle between the package's units, and light imports of the low layers.

A *unit* is a subpackage (``monai_ilm.data``) or a top-level module (``monai_ilm.provenance``) of the package.
Unit ``A`` depends on unit ``B`` when any module of ``A`` imports a module of ``B`` anywhere in its source:
at module level, inside a function (an import deferred to dodge a cycle is still a dependency, it only fails
later) or under ``if TYPE_CHECKING``. The graph is read from the syntax trees, so nothing is imported to build it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "monai_ilm"


@dataclass(frozen=True)
class Edge:
    """One import of unit ``target`` by unit ``source``, at ``where`` (``path:line``)."""

    source: str
    target: str
    where: str


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(node: ast.AST, module: str, is_package: bool) -> Iterator[str]:
    """The absolute names an ``import`` or ``from ... import`` statement may load (``from x import y``: x and x.y)."""
    if isinstance(node, ast.Import):
        yield from (alias.name for alias in node.names)
        return
    if not isinstance(node, ast.ImportFrom):
        return
    base = node.module or ""
    if node.level:  # relative: counted from the importing module's package
        package = module.split(".") if is_package else module.split(".")[:-1]
        anchor = package[: len(package) - (node.level - 1)]
        base = ".".join([*anchor, *([base] if base else [])])
    yield base
    yield from (f"{base}.{alias.name}" for alias in node.names if alias.name != "*")


def unit_edges(root: Path) -> list[Edge]:
    """Every import from one unit of the package at ``root`` into another, with the file and line.

    Args:
        root: the package folder (its name is the package name).

    Returns:
        One :class:`Edge` per importing statement and imported unit, units named ``<package>.<name>``.
    """
    package = root.name
    units = {
        p.stem if p.is_file() else p.name for p in root.iterdir() if p.suffix == ".py" or (p / "__init__.py").is_file()
    }
    units.discard("__init__")

    def unit_of(name: str) -> str | None:
        parts = name.split(".")
        if parts[0] != package or len(parts) < 2 or parts[1] not in units:
            return None
        return f"{package}.{parts[1]}"

    edges = []
    for path in sorted(root.rglob("*.py")):
        module = _module_name(path, root)
        source = unit_of(module)
        if source is None:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets = {unit_of(name) for name in _imported_modules(node, module, path.name == "__init__.py")}
            for target in sorted(t for t in targets if t is not None and t != source):
                edges.append(Edge(source, target, f"{path.relative_to(root.parent)}:{node.lineno}"))
    return edges


def unit_cycles(edges: list[Edge]) -> list[tuple[list[str], list[Edge]]]:
    """Each group of units that reach one another, with one cycle through it (its edges, in order).

    The groups are the strongly connected components of the unit graph with more than one unit; the cycle
    named for each is a shortest one through its first unit (breadth-first search), so the failure message
    points at the fewest imports to look at.
    """
    graph: dict[str, dict[str, Edge]] = {}
    for edge in edges:
        graph.setdefault(edge.source, {}).setdefault(edge.target, edge)
    cycles = []
    for group in _components(graph):
        if len(group) < 2:
            continue
        start = min(group)
        previous: dict[str, Edge] = {}
        frontier, seen, closing = [start], {start}, None
        while frontier and closing is None:
            step = []
            for unit in frontier:
                for target, edge in sorted(graph.get(unit, {}).items()):
                    if target == start:
                        closing = edge
                        break
                    if target in group and target not in seen:
                        seen.add(target)
                        previous[target] = edge
                        step.append(target)
                if closing is not None:
                    break
            frontier = step
        path, unit = [closing], closing.source
        while unit != start:
            path.append(previous[unit])
            unit = previous[unit].source
        cycles.append((sorted(group), path[::-1]))
    return cycles


def _components(graph: dict[str, dict[str, Edge]]) -> list[set[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative)."""
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups = []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, {}))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, {})))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                group = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.add(member)
                    if member == node:
                        break
                groups.append(group)
    return groups


def describe(cycle: list[Edge]) -> str:
    """``a -> b (file:line) -> a (file:line)``."""
    return " -> ".join([cycle[0].source, *(f"{edge.target} ({edge.where})" for edge in cycle)])


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_the_analysis_finds_a_cycle_closed_by_a_function_level_import(tmp_path):
    pkg = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "low/__init__.py": "from pkg.low.a import f\n",
            "low/a.py": "def f():\n    from ..high import g  # deferred\n    return g\n",
            "high.py": "from pkg.low import f\n",
            "other.py": "import pkg.high\n",
        },
    )
    cycles = unit_cycles(unit_edges(pkg))
    assert [(g, describe(c)) for g, c in cycles] == [
        (["pkg.high", "pkg.low"], "pkg.high -> pkg.low (pkg/high.py:1) -> pkg.high (pkg/low/a.py:2)")
    ]


def test_the_analysis_reads_from_package_import_module_as_that_unit(tmp_path):
    pkg = _write(
        tmp_path / "pkg",
        {
            "__init__.py": "",
            "a.py": "from pkg import b\n",
            "b/__init__.py": "",
            "b/c.py": "if True:\n    from pkg import a\n",
        },
    )
    assert [describe(c) for _, c in unit_cycles(unit_edges(pkg))] == [
        "pkg.a -> pkg.b (pkg/a.py:1) -> pkg.a (pkg/b/c.py:2)"
    ]


def test_the_analysis_finds_no_cycle_in_layers_that_only_look_down(tmp_path):
    pkg = _write(
        tmp_path / "pkg",
        {"__init__.py": "", "low.py": "import os\n", "mid.py": "from pkg.low import x\n", "top.py": "import pkg.mid\n"},
    )
    assert {(e.source, e.target) for e in unit_edges(pkg)} == {("pkg.mid", "pkg.low"), ("pkg.top", "pkg.mid")}
    assert unit_cycles(unit_edges(pkg)) == []


def test_no_import_cycle_between_the_units_of_monai_ilm():
    cycles = unit_cycles(unit_edges(PACKAGE))
    assert not cycles, "import cycles between units (function-level imports counted):\n" + "\n".join(
        f"{len(group)} units reach one another ({', '.join(group)}), e.g. {describe(cycle)}" for group, cycle in cycles
    )


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys\n{statement}\nprint('\\n'.join(m for m in sys.modules if m.startswith('monai_ilm')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "package, higher",
    [
        ("monai_ilm.losses", {"monai_ilm.data", "monai_ilm.evaluation", "monai_ilm.results", "monai_ilm.handlers"}),
        ("monai_ilm.handlers", {"monai_ilm.results", "monai_ilm.provenance", "monai_ilm.data"}),
    ],
)
def test_importing_a_low_layer_loads_no_higher_one(package, higher):
    loaded = _loaded_after(f"import {package}")
    assert package in loaded  # the probe itself works
    assert not loaded & higher, f"import {package} loaded {sorted(loaded & higher)}"
