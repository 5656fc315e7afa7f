"""Patient-level splits and label fractions: disjointness, nesting, determinism, class presence, bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monai_ilm.data.splits import (
    PatientLeakError,
    assert_patient_disjoint,
    check_class_presence,
    fraction_priority,
    label_fraction,
    patient_split,
)


def _single_label_rows(n_patients: int = 200, seed: int = 0, num_classes: int = 3) -> list[dict]:
    """Rows of patients with 1-5 images each; class 2 is rare (about 4 % of patients)."""
    rng = np.random.default_rng(seed)
    rows = []
    for p in range(n_patients):
        label = int(rng.choice(num_classes, p=[0.7, 0.26, 0.04][:num_classes] if num_classes == 3 else None))
        for k in range(int(rng.integers(1, 6))):
            rows.append({"image": f"p{p}_{k}.png", "label": label, "patient_id": f"p{p}"})
    return rows


def _multi_label_rows(n_patients: int = 300, seed: int = 1) -> list[dict]:
    """Multi-hot rows with 5 findings of very different prevalence (the last is carried by 3 patients)."""
    rng = np.random.default_rng(seed)
    prevalence = np.array([0.3, 0.15, 0.08, 0.03, 0.0])
    rows = []
    for p in range(n_patients):
        for k in range(int(rng.integers(1, 4))):
            label = (rng.random(5) < prevalence).astype(float)
            label[4] = float(p in (7, 150, 299))
            rows.append({"image": f"{p}_{k}.png", "label": label.tolist(), "patient_id": str(p)})
    return rows


def _patients(rows):
    return {r["patient_id"] for r in rows}


def _images(rows):
    return {r["image"] for r in rows}


class TestPatientSplit:
    def test_patient_disjoint_and_complete(self):
        rows = _single_label_rows()
        train, val, test = patient_split(rows, seed=3)
        assert_patient_disjoint(train, val, test)
        assert not (_patients(train) & _patients(val)) and not (_patients(val) & _patients(test))
        assert len(train) + len(val) + len(test) == len(rows)
        assert _images(train) | _images(val) | _images(test) == _images(rows)

    def test_ratios_are_respected_by_patient_count(self):
        rows = _single_label_rows(n_patients=400)
        parts = patient_split(rows, ratios=(0.7, 0.1, 0.2), seed=0)
        counts = np.array([len(_patients(p)) for p in parts]) / 400
        np.testing.assert_allclose(counts, [0.7, 0.1, 0.2], atol=0.03)

    def test_every_class_in_every_split(self):
        single = patient_split(_single_label_rows(), seed=5)
        for part in single:
            assert {r["label"] for r in part} == {0, 1, 2}
        for part in patient_split(_multi_label_rows(), seed=5):
            assert (np.asarray([r["label"] for r in part]).sum(axis=0) > 0).all()

    def test_same_seed_same_split_whatever_the_row_order(self):
        rows = _single_label_rows()
        shuffled = rows[:]
        random.Random(0).shuffle(shuffled)
        first, second = patient_split(rows, seed=11), patient_split(shuffled, seed=11)
        for a, b in zip(first, second):
            assert _images(a) == _images(b)
        other = patient_split(rows, seed=12)
        assert _patients(other[0]) != _patients(first[0])

    def test_rows_keep_their_order_and_are_copies(self):
        rows = _single_label_rows(n_patients=30)
        train = patient_split(rows, seed=0, require_all_classes=False)[0]
        positions = [rows.index(r) for r in train]
        assert positions == sorted(positions)
        train[0]["image"] = "changed"
        assert all(r["image"] != "changed" for r in rows)

    def test_unlabelled_rows_split_without_stratification(self):
        rows = [{"image": f"{i}.png", "patient_id": str(i // 2)} for i in range(40)]
        parts = patient_split(rows, seed=0)
        assert_patient_disjoint(*parts)
        assert sum(len(p) for p in parts) == 40

    def test_empty_class_after_splitting_is_an_error_naming_class_and_split(self):
        rows = [{"image": f"{i}.png", "patient_id": str(i), "label": 0} for i in range(20)]
        rows.append({"image": "rare.png", "patient_id": "rare", "label": 1})
        with pytest.raises(ValueError, match=r"class 'tumour' has no image in the '(train|val|test)' split"):
            patient_split(rows, class_names=["normal", "tumour"], seed=0)
        parts = patient_split(rows, seed=0, require_all_classes=False)
        assert sum(len(p) for p in parts) == 21

    def test_empty_class_without_the_strict_check_is_a_warning_naming_class_and_split(self, caplog):
        rows = [{"image": f"{i}.png", "patient_id": str(i), "label": 0} for i in range(20)]
        rows.append({"image": "rare.png", "patient_id": "rare", "label": 1})
        with caplog.at_level("WARNING", logger="monai_ilm.data"):
            parts = patient_split(rows, class_names=["normal", "tumour"], seed=0, require_all_classes=False)
        lacking = [name for name, part in zip(("train", "val", "test"), parts) if all(r["label"] == 0 for r in part)]
        assert len(lacking) == 2
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert sorted(warnings) == sorted(
            f"class 'tumour' has no image in the '{name}' split: only 1 of 21 patients carry it; "
            "require_all_classes=True makes this an error."
            for name in lacking
        )

    @pytest.mark.parametrize("ratios", [(0.5, 0.6), (0.0, 1.0), (-0.1, 1.1), ()])
    def test_bad_ratios(self, ratios):
        with pytest.raises(ValueError, match="ratios"):
            patient_split(_single_label_rows(20), ratios=ratios)

    def test_too_few_patients_and_empty_input(self):
        rows = [{"image": "a.png", "patient_id": "1", "label": 0}, {"image": "b.png", "patient_id": "2", "label": 0}]
        with pytest.raises(ValueError, match="cannot split 2 patient"):
            patient_split(rows)
        with pytest.raises(ValueError, match="empty"):
            patient_split([])

    def test_missing_patient_key_names_the_row(self):
        with pytest.raises(ValueError, match="row 1 has no 'patient_id'"):
            patient_split([{"image": "a", "patient_id": "1"}, {"image": "b"}, {"image": "c", "patient_id": "3"}])


class TestAssertPatientDisjoint:
    def test_leak_names_splits_and_patient(self):
        a = [{"patient_id": "1"}, {"patient_id": "2"}]
        b = [{"patient_id": "3"}, {"patient_id": "2"}]
        with pytest.raises(PatientLeakError, match=r"both the 'train' and the 'val' split.*'2'"):
            assert_patient_disjoint(a, b, [], names=["train", "val", "test"])
        assert_patient_disjoint(a, [{"patient_id": "3"}])

    def test_check_class_presence(self):
        with pytest.raises(ValueError, match="class 'B' has no image in the 'test' split"):
            check_class_presence(
                {"train": [{"label": 0}, {"label": 1}], "test": [{"label": 0}]}, class_names=["A", "B"]
            )
        check_class_presence({"train": [{"label": 0}, {"label": 1}], "test": [{"label": 1}, {"label": 0}]})


class TestLabelFraction:
    def test_nested_one_in_six_in_hundred(self):
        rows = _single_label_rows(n_patients=2000, seed=4)
        one, six, full = (label_fraction(rows, f, seed=7) for f in (0.01, 0.06, 1.0))
        assert _images(one) < _images(six) < _images(full) == _images(rows)

    def test_patient_grouped_and_sized(self):
        rows = _single_label_rows(n_patients=1000, seed=2)
        subset = label_fraction(rows, 0.06, seed=0)
        target = round(0.06 * len(rows))
        assert target <= len(subset) < target + 5  # at most one patient (<= 5 images) over the target
        selected = _patients(subset)
        assert all(r["patient_id"] not in selected for r in rows if r not in subset)

    def test_every_class_present_even_at_one_percent(self):
        single = label_fraction(_single_label_rows(n_patients=2000, seed=9), 0.01, seed=0)
        assert {r["label"] for r in single} == {0, 1, 2}
        multi_rows = _multi_label_rows()
        multi = label_fraction(multi_rows, 0.02, seed=0)
        assert (np.asarray([r["label"] for r in multi]).sum(axis=0) > 0).all()  # incl. the finding of 3 patients
        assert any(sum(r["label"]) == 0 for r in multi)  # and a no-finding image

    def test_same_seed_same_subset_any_row_order_different_seed_differs(self):
        rows = _single_label_rows(n_patients=500)
        shuffled = rows[:]
        random.Random(1).shuffle(shuffled)
        assert _images(label_fraction(rows, 0.1, seed=3)) == _images(label_fraction(shuffled, 0.1, seed=3))
        assert _images(label_fraction(rows, 0.1, seed=3)) != _images(label_fraction(rows, 0.1, seed=4))

    def test_image_level_sampling_option(self):
        rows = _single_label_rows(n_patients=300)
        subset = label_fraction(rows, 0.1, seed=0, group_by_patient=False)
        assert len(subset) == round(0.1 * len(rows))

    def test_tiny_fraction_keeps_one_patient(self):
        rows = _single_label_rows(n_patients=50)
        assert len(_patients(label_fraction(rows, 1e-6, seed=0))) == 1

    @pytest.mark.parametrize("fraction", [0, -0.5, 1.01, float("nan"), "half", None])
    def test_fraction_outside_unit_interval(self, fraction):
        with pytest.raises(ValueError, match=r"fraction must be .*\(0, 1\]"):
            label_fraction(_single_label_rows(10), fraction)

    def test_priority_starts_with_covering_patients(self):
        rows = _multi_label_rows()
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
        rows = _single_label_rows(n_patients=120, seed=seed % 7)
        subsets = [_images(label_fraction(rows, f, seed=seed)) for f in sorted(fractions)]
        for smaller, larger in zip(subsets, subsets[1:]):
            assert smaller <= larger
