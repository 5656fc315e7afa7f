"""Seeded, nested, patient-level label-fraction subsets (1 %, 6 %, 100 % of the labels).

The reference code draws its 1 % / 6 % labelled subsets with an unseeded, image-level, unstratified
shuffle (docs/method.md D16): subsets differ between runs and between methods, images of one patient
leak across the labelled/unlabelled boundary, and a 1 % subset of NIH can miss a rare finding
entirely. Here every subset is a prefix of one seeded patient order, so it is

* **patient-level**: all images of a patient are in the subset or none is;
* **seeded**: the same datalist and seed give the same subset for every method, whatever the row order;
* **stratified**: the order starts with a few patients covering every class, then follows the
  jittered-systematic stratified order of :mod:`monai_ilm.data.patients`;
* **nested**: with one seed, the 1 % subset lies inside the 6 % subset, which lies inside 100 %.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from monai_ilm.checks import check_real
from monai_ilm.data.patients import PatientTable, coverage_columns, patient_table, stratified_order


def check_fraction(key: str, fraction: object) -> float:
    """``fraction``, a share of the labelled training data, as a float if it is a finite number in (0, 1].

    Args:
        key: the name of the setting in the message (``label_fraction`` in a recipe).
        fraction: the value to check.

    Raises:
        ValueError: naming ``key`` when ``fraction`` is not a finite number in (0, 1] (NaN, a string included).
    """
    return check_real(key, fraction, low=0.0, high=1.0, low_open=True)


def _covering_patients(table: PatientTable, keys: np.ndarray) -> list[int]:
    """A few patients that together carry every class (and the no-finding case), rarest class first.

    For each class not yet covered, the patient with the smallest random key among its carriers is
    taken, so the choice is seeded and identical for every method.
    """
    carries = coverage_columns(table.carries)
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
    table = patient_table(datalist, label_key, patient_key if group_by_patient else None, None)
    rng = np.random.default_rng(seed)
    keys, jitter = rng.random(table.num_patients), rng.random(table.num_patients)
    first = _covering_patients(table, keys)
    rest = stratified_order(table, keys, jitter)
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
    value = check_fraction("fraction", fraction)
    if len(datalist) == 0:
        raise ValueError("datalist: expected at least one row to take a label fraction of, got an empty datalist.")
    if value == 1.0:
        return [dict(item) for item in datalist]
    row_group, order = fraction_priority(datalist, seed, group_by_patient, label_key, patient_key)
    images = np.bincount(row_group, minlength=len(order))[order]
    target = max(1, int(round(value * len(datalist))))
    num_groups = int(np.searchsorted(np.cumsum(images), target, side="left")) + 1
    selected = np.zeros(len(order), dtype=bool)
    selected[order[:num_groups]] = True
    return [dict(datalist[i]) for i in np.flatnonzero(selected[row_group])]
