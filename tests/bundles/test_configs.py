"""The bundle configs: every setting declared once and checked, one evaluation config, three bundles in step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_ilm.datasets import DATASETS, bundle_datasets
from monai_ilm.settings import EvaluationSettings, InferenceSettings, PretrainingSettings
from tests.bundles.conftest import BUNDLE_DATA, BUNDLES_DIR
from tests.helpers import error_chain

BUNDLES = sorted(BUNDLE_DATA)
# literal top-level keys no settings object checks: the bundle's own folder, which MONAI sets
NOT_CHECKED = {"bundle_root"}
# the workflow whose settings object checks each config's settings (quick.json feeds pretraining and evaluation)
CHECKED_BY = {
    "pretrain.json": ("pretrain.json",),
    "multi_gpu.json": ("pretrain.json",),
    "quick.json": ("pretrain.json", "evaluate.json"),
    "evaluate.json": ("evaluate.json",),
    "inference.json": ("inference.json",),
}
SETTINGS_OBJECTS = {
    "pretrain.json": PretrainingSettings,
    "evaluate.json": EvaluationSettings,
    "inference.json": InferenceSettings,
}
# the values that are each data set's own; everything else is the same in every bundle
PER_DATASET = {
    "pretrain.json": {"dataset_dir", "dataset_name", "image_size", "batch_size"},
    "inference.json": {"dataset_dir", "dataset_name", "image_size", "batch_size"},
    "metadata.json": {
        "changelog",
        "name",
        "task",
        "description",
        "data_source",
        "data_type",
        "image_classes",
        "references",
        "network_data_format",
    },
}


def read(bundle: str, name: str) -> dict:
    return json.loads((BUNDLES_DIR / bundle / "configs" / name).read_text())


def is_literal(value: object) -> bool:
    """A value the user sets, rather than an expression, a reference or a component."""
    if isinstance(value, str):
        return not value.startswith(("$", "@", "%"))
    if isinstance(value, list):
        return all(is_literal(item) for item in value)
    return not isinstance(value, dict)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_literal_setting_is_declared_in_a_settings_object_and_checked(bundle):
    configs = {path.name for path in (BUNDLES_DIR / bundle / "configs").glob("*.json")} - {"metadata.json"}
    assert configs == set(CHECKED_BY)
    for name, owners in CHECKED_BY.items():
        literals = {k for k, v in read(bundle, name).items() if "#" not in k and is_literal(v)} - NOT_CHECKED
        declared: set[str] = set()
        for owner in owners:
            settings = read(bundle, owner)["settings"]
            assert settings["_target_"] == f"monai_ilm.settings.{SETTINGS_OBJECTS[owner].__name__}", owner
            assert all(settings[k] == f"@{k}" for k in settings if k != "_target_"), owner
            assert set(settings) - {"_target_"} <= set(SETTINGS_OBJECTS[owner].names()), owner
            declared |= {k for k in settings if k != "_target_"}
        unchecked = literals - declared
        assert not unchecked, f"{bundle}/{name}: literal settings no settings object checks: {sorted(unchecked)}"
    for name in ("pretrain.json", "multi_gpu.json", "evaluate.json", "inference.json"):
        initialize = read(bundle, name)["initialize"]
        assert "$@settings.check()" in initialize[:5], name
        assert not any("validation" in step or "validate_" in step for step in initialize), name


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize(
    "configs, target",
    [
        (("pretrain.json", "quick.json"), PretrainingSettings),
        (("pretrain.json", "multi_gpu.json"), PretrainingSettings),
        (("pretrain.json", "evaluate.json", "quick.json"), EvaluationSettings),
        (("inference.json",), InferenceSettings),
    ],
)
def test_each_workflow_builds_its_settings_object_and_the_recipe_passes(bundle, configs, target, tmp_path):
    parser = ConfigParser()
    parser.read_config([str(BUNDLES_DIR / bundle / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(BUNDLES_DIR / bundle), "dataset_dir": str(tmp_path), "output_dir": str(tmp_path)})
    settings = parser.get_parsed_content("settings")
    assert type(settings) is target
    assert settings.check() is settings
    assert settings.dataset_name == bundle_datasets()[bundle] and settings.seed == 0


def test_bundles_stay_in_step():
    """Same config files and keys in every bundle; values differ only where the data set must."""
    files = {b: sorted(p.name for p in (BUNDLES_DIR / b / "configs").iterdir()) for b in BUNDLES}
    reference, *others = BUNDLES
    assert all(files[b] == files[reference] for b in others), files
    for name in files[reference]:
        if not name.endswith(".json"):
            texts = {(BUNDLES_DIR / b / "configs" / name).read_text() for b in BUNDLES}
            assert len(texts) == 1, name
            continue
        first = read(reference, name)
        for bundle in others:
            config = read(bundle, name)
            assert list(config) == list(first), (bundle, name)
            differing = {k for k in config if config[k] != first[k]}
            assert differing <= PER_DATASET.get(name, set()), (bundle, name, differing)


def test_cache_placement_is_left_out_of_the_pretraining_fingerprint():
    """Where the training images are cached never changes a number, so it never makes a run stale."""
    from monai_ilm.provenance import bundle_settings, fingerprint

    files = [BUNDLES_DIR / "nih_chestxray_ilm" / "configs" / name for name in ("pretrain.json", "quick.json")]
    default = bundle_settings(files)
    assert not {"cache", "cache_dir", "cache_rate"} & set(default) and "augment_on" in default
    moved = bundle_settings(files, {"cache": "disk", "cache_dir": "/elsewhere", "cache_rate": 0.5})
    assert fingerprint(moved) == fingerprint(default)


def test_each_bundle_is_a_row_of_the_data_set_table():
    assert set(bundle_datasets()) == set(BUNDLES)
    for bundle, dataset in bundle_datasets().items():
        for name in ("pretrain.json", "inference.json"):
            assert read(bundle, name)["dataset_name"] == dataset, (bundle, name)
        assert DATASETS[dataset].bundle == bundle


def test_a_bad_batch_norm_stops_in_initialize_before_anything_is_built(tmp_path):
    bundle = "nih_chestxray_ilm"
    configs = BUNDLES_DIR / bundle / "configs"
    for key, value, expected in (
        ("batch_norm", "global", "batch_norm: expected one of ['shuffle', 'sync', 'local'], got 'global'."),
        ("zero_init_residual", 1, "zero_init_residual: expected true or false, got 1."),
    ):
        workflow = ConfigWorkflow(
            config_file=[str(configs / "pretrain.json"), str(configs / "quick.json")],
            meta_file=str(configs / "metadata.json"),
            logging_file=False,
            workflow_type="train",
            bundle_root=str(BUNDLES_DIR / bundle),
            dataset_dir=str(tmp_path),
            output_dir=str(tmp_path / "out"),
            **{key: value},
        )
        with pytest.raises(Exception) as error:
            workflow.initialize()
        assert expected in error_chain(error.value)
        assert not (tmp_path / "out").exists()


def test_one_evaluation_config_selected_by_protocol(tmp_path):
    configs = BUNDLES_DIR / "nih_chestxray_ilm" / "configs"
    for protocol, fraction in (("finetune", 1.0), ("linear", 1.0), ("probe", 1.0), ("feature_reuse", 0.01)):
        parser = ConfigParser()
        parser.read_config([str(configs / "pretrain.json"), str(configs / "evaluate.json")])
        parser.update({"protocol": protocol, "dataset_dir": str(tmp_path)})
        assert parser.get_parsed_content("label_fraction") == fraction  # as the four configs it replaces had
        assert parser.get_parsed_content("settings").protocol == protocol
    parser.update({"protocol": "probing"})
    with pytest.raises(ValueError, match=r"^protocol: expected one of \['linear', 'finetune', 'probe'"):
        parser.get_parsed_content("settings").check()
    assert Path(configs / "evaluate.json").is_file()
