"""File-system helpers shared by the readers: directory checks and fast image indexing.

The readers must work at full scale (112,120 NIH PNGs, 277,524 IDC patches), so images are indexed
with one ``os.scandir`` pass per folder instead of one ``stat`` call per datalist row.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
"""File suffixes treated as 2D images (compared case-insensitively)."""

NIFTI_EXTENSIONS: tuple[str, ...] = (".nii", ".nii.gz")
"""File suffixes treated as NIfTI volumes."""

PathLike = str | os.PathLike


def require_directory(dataset_dir: PathLike, expected: str, argument: str = "dataset_dir") -> Path:
    """Return ``dataset_dir`` as an absolute :class:`~pathlib.Path` after checking that it is a directory.

    Datalist paths built from it are then absolute too, so they do not depend on the working
    directory of the process that later loads them.

    Args:
        dataset_dir: the directory given by the user.
        expected: a short description of the expected layout, quoted in the error message.
        argument: the name of the argument, quoted in the error message.

    Raises:
        FileNotFoundError: when ``dataset_dir`` does not exist or is not a directory.
    """
    path = Path(dataset_dir).expanduser()
    if not path.is_dir():
        what = "is not a directory" if path.exists() else "does not exist"
        raise FileNotFoundError(f"{argument}: expected {expected}, got '{path}', which {what}.")
    return path.resolve()


def has_suffix(name: str, suffixes: Iterable[str]) -> bool:
    """Whether ``name`` ends with one of ``suffixes`` (case-insensitive; handles ``.nii.gz``)."""
    lower = name.lower()
    return any(lower.endswith(suffix) for suffix in suffixes)


def strip_suffix(name: str, suffixes: Iterable[str]) -> str:
    """``name`` without the first matching suffix of ``suffixes`` (longest suffixes are tried first)."""
    lower = name.lower()
    for suffix in sorted(suffixes, key=len, reverse=True):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def list_files(directory: PathLike, suffixes: Iterable[str]) -> list[str]:
    """Sorted names of the regular files in ``directory`` whose names end with one of ``suffixes``.

    Hidden files (names starting with ``.``) are ignored. A missing directory gives an empty list.
    """
    suffixes = tuple(suffixes)
    try:
        with os.scandir(directory) as entries:
            names = [
                entry.name
                for entry in entries
                if not entry.name.startswith(".") and entry.is_file() and has_suffix(entry.name, suffixes)
            ]
    except FileNotFoundError:
        return []
    return sorted(names)


def list_subdirectories(directory: PathLike) -> list[str]:
    """Sorted names of the non-hidden sub-directories of ``directory`` (empty when it is missing)."""
    try:
        with os.scandir(directory) as entries:
            names = [entry.name for entry in entries if not entry.name.startswith(".") and entry.is_dir()]
    except FileNotFoundError:
        return []
    return sorted(names)


def find_first_existing(directory: Path, candidates: Iterable[str]) -> Path | None:
    """The first of ``directory / candidate`` that exists, or ``None``."""
    for candidate in candidates:
        path = directory / candidate
        if path.exists():
            return path
    return None


def read_table(path: PathLike, **kwargs):
    """``pandas.read_csv(path, **kwargs)``, with any parse failure re-raised as a ``ValueError`` naming the file.

    pandas reports an empty, binary or malformed file as ``EmptyDataError``, ``ParserError`` or
    ``UnicodeDecodeError`` without saying which file it was reading.

    Raises:
        ValueError: when the file cannot be parsed as the table asked for.
    """
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    except (ValueError, pd.errors.ParserError) as error:  # EmptyDataError and UnicodeDecodeError are ValueErrors
        raise ValueError(f"table '{path}': expected a CSV table, got {type(error).__name__}: {error}.") from None


def read_text_lines(path: PathLike, max_lines: int | None = None) -> list[str]:
    """The lines of a UTF-8 text file (all, or the first ``max_lines``), without line ends.

    Raises:
        ValueError: naming the file when it is not UTF-8 text.
    """
    try:
        with open(path, encoding="utf-8") as handle:
            lines = []
            for line in handle:
                if max_lines is not None and len(lines) >= max_lines:
                    break
                lines.append(line.rstrip("\r\n"))
            return lines
    except UnicodeDecodeError as error:
        raise ValueError(f"'{path}': expected UTF-8 text, got {error}.") from None
