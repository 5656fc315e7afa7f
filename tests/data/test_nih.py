"""NIH ChestX-ray14 reader: generated data in the published layout, and the real metadata table at full size."""

from __future__ import annotations

import gzip
import os
import re
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from monai_ilm.data.label_fractions import label_fraction
from monai_ilm.data.nih import NIH_FINDINGS, parse_findings, read_nih, read_nih_metadata
from monai_ilm.data.splits import SPLIT_NAMES, assert_patient_disjoint
from monai_ilm.data.synthetic import NIH_HEADER, make_nih_sample
from tests.data.helpers import shared_path


def _names(rows):
    return {r["image_name"] for r in rows}


def _read_splits(dataset_dir, **kwargs) -> dict[str, list[dict]]:
    """The three splits as the loader reads them, one ``read_nih`` call each, checked to share no patient."""
    splits = {name: read_nih(dataset_dir, split=name, **kwargs) for name in SPLIT_NAMES}
    assert_patient_disjoint(*splits.values(), names=list(splits))
    return splits


class TestGeneratedLayout:
    def test_official_split_follows_the_lists(self, nih_dir):
        splits = _read_splits(nih_dir, split_source="official", seed=0)
        test_names = set((nih_dir / "test_list.txt").read_text().split())
        train_val_names = set((nih_dir / "train_val_list.txt").read_text().split())
        assert _names(splits["test"]) == test_names
        assert _names(splits["train"]) | _names(splits["val"]) == train_val_names
        assert not _names(splits["train"]) & _names(splits["val"])

    def test_rows_point_at_nested_images_with_14_float_labels(self, nih_dir):
        rows = read_nih(nih_dir, "train")
        assert {"image", "label", "patient_id", "image_name"} <= set(rows[0])
        assert all("/images_0" in r["image"] and r["image"].endswith(r["image_name"]) for r in rows)
        assert len({r["image"].split("/images_")[1][:3] for r in rows}) > 1  # several images_XXX folders
        labels = np.asarray([r["label"] for r in rows])
        assert labels.shape[1] == 14 and set(np.unique(labels)) <= {0.0, 1.0}

    def test_labels_match_the_csv(self, nih_dir):
        table = pd.read_csv(nih_dir / "Data_Entry_2017_v2020.csv")
        expected = dict(zip(table["Image Index"], table["Finding Labels"]))
        for row in read_nih(nih_dir, "test"):
            names = [f for f, v in zip(NIH_FINDINGS, row["label"]) if v]
            assert "|".join(names) == expected[row["image_name"]] or (
                not names and expected[row["image_name"]] == "No Finding"
            )

    def test_chexnet_and_seeded_sources(self, nih_dir):
        chexnet = _read_splits(nih_dir, split_source="chexnet")
        listed = (nih_dir / "labels" / "val_list.txt").read_text().splitlines()
        assert _names(chexnet["val"]) == {line.split()[0] for line in listed}
        seeded = _read_splits(nih_dir, split_source="seeded", seed=4)
        assert sum(len(v) for v in seeded.values()) == 120
        assert read_nih(nih_dir, "val", split_source="seeded", seed=4) == seeded["val"]

    def test_flat_folder_and_gzipped_table(self, tmp_path, nih_dir):
        flat = tmp_path / "flat"
        flat.mkdir()
        for png in nih_dir.glob("images_*/images/*.png"):
            shutil.copy(png, flat / png.name)
        with (
            open(nih_dir / "Data_Entry_2017_v2020.csv", "rb") as src,
            gzip.open(flat / "Data_Entry_2017.csv.gz", "wb") as dst,
        ):
            dst.write(src.read())
        for name in ("train_val_list.txt", "test_list.txt"):
            shutil.copy(nih_dir / name, flat / name)
        rows = read_nih(flat, "test")
        assert _names(rows) == _names(read_nih(nih_dir, "test"))
        assert all(r["image"].startswith(str(flat.resolve())) for r in rows)


