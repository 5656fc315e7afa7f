"""Crash- and concurrency-safe storage of the results table: one CSV file per run.

Layout of a results directory::

    results/
      <run_id>.csv     the run's rows (schema of monai_ilm.results.schema), the commit marker
      <run_id>.json    run metadata sidecar: config, checkpoint, seed, timings, ... plus the CSV's row count
                       and SHA-256, so a file truncated or edited after writing is detected

Why one file per run: concurrent experiment processes never write to the same file, so no locking is needed
and a crash can only affect the run being written. Each file is written to a hidden temporary file in the
same directory, flushed and fsync'ed, then published with an atomic hard link (which refuses to overwrite an
existing run) or ``os.replace``; readers therefore see either the complete file or nothing. Leftover
temporary files (``.<run_id>.*.tmp``) from a crash are ignored. No pickle is involved anywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Mapping
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from monai_ilm.results.rows import utc_now
from monai_ilm.results.schema import COLUMNS, SCHEMA, empty_frame, validate

__all__ = [
    "ResultsFileWarning",
    "SCHEMA_VERSION",
    "results_path",
    "write_results",
    "read_run",
    "read_results",
    "query",
    "has_cell",
    "replicates_path",
    "write_json_atomic",
    "read_replicates",
    "read_run_metadata",
    "replicate_key",
]

SCHEMA_VERSION = 1
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}$")


class ResultsFileWarning(UserWarning):
    """A results file was skipped because it is unreadable, incomplete or does not match the schema."""


def _check_run_id(run_id: Any) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.match(run_id) or run_id.endswith((".tmp", ".csv", ".json")):
        raise ValueError(
            "run_id: expected 1-200 characters from [A-Za-z0-9_.-], starting with a letter or digit and not ending "
            f"in .tmp/.csv/.json (it names the results file), got {run_id!r}."
        )
    return run_id


def results_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    """Path of the CSV file holding run ``run_id``.

    Args:
        results_dir: the results directory.
        run_id: the run identifier.

    Returns:
        ``results_dir / f"{run_id}.csv"``.

    Raises:
        ValueError: if ``run_id`` is not a safe file name.
    """
    return Path(results_dir) / f"{_check_run_id(run_id)}.csv"


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (Path, datetime, date)):
        return str(obj) if isinstance(obj, Path) else obj.isoformat()
    raise TypeError(f"value: expected a JSON value, NumPy value, path or date, got {type(obj).__name__}.")


def _fsync_dir(directory: Path) -> None:
    """Make a rename durable; best effort, directories cannot be opened on every platform."""
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _publish(data: bytes, target: Path, overwrite: bool) -> None:
    """Atomically create ``target`` with ``data`` via a temporary file in the same directory.

    Raises:
        FileExistsError: if ``target`` exists and ``overwrite`` is False.
    """
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if overwrite:
            os.replace(tmp, target)
        else:
            try:
                os.link(tmp, target)  # atomic and never clobbers: two writers of one run_id cannot both win
            except FileExistsError:
                raise
            except OSError:  # file system without hard links: check-then-rename (small race window)
                if target.exists():
                    raise FileExistsError(
                        f"{target}: expected a new file (overwrite=False), got an existing one."
                    ) from None
                os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    _fsync_dir(target.parent)


def write_json_atomic(path: str | os.PathLike, content: Mapping[str, Any]) -> None:
    """Replace ``path`` with ``content`` as JSON, atomically and durably (readers see the old or the new file).

    Raises:
        ValueError: if ``content`` is not JSON-serialisable.
    """
    try:
        text = json.dumps(content, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: expected JSON-serialisable content, got an unserialisable value ({err}).") from err
    _publish(text.encode("utf-8"), Path(path), overwrite=True)


def _rows_frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    if len(frame) == 0:
        raise ValueError("rows: expected at least one results row, got none.")
    return validate(frame)


def replicates_path(results_dir: str | os.PathLike, run_id: str) -> Path:
    """Path of the bootstrap replicates of run ``run_id``: ``<run_id>.replicates.npz`` beside its CSV.

    Raises:
        ValueError: if ``run_id`` is not a safe file name.
    """
    return Path(results_dir) / f"{_check_run_id(run_id)}.replicates.npz"


def replicate_key(metric: str, block: Any = None) -> str:
    """The key of one row's replicates in a replicates file: ``"<metric>"`` or ``"<metric>@<block>"``."""
    return metric if block is None or pd.isna(block) else f"{metric}@{int(block)}"


