"""One entry point for every supported data set: :func:`load_datalist`, called by the bundle configs."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from pathlib import Path

from monai_ilm.checks import check_bool, check_choice, checks_arguments, fail, is_real
from monai_ilm.data.csv_datalist import SPLIT_ALIASES, read_csv_datalist
from monai_ilm.data.files import PathLike, list_subdirectories, read_text_lines
from monai_ilm.data.label_fractions import check_fraction
from monai_ilm.data.label_fractions import label_fraction as take_label_fraction
from monai_ilm.data.nih import SPLIT_SOURCES as NIH_SPLITS
from monai_ilm.data.splits import SPLIT_NAMES, patient_split, train_val_test_split
from monai_ilm.datasets import DATASETS as _TABLE

logger = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = tuple(_TABLE)

IMAGE_ID_KEY = "image_id"
"""The datalist key of each row's stable image id: its path relative to ``dataset_dir`` (or the MedMNIST index)."""

DEFAULT_RATIOS: tuple[float, float, float] = (0.7, 0.1, 0.2)


def check_data_settings(
    dataset_name: object = None,
    nih_split: object = None,
    val_fraction: object = None,
    require_all_classes: object = None,
) -> None:
    """Check the settings that choose the split of the data (a setting left out, None, is not checked).

    Args:
        dataset_name: the data set; ``nih_split`` other than ``"official"`` is refused for any but ``"nih"``.
        nih_split: one of :data:`monai_ilm.data.nih.SPLIT_SOURCES`.
        val_fraction: null (each reader's own) or a number in (0, 1).
        require_all_classes: true or false.

    Raises:
        ValueError: naming the first bad setting and the allowed values.
    """
    if nih_split is not None:
        check_choice("nih_split", nih_split, NIH_SPLITS)
        if isinstance(dataset_name, str) and dataset_name != "nih" and nih_split != NIH_SPLITS[0]:
            raise fail(
                "nih_split",
                f"'{NIH_SPLITS[0]}' (it applies to dataset_name 'nih' only, not {dataset_name!r})",
                nih_split,
            )
    if val_fraction is not None:
        if not is_real(val_fraction) or not 0.0 < float(val_fraction) < 1.0:
            raise fail("val_fraction", "null (each data set's own) or a finite number in (0, 1)", val_fraction)
    if require_all_classes is not None:
        check_bool("require_all_classes", require_all_classes)


def datalist_options(
    dataset: str,
    nih_split: str = "official",
    val_fraction: float | None = None,
    require_all_classes: bool = False,
    skip_unreadable: bool = False,
) -> dict:
    """The reader options that a bundle's data settings give every :func:`load_datalist` call.

    Pretraining and every evaluation cell pass the same options, so they read the same splits.

    Args:
        dataset: the data set name (see :data:`DATASETS`).
        nih_split: the NIH split source, ``"official"``, ``"chexnet"`` or ``"seeded"`` (see
            :func:`~monai_ilm.data.nih.read_nih`); other data sets take only the default, which they ignore.
        val_fraction: the share of the train+val patients that form val wherever a validation split is
            drawn, or None for each reader's own default.
        require_all_classes: raise, instead of logging a warning, when a class is missing from a split.
        skip_unreadable: drop unreadable images with a warning (readers of image files only; MedMNIST
            arrays have none).

    Returns:
        Keyword arguments for :func:`load_datalist` (its ``options``).

    Raises:
        ValueError: naming the first bad setting and the allowed values.
    """
    check_choice("dataset_name", dataset, tuple(_TABLE))
    check_data_settings(dataset, nih_split, val_fraction, require_all_classes)
    options: dict = {"require_all_classes": require_all_classes}
    if dataset == "nih":
        options["split_source"] = nih_split
    if val_fraction is not None:
        options["val_fraction"] = float(val_fraction)
    if skip_unreadable:
        options["skip_unreadable"] = True
    return options