class TestBadInput:
    def test_missing_directory_and_table(self, tmp_path):
        with pytest.raises(
            FileNotFoundError, match="^dataset_dir: expected .*Data_Entry_2017.*, got '.*', which does not exist"
        ):
            read_nih(tmp_path / "nowhere")
        with pytest.raises(FileNotFoundError, match="expected an NIH metadata table .*got none"):
            read_nih(tmp_path)

    def test_missing_columns_are_named(self, tmp_path):
        (tmp_path / "Data_Entry_2017_v2020.csv").write_text("Image Index,Labels\n00000001_000.png,Mass\n")
        with pytest.raises(ValueError, match=r"got .* \(no column\(s\) \['Finding Labels', 'Patient ID'\]\)"):
            read_nih(tmp_path, split_source="seeded")

    def test_unknown_finding(self):
        with pytest.raises(ValueError, match=r"unknown finding\(s\) \['Covid'\]"):
            parse_findings(pd.Series(["Mass|Covid", "No Finding"]))

    def test_missing_image_is_named_or_skipped(self, tmp_path, nih_dir):
        copy = tmp_path / "nih"
        shutil.copytree(nih_dir, copy)
        split_rows = read_nih(copy, "test")
        victim = split_rows[0]["image_name"]
        os.remove(split_rows[0]["image"])
        with pytest.raises(FileNotFoundError, match=f"do not exist: '.*{victim}'"):
            read_nih(copy, "test")
        kept = read_nih(copy, "test", skip_unreadable=True)
        assert _names(kept) == _names(split_rows) - {victim}

    def test_truncated_image_with_verify(self, tmp_path, nih_dir, caplog):
        copy = tmp_path / "nih"
        shutil.copytree(nih_dir, copy)
        victim = next(iter(read_nih(copy, "test")))["image"]
        data = open(victim, "rb").read()
        open(victim, "wb").write(data[: len(data) // 2])
        read_nih(copy, "test")  # not decoded by default
        with pytest.raises(ValueError, match="cannot be read"):
            read_nih(copy, "test", verify=True)
        kept = read_nih(copy, "test", verify=True, skip_unreadable=True)
        assert victim not in {r["image"] for r in kept}
        assert "skipped 1 of" in caplog.text

    def test_no_images(self, tmp_path, nih_dir):
        shutil.copy(nih_dir / "Data_Entry_2017_v2020.csv", tmp_path)
        with pytest.raises(FileNotFoundError, match="got no PNG images"):
            read_nih(tmp_path, split_source="seeded")
        assert len(read_nih(tmp_path, split_source="seeded", check_images=False)) > 0

    def test_missing_lists_and_bad_arguments(self, tmp_path, nih_dir):
        shutil.copy(nih_dir / "Data_Entry_2017_v2020.csv", tmp_path)
        with pytest.raises(FileNotFoundError, match="CheXNet split list"):
            read_nih(tmp_path, split_source="chexnet")
        with pytest.raises(ValueError, match=r"^split: expected one of \['train', 'val', 'test'\]"):
            read_nih(nih_dir, split="validation")
        with pytest.raises(ValueError, match=r"^split_source: expected one of \["):
            read_nih(nih_dir, split_source="kaggle")


class TestSubsetsWithoutLists:
    """Kaggle's "sample" download and user subsets: no split lists, rare findings."""

    @pytest.fixture()
    def no_lists(self, tmp_path, nih_dir):
        root = tmp_path / "nih"
        shutil.copytree(nih_dir, root, ignore=shutil.ignore_patterns("train_val_list.txt", "test_list.txt", "labels"))
        return root

    def test_official_without_lists_falls_back_to_the_seeded_split_with_a_warning(self, no_lists, caplog):
        with caplog.at_level("WARNING", logger="monai_ilm.data"):
            official = {s: read_nih(no_lists, s, seed=3) for s in ("train", "val", "test")}
        seeded = {s: read_nih(no_lists, s, split_source="seeded", seed=3) for s in ("train", "val", "test")}
        assert official == seeded
        warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warnings and all("train_val_list.txt" in w and "seeded" in w and "70/10/20" in w for w in warnings)

    def test_one_missing_list_is_named(self, no_lists, nih_dir, caplog):
        shutil.copy(nih_dir / "train_val_list.txt", no_lists)
        with caplog.at_level("WARNING", logger="monai_ilm.data"):
            rows = read_nih(no_lists, "test")
        assert rows == read_nih(no_lists, "test", split_source="seeded")
        assert "'test_list.txt'" in caplog.text and "'train_val_list.txt'" not in caplog.text

    def test_explicit_chexnet_without_lists_stays_an_error(self, no_lists):
        with pytest.raises(FileNotFoundError, match="CheXNet split list"):
            read_nih(no_lists, "train", split_source="chexnet")

    @staticmethod
    def _keep_finding_on_one_patient(root, finding="Hernia", patient="1"):
        path = root / "Data_Entry_2017_v2020.csv"
        table = pd.read_csv(path, dtype=str)
        others = table["Patient ID"] != patient
        labels = table["Finding Labels"].str.split("|")
        labels[others] = labels[others].map(lambda names: [n for n in names if n != finding] or ["No Finding"])
        table["Finding Labels"] = labels.str.join("|")
        if not (~others & table["Finding Labels"].str.contains(finding)).any():
            table.loc[~others, "Finding Labels"] = finding
        table.to_csv(path, index=False)

    def test_a_finding_too_rare_for_every_split_is_a_warning_naming_it(self, no_lists, caplog):
        self._keep_finding_on_one_patient(no_lists)
        with caplog.at_level("WARNING", logger="monai_ilm.data"):
            splits = {s: read_nih(no_lists, s, split_source="seeded") for s in ("train", "val", "test")}
        assert sum(len(rows) for rows in splits.values()) == 120
        assert re.search(r"class 'Hernia': expected at least one image in the '(train|val|test)' split", caplog.text)
        with pytest.raises(ValueError, match=r"class 'Hernia': expected at least one image in the '(train|val|test)'"):
            read_nih(no_lists, "val", split_source="seeded", require_all_classes=True)


def test_generator_writes_the_real_header_and_16_bit_option(tmp_path):
    root = make_nih_sample(tmp_path, n_patients=3, images_per_patient=1, image_size=16, bit_depth=16)
    assert (root / "Data_Entry_2017_v2020.csv").read_text().splitlines()[0] == NIH_HEADER
    from PIL import Image

    assert Image.open(next(root.glob("images_001/images/*.png"))).mode.startswith("I")


class TestRealMetadata:
    """The real 112,120-row NIH table (../shared/data/nih), without the images."""

    def test_parsing_matches_the_published_counts(self):
        path = shared_path("nih", "Data_Entry_2017_v2020.csv.gz")
        frame = read_nih_metadata(path)
        assert len(frame) == 112_120 and frame["patient_id"].nunique() == 30_805
        raw = pd.read_csv(path, usecols=["Finding Labels"])["Finding Labels"]
        findings = frame[list(NIH_FINDINGS)].to_numpy()
        np.testing.assert_array_equal(findings.sum(axis=1) == 0, (raw == "No Finding").to_numpy())
        assert findings[:, NIH_FINDINGS.index("Hernia")].sum() == raw.str.contains("Hernia").sum()

    def test_full_scale_split_and_fractions_in_seconds(self):
        nih = shared_path("nih")
        started = time.perf_counter()
        splits = _read_splits(nih, split_source="seeded", seed=0, check_images=False)
        train = splits["train"]
        fractions = {f: label_fraction(train, f, seed=0) for f in (0.01, 0.06, 1.0)}
        elapsed = time.perf_counter() - started
        assert elapsed < 30, f"full-scale split and fractions took {elapsed:.1f} s"
        assert sum(len(s) for s in splits.values()) == 112_120
        assert_patient_disjoint(*splits.values())
        for part in splits.values():
            assert (np.asarray([r["label"] for r in part]).sum(axis=0) > 0).all()
        one, six, full = (set(r["image_name"] for r in fractions[f]) for f in (0.01, 0.06, 1.0))
        assert one < six < full
        assert abs(len(one) - 0.01 * len(train)) < 60 and abs(len(six) - 0.06 * len(train)) < 60
        assert (np.asarray([r["label"] for r in fractions[0.01]]).sum(axis=0) > 0).all()  # Hernia too
        assert {r["image_name"] for r in label_fraction(train, 0.01, seed=0)} == one  # same seed, same subset