def _replicates_bytes(replicates: Mapping[str, Any]) -> bytes:
    arrays = {}
    for key, values in replicates.items():
        if values is None:  # e.g. no test-id digest: test rows without ids from the data prove nothing
            continue
        arrays[key] = np.asarray(values, dtype=np.float64 if key != "test_ids_sha256" else str)
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_replicates(results_dir: str | os.PathLike, run_id: str) -> dict[str, np.ndarray]:
    """The bootstrap replicates stored with a run (empty when the run has none).

    Keys are :func:`replicate_key` names, each a float array of per-resample scores in resample order (NaN
    where the metric was undefined), plus ``"test_ids_sha256"``: the hash of the test sample ids in order,
    which two runs must share for their replicates to be paired (absent when the test rows had no ids from the
    data, see :func:`monai_ilm.evaluation.features.ids_digest`: such runs are never paired).

    Args:
        results_dir: the results directory.
        run_id: the run.

    Returns:
        ``{key: array}``; ``{}`` if there is no replicates file.

    Raises:
        ValueError: for an unreadable file (named in the message).
    """
    path = replicates_path(results_dir, run_id)
    if not path.is_file():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except (OSError, ValueError, zipfile.BadZipFile) as err:
        raise ValueError(f"{path}: expected a replicates .npz file, got an unreadable file ({err}).") from err


def read_run_metadata(results_dir: str | os.PathLike, run_id: str) -> dict[str, Any]:
    """The metadata a run was written with (its sidecar's ``metadata``: settings, fingerprint, ...).

    Args:
        results_dir: the results directory.
        run_id: the run.

    Returns:
        The metadata dict; ``{}`` when the run has no sidecar.

    Raises:
        ValueError: for an unreadable sidecar (named in the message).
    """
    path = results_path(results_dir, run_id)
    try:
        sidecar = _load_sidecar(path)
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path.with_suffix('.json')}: expected a JSON sidecar, got an unreadable file ({err})."
        ) from err
    metadata = (sidecar or {}).get("metadata", {})
    return metadata if isinstance(metadata, dict) else {}


def write_results(
    results_dir: str | os.PathLike,
    rows: pd.DataFrame | Iterable[Mapping[str, Any]],
    run_metadata: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    replicates: Mapping[str, Any] | None = None,
) -> Path:
    """Write one run's rows as ``<run_id>.csv`` plus a ``<run_id>.json`` metadata sidecar, atomically.

    Earlier runs are never touched. The CSV is published first (it is the commit marker); the sidecar
    follows and records the row count and SHA-256 of the CSV so that :func:`read_results` can detect a file
    that was later truncated. A crash between the two steps leaves a complete CSV without a sidecar, which
    is still read.

    Args:
        results_dir: the results directory (created if missing).
        rows: a DataFrame or an iterable of row mappings with the schema's columns, all with the same
            ``run_id``.
        run_metadata: JSON-serialisable run metadata (config, checkpoint, seed, timings, ...); numpy scalars,
            arrays, paths and datetimes are converted.
        overwrite: replace an existing run with the same ``run_id`` instead of raising. While the CSV and its
            sidecar are being replaced, a concurrent reader may skip the run once with a checksum warning.
        replicates: bootstrap replicates of the rows (see :func:`read_replicates`), written before the CSV so
            that a published run always has them; a stale replicates file is removed when None.

    Returns:
        The path of the CSV file.

    Raises:
        ValueError: if the rows fail schema validation, are empty, have several or an unsafe ``run_id``, or
            ``run_metadata`` is not JSON-serialisable.
        FileExistsError: if the run already exists and ``overwrite`` is False.
    """
    frame = _rows_frame(rows)
    run_ids = frame["run_id"].unique().tolist()
    if len(run_ids) != 1:
        raise ValueError(f"rows: expected a single run_id per write (one file per run), got {run_ids}.")
    target = results_path(results_dir, run_ids[0])
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"{target}: expected no results yet for run {run_ids[0]!r} (or overwrite=True), got an existing file."
        )
    data = frame.to_csv(index=False, lineterminator="\n").encode("utf-8")
    sidecar = {
        "run_id": run_ids[0],
        "schema_version": SCHEMA_VERSION,
        "n_rows": len(frame),
        "csv_sha256": hashlib.sha256(data).hexdigest(),
        "written_at": utc_now(),
        "metadata": dict(run_metadata or {}),
    }
    try:
        meta = json.dumps(sidecar, indent=2, sort_keys=True, default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ValueError(
            f"run_metadata: expected JSON-serialisable metadata, got an unserialisable value ({err})."
        ) from err
    stale_replicates = replicates_path(results_dir, run_ids[0])
    if replicates:
        _publish(_replicates_bytes(replicates), stale_replicates, overwrite=True)
    elif stale_replicates.exists():
        stale_replicates.unlink()
    _publish(data, target, overwrite)
    _publish(meta.encode("utf-8"), target.with_suffix(".json"), overwrite=True)
    return target


def _load_sidecar(csv_path: Path) -> dict[str, Any] | None:
    meta_path = csv_path.with_suffix(".json")
    if not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text(encoding="utf-8"))
    if not isinstance(meta, dict):
        raise ValueError(f"sidecar {meta_path.name}: expected a JSON object, got {type(meta).__name__}.")
    return meta


