"""Training curves of pretraining runs, from TensorBoard event files or a plain ``metrics.csv``.

A *run* is a sub-directory of a log root (``<results>/pretrain`` or ``<results>/../pretrain``), normally named
``<method>_seed<seed>``, holding TensorBoard event files (anywhere below it, usually ``tensorboard/``) and/or a
``metrics.csv`` with columns ``step, tag, value``. Every scalar whose tag contains ``"loss"`` (any case) is a
loss part: the total, ``loss_infonce``, one ``loss_layer<k>`` per stage, ``val_...`` variants; exact tag names
are not assumed. Event files are read with TensorBoard's ``EventAccumulator`` (protocol buffers, no code);
nothing else is loaded.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.data import FileProblem
from dashboard.labels import method_label

__all__ = [
    "LOG_COLUMNS",
    "TrainingRun",
    "discover_runs",
    "is_loss_tag",
    "load_runs",
    "logs_signature",
    "loss_part_label",
    "read_event_dir",
    "read_metrics_csv",
    "smooth",
    "step_axis",
]

EVENT_PREFIX = "events.out.tfevents"
METRICS_FILE = "metrics.csv"
LOG_COLUMNS = ["run", "method", "seed", "source", "tag", "step", "value", "wall_time", "axis"]
# tags logged once per epoch (validation, online kNN, representation health): their step is the epoch
_EPOCH_TAGS = re.compile(r"^(val[_/]|validation[_/]|knn/|health/)", re.IGNORECASE)
_MAX_DEPTH = 4  # how deep below a run folder event files are looked for
_RUN_NAME = re.compile(r"^(?P<method>.+?)[_-]seed[_-]?(?P<seed>\d+)$")
_LAYER = re.compile(r"(?:layer|stage|block)[_-]?(\d+)", re.IGNORECASE)


@dataclass(frozen=True)
class TrainingRun:
    """One pretraining run with logs.

    Attributes:
        name: the run folder name, e.g. ``"mse_seed0"``.
        path: the run folder.
        root: the log root the run was found in.
        method: method parsed from the name (the name itself if it does not follow ``<method>_seed<seed>``).
        seed: seed parsed from the name, or None.
        event_dirs: folders holding event files.
        metrics_files: ``metrics.csv`` files.
    """

    name: str
    path: Path
    root: Path
    method: str
    seed: int | None
    event_dirs: tuple[Path, ...] = field(default_factory=tuple)
    metrics_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def label(self) -> str:
        """Display label, e.g. ``"MoCo + MSE · seed 0"``."""
        return self.name if self.seed is None else f"{method_label(self.method)} · seed {self.seed}"


def is_loss_tag(tag: str) -> bool:
    """Whether a scalar tag is a training curve: a loss part (its name contains ``"loss"``, any case) or a
    monitoring value of pretraining (``knn/...`` from ``OnlineKNNHandler``, ``health/...`` from
    ``RepresentationHealthHandler``)."""
    low = tag.lower()
    return "loss" in low or low.startswith(("knn/", "health/"))


def loss_part_label(tag: str) -> str:
    """A readable name of a loss tag: ``"loss_infonce"`` -> ``"InfoNCE"``, ``"val_loss_layer2"`` ->
    ``"stage 2 term (val)"``, ``"loss"`` -> ``"total"``; other tags are returned unchanged."""
    low = tag.lower()
    if low.startswith(("knn/", "health/")):  # monitoring values, not loss terms (effective_rank_layer<k>)
        return tag
    split = " (val)" if re.search(r"(^|[/_])val", low) else ""
    layer = _LAYER.search(low)
    if layer:
        return f"stage {layer.group(1)} term{split}"
    if "infonce" in low or "nce" in low or "contrast" in low:
        return f"InfoNCE{split}"
    if re.fullmatch(r"(val_|train_|train/|val/)?loss(/loss)?|train_loss/loss|total_loss|loss_total", low):
        return f"total{split}"
    return tag


def step_axis(tag: str, steps: Sequence[int]) -> np.ndarray:
    """Whether each point of one tag (in logging order) is an iteration or an epoch value.

    The trainer logs every iteration's loss at step = iteration and, under the same tag, each epoch's mean at
    step = epoch number, so an epoch value is a point whose step does not exceed a step already logged (the
    curve would jump back). Validation, ``knn/`` and ``health/`` tags are epoch values throughout.

    Args:
        tag: the scalar tag.
        steps: its steps in the order they were logged.

    Returns:
        An array of ``"iteration"`` / ``"epoch"``.
    """
    steps = np.asarray(steps, dtype=np.int64)
    if _EPOCH_TAGS.match(tag) or steps.size == 0:
        return np.full(steps.size, "epoch", dtype=object)
    seen_max = np.maximum.accumulate(np.concatenate([[np.iinfo(np.int64).min], steps[:-1]]))
    return np.where(steps <= seen_max, "epoch", "iteration").astype(object)


def parse_run_name(name: str) -> tuple[str, int | None]:
    """``"mse_seed0"`` -> ``("mse", 0)``; names without a seed give ``(name, None)``."""
    m = _RUN_NAME.match(name)
    return (m["method"], int(m["seed"])) if m else (name, None)


def _inside(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
        return True
    except (ValueError, OSError):
        return False


def _scan(run_dir: Path) -> tuple[list[Path], list[Path]]:
    """Event-file folders and metrics files below a run folder (no symlinks followed, bounded depth)."""
    event_dirs, metrics = [], []
    base_depth = len(run_dir.parts)
    for dirpath, dirnames, filenames in os.walk(run_dir, followlinks=False):
        here = Path(dirpath)
        if len(here.parts) - base_depth >= _MAX_DEPTH:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        if any(f.startswith(EVENT_PREFIX) for f in filenames):
            event_dirs.append(here)
        if METRICS_FILE in filenames and not (here / METRICS_FILE).is_symlink():
            metrics.append(here / METRICS_FILE)
    return event_dirs, metrics


def discover_runs(roots: Iterable[str | os.PathLike]) -> list[TrainingRun]:
    """Find the pretraining runs with logs below the log roots.

    Args:
        roots: folders whose sub-directories are runs; missing ones are skipped.

    Returns:
        Runs sorted by method (paper order), seed and name; a run name found under two roots is kept once
        (the first root wins).
    """
    from dashboard.data import order_methods

    runs: dict[str, TrainingRun] = {}
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for child in sorted(root.iterdir()):
            if not child.is_dir() or child.name.startswith(".") or child.name in runs or not _inside(child, root):
                continue
            event_dirs, metrics = _scan(child)
            if event_dirs or metrics:
                method, seed = parse_run_name(child.name)
                runs[child.name] = TrainingRun(child.name, child, root, method, seed, tuple(event_dirs), tuple(metrics))
    rank = {m: i for i, m in enumerate(order_methods(r.method for r in runs.values()))}
    return sorted(runs.values(), key=lambda r: (rank[r.method], -1 if r.seed is None else r.seed, r.name))


def logs_signature(runs: Sequence[TrainingRun]) -> tuple[tuple[str, int, int], ...]:
    """``(path, size, mtime_ns)`` of every log file of the runs, a cache key that changes when a log grows."""
    out = []
    for run in runs:
        files = [f for d in run.event_dirs for f in d.iterdir() if f.name.startswith(EVENT_PREFIX)]
        for f in [*files, *run.metrics_files]:
            try:
                st = f.stat()
            except OSError:
                continue
            out.append((str(f), st.st_size, st.st_mtime_ns))
    return tuple(sorted(out))


def read_event_dir(path: str | os.PathLike) -> pd.DataFrame:
    """Loss scalars of the TensorBoard event files in one folder.

    Args:
        path: a folder with ``events.out.tfevents.*`` files.

    Returns:
        Columns ``tag``, ``step``, ``value``, ``wall_time``; every ``*loss*`` scalar, all points kept.

    Raises:
        ImportError: if ``tensorboard`` is not installed.
        ValueError: if the files cannot be parsed.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    try:
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        try:
            acc.FirstEventTimestamp()
        except ValueError:
            raise ValueError("no readable event in the event file(s): empty, truncated or corrupt") from None
        frames = []
        for tag in acc.Tags().get("scalars", []):
            if not is_loss_tag(tag):
                continue
            events = acc.Scalars(tag)
            frames.append(
                pd.DataFrame(
                    {
                        "tag": tag,
                        "step": np.array([e.step for e in events], dtype=np.int64),
                        "value": np.array([e.value for e in events], dtype=np.float64),
                        "wall_time": np.array([e.wall_time for e in events], dtype=np.float64),
                    }
                )
            )
    except ValueError:
        raise
    except Exception as err:
        raise ValueError(f"unreadable TensorBoard event file(s) ({type(err).__name__}: {err})") from err
    if not frames:
        return pd.DataFrame(columns=["tag", "step", "value", "wall_time"])
    return pd.concat(frames, ignore_index=True)


