"""Reader for a generic CSV datalist: one row per image, with path, label(s) and optional patient columns."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from monai_ilm.data.files import PathLike, read_table
from monai_ilm.data.integrity import drop_or_raise_missing, verify_images

SPLIT_ALIASES: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


def _single_labels(values: pd.Series, csv_path: Path, column: str, class_names: Sequence[str] | None) -> list[int]:
    """Integer class indices from a label column of integers or of class names."""
    if values.isna().any():
        row = int(np.flatnonzero(values.isna().to_numpy())[0])
        raise ValueError(f"CSV '{csv_path}' row {row + 2}, column '{column}': expected a label, got an empty cell.")
    numeric = pd.to_numeric(values, errors="coerce")
    if not numeric.isna().any():
        fractional = numeric[np.mod(numeric, 1) != 0]
        if len(fractional):
            raise ValueError(
                f"CSV '{csv_path}', column '{column}': expected integer class indices, got {fractional.iloc[0]}."
            )
        return numeric.astype(np.int64).tolist()
    names = values.astype(str).str.strip()
    known = list(class_names) if class_names is not None else sorted(names.unique())
    index = {name: i for i, name in enumerate(known)}
    unknown = sorted(set(names) - set(index))
    if unknown:
        raise ValueError(f"CSV '{csv_path}', column '{column}': expected class names in {known}, got {unknown[:5]}.")
    return [index[name] for name in names]


def _multi_hot_labels(table: pd.DataFrame, csv_path: Path, columns: Sequence[str]) -> list[list[float]]:
    values = table[list(columns)].apply(pd.to_numeric, errors="coerce")
    bad = ~values.isin([0, 1])
    if bad.to_numpy().any():
        row, col = np.argwhere(bad.to_numpy())[0]
        raise ValueError(
            f"CSV '{csv_path}' row {row + 2}, column '{columns[col]}': expected 0 or 1 (a multi-label column), "
            f"got '{table[columns[col]].iloc[row]}'."
        )
    return values.to_numpy(dtype=np.float32).tolist()


def read_csv_datalist(
    csv_path: PathLike,
    image_column: str = "image",
    label_column: str | Sequence[str] | None = "label",
    patient_column: str | None = None,
    base_dir: PathLike | None = None,
    class_names: Sequence[str] | None = None,
    split_column: str | None = None,
    split: str | None = None,
    check_files: bool = True,
    verify: bool = False,
    skip_unreadable: bool = False,
) -> list[dict]:
    """Datalist from a CSV with an image-path column, label column(s) and an optional patient column.

    Args:
        csv_path: the CSV file.
        image_column: the column holding image paths; relative paths are resolved against ``base_dir``
            (default: the CSV's folder), never the working directory.
        label_column: one column of class indices or class names (an int label), a list of 0/1 columns
            (a multi-hot label), or ``None`` for unlabelled data.
        patient_column: the column holding patient ids. Without it each image is its own patient, so
            splits cannot keep a patient's images together: give it whenever the data has one.
        base_dir: the folder relative paths start from.
        class_names: the class names in index order, when the label column holds names (default: sorted).
        split_column: a column naming each row's split (train/val/test; aliases such as ``validation``
            are accepted); with ``split``, only that split's rows are returned.
        split: the split to keep when ``split_column`` is given.
        check_files: fail (or skip) when an image file does not exist.
        verify: also decode every image.
        skip_unreadable: drop missing or unreadable images with a logged warning instead of raising.

    Returns:
        Rows ``{"image": path, "label": int or multi-hot list (when labelled), "patient_id": str}``.

    Raises:
        FileNotFoundError: when the CSV or (with ``check_files``) an image does not exist.
        ValueError: when a named column is missing (the message lists the columns found) or holds bad values.
    """
    csv_path = Path(csv_path).expanduser().resolve()
    if not csv_path.is_file():
        raise FileNotFoundError(f"CSV datalist '{csv_path}': expected a file, got nothing (the path does not exist).")
    table = read_table(csv_path, dtype={image_column: str})
    label_columns = (
        [] if label_column is None else [label_column] if isinstance(label_column, str) else list(label_column)
    )
    wanted = [image_column, *label_columns] + [c for c in (patient_column, split_column) if c is not None]
    missing = [column for column in wanted if column not in table.columns]
    if missing:
        raise ValueError(f"CSV '{csv_path}': expected column(s) {missing}, got columns {list(table.columns)}.")
    table = table.reset_index(drop=True)  # rows with more cells than the header make pandas index by them
    empty = np.flatnonzero(table[image_column].isna().to_numpy())
    if len(empty):
        row = int(empty[0]) + 2
        raise ValueError(
            f"CSV '{csv_path}' row {row}, column '{image_column}': expected an image path, got an empty cell."
        )
    if split_column is not None and split is not None:
        if split not in SPLIT_ALIASES:
            raise ValueError(f"split: expected one of {list(SPLIT_ALIASES)}, got '{split}'.")
        table = table[table[split_column].astype(str).str.strip().str.lower().isin(SPLIT_ALIASES[split])]
        table = table.reset_index(drop=True)
    if table.empty:
        wanted = f" of split '{split}'" if split else ""
        raise ValueError(f"CSV '{csv_path}': expected at least one row{wanted}, got none.")
    base = Path(base_dir) if base_dir is not None else csv_path.parent
    paths = [str(path if Path(path).is_absolute() else base / path) for path in table[image_column].str.strip()]
    if patient_column is not None:
        patients = table[patient_column].astype(str).str.strip().tolist()
    else:
        patients = [Path(p).name for p in paths]
    if isinstance(label_column, str):
        labels = _single_labels(table[label_column], csv_path, label_column, class_names)
    elif label_columns:
        labels = _multi_hot_labels(table, csv_path, label_columns)
    else:
        labels = None
    datalist = []
    for i, (path, patient) in enumerate(zip(paths, patients)):
        item = {"image": path, "patient_id": patient}
        if labels is not None:
            item["label"] = labels[i]
        datalist.append(item)
    if check_files:
        missing_rows = [i for i, item in enumerate(datalist) if not Path(item["image"]).is_file()]
        datalist = drop_or_raise_missing(datalist, missing_rows, skip_unreadable, f"CSV '{csv_path}'")
    if verify:
        datalist, _ = verify_images(datalist, skip_unreadable)
    return datalist
