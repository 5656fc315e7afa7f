"""Seeded, patient-level, class-stratified train/val/test splits, and the checks that splits are sound.

The reference code splits nothing itself: it reads fixed lists (NIH, IDC) or folders (EyePACS), and
where it carves a subset it does so with an unseeded, image-level shuffle (docs/method.md D16). Here
every split a reader makes is

* **patient-level**: all images of a patient go to the same split (checked and asserted);
* **seeded**: the same datalist and seed give the same result, whatever the row order;
* **stratified**: every class (every finding, for multi-label data) present in the input is present
  in each split when it has at least as many carriers as there are splits.

Label-fraction subsets live in :mod:`monai_ilm.data.label_fractions`; the per-patient table and the
stratified order both build on are in :mod:`monai_ilm.data.patients`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

import numpy as np

from monai_ilm.data.patients import PatientTable, coverage_columns, patient_ids, patient_table, stratified_order

__all__ = [
    "SPLIT_NAMES",
    "PatientLeakError",
    "assert_patient_disjoint",
    "check_class_presence",
    "patient_split",
    "train_val_test_split",
]

logger = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""Split names, in the order of :func:`patient_split`'s default ratios."""


class PatientLeakError(ValueError):
    """A patient appears in more than one split."""


def _largest_remainder(count: int, weights: np.ndarray) -> np.ndarray:
    """Integer sizes summing to ``count``, proportional to ``weights`` (largest-remainder rounding)."""
    exact = count * weights / weights.sum()
    sizes = np.floor(exact).astype(np.int64)
    sizes[np.argsort(-(exact - sizes), kind="stable")[: count - int(sizes.sum())]] += 1
    return sizes


def _allocate(count: int, ratios: np.ndarray) -> np.ndarray:
    """Split ``count`` patients by ``ratios``, giving every split at least one when possible."""
    sizes = _largest_remainder(count, ratios)
    if count >= len(ratios):
        while (sizes == 0).any():
            sizes[np.argmax(sizes)] -= 1
            sizes[np.argmax(sizes == 0)] += 1
    return sizes


def _cover_every_split(table: PatientTable, keys: np.ndarray, num_splits: int) -> np.ndarray:
    """Assign a few patients so that each split holds each class that has enough carriers.

    Classes are visited rarest first; for every split still lacking a class, its unassigned carrier
    with the smallest random key is assigned there. Returns the split of each patient (-1: not yet).
    """
    carries = coverage_columns(table.carries)
    assigned = np.full(table.num_patients, -1, dtype=np.int64)
    for column in np.argsort(carries.sum(axis=0), kind="stable"):
        carriers = np.flatnonzero(carries[:, column])
        if len(carriers) < num_splits:
            continue
        for split in range(num_splits):
            if (assigned[carriers] == split).any():
                continue
            free = carriers[assigned[carriers] < 0]
            if len(free) == 0:
                break
            assigned[free[np.argmin(keys[free])]] = split
    return assigned