def _add_image_ids(rows: list[dict], root: Path) -> list[dict]:
    """Give each row with a file path the path relative to ``root`` (or ``root``'s folder for a file) as its id.

    Paths outside ``root`` keep their absolute form. Rows that already have an id keep it.
    """
    base = root.resolve()
    base = base if base.is_dir() else base.parent
    prefix = os.path.join(str(base), "")
    for row in rows:
        image = row.get("image")
        if IMAGE_ID_KEY in row or not isinstance(image, (str, os.PathLike)):
            continue
        path = os.fspath(image)
        if path.startswith(prefix) and f"{os.sep}.." not in path:
            relative = path[len(prefix) :]
        else:
            relative = os.path.relpath(os.path.abspath(path), base)
            if relative.startswith(".."):
                relative = os.path.abspath(path)
        row[IMAGE_ID_KEY] = relative.replace(os.sep, "/")
    return rows


def _split_folder(root: Path, split: str) -> Path | None:
    folders = set(list_subdirectories(root))
    return next((root / name for name in SPLIT_ALIASES[split] if name in folders), None)


def _has_split_folders(root: Path) -> bool:
    return any(_split_folder(root, name) is not None for name in SPLIT_NAMES)


def _load_tree(
    root: Path,
    split: str,
    seed: int,
    read: Callable[[Path], list[dict]],
    ratios: Sequence[float],
    val_fraction: float | None,
    require_all_classes: bool,
) -> list[dict]:
    """One split of a tree read by ``read``: from split folders when present, else a seeded patient split.

    With split folders but no val folder, val is carved from the train folder by patient (and train
    is what is left; ``val_fraction`` of the patients, 0.1 when None), so the two never share a patient.
    """
    if not _has_split_folders(root):
        parts = train_val_test_split(read(root), ratios, seed, val_fraction, require_all_classes=require_all_classes)
        return parts[SPLIT_NAMES.index(split)]
    val_fraction = 0.1 if val_fraction is None else val_fraction
    train_folder = _split_folder(root, "train")
    if split in ("train", "val") and _split_folder(root, "val") is None and train_folder is not None:
        parts = patient_split(
            read(train_folder),
            ratios=(1 - val_fraction, val_fraction),
            seed=seed,
            split_names=("train", "val"),
            require_all_classes=require_all_classes,
        )
        return parts[0 if split == "train" else 1]
    folder = _split_folder(root, split)
    if folder is None:
        raise FileNotFoundError(
            f"dataset_dir '{root}': expected a folder for split '{split}' (one of {list(SPLIT_ALIASES[split])}), "
            "got other split folders only."
        )
    return read(folder)


def _load_csv(
    root: Path, split: str, seed: int, ratios, val_fraction: float | None, require_all_classes: bool, kwargs: dict
) -> list[dict]:
    csv_path = root if root.is_file() else root / kwargs.pop("csv_file", "datalist.csv")
    if not csv_path.is_file():
        raise FileNotFoundError(
            f"dataset_dir '{root}': expected {_TABLE['csv'].expected_layout}, got no '{csv_path.name}'."
        )
    header = [column.strip() for column in " ".join(read_text_lines(csv_path, max_lines=1)).split(",")]
    kwargs.setdefault("patient_column", "patient_id" if "patient_id" in header else None)
    split_column = kwargs.pop("split_column", "split" if "split" in header else None)
    if split_column is not None:
        return read_csv_datalist(csv_path, split_column=split_column, split=split, **kwargs)
    rows = read_csv_datalist(csv_path, **kwargs)
    parts = train_val_test_split(rows, ratios, seed, val_fraction, require_all_classes=require_all_classes)
    return parts[SPLIT_NAMES.index(split)]


