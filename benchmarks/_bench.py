"""Helpers shared by the benchmark scripts: machine description, timing, tables and JSON results.

Every benchmark prints a small table headed by the machine it ran on (cores, CPU, torch version,
intra-op threads, GPU if any) and writes ``benchmarks/results/<name>.json`` with the same figures.
Timings on a shared machine are noisy, so the scripts run the things they compare in alternation
and report medians over repeats; :func:`alternate` is that loop.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/<name>.py` without installing the package
    sys.path.insert(0, str(REPO_ROOT))


def set_threads(threads: int) -> int:
    """Pin torch's intra-op thread count (the benchmarks compare runs at the same count)."""
    import torch

    torch.set_num_threads(max(1, threads))
    return torch.get_num_threads()


def default_threads() -> int:
    """The cores this process may use (``sched_getaffinity``), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    """What the figures depend on: cores, CPU, memory, library versions, torch threads, GPU, load, date."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "host_cores": os.cpu_count(),
        "usable_cores": default_threads(),
        "cpu": _cpu_model(),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_average": [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None,
        "git_commit": _git_commit(),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }
    try:
        import monai

        info["monai"] = monai.__version__
    except ImportError:  # pragma: no cover - monai is a dependency
        pass
    return info


def machine_line(info: dict[str, Any]) -> str:
    """One line describing the machine, printed above every table."""
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return (
        f"machine: {info['usable_cores']} usable cores ({info['cpu']}), {info['memory_gib']} GiB{gpu}; "
        f"python {info['python']}, torch {info['torch']} ({info['torch_threads']} threads), "
        f"numpy {info['numpy']}, monai {info.get('monai', '?')}; load {info['load_average']}; {info['date']}"
    )


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A plain-text table with right-aligned columns; floats are printed as given (pre-format them)."""
    cells = [[str(h) for h in headers]] + [[("" if c is None else str(c)) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def print_report(
    title: str, info: dict[str, Any], headers: Sequence[str], rows: Sequence[Sequence[Any]], notes: Sequence[str] = ()
) -> None:
    """Print a titled table with the machine line above it and notes below it."""
    print(f"\n== {title} ==")
    print(machine_line(info))
    print(format_table(headers, rows))
    for note in notes:
        print(note)
    sys.stdout.flush()


def write_result(name: str, payload: dict[str, Any], output_dir: str | os.PathLike | None = None) -> Path:
    """Write ``<output_dir>/<name>.json`` (default ``benchmarks/results``) and return its path."""
    folder = Path(output_dir) if output_dir is not None else RESULTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_text(json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")
    print(f"wrote {path}")
    return path


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def alternate(runs: dict[str, Callable[[], float]], repeats: int) -> dict[str, list[float]]:
    """Call each run ``repeats`` times in alternation, reversing the order every other round.

    Each callable returns the figure it measured (e.g. seconds). Alternating (A B, B A, A B, ...)
    spreads slow drifts of a shared machine evenly over the compared runs.
    """
    names = list(runs)
    results: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else reversed(names):
            results[name].append(runs[name]())
    return results


class Timer:
    """``with Timer() as t: ...`` then ``t.seconds``; an optional ``sync`` callable runs at both ends."""

    def __init__(self, sync: Callable[[], None] | None = None) -> None:
        self.sync = sync
        self.seconds = float("nan")

    def __enter__(self) -> Timer:
        if self.sync is not None:
            self.sync()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.sync is not None:
            self.sync()
        self.seconds = time.perf_counter() - self._start


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, in MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
