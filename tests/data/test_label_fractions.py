"""Label-fraction subsets: nesting, patient grouping, class coverage, determinism, bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monai_ilm.data.label_fractions import fraction_priority, label_fraction
from tests.data.helpers import images_of, multi_label_rows, patients_of, single_label_rows


class TestLabelFraction:
    def test_nested_one_in_six_in_hundred(self):
        rows = single_label_rows(n_patients=2000, seed=4)
        one, six, full = (label_fraction(rows, f, seed=7) for f in (0.01, 0.06, 1.0))
        assert images_of(one) < images_of(six) < images_of(full) == images_of(rows)

    def test_patient_grouped_and_sized(self):
        rows = single_label_rows(n_patients=1000, seed=2)
        subset = label_fraction(rows, 0.06, seed=0)
        target = round(0.06 * len(rows))
        assert target <= len(subset) < target + 5  # at most one patient (<= 5 images) over the target
        selected = patients_of(subset)
        assert all(r["patient_id"] not in selected for r in rows if r not in subset)

    def test_every_class_present_even_at_one_percent(self):
        single = label_fraction(single_label_rows(n_patients=2000, seed=9), 0.01, seed=0)
        assert {r["label"] for r in single} == {0, 1, 2}
        multi_rows = multi_label_rows()
        multi = label_fraction(multi_rows, 0.02, seed=0)
        assert (np.asarray([r["label"] for r in multi]).sum(axis=0) > 0).all()  # incl. the finding of 3 patients
        assert any(sum(r["label"]) == 0 for r in multi)  # and a no-finding image

    def test_same_seed_same_subset_any_row_order_different_seed_differs(self):
        rows = single_label_rows(n_patients=500)
        shuffled = rows[:]
        random.Random(1).shuffle(shuffled)
        assert images_of(label_fraction(rows, 0.1, seed=3)) == images_of(label_fraction(shuffled, 0.1, seed=3))
        assert images_of(label_fraction(rows, 0.1, seed=3)) != images_of(label_fraction(rows, 0.1, seed=4))

    def test_image_level_sampling_option(self):
        rows = single_label_rows(n_patients=300)
        subset = label_fraction(rows, 0.1, seed=0, group_by_patient=False)
        assert len(subset) == round(0.1 * len(rows))

    def test_tiny_fraction_keeps_one_patient(self):
        rows = single_label_rows(n_patients=50)
        assert len(patients_of(label_fraction(rows, 1e-6, seed=0))) == 1

    @pytest.mark.parametrize("fraction", [0, -0.5, 1.01, float("nan"), "half", None])
    def test_fraction_outside_unit_interval(self, fraction):
        with pytest.raises(ValueError, match=r"^fraction: expected a finite number in \(0, 1\], got "):
            label_fraction(single_label_rows(10), fraction)

    def test_priority_starts_with_coveringpatients_of(self):
        rows = multi_label_rows()
        row_group, order = fraction_priority(rows, seed=0)
        labels = np.asarray([r["label"] for r in rows])
        first_five = np.isin(row_group, order[:5])
        assert labels[first_five, 4].sum() > 0  # the 3-patient finding is covered within the first patients

    @settings(max_examples=25, deadline=None)
    @given(
        fractions=st.lists(st.floats(min_value=1e-3, max_value=1.0), min_size=2, max_size=4),
        seed=st.integers(0, 2**31 - 1),
    )
    def test_nesting_holds_for_any_fractions(self, fractions, seed):
        rows = single_label_rows(n_patients=120, seed=seed % 7)
        subsets = [images_of(label_fraction(rows, f, seed=seed)) for f in sorted(fractions)]
        for smaller, larger in zip(subsets, subsets[1:]):
            assert smaller <= larger
