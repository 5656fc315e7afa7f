"""The bundle's data settings (``nih_split``, ``val_fraction``, ``require_all_classes``) reach every datalist."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from monai_ilm.data import datalist_options, load_datalist
from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.recipe_checks import WORKFLOW_SETTINGS, check_settings

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
BUNDLES = sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "pretrain.json").is_file())
SETTINGS = ("nih_split", "val_fraction", "require_all_classes")


def validate_pretrain_settings(**values) -> None:
    check_settings("pretraining", values)


def _patients(rows):
    return {r["patient_id"] for r in rows}


@pytest.fixture(scope="module")
def layouts(nih_dir, idc_dir, dr_kaggle_dir, dr_jama16_dir, nifti_dir, tmp_path_factory):
    csv_dir = tmp_path_factory.mktemp("csv")
    lines = ["image,label,patient_id"]
    for i in range(40):
        (csv_dir / f"{i}.png").write_bytes(b"x")
        lines.append(f"{i}.png,{i % 2},p{i // 2}")
    (csv_dir / "datalist.csv").write_text("\n".join(lines) + "\n")
    return {
        "nih official (val carved from train_val_list)": ("nih", nih_dir, {}),
        "idc (seeded train/val/test)": ("idc", idc_dir, {}),
        "dr Kaggle (seeded train/val/test)": ("dr", dr_kaggle_dir, {}),
        "dr jama16 (val carved from train/)": ("dr", dr_jama16_dir, {}),
        "csv (seeded train/val/test)": ("csv", csv_dir, {}),
        "folder (val carved from train/)": ("folder", dr_jama16_dir, {"patient_pattern": r"^(\d+)_"}),
        "nifti (seeded train/val/test)": ("nifti", nifti_dir, {}),
    }


@pytest.mark.parametrize(
    "layout",
    [
        "nih official (val carved from train_val_list)",
        "idc (seeded train/val/test)",
        "dr Kaggle (seeded train/val/test)",
        "dr jama16 (val carved from train/)",
        "csv (seeded train/val/test)",
        "folder (val carved from train/)",
        "nifti (seeded train/val/test)",
    ],
)
def test_val_fraction_is_the_share_of_train_and_val_patients_in_val(layouts, layout):
    dataset, root, kwargs = layouts[layout]
    splits = {s: load_datalist(dataset, root, s, seed=1, val_fraction=0.5, **kwargs) for s in ("train", "val")}
    train_val = _patients(splits["train"]) | _patients(splits["val"])
    assert not _patients(splits["train"]) & _patients(splits["val"])
    assert abs(len(_patients(splits["val"])) - 0.5 * len(train_val)) <= 1, (layout, len(train_val))


def test_val_fraction_leaves_the_test_split_alone(layouts):
    for layout, (dataset, root, kwargs) in layouts.items():
        small = load_datalist(dataset, root, "test", seed=1, val_fraction=0.2, **kwargs)
        assert load_datalist(dataset, root, "test", seed=1, val_fraction=0.5, **kwargs) == small, layout


def test_val_fraction_is_checked(layouts):
    dataset, root, kwargs = layouts["idc (seeded train/val/test)"]
    with pytest.raises(ValueError, match=r"^val_fraction: expected null \(each data set's own\) or a finite number"):
        load_datalist(dataset, root, "val", val_fraction=1.0, **kwargs)


def test_options_reach_the_reader_and_keyword_arguments_win(nih_dir):
    chexnet = load_datalist("nih", nih_dir, "val", split_source="chexnet")
    assert load_datalist("nih", nih_dir, "val", options={"split_source": "chexnet"}) == chexnet
    official = load_datalist("nih", nih_dir, "val")
    overridden = load_datalist("nih", nih_dir, "val", options={"split_source": "chexnet"}, split_source="official")
    assert overridden == official
    assert official != chexnet


class TestDatalistOptions:
    def test_nih_gets_the_split_source(self):
        options = datalist_options("nih", nih_split="chexnet", val_fraction=0.2, require_all_classes=True)
        assert options == {"split_source": "chexnet", "val_fraction": 0.2, "require_all_classes": True}

    @pytest.mark.parametrize("dataset", ["idc", "dr"])
    def test_nih_split_does_not_reach_other_data_sets(self, dataset):
        assert datalist_options(dataset, nih_split="official", val_fraction=None) == {"require_all_classes": False}

    def test_null_val_fraction_keeps_each_reader_default(self, nih_dir):
        assert "val_fraction" not in datalist_options("nih")
        assert load_datalist("nih", nih_dir, "val", options=datalist_options("nih")) == load_datalist(
            "nih", nih_dir, "val", require_all_classes=False
        )

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"nih_split": "kaggle"}, "nih_split: expected one of ['official', 'chexnet', 'seeded'], got 'kaggle'"),
            ({"val_fraction": 0.0}, "val_fraction: expected null (each data set's own) or a finite number in (0, 1)"),
            ({"require_all_classes": "yes"}, "require_all_classes: expected true or false, got 'yes'"),
        ],
    )
    def test_bad_values_are_named(self, kwargs, message):
        with pytest.raises(ValueError) as error:
            datalist_options("nih", **kwargs)
        assert str(error.value).startswith(message), str(error.value)


class TestValidation:
    @pytest.mark.parametrize(
        "key, value, expected",
        [
            ("nih_split", "kaggle", "nih_split: expected one of ['official', 'chexnet', 'seeded'], got 'kaggle'"),
            ("val_fraction", 1.0, "val_fraction: expected null (each data set's own) or a finite number in (0, 1)"),
            ("val_fraction", "0.1", "val_fraction: expected null (each data set's own) or a finite number in (0, 1)"),
            ("require_all_classes", 1, "require_all_classes: expected true or false, got 1"),
        ],
    )
    def test_bad_setting_is_named(self, key, value, expected):
        with pytest.raises(ValueError) as error:
            validate_pretrain_settings(**{key: value})
        assert str(error.value).startswith(expected), str(error.value)

    def test_nih_split_other_than_the_default_is_refused_for_other_data_sets(self):
        validate_pretrain_settings(dataset_name="idc", nih_split="official", require_all_classes=True)
        with pytest.raises(ValueError, match=r"^nih_split: expected 'official' \(it applies to dataset_name 'nih'"):
            validate_pretrain_settings(dataset_name="idc", nih_split="chexnet")


class TestBundles:
    @staticmethod
    def _nodes(node):
        if isinstance(node, dict):
            yield node
            for value in node.values():
                yield from TestBundles._nodes(value)
        elif isinstance(node, list):
            for value in node:
                yield from TestBundles._nodes(value)

    @pytest.mark.parametrize("bundle", BUNDLES)
    def test_every_datalist_and_evaluation_gets_the_same_options(self, bundle):
        configs = BUNDLES_DIR / bundle / "configs"
        pretrain = json.loads((configs / "pretrain.json").read_text())
        assert {key: pretrain[key] for key in SETTINGS} == {
            "nih_split": "official",
            "val_fraction": None,
            "require_all_classes": False,
        }
        datalists = evaluations = 0
        for path in sorted(configs.glob("*.json")):
            for node in self._nodes(json.loads(path.read_text())):
                if node.get("_target_") == "monai_ilm.data.load_datalist":
                    assert node.get("options") == "@datalist_options", path.name
                    datalists += 1
                if node.get("_target_") == "monai_ilm.evaluation.EvaluationRun":
                    assert node.get("datalist_options") == "@datalist_options", path.name
                    evaluations += 1
        assert datalists >= 2 and evaluations == 1

    @pytest.mark.parametrize("bundle", BUNDLES)
    def test_every_initialize_validates_the_settings(self, bundle):
        configs = BUNDLES_DIR / bundle / "configs"
        declared = {"pretrain.json": "pretraining", "multi_gpu.json": "pretraining", "evaluate.json": "evaluation"}
        for name, workflow in declared.items():
            check = f"$monai_ilm.recipe_checks.check_recipe('{workflow}')"
            assert check in json.loads((configs / name).read_text())["initialize"], name
            assert all(key in WORKFLOW_SETTINGS[workflow] for key in SETTINGS), name

    def test_the_recipe_resolves_nih_split_for_pretraining_and_evaluation(self, tmp_path):
        from monai.bundle import ConfigParser

        configs = BUNDLES_DIR / "nih_chestxray_ilm" / "configs"
        parser = ConfigParser()
        parser.read_config([str(configs / "pretrain.json"), str(configs / "evaluate.json")])
        parser.update({"nih_split": "chexnet", "val_fraction": 0.25, "dataset_dir": str(tmp_path)})
        expected = {"split_source": "chexnet", "val_fraction": 0.25, "require_all_classes": False}
        assert parser.get_parsed_content("datalist_options") == expected
        assert parser.get_parsed_content("train#datalist#options") == expected
        assert parser.get_parsed_content("evaluation#datalist_options") == expected


def test_evaluation_reads_the_split_pretraining_reads(tmp_path):
    root = make_nih_sample(tmp_path / "nih", n_patients=30, images_per_patient=2, image_size=16, chexnet_lists=True)
    from monai_ilm.evaluation import EvaluationRun

    run = EvaluationRun(
        protocol="linear",
        dataset_name="nih",
        dataset_dir=str(root),
        output_dir=str(tmp_path / "out"),
        method="supervised",
        backbone="resnet18",
        image_size=16,
        device="cpu",
        datalist_options={"split_source": "chexnet"},
    )
    listed = [line.split()[0] for line in (root / "labels" / "val_list.txt").read_text().splitlines()]
    assert [row["image_name"] for row in run.loader("val").dataset.data] == listed
    shutil.rmtree(root / "labels")
    with pytest.raises(FileNotFoundError, match="CheXNet split list"):
        run.loader("val")
