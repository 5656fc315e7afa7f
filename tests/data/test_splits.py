"""Patient-level splits: disjointness, stratification, determinism, class presence, bad input."""

from __future__ import annotations

import random

import numpy as np
import pytest

from monai_ilm.data.splits import PatientLeakError, assert_patient_disjoint, check_class_presence, patient_split
from tests.data.helpers import images_of, multi_label_rows, patients_of, single_label_rows


class TestPatientSplit:
    def test_patient_disjoint_and_complete(self):
        rows = single_label_rows()
        train, val, test = patient_split(rows, seed=3)
        assert_patient_disjoint(train, val, test)
        assert not (patients_of(train) & patients_of(val)) and not (patients_of(val) & patients_of(test))
        assert len(train) + len(val) + len(test) == len(rows)
        assert images_of(train) | images_of(val) | images_of(test) == images_of(rows)

    def test_ratios_are_respected_by_patient_count(self):
        rows = single_label_rows(n_patients=400)
        parts = patient_split(rows, ratios=(0.7, 0.1, 0.2), seed=0)
        counts = np.array([len(patients_of(p)) for p in parts]) / 400
        np.testing.assert_allclose(counts, [0.7, 0.1, 0.2], atol=0.03)

    def test_every_class_in_every_split(self):
        single = patient_split(single_label_rows(), seed=5)
        for part in single:
            assert {r["label"] for r in part} == {0, 1, 2}
        for part in patient_split(multi_label_rows(), seed=5):
            assert (np.asarray([r["label"] for r in part]).sum(axis=0) > 0).all()

    def test_same_seed_same_split_whatever_the_row_order(self):
        rows = single_label_rows()
        shuffled = rows[:]
        random.Random(0).shuffle(shuffled)
        first, second = patient_split(rows, seed=11), patient_split(shuffled, seed=11)
        for a, b in zip(first, second):
            assert images_of(a) == images_of(b)
        other = patient_split(rows, seed=12)
        assert patients_of(other[0]) != patients_of(first[0])

    def test_rows_keep_their_order_and_are_copies(self):
        rows = single_label_rows(n_patients=30)
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
        with pytest.raises(
            ValueError, match=r"class 'tumour': expected at least one image in the '(train|val|test)' split, got none"
        ):
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
            f"class 'tumour': expected at least one image in the '{name}' split, got none "
            "(only 1 of 21 patients carry it); "
            "require_all_classes=True makes this an error."
            for name in lacking
        )

    @pytest.mark.parametrize("ratios", [(0.5, 0.6), (0.0, 1.0), (-0.1, 1.1), ()])
    def test_bad_ratios(self, ratios):
        with pytest.raises(ValueError, match="ratios"):
            patient_split(single_label_rows(20), ratios=ratios)

    def test_too_few_patients_and_empty_input(self):
        rows = [{"image": "a.png", "patient_id": "1", "label": 0}, {"image": "b.png", "patient_id": "2", "label": 0}]
        with pytest.raises(ValueError, match=r"datalist: expected at least 3 patients .*got 2\."):
            patient_split(rows)
        with pytest.raises(ValueError, match="empty"):
            patient_split([])

    def test_missing_patient_key_names_the_row(self):
        with pytest.raises(ValueError, match="row 1: expected a 'patient_id' key"):
            patient_split([{"image": "a", "patient_id": "1"}, {"image": "b"}, {"image": "c", "patient_id": "3"}])


class TestAssertPatientDisjoint:
    def test_leak_names_splits_and_patient(self):
        a = [{"patient_id": "1"}, {"patient_id": "2"}]
        b = [{"patient_id": "3"}, {"patient_id": "2"}]
        with pytest.raises(PatientLeakError, match=r"both the 'train' and the 'val' split.*'2'"):
            assert_patient_disjoint(a, b, [], names=["train", "val", "test"])
        assert_patient_disjoint(a, [{"patient_id": "3"}])

    def test_check_class_presence(self):
        with pytest.raises(ValueError, match="class 'B': expected at least one image in the 'test' split, got none"):
            check_class_presence(
                {"train": [{"label": 0}, {"label": 1}], "test": [{"label": 0}]}, class_names=["A", "B"]
            )
        check_class_presence({"train": [{"label": 0}, {"label": 1}], "test": [{"label": 1}, {"label": 0}]})
