"""Seeded, patient-level, stratified splits and label-fraction subsets.

The reference code draws its 1 % / 6 % labelled subsets with an unseeded, image-level, unstratified
shuffle (method_spec D16): subsets differ between runs and between methods, images of one patient
leak across the labelled/unlabelled boundary, and a 1 % subset of NIH can miss a rare finding
entirely. Here every split and subset is

* **patient-level**: all images of a patient go to the same split (checked and asserted);
* **seeded**: the same datalist and seed give the same result, whatever the row order;
* **stratified**: every class (every finding, for multi-label data) present in the input is present
  in each split and in every label-fraction subset large enough to hold it;
* **nested** (label fractions): with one seed, the 1 % subset lies inside the 6 % subset, which lies
  inside 100 %, so methods compared at several fractions see the same labelled patients.

Everything is vectorised over patients, so the 112,120-row NIH table takes well under a second.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")
"""Split names, in the order of :func:`patient_split`'s default ratios."""


class PatientLeakError(ValueError):
    """A patient appears in more than one split."""


@dataclass(frozen=True)
class _PatientTable:
    """The datalist grouped by patient: which rows belong to which patient and which classes they carry."""

    row_patient: np.ndarray  # (N,) index of each row's patient
    patient_ids: np.ndarray  # (P,) sorted unique patient ids
    images_per_patient: np.ndarray  # (P,)
    carries: np.ndarray  # (P, C) bool: the patient has at least one image with class c
    class_names: list[str]

    @property
    def num_patients(self) -> int:
        return len(self.patient_ids)


def _patient_ids(datalist: Sequence[Mapping], patient_key: str) -> np.ndarray:
    try:
        return np.asarray([str(item[patient_key]) for item in datalist])
    except KeyError:
        row = next(i for i, item in enumerate(datalist) if patient_key not in item)
        raise ValueError(f"datalist row {row} has no '{patient_key}' key; every row needs a patient id.") from None


def _label_matrix(
    datalist: Sequence[Mapping], label_key: str, class_names: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Binary (N, C) class-membership matrix of the rows, with one readable name per column.

    Integer labels become one column per distinct value; multi-hot labels keep their columns.
    Rows without labels give a matrix with no columns (no stratification).
    """
    labels = [item.get(label_key) for item in datalist]
    if any(label is None for label in labels):
        return np.zeros((len(datalist), 0), dtype=bool), []
    if np.ndim(labels[0]) == 0:
        values = np.asarray(labels)
        if not np.issubdtype(values.dtype, np.integer):
            raise ValueError(
                f"'{label_key}' values must be integer class indices or multi-hot lists, got {values.dtype}."
            )
        classes, column = np.unique(values, return_inverse=True)
        matrix = np.zeros((len(values), len(classes)), dtype=bool)
        matrix[np.arange(len(values)), column] = True
        names = [class_names[int(c)] if class_names is not None else f"class {int(c)}" for c in classes]
        return matrix, names
    try:
        matrix = np.asarray(labels, dtype=np.float32) > 0.5
    except ValueError as error:
        raise ValueError(f"multi-hot '{label_key}' lists must all have the same length ({error}).") from error
    if matrix.ndim != 2:
        raise ValueError(f"'{label_key}' must be an integer or a flat multi-hot list, got shape {matrix.shape[1:]}.")
    names = list(class_names) if class_names is not None else [f"label {j}" for j in range(matrix.shape[1])]
    return matrix, names


def _group_by_patient(
    datalist: Sequence[Mapping],
    label_key: str,
    patient_key: str | None,
    class_names: Sequence[str] | None,
) -> _PatientTable:
    if len(datalist) == 0:
        raise ValueError("the datalist is empty; there is nothing to split.")
    if patient_key is None:
        patient_ids, row_patient = np.arange(len(datalist)).astype(str), np.arange(len(datalist))
    else:
        patient_ids, row_patient = np.unique(_patient_ids(datalist, patient_key), return_inverse=True)
    labels, names = _label_matrix(datalist, label_key, class_names)
    num_patients = len(patient_ids)
    carries = np.zeros((num_patients, labels.shape[1]), dtype=bool)
    for column in range(labels.shape[1]):
        carries[:, column] = np.bincount(row_patient, weights=labels[:, column], minlength=num_patients) > 0
    images = np.bincount(row_patient, minlength=num_patients)
    return _PatientTable(row_patient, patient_ids, images, carries, names)


def _strata(table: _PatientTable) -> np.ndarray:
    """Stratum of each patient: the rarest class it carries (by patient count), or C for none.

    Stratifying on the rarest class keeps rare findings spread over the splits, which is what
    decides whether a split or subset can hold every class.
    """
    num_classes = table.carries.shape[1]
    if num_classes == 0:
        return np.zeros(table.num_patients, dtype=np.int64)
    patients_per_class = table.carries.sum(axis=0)
    cost = np.where(table.carries, patients_per_class[None, :], np.iinfo(np.int64).max)
    strata = np.argmin(cost, axis=1)
    strata[~table.carries.any(axis=1)] = num_classes
    return strata


def _within_stratum_rank(strata: np.ndarray, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank of each patient inside its stratum (ordered by ``keys``) and the size of its stratum."""
    order = np.lexsort((keys, strata))
    sizes = np.bincount(strata)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order)) - starts[strata[order]]
    return rank, sizes[strata]


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