def _validate_ratios(ratios: Sequence[float]) -> np.ndarray:
    values = np.asarray(ratios, dtype=np.float64)
    if values.ndim != 1 or len(values) == 0 or (values <= 0).any() or not math.isclose(values.sum(), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios: expected positive numbers that sum to 1, got {tuple(ratios)}.")
    return values / values.sum()


def _default_split_names(count: int) -> list[str]:
    return list(SPLIT_NAMES) if count == len(SPLIT_NAMES) else [f"split {i}" for i in range(count)]


def patient_split(
    datalist: Sequence[Mapping],
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    split_names: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
    require_all_classes: bool = True,
    label_key: str = "label",
    patient_key: str = "patient_id",
) -> list[list[dict]]:
    """Split a datalist into patient-disjoint, class-stratified parts (train/val/test by default).

    First, for each class (rarest first) and each split lacking it, one of the class's carriers is
    placed there, so every class with at least as many patients as there are splits appears in
    every split. The other patients are put in a seeded order stratified by the rarest class each
    carries, and cut into consecutive blocks that fill each split up to its share of ``ratios``.
    The result depends only on the set of rows and the seed, not on the row order. Rows keep their
    input order inside each split.

    Args:
        datalist: rows with ``patient_key`` and (optionally) ``label_key``: an int class index or a
            multi-hot list. Rows without labels are split without stratification.
        ratios: the fraction of patients in each split; positive, summing to 1.
        seed: the random seed.
        split_names: names of the splits, used in error messages (train/val/test for three splits).
        class_names: names of the classes (indexed by class index or multi-hot column), for messages.
        require_all_classes: raise when a class present in ``datalist`` is absent from a split;
            ``False`` logs a warning naming the class and the split instead (a class with fewer
            carriers than there are splits cannot be in every split).
        label_key: the key holding the label.
        patient_key: the key holding the patient id.

    Returns:
        One list of rows per ratio.

    Raises:
        ValueError: for an empty datalist, invalid ratios, fewer patients than splits, a row without
            a patient id, or (with ``require_all_classes``) a class missing from a split; the message
            names the class and the split.
    """
    weights = _validate_ratios(ratios)
    names = list(split_names) if split_names is not None else _default_split_names(len(weights))
    table = patient_table(datalist, label_key, patient_key, class_names)
    if table.num_patients < len(weights):
        raise ValueError(
            f"datalist: expected at least {len(weights)} patients for the patient-disjoint splits {tuple(names)}, "
            f"got {table.num_patients}."
        )
    rng = np.random.default_rng(seed)
    keys, jitter = rng.random(table.num_patients), rng.random(table.num_patients)
    patient_split_index = _cover_every_split(table, keys, len(weights))
    targets = _allocate(table.num_patients, weights)
    capacity = np.maximum(
        targets - np.bincount(patient_split_index[patient_split_index >= 0], minlength=len(weights)), 0
    )
    order = stratified_order(table, keys, jitter)
    remaining = order[patient_split_index[order] < 0]
    if len(remaining):
        sizes = _largest_remainder(len(remaining), capacity if capacity.sum() else weights)
        patient_split_index[remaining] = np.repeat(np.arange(len(weights)), sizes)
    row_split = patient_split_index[table.row_patient]
    parts = [[dict(datalist[i]) for i in np.flatnonzero(row_split == s)] for s in range(len(weights))]
    assert_patient_disjoint(*parts, names=names, patient_key=patient_key)
    advice = f"with ratios {tuple(ratios)} use more data, other ratios or require_all_classes=False"
    _require_classes(table, patient_split_index, names, "patients", advice, strict=require_all_classes)
    return parts


def train_val_test_split(
    datalist: Sequence[Mapping],
    ratios: Sequence[float] = (0.7, 0.1, 0.2),
    seed: int = 0,
    val_fraction: float | None = None,
    class_names: Sequence[str] | None = None,
    require_all_classes: bool = True,
    label_key: str = "label",
    patient_key: str = "patient_id",
) -> list[list[dict]]:
    """Train, val and test parts of a datalist, patient-disjoint and stratified.

    Without ``val_fraction``, one :func:`patient_split` by ``ratios``. With it, the test part is drawn
    first (``ratios[2]`` of the patients) and val is then carved from the rest (``val_fraction`` of the
    train+val patients), so the test part does not depend on ``val_fraction``.

    Args:
        datalist: rows with ``patient_key`` and (optionally) ``label_key``.
        ratios: the train/val/test fractions of patients (only the test one is used with ``val_fraction``).
        seed: the random seed.
        val_fraction: the share of the train+val patients that form val, in (0, 1), or None.
        class_names, require_all_classes, label_key, patient_key: as for :func:`patient_split`.

    Returns:
        ``[train, val, test]``.

    Raises:
        ValueError: as :func:`patient_split`, for ``ratios`` that are not three fractions, or a
            ``val_fraction`` outside (0, 1).
    """
    weights = _validate_ratios(ratios)
    if len(weights) != len(SPLIT_NAMES):
        raise ValueError(f"ratios: expected three train/val/test fractions, got {tuple(ratios)}.")
    common = {
        "seed": seed,
        "class_names": class_names,
        "require_all_classes": require_all_classes,
        "label_key": label_key,
        "patient_key": patient_key,
    }
    if val_fraction is None:
        return patient_split(datalist, ratios=ratios, **common)
    if not 0.0 < val_fraction < 1.0:  # also rejects NaN
        raise ValueError(f"val_fraction: expected a number in (0, 1), got {val_fraction}.")
    test = float(weights[2])
    train_val, test_part = patient_split(datalist, (1.0 - test, test), split_names=("train+val", "test"), **common)
    train, val = patient_split(train_val, (1.0 - val_fraction, val_fraction), split_names=("train", "val"), **common)
    return [train, val, test_part]


def _require_classes(
    table: PatientTable, split_index: np.ndarray, names: Sequence[str], unit: str, advice: str, strict: bool = True
) -> None:
    """Raise naming the first class that is present in ``table`` but absent from one of the splits.

    With ``strict=False``, log one warning per missing class and split instead.
    """
    carriers_per_class = table.carries.sum(axis=0)
    for split, name in enumerate(names):
        present = table.carries[split_index == split].any(axis=0)
        for column in np.flatnonzero(~present & (carriers_per_class > 0)).tolist():
            message = (
                f"class '{table.class_names[column]}': expected at least one image in the '{name}' split, got none "
                f"(only {int(carriers_per_class[column])} of {table.num_patients} {unit} carry it)"
            )
            if strict:
                raise ValueError(f"{message}; {advice}.")
            logger.warning("%s; require_all_classes=True makes this an error.", message)


def check_class_presence(
    splits: Mapping[str, Sequence[Mapping]], class_names: Sequence[str] | None = None, label_key: str = "label"
) -> None:
    """Check that every class present in the union of ``splits`` appears in each split.

    Args:
        splits: split name to rows (e.g. the result of an official split list).
        class_names: names of the classes, for the message.
        label_key: the key holding the label.

    Raises:
        ValueError: naming the first class missing from a split, and the split.
    """
    rows = [item for part in splits.values() for item in part]
    table = patient_table(rows, label_key, None, class_names)
    split_of_row = np.concatenate([np.full(len(part), i) for i, part in enumerate(splits.values())])
    _require_classes(table, split_of_row, list(splits), "images", "per-class metrics need every class in every split")


def assert_patient_disjoint(
    *splits: Sequence[Mapping], names: Sequence[str] | None = None, patient_key: str = "patient_id"
) -> None:
    """Raise when any patient appears in more than one of ``splits``.

    Args:
        splits: the datalists to compare.
        names: their names, for the message (train/val/test for three splits).
        patient_key: the key holding the patient id.

    Raises:
        PatientLeakError: naming the two splits and (up to five of) the shared patients.
    """
    names = list(names) if names is not None else _default_split_names(len(splits))
    patient_sets = [set(patient_ids(part, patient_key).tolist()) for part in splits]
    for i in range(len(patient_sets)):
        for j in range(i + 1, len(patient_sets)):
            shared = sorted(patient_sets[i] & patient_sets[j])
            if shared:
                raise PatientLeakError(
                    f"splits '{names[i]}' and '{names[j]}': expected no shared patient, got {len(shared)} patient(s) "
                    f"in both the '{names[i]}' and the '{names[j]}' split, e.g. {shared[:5]}."
                )