@checks_arguments(
    dataset=lambda key, value: check_choice(key, value, tuple(_TABLE)),  # the table as it is now: rows can be added
    split=partial(check_choice, allowed=SPLIT_NAMES),
    label_fraction=check_fraction,
)
def load_datalist(
    dataset: str,
    dataset_dir: PathLike,
    split: str,
    seed: int = 0,
    label_fraction: float = 1.0,
    options: Mapping | None = None,
    **kwargs,
) -> list[dict]:
    """The datalist of one split of one data set, optionally reduced to a labelled fraction.

    This is the function the bundle configs call, e.g.
    ``{"_target_": "monai_ilm.data.load_datalist", "dataset": "nih", "dataset_dir": "@dataset_dir",
    "split": "train", "label_fraction": 0.01, "options": "@datalist_options"}``.

    Every row gets a stable id under :data:`IMAGE_ID_KEY` (``"image_id"``): the image path relative to
    ``dataset_dir`` (to its folder when ``dataset_dir`` is a file; the absolute path for images outside
    it), or ``"<file stem>-<split>-<index>"`` for MedMNIST arrays. The evaluation pipelines keep it, so
    predictions and features are named by image.

    Args:
        dataset: ``"nih"``, ``"idc"``, ``"dr"``, ``"medmnist"``, ``"csv"``, ``"folder"`` or ``"nifti"``.
        dataset_dir: the data set's folder (or file, for ``medmnist`` and ``csv``).
        split: ``"train"``, ``"val"`` or ``"test"``.
        seed: the seed of every split and subset drawn (the same seed gives the same rows).
        label_fraction: keep this fraction of the split's rows, grouped by patient and stratified
            (:func:`monai_ilm.data.label_fractions.label_fraction`; nested across fractions for one seed).
        options: reader options given as one mapping (the bundles pass :func:`datalist_options` here);
            ``kwargs`` override them.
        kwargs: passed to the reader (:func:`~monai_ilm.data.nih.read_nih`, :func:`~monai_ilm.data.idc.read_idc`,
            :func:`~monai_ilm.data.dr.read_dr`, :func:`~monai_ilm.data.medmnist.read_medmnist`,
            :func:`~monai_ilm.data.csv_datalist.read_csv_datalist`, :func:`~monai_ilm.data.folder.read_image_folder`
            or :func:`~monai_ilm.data.nifti.read_nifti_folder`), except the following, which every data set
            takes. ``ratios``: the train/val/test patient fractions of a seeded three-way split (default
            0.7/0.1/0.2). ``val_fraction``: the share of the train+val patients that form val, wherever a
            validation split is drawn: carved from NIH's ``train_val_list.txt``, from a train folder or
            from EyePACS train, or, for a seeded three-way split, from what is left after the test
            patients are drawn (:func:`~monai_ilm.data.splits.train_val_test_split`; the test split
            does not change with it). None keeps each reader's default (NIH 1/8, EyePACS 1/5, folders
            0.1, a one-step split by ``ratios``); fixed splits (CheXNet lists, MedMNIST, split CSVs and
            folders) ignore it. ``require_all_classes``: raise,
            instead of logging a warning, when a class present in the data is missing from a drawn split
            (default False).

    Returns:
        Rows ``{"image": path or array, "label": int or multi-hot list, "patient_id": str, ...}``.

    Raises:
        ValueError: for an unknown data set or split (listing the allowed values), a fraction outside (0, 1],
            or a ``val_fraction`` outside (0, 1).
        FileNotFoundError: naming ``dataset_dir`` when it does not exist or lacks the expected layout.
    """
    fraction = 1.0 if label_fraction is None else float(label_fraction)
    root = Path(dataset_dir).expanduser()
    if not root.exists():
        raise FileNotFoundError(
            f"dataset_dir: expected {_TABLE[dataset].expected_layout}, got '{root}', which does not exist."
        )
    kwargs = {**(options or {}), **kwargs}
    val_fraction = kwargs.pop("val_fraction", None)
    if val_fraction is not None:
        check_data_settings(val_fraction=val_fraction)
    ratios = kwargs.pop("ratios", DEFAULT_RATIOS)
    strict = kwargs.pop("require_all_classes", False)
    split_options = {"seed": seed, "ratios": ratios, "val_fraction": val_fraction, "require_all_classes": strict}
    entry = _TABLE[dataset]
    if entry.splits == "seeded":
        rows = entry.read(root, split, **split_options, **kwargs)
    elif entry.splits == "fixed":
        rows = entry.read(root, split, **kwargs)
    elif entry.splits == "csv":
        rows = _load_csv(root, split, seed, ratios, val_fraction, strict, kwargs)
    else:
        rows = _load_tree(root, split, seed, lambda path: entry.read(path, **kwargs), ratios, val_fraction, strict)
    rows = _add_image_ids(rows, root)
    if fraction < 1.0:
        rows = take_label_fraction(rows, fraction, seed=seed)
    logger.info("%s %s split of '%s': %d rows (label fraction %g)", dataset, split, root, len(rows), fraction)
    return rows