def _stratified_order(table: _PatientTable, keys: np.ndarray, jitter: np.ndarray) -> np.ndarray:
    """Patients in a jittered-systematic stratified order: any contiguous block holds each stratum in proportion.

    A patient's position is ``(rank within its stratum + u) / stratum size`` with ``u ~ U(0, 1)``.
    """
    strata = _strata(table)
    rank, sizes = _within_stratum_rank(strata, keys)
    return np.argsort((rank + jitter) / sizes, kind="stable")


def _coverage_columns(carries: np.ndarray) -> np.ndarray:
    """``carries`` with an extra "carries nothing" column when some patients carry no class."""
    if carries.shape[1] and not carries.any(axis=1).all():
        return np.concatenate([carries, ~carries.any(axis=1, keepdims=True)], axis=1)
    return carries


def _cover_every_split(table: _PatientTable, keys: np.ndarray, num_splits: int) -> np.ndarray:
    """Assign a few patients so that each split holds each class that has enough carriers.

    Classes are visited rarest first; for every split still lacking a class, its unassigned carrier
    with the smallest random key is assigned there. Returns the split of each patient (-1: not yet).
    """
    carries = _coverage_columns(table.carries)
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
        raise ValueError(f"ratios must be a non-empty sequence of positive numbers that sum to 1, got {tuple(ratios)}.")
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
    table = _group_by_patient(datalist, label_key, patient_key, class_names)
    if table.num_patients < len(weights):
        raise ValueError(
            f"cannot split {table.num_patients} patient(s) into {len(weights)} patient-disjoint splits {tuple(names)}."
        )
    rng = np.random.default_rng(seed)
    keys, jitter = rng.random(table.num_patients), rng.random(table.num_patients)
    patient_split_index = _cover_every_split(table, keys, len(weights))
    targets = _allocate(table.num_patients, weights)
    capacity = np.maximum(
        targets - np.bincount(patient_split_index[patient_split_index >= 0], minlength=len(weights)), 0
    )
    order = _stratified_order(table, keys, jitter)
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
        raise ValueError(f"ratios must hold train/val/test fractions, got {tuple(ratios)}.")
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
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}.")
    test = float(weights[2])
    train_val, test_part = patient_split(datalist, (1.0 - test, test), split_names=("train+val", "test"), **common)
    train, val = patient_split(train_val, (1.0 - val_fraction, val_fraction), split_names=("train", "val"), **common)
    return [train, val, test_part]


def _require_classes(
    table: _PatientTable, split_index: np.ndarray, names: Sequence[str], unit: str, advice: str, strict: bool = True
) -> None:
    """Raise naming the first class that is present in ``table`` but absent from one of the splits.

    With ``strict=False``, log one warning per missing class and split instead.
    """
    carriers_per_class = table.carries.sum(axis=0)
    for split, name in enumerate(names):
        present = table.carries[split_index == split].any(axis=0)
        for column in np.flatnonzero(~present & (carriers_per_class > 0)).tolist():
            message = (
                f"class '{table.class_names[column]}' has no image in the '{name}' split: only "
                f"{int(carriers_per_class[column])} of {table.num_patients} {unit} carry it"
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
    table = _group_by_patient(rows, label_key, None, class_names)
    split_of_row = np.concatenate([np.full(len(part), i) for i, part in enumerate(splits.values())])
    _require_classes(table, split_of_row, list(splits), "images", "every class must appear in every split")


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
    patient_sets = [set(_patient_ids(part, patient_key).tolist()) for part in splits]
    for i in range(len(patient_sets)):
        for j in range(i + 1, len(patient_sets)):
            shared = sorted(patient_sets[i] & patient_sets[j])
            if shared:
                raise PatientLeakError(
                    f"{len(shared)} patient(s) appear in both the '{names[i]}' and the '{names[j]}' split, "
                    f"e.g. {shared[:5]}; splits must be patient-disjoint."
                )


def validate_fraction(fraction: float) -> float:
    """``fraction`` as a float after checking that it lies in (0, 1].

    Raises:
        ValueError: when ``fraction`` is not a number in (0, 1] (NaN included).
    """
    try:
        value = float(fraction)
    except (TypeError, ValueError):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}.") from None
    if not 0.0 < value <= 1.0:  # also rejects NaN
        raise ValueError(f"fraction must be in (0, 1], got {fraction!r}.")
    return value


