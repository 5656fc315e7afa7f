"""Where the dashboard reads from: the results directory and the training-log folders.

Resolution order of the results directory: the ``--results`` argument (``streamlit run dashboard/app.py --
--results <dir>``), then the ``MONAI_ILM_RESULTS`` environment variable, then the demo's output directory
``demo_output/results``. Training logs of pretraining runs are looked for in ``<results>/pretrain`` and, for
the demo layout (``demo_output/results`` next to ``demo_output/pretrain``), in ``<results>/../pretrain``;
``--logs <dir>`` adds another folder holding ``<method>_seed<seed>/`` run directories.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DEFAULT_RESULTS", "ENV_VAR", "DashboardPaths", "resolve_paths"]

ENV_VAR = "MONAI_ILM_RESULTS"
DEFAULT_RESULTS = Path("demo_output") / "results"
PRETRAIN_DIRNAME = "pretrain"


@dataclass(frozen=True)
class DashboardPaths:
    """The folders the dashboard reads.

    Attributes:
        results_dir: the results directory (``<run_id>.csv`` + ``<run_id>.json`` files).
        source: where ``results_dir`` came from: ``"--results"``, ``"$MONAI_ILM_RESULTS"`` or ``"default"``.
        log_roots: folders whose sub-directories are pretraining runs, in search order (may not exist).
    """

    results_dir: Path
    source: str
    log_roots: tuple[Path, ...]


def _parser() -> argparse.ArgumentParser:
    # add_help/allow_abbrev off: the app must never exit on, or misread, arguments meant for someone else
    # (e.g. pytest's own argv when the app runs under streamlit.testing).
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--results", type=str, default=None)
    parser.add_argument("--logs", type=str, default=None)
    return parser


def _unique(paths: Sequence[Path]) -> tuple[Path, ...]:
    seen: dict[str, Path] = {}
    for p in paths:
        seen.setdefault(str(p.resolve()) if p.exists() else str(p), p)
    return tuple(seen.values())


def resolve_paths(argv: Sequence[str], environ: Mapping[str, str], cwd: Path | None = None) -> DashboardPaths:
    """Resolve the results directory and the training-log roots.

    Args:
        argv: the script's arguments (``sys.argv[1:]``); unknown arguments are ignored.
        environ: the environment (``os.environ``).
        cwd: base of relative paths (default: the current directory).

    Returns:
        The resolved :class:`DashboardPaths` (absolute paths; nothing is created).
    """
    base = Path.cwd() if cwd is None else Path(cwd)
    args, _ = _parser().parse_known_args(list(argv))
    if args.results:
        results, source = Path(args.results), "--results"
    elif environ.get(ENV_VAR, "").strip():
        results, source = Path(environ[ENV_VAR].strip()), f"${ENV_VAR}"
    else:
        results, source = DEFAULT_RESULTS, "default"
    results = (base / results.expanduser()).absolute()
    roots = [results / PRETRAIN_DIRNAME, results.parent / PRETRAIN_DIRNAME]
    if args.logs:
        roots.insert(0, (base / Path(args.logs).expanduser()).absolute())
    return DashboardPaths(results_dir=results, source=source, log_roots=_unique(roots))


def from_process() -> DashboardPaths:
    """:func:`resolve_paths` for the running process (``sys.argv`` and ``os.environ``)."""
    import sys

    return resolve_paths(sys.argv[1:], os.environ)