def read_run(csv_path: str | os.PathLike) -> pd.DataFrame:
    """Read and check one run file.

    Checks, in order: the sidecar checksum (if a sidecar exists), CSV parsing, the schema, and that every
    row's ``run_id`` matches the file name.

    Args:
        csv_path: path of a ``<run_id>.csv`` file.

    Returns:
        The validated rows.

    Raises:
        ValueError: describing the first problem found (also for unreadable CSV or JSON).
        OSError: if the file cannot be read.
    """
    path = Path(csv_path)
    data = path.read_bytes()
    meta = _load_sidecar(path)
    if meta is not None and meta.get("csv_sha256") != hashlib.sha256(data).hexdigest():
        raise ValueError("content: expected the checksum in its .json sidecar, got another (truncated or modified).")
    try:
        raw = pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False, na_filter=False, encoding="utf-8")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"content: expected a CSV table, got unreadable CSV ({err}).") from err
    frame = validate(raw)
    stray = sorted(set(frame["run_id"]) - {path.stem})
    if stray:
        raise ValueError(f"run_id: expected {path.stem!r} (the file name {path.name!r}), got {stray}.")
    return frame


def read_results(results_dir: str | os.PathLike) -> pd.DataFrame:
    """Merge all run files of a results directory into one validated long-form table.

    Files that cannot be read or fail a check (see :func:`read_run`) are skipped with a
    :class:`ResultsFileWarning` naming the file and the problem; hidden and temporary files are ignored.

    Args:
        results_dir: the results directory; a missing directory gives an empty table.

    Returns:
        A DataFrame with the schema's columns and dtypes, runs in file-name order.
    """
    directory = Path(results_dir)
    frames = []
    for path in sorted(directory.glob("*.csv")) if directory.is_dir() else []:
        if path.name.startswith("."):
            continue
        try:
            frames.append(read_run(path))
        except (ValueError, OSError) as err:
            warnings.warn(f"skipping results file {path}: {err}", ResultsFileWarning, stacklevel=2)
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty_frame()
    return validate(pd.concat(frames, ignore_index=True))


def _match(column: pd.Series, kind: str, wanted: Any) -> pd.Series:
    if wanted is None:
        return column.isna()
    if kind == "float":
        return pd.Series(
            np.isclose(column.to_numpy(dtype=float), float(wanted), rtol=0.0, atol=1e-9), index=column.index
        )
    return (column == wanted).fillna(False).astype(bool)


def query(results: pd.DataFrame | str | os.PathLike, **criteria: Any) -> pd.DataFrame:
    """Rows of a results table matching all ``column=value`` criteria.

    Floats (``label_fraction``, ...) match within 1e-9; ``None`` matches a missing value (e.g. ``block=None``
    for whole-model rows).

    Args:
        results: a results DataFrame, or a results directory to read.
        criteria: column values to match.

    Returns:
        The matching rows.

    Raises:
        ValueError: for an unknown column name.
    """
    unknown = sorted(set(criteria) - set(COLUMNS))
    if unknown:
        raise ValueError(f"criteria: expected column names from {list(COLUMNS)}, got unknown column(s) {unknown}.")
    frame = results if isinstance(results, pd.DataFrame) else read_results(results)
    kinds = {c.name: c.kind for c in SCHEMA}
    mask = pd.Series(True, index=frame.index)
    for name, wanted in criteria.items():
        mask &= _match(frame[name], kinds[name], wanted)
    return frame[mask]


def has_cell(results: pd.DataFrame | str | os.PathLike, **criteria: Any) -> bool:
    """Whether at least one row matches the criteria, so a runner can skip cells already computed.

    Example::

        if not has_cell("results", dataset="idc", method="mse", protocol="finetune",
                        label_fraction=0.01, seed=0, metric="f1_macro"):
            run_cell(...)

    Args:
        results: a results DataFrame, or a results directory to read.
        criteria: column values to match (see :func:`query`).

    Returns:
        True if a matching row exists.

    Raises:
        ValueError: for an unknown column name.
    """
    return len(query(results, **criteria)) > 0
