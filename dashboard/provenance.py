"""What the results come from: sample data, short settings, seeds and test-set sizes, and the pretraining runs
(no Streamlit here).

Read from the runs' own records only: the results sidecars' ``metadata`` (``settings``, ``dataset_dir``,
``pretraining``, ``code_version``) and the runner's ``run_settings.json`` beside each pretraining run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from dashboard.runs import read_sidecar
from monai_ilm.provenance import PRETRAINING_RECORD

__all__ = ["PRETRAINING_RECORD", "caveats", "pretraining_runs", "throughput"]

# below these, numbers show that the pipeline runs, not what the method achieves (the paper: 224-512 px,
# 100+ epochs of pretraining, ResNet-50, thousands of test images)
MIN_IMAGE_SIZE = 224
MIN_PRETRAIN_EPOCHS = 50
MIN_TEST_SIZE = 1000
_SAMPLE_DIR = "sample_data"


def _metadata(results_dir: Path, run_ids: Iterable[str]) -> list[dict[str, Any]]:
    out = []
    for run_id in run_ids:
        sidecar, _ = read_sidecar(results_dir / f"{run_id}.json")
        meta = (sidecar or {}).get("metadata")
        if isinstance(meta, dict):
            out.append(meta)
    return out


def caveats(results_dir: str | os.PathLike, frame: pd.DataFrame) -> list[str]:
    """Reasons to read the numbers as a demonstration, each one sentence with the values found.

    Args:
        results_dir: the results directory (its sidecars are read).
        frame: the results rows shown.

    Returns:
        Sentences; empty when nothing calls for a warning.
    """
    directory = Path(results_dir)
    runs = frame[frame["kind"] == "run"] if "kind" in frame else frame
    if runs.empty:
        return []
    metas = _metadata(directory, dict.fromkeys(runs["run_id"]))
    out = []
    if any(m.get("host") == "sample-generator" for m in metas):  # dashboard.sample's marker
        out.append("These are made-up sample results (`python -m dashboard.sample`), not experiment results.")
    data_dirs = {str(m.get("dataset_dir", "")) for m in metas} - {""}
    if any(_SAMPLE_DIR in Path(d).parts for d in data_dirs) or (directory.parent / _SAMPLE_DIR).is_dir():
        out.append("The images are generated sample data (`sample_data/`), not a real data set.")
    pretrain = [
        m["pretraining"]["settings"]
        for m in metas
        if isinstance(m.get("pretraining"), dict) and isinstance(m["pretraining"].get("settings"), dict)
    ]
    settings = pretrain + [m["settings"] for m in metas if isinstance(m.get("settings"), dict)]
    sizes = sorted({int(s["image_size"]) for s in settings if isinstance(s.get("image_size"), int)})
    epochs = sorted({int(s["max_epochs"]) for s in pretrain if isinstance(s.get("max_epochs"), int)})
    backbones = sorted({str(s["backbone"]) for s in pretrain if s.get("backbone")})
    short = (sizes and sizes[0] < MIN_IMAGE_SIZE) or (epochs and epochs[0] < MIN_PRETRAIN_EPOCHS)
    if short:
        parts = [
            f"{'/'.join(map(str, sizes))} px images" if sizes else "",
            f"{'/'.join(map(str, epochs))} pretraining epoch(s)" if epochs else "",
            "/".join(backbones),
        ]
        out.append("Quick settings: " + ", ".join(p for p in parts if p) + ".")
    seeds = sorted({int(s) for s in runs["seed"].dropna()})
    if len(seeds) == 1:
        out.append(f"One seed ({seeds[0]}): intervals hold the test sampling only, not the seed-to-seed spread.")
    n_min, n_max = int(runs["n"].min()), int(runs["n"].max())
    if n_min < MIN_TEST_SIZE:
        n_text = f"n = {n_min}" if n_min == n_max else f"n = {n_min}-{n_max}"
        out.append(f"Small test sets ({n_text}): wide intervals.")
    return out


def pretraining_runs(roots: Iterable[str | os.PathLike]) -> pd.DataFrame:
    """The pretraining runs below the log roots, one row each, from their ``run_settings.json``.

    Args:
        roots: folders whose sub-directories are pretraining runs (``<method>_seed<seed>/``).

    Returns:
        Columns ``run``, ``status``, ``method``, ``seed``, the main settings (``backbone``, ``image_size``,
        ``max_epochs``, ``batch_size``, ``queue_size``, ``temperature``, ``momentum``, the intermediate-loss
        weights), ``host`` (blank when the record has none),
        ``fingerprint``, ``git_commit``, ``monai_ilm``, ``monai``, ``torch``, ``python``, ``started``,
        ``finished`` and ``problem`` (an unreadable record).
    """
    records = []
    seen: set[str] = set()
    keys = (
        "method",
        "seed",
        "backbone",
        "image_size",
        "max_epochs",
        "batch_size",
        "learning_rate",
        "queue_size",
        "temperature",
        "momentum",
        "mse_weights",
        "barlow_weights",
        "embedding_dim",
        "batch_norm",
    )
    for root in map(Path, roots):
        if not root.is_dir():
            continue
        for path in sorted(root.glob(f"*/{PRETRAINING_RECORD}")):
            run = path.parent.name
            if run in seen:
                continue
            seen.add(run)
            rec: dict[str, Any] = {"run": run, "problem": ""}
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(data, dict):
                    raise ValueError(f"expected a JSON object, got {type(data).__name__}")
            except (OSError, UnicodeDecodeError, ValueError) as err:
                records.append(rec | {"status": "unreadable", "problem": f"{PRETRAINING_RECORD}: {err}"})
                continue
            settings = data.get("settings") if isinstance(data.get("settings"), dict) else {}
            version = data.get("code_version") if isinstance(data.get("code_version"), dict) else {}
            rec |= {"status": data.get("status", ""), **{k: _cell(settings.get(k)) for k in keys}}
            rec |= {
                "host": data.get("host") or version.get("host") or "",
                "fingerprint": data.get("fingerprint", ""),
                **{k: version.get(k, "") for k in ("git_commit", "monai_ilm", "monai", "torch", "python")},
                "started": data.get("started", ""),
                "finished": data.get("finished", ""),
            }
            records.append(rec)
    return pd.DataFrame(records)


def _cell(value: Any) -> Any:
    """Lists as text, so that a table column has one type."""
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else value


def throughput(logs: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """Speed of each pretraining run from its logged wall times: seconds per epoch, iterations and samples per
    second (samples = iterations x the recorded batch size). The time between the first and last logged
    iteration includes the epoch-end work (validation, kNN, health, checkpoints). The data-wait share is the
    mean over epochs of ``data_wait_share`` (``monai_ilm.handlers.DataWaitHandler``), blank for runs made
    before it was logged.

    Args:
        logs: the frame of :func:`dashboard.logs.load_runs` (TensorBoard wall times; ``metrics.csv`` has none).
        runs: :func:`pretraining_runs` (for ``batch_size``; may be empty).

    Returns:
        Columns ``run``, ``epochs``, ``seconds_per_epoch``, ``iterations_per_second``, ``samples_per_second``,
        ``data_wait_share``; one row per run with a timed iteration loss.
    """
    cols = ["run", "epochs", "seconds_per_epoch", "iterations_per_second", "samples_per_second", "data_wait_share"]
    if logs.empty or "axis" not in logs:
        return pd.DataFrame(columns=cols)
    batch = dict(zip(runs["run"], runs["batch_size"])) if {"run", "batch_size"} <= set(runs.columns) else {}
    wait = logs[logs["tag"] == "data_wait_share"].groupby("run")["value"].mean().to_dict()
    out = []
    for run, rows in logs[(logs["tag"] == "loss") & logs["wall_time"].notna()].groupby("run", sort=False):
        its = rows[rows["axis"] == "iteration"].sort_values("wall_time")
        if len(its) < 2:
            continue
        seconds = float(its["wall_time"].iloc[-1] - its["wall_time"].iloc[0])
        steps = int(its["step"].iloc[-1] - its["step"].iloc[0])
        epochs = int((rows["axis"] == "epoch").sum())
        per_it = steps / seconds if seconds > 0 else float("nan")
        its_per_epoch = int(its["step"].max()) / max(epochs, 1)
        size = batch.get(run)
        out.append(
            {
                "run": run,
                "epochs": epochs,
                "seconds_per_epoch": its_per_epoch / per_it if per_it > 0 else float("nan"),
                "iterations_per_second": per_it,
                "samples_per_second": per_it * float(size) if isinstance(size, (int, float)) and size == size else None,
                "data_wait_share": wait.get(run),
            }
        )
    return pd.DataFrame(out, columns=cols)
