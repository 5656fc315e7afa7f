"""The run browser: config, checkpoint, seed and timings of every run, from the JSON sidecars.

A sidecar ``<run_id>.json`` is written by ``monai_ilm.results.write_results`` next to ``<run_id>.csv``:
``{"run_id", "schema_version", "n_rows", "csv_sha256", "written_at", "metadata": {...}}``, where ``metadata`` is
whatever the run passed (by convention ``config``, ``checkpoint``, ``seed``, ``timings``). Only ``json.loads`` is
used on them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from dashboard.data import FileProblem

__all__ = ["read_sidecar", "run_summaries", "runs_for_cell", "sidecar_timings"]

_TIMING_KEY = re.compile(r"time|duration|seconds|elapsed|runtime", re.IGNORECASE)


def read_sidecar(path: str | os.PathLike) -> tuple[dict[str, Any] | None, str | None]:
    """Read one sidecar.

    Args:
        path: the ``<run_id>.json`` file.

    Returns:
        ``(sidecar, None)`` or ``(None, problem)`` when the file is missing, unreadable or not a JSON object.
    """
    p = Path(path)
    if not p.is_file():
        return None, "no .json sidecar (run metadata unknown)"
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return None, f"unreadable JSON sidecar ({err})"
    if not isinstance(data, dict):
        return None, f"sidecar is a JSON {type(data).__name__}, expected an object"
    return data, None


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
        out[prefix] = value


def sidecar_timings(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The timings of a run: everything under ``metadata["timings"]`` (flattened with dots), else the
    top-level entries whose name looks like a time (``*time*``, ``*duration*``, ``*seconds*``, ``*elapsed*``).

    Args:
        metadata: the sidecar's ``metadata`` object.

    Returns:
        ``{name: value}``.
    """
    out: dict[str, Any] = {}
    timings = metadata.get("timings", metadata.get("timing"))
    if isinstance(timings, Mapping):
        _flatten("", timings, out)
        return out
    for key, value in metadata.items():
        if _TIMING_KEY.search(str(key)):
            _flatten(str(key), value, out)
    return out


def _combined_seeds(rows: pd.DataFrame) -> set[int]:
    """The seeds of rows that combine seeds (the runner's summary rows have no ``seed``, only ``seeds``)."""
    text = ",".join(str(v) for v in rows.get("seeds", pd.Series(dtype=object)) if isinstance(v, str))
    return {int(x) for x in text.split(",") if x.strip().isdigit()}


def _joined(values: Sequence[Any]) -> str:
    return ", ".join(str(v) for v in dict.fromkeys(values))


def run_summaries(
    results_dir: str | os.PathLike, df: pd.DataFrame, problems: Sequence[FileProblem] = ()
) -> pd.DataFrame:
    """One row per run: what it measured, its checkpoint, seed, config hash, timings and status.

    Args:
        results_dir: the results directory (sidecars are read from it).
        df: the results rows of the runs to list (the loaded, possibly filtered, table).
        problems: skipped files; their runs are listed with ``status="skipped"`` and the reason.

    Returns:
        Columns ``run_id``, ``status``, ``problem``, ``datasets``, ``methods``, ``protocols``, ``seeds``,
        ``label_fractions``, ``rows``, ``checkpoint``, ``config_hash``, ``written_at`` and one ``time: <name>``
        column per timing found.
    """
    directory = Path(results_dir)
    records = []
    for run_id, rows in df.groupby("run_id", sort=True):
        sidecar, problem = read_sidecar(directory / f"{run_id}.json")
        meta = (sidecar or {}).get("metadata") or {}
        meta = meta if isinstance(meta, Mapping) else {}
        checkpoint = meta.get("checkpoint") or _joined(c for c in rows["checkpoint"] if c)
        rec = {
            "run_id": run_id,
            "status": "ok",
            "problem": problem or "",
            "datasets": _joined(rows["dataset"]),
            "methods": _joined(rows["method"]),
            "protocols": _joined(rows["protocol"]),
            "seeds": _joined(sorted({int(s) for s in rows["seed"].dropna()} | _combined_seeds(rows))),
            "label_fractions": _joined(sorted(float(f) for f in rows["label_fraction"])),
            "rows": len(rows),
            "checkpoint": str(checkpoint),
            "config_hash": _joined(c for c in rows["config_hash"] if c),
            "written_at": (sidecar or {}).get("written_at", ""),
        }
        rec |= {f"time: {k}": v for k, v in sidecar_timings(meta).items()}
        records.append(rec)
    for prob in problems:
        if prob.file.endswith(".csv"):
            records.append(
                {"run_id": prob.file[: -len(".csv")], "status": "skipped", "problem": prob.problem, "rows": 0}
            )
    if not records:
        return pd.DataFrame(
            columns=[
                "run_id",
                "status",
                "problem",
                "datasets",
                "methods",
                "protocols",
                "seeds",
                "label_fractions",
                "rows",
                "checkpoint",
                "config_hash",
                "written_at",
            ]
        )
    out = pd.DataFrame(records)
    out["rows"] = out["rows"].astype(int)
    text = [c for c in out.columns if not c.startswith("time: ") and c != "rows"]
    out[text] = out[text].fillna("")
    return out


def runs_for_cell(df: pd.DataFrame, **criteria: Any) -> list[str]:
    """The runs that contribute rows to a cell.

    Args:
        df: results rows.
        criteria: column values (``dataset``, ``method``, ``protocol``, ``label_fraction``, ``block``,
            ``metric``, ...); ``None`` values are ignored (any).

    Returns:
        Run ids in order of appearance.
    """
    from dashboard.data import cells_for

    wanted = {k: v for k, v in criteria.items() if v is not None}
    return list(dict.fromkeys(cells_for(df, wanted)["run_id"]))


def run_details(results_dir: str | os.PathLike, run_id: str) -> dict[str, Any]:
    """Everything the browser shows about one run: sidecar (or the problem reading it) and its metadata parts.

    Args:
        results_dir: the results directory.
        run_id: the run.

    Returns:
        ``{"sidecar", "problem", "config", "checkpoint", "seed", "timings", "other"}``.
    """
    sidecar, problem = read_sidecar(Path(results_dir) / f"{run_id}.json")
    meta = (sidecar or {}).get("metadata") or {}
    meta = meta if isinstance(meta, Mapping) else {}
    known = {"config", "checkpoint", "seed", "timings", "timing"}
    return {
        "sidecar": sidecar,
        "problem": problem,
        "config": meta.get("config"),
        "checkpoint": meta.get("checkpoint"),
        "seed": meta.get("seed"),
        "timings": sidecar_timings(meta),
        "other": {k: v for k, v in meta.items() if k not in known},
    }