def _covering_patients(table: _PatientTable, keys: np.ndarray) -> list[int]:
    """A few patients that together carry every class (and the no-finding case), rarest class first.

    For each class not yet covered, the patient with the smallest random key among its carriers is
    taken, so the choice is seeded and identical for every method.
    """
    carries = _coverage_columns(table.carries)
    chosen: list[int] = []
    covered = np.zeros(carries.shape[1], dtype=bool)
    for column in np.argsort(carries.sum(axis=0), kind="stable"):
        carriers = np.flatnonzero(carries[:, column])
        if covered[column] or len(carriers) == 0:
            continue
        patient = int(carriers[np.argmin(keys[carriers])])
        chosen.append(patient)
        covered |= carries[patient]
    return chosen


def fraction_priority(
    datalist: Sequence[Mapping],
    seed: int = 0,
    group_by_patient: bool = True,
    label_key: str = "label",
    patient_key: str = "patient_id",
) -> tuple[np.ndarray, np.ndarray]:
    """The seeded patient order from which every label-fraction subset is a prefix.

    The order starts with a handful of patients that together cover every class (rarest first),
    followed by all other patients in a stratified, jittered-systematic order: position
    ``(rank within stratum + u) / stratum size`` with ``u ~ U(0, 1)``, so any prefix holds each
    stratum in roughly its overall proportion.

    Args:
        datalist: the rows.
        seed: the random seed.
        group_by_patient: order patients (True) or single images (False, the reference's behaviour).
        label_key: the key holding the label.
        patient_key: the key holding the patient id.

    Returns:
        ``(row_group, order)``: the group (patient) index of each row, and the group indices in
        priority order.
    """
    table = _group_by_patient(datalist, label_key, patient_key if group_by_patient else None, None)
    rng = np.random.default_rng(seed)
    keys, jitter = rng.random(table.num_patients), rng.random(table.num_patients)
    first = _covering_patients(table, keys)
    rest = _stratified_order(table, keys, jitter)
    rest = rest[~np.isin(rest, first)]
    return table.row_patient, np.concatenate([np.asarray(first, dtype=np.int64), rest])


def label_fraction(
    datalist: Sequence[Mapping],
    fraction: float,
    seed: int = 0,
    group_by_patient: bool = True,
    label_key: str = "label",
    patient_key: str = "patient_id",
) -> list[dict]:
    """A seeded, patient-grouped, stratified subset holding about ``fraction`` of the rows.

    Patients are taken in the order of :func:`fraction_priority` until at least
    ``round(fraction * len(datalist))`` rows (and at least one patient) are selected. Because every
    subset is a prefix of one seeded order, subsets are nested for any two fractions with the same
    seed (1 % inside 6 % inside 100 %), and the same seed gives the same subset for every method.
    Every class appears as soon as the subset has as many patients as there are classes.

    Args:
        datalist: the rows (usually the train split).
        fraction: the labelled fraction, in (0, 1].
        seed: the random seed.
        group_by_patient: keep each patient's images together (default). ``False`` samples single
            images, like the reference, but still seeded and stratified.
        label_key: the key holding the label.
        patient_key: the key holding the patient id.

    Returns:
        The selected rows, in their input order.

    Raises:
        ValueError: when ``fraction`` is not in (0, 1] or the datalist is empty.
    """
    value = validate_fraction(fraction)
    if len(datalist) == 0:
        raise ValueError("the datalist is empty; cannot take a label fraction of it.")
    if value == 1.0:
        return [dict(item) for item in datalist]
    row_group, order = fraction_priority(datalist, seed, group_by_patient, label_key, patient_key)
    images = np.bincount(row_group, minlength=len(order))[order]
    target = max(1, int(round(value * len(datalist))))
    num_groups = int(np.searchsorted(np.cumsum(images), target, side="left")) + 1
    selected = np.zeros(len(order), dtype=bool)
    selected[order[:num_groups]] = True
    return [dict(datalist[i]) for i in np.flatnonzero(selected[row_group])]