def read_metrics_csv(path: str | os.PathLike) -> pd.DataFrame:
    """Loss rows of a ``metrics.csv`` (columns ``step``, ``tag``, ``value``; others are ignored).

    Args:
        path: the CSV file.

    Returns:
        Columns ``tag``, ``step``, ``value``, ``wall_time`` (NaN); only ``*loss*`` tags.

    Raises:
        ValueError: naming the problem (unparseable CSV, missing columns, non-numeric steps or values).
    """
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"unreadable CSV ({err})") from err
    missing = [c for c in ("step", "tag", "value") if c not in raw.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; expected step, tag, value (got {list(raw.columns)})")
    rows = raw[raw["tag"].map(is_loss_tag)]
    step = pd.to_numeric(rows["step"], errors="coerce")
    value = pd.to_numeric(rows["value"], errors="coerce")
    bad = rows.index[step.isna() | value.isna() | (step % 1 != 0)]
    if len(bad):
        first = int(bad[0])
        raise ValueError(
            f"{len(bad)} row(s) with a non-numeric step or value, first at line {first + 2}: "
            f"step={raw.at[first, 'step']!r}, value={raw.at[first, 'value']!r}"
        )
    return pd.DataFrame(
        {
            "tag": rows["tag"].astype(str),
            "step": step.astype(np.int64),
            "value": value.astype(float),
            "wall_time": np.nan,
        }
    ).reset_index(drop=True)


def _relative(path: Path, run: TrainingRun) -> str:
    try:
        return str(path.relative_to(run.root))
    except ValueError:
        return str(path)


def load_runs(runs: Sequence[TrainingRun]) -> tuple[pd.DataFrame, list[FileProblem]]:
    """Read the loss curves of several runs.

    Args:
        runs: runs from :func:`discover_runs`.

    Returns:
        ``(frame, problems)``: the long frame with :data:`LOG_COLUMNS` (``source`` is the event folder or
        metrics file relative to the log root) and one :class:`~dashboard.data.FileProblem` per unreadable
        log source.
    """
    frames, problems = [], []
    for run in runs:
        sources = [(d, read_event_dir) for d in run.event_dirs] + [(f, read_metrics_csv) for f in run.metrics_files]
        for path, reader in sources:
            name = _relative(path, run)
            try:
                part = reader(path)
            except ImportError as err:
                problems.append(FileProblem(name, f"cannot read event files: {err} (pip install tensorboard)"))
                continue
            except (ValueError, OSError) as err:
                problems.append(FileProblem(name, str(err)))
                continue
            if part.empty:
                continue
            # event files and metrics.csv are read in logging order: tell iteration from epoch values per tag
            axis = pd.Series("iteration", index=part.index, dtype=object)
            for tag, idx in part.groupby("tag", sort=False).groups.items():
                axis[idx] = step_axis(str(tag), part.loc[idx, "step"].to_numpy())
            frames.append(part.assign(run=run.name, method=run.method, seed=run.seed, source=name, axis=axis))
    if not frames:
        return pd.DataFrame(columns=LOG_COLUMNS), problems
    return pd.concat(frames, ignore_index=True)[LOG_COLUMNS], problems


def smooth(values: Sequence[float], weight: float) -> np.ndarray:
    """TensorBoard-style exponential moving average, debiased so the curve starts at the first value.

    Args:
        values: the series.
        weight: smoothing in [0, 1); 0 returns the values unchanged.

    Returns:
        The smoothed series (float64).

    Raises:
        ValueError: for a weight outside [0, 1).
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"weight: expected a value in [0, 1), got {weight}.")
    x = np.asarray(values, dtype=np.float64)
    if weight == 0.0 or x.size == 0:
        return x.copy()
    out = np.empty_like(x)
    acc, norm = 0.0, 0.0
    for i, v in enumerate(x):
        acc = weight * acc + (1 - weight) * v
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out
