"""The per-patient table and the stratified patient order shared by splits and label fractions."""

from __future__ import annotations

import numpy as np
import pytest

from monai_ilm.data.patients import patient_table, strata, stratified_order
from tests.data.helpers import single_label_rows


def test_table_groups_rows_by_patient_and_records_carried_classes():
    rows = [
        {"patient_id": "b", "label": [1.0, 0.0]},
        {"patient_id": "a", "label": [0.0, 0.0]},
        {"patient_id": "b", "label": [0.0, 1.0]},
    ]
    table = patient_table(rows, "label", "patient_id", ["X", "Y"])
    assert table.patient_ids.tolist() == ["a", "b"]
    assert table.row_patient.tolist() == [1, 0, 1]
    assert table.images_per_patient.tolist() == [1, 2]
    assert table.carries.tolist() == [[False, False], [True, True]]
    assert table.class_names == ["X", "Y"]


def test_stratum_is_the_rarest_carried_class_and_none_gets_its_own():
    rows = [{"patient_id": str(p), "label": label} for p, label in enumerate([[1, 1], [1, 0], [1, 0], [0, 0]])]
    table = patient_table(rows, "label", "patient_id", None)
    # class 1 is carried by one patient, class 0 by three: patient 0 goes to the rarer stratum 1
    assert strata(table).tolist() == [1, 0, 0, 2]


def test_any_prefix_of_the_order_holds_each_stratum_in_proportion():
    table = patient_table(single_label_rows(n_patients=400, seed=3), "label", "patient_id", None)
    rng = np.random.default_rng(0)
    order = stratified_order(table, rng.random(table.num_patients), rng.random(table.num_patients))
    assert sorted(order.tolist()) == list(range(table.num_patients))
    share = np.bincount(strata(table)) / table.num_patients
    for prefix in (50, 100, 200):
        counts = np.bincount(strata(table)[order[:prefix]], minlength=len(share))
        assert np.all(np.abs(counts - share * prefix) <= 1.0)  # jittered-systematic: within one patient


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([], r"^datalist: expected at least one row, got an empty datalist\.$"),
        ([{"patient_id": "1", "label": 0}, {"label": 1}], r"^datalist row 1: expected a 'patient_id' key"),
        ([{"patient_id": "1", "label": 0.5}], r"^label: expected integer class indices or multi-hot lists, got "),
        ([{"patient_id": "1", "label": [0, 1]}, {"patient_id": "2", "label": [1]}], r"^label: expected multi-hot"),
    ],
)
def test_bad_rows_name_the_key_and_the_value(rows, message):
    with pytest.raises(ValueError, match=message):
        patient_table(rows, "label", "patient_id", None)
