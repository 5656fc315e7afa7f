"""Safe loading: checkpoints are read with ``weights_only=True`` and nothing unpickles or evaluates files.

A static check of the package and the dashboard, so a new ``torch.load`` without ``weights_only=True``
(or a ``pickle`` / ``np.load(allow_pickle=True)``) fails here.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCES = sorted((ROOT / "monai_ilm").rglob("*.py")) + sorted((ROOT / "dashboard").rglob("*.py"))
UNSAFE_MODULES = {"pickle", "cPickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def problems(path: Path) -> list[str]:
    """Unsafe loading calls and imports in one source file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = ast.unparse(node.func)
            flags = {kw.arg: getattr(kw.value, "value", kw.value) for kw in node.keywords}
            if name == "torch.load" and flags.get("weights_only") is not True:
                found.append(f"line {node.lineno}: torch.load without weights_only=True")
            if name in ("np.load", "numpy.load") and flags.get("allow_pickle", False) is not False:
                found.append(f"line {node.lineno}: {name}(allow_pickle=...)")
            if name in ("eval", "exec", "pd.read_pickle", "pandas.read_pickle", "torch.jit.load"):
                found.append(f"line {node.lineno}: {name}")
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            found += [f"line {node.lineno}: import {n}" for n in names if n.split(".")[0] in UNSAFE_MODULES]
    return found


def test_no_unsafe_loading_in_the_package_or_the_dashboard():
    report = {str(p.relative_to(ROOT)): problems(p) for p in SOURCES}
    assert len(SOURCES) > 50
    assert not {k: v for k, v in report.items() if v}
