"""The bundle configs: every setting declared once and checked in initialize, one evaluation config, bundles
rendered from one template."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from monai.bundle import ConfigParser, ConfigWorkflow

from monai_ilm.bundle_render import TEMPLATE_DIR, bundle_values, render_bundle, render_files
from monai_ilm.datasets import DATASETS, DatasetSpec, bundle_datasets
from monai_ilm.recipe_checks import WORKFLOW_SETTINGS, check_settings, parsed_settings
from tests.bundles.conftest import BUNDLE_DATA, BUNDLES_DIR
from tests.helpers import error_chain

BUNDLES = sorted(BUNDLE_DATA)
# literal top-level keys the recipe check does not check: the bundle's own folder, which MONAI sets
NOT_CHECKED = {"bundle_root"}
# the workflow whose recipe check checks each config's settings (quick.json feeds pretraining and evaluation)
CHECKED_BY = {
    "pretrain.json": ("pretrain.json",),
    "multi_gpu.json": ("pretrain.json",),
    "quick.json": ("pretrain.json", "evaluate.json"),
    "evaluate.json": ("evaluate.json",),
    "inference.json": ("inference.json",),
}
WORKFLOWS = {"pretrain.json": "pretraining", "evaluate.json": "evaluation", "inference.json": "inference"}


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
def test_every_literal_setting_is_declared_once_and_checked(bundle):
    configs = {path.name for path in (BUNDLES_DIR / bundle / "configs").glob("*.json")} - {"metadata.json"}
    assert configs == set(CHECKED_BY)
    for name, owners in CHECKED_BY.items():
        literals = {k for k, v in read(bundle, name).items() if "#" not in k and is_literal(v)} - NOT_CHECKED
        assert "settings" not in read(bundle, name), f"{bundle}/{name}: a settings mirror"
        declared = {k for owner in owners for k in WORKFLOW_SETTINGS[WORKFLOWS[owner]]}
        unchecked = literals - declared
        assert not unchecked, f"{bundle}/{name}: literal settings the recipe check does not check: {sorted(unchecked)}"
    for name, workflow in {**WORKFLOWS, "multi_gpu.json": "pretraining"}.items():
        initialize = read(bundle, name)["initialize"]
        assert f"$monai_ilm.recipe_checks.check_recipe('{workflow}')" in initialize[:5], name
        assert not any("validation" in step or "validate_" in step for step in initialize), name


@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize(
    "configs, workflow",
    [
        (("pretrain.json", "quick.json"), "pretraining"),
        (("pretrain.json", "multi_gpu.json"), "pretraining"),
        (("pretrain.json", "evaluate.json", "quick.json"), "evaluation"),
        (("inference.json",), "inference"),
    ],
)
def test_each_workflow_resolves_its_settings_and_the_recipe_passes(bundle, configs, workflow, tmp_path):
    parser = ConfigParser()
    parser.read_config([str(BUNDLES_DIR / bundle / "configs" / name) for name in configs])
    parser.update({"bundle_root": str(BUNDLES_DIR / bundle), "dataset_dir": str(tmp_path), "output_dir": str(tmp_path)})
    settings = parsed_settings(parser, workflow)
    assert set(settings) <= set(WORKFLOW_SETTINGS[workflow])
    assert check_settings(workflow, settings).items() >= settings.items()
    assert settings["dataset_name"] == bundle_datasets()[bundle] and settings["seed"] == 0


RENDERED = {bundle: render_files(bundle_values(bundle)) for bundle in BUNDLES}


@pytest.mark.parametrize("bundle, name", [(b, name) for b in BUNDLES for name in sorted(RENDERED[b])])
def test_checked_in_bundle_file_equals_its_rendering(bundle, name):
    """Each shipped file is the template rendered with its data set's values (python -m monai_ilm render-bundles)."""
    path = BUNDLES_DIR / bundle / name
    assert path.is_file(), f"{bundle}/{name}: rendered but not checked in"
    assert path.read_text() == RENDERED[bundle][name], f"{bundle}/{name} differs from its rendering"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_a_bundle_ships_only_rendered_files(bundle):
    """What the wheel ships of a bundle (setup.py's patterns; runs write runs/ and eval/ beside) is all rendered."""
    root = BUNDLES_DIR / bundle
    shipped = {p.relative_to(root).as_posix() for pattern in ("*", "configs/*", "docs/*") for p in root.glob(pattern)}
    shipped = {name for name in shipped if (root / name).is_file()}
    assert shipped - set(RENDERED[bundle]) == set()


def test_a_new_data_set_row_renders_a_bundle_folder(tmp_path):
    """A data set with a bundle is its table row plus a short overlay; the folder it gives runs as MONAI reads it."""
    row = DatasetSpec(
        "toy", reader="monai_ilm.data.folder:read_image_folder", splits="tree", layout="a tree", bundle="toy_ilm"
    )
    overlay = json.loads((TEMPLATE_DIR / "datasets" / "nih_chestxray_ilm.json").read_text())
    overlay.update(dataset_dir="/data/toy", image_size=128, batch_size=4, title="Toy scans", modality="ct")
    folder = render_bundle("toy_ilm", tmp_path / "toy_ilm", dataset=row, overlay=overlay)
    written = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}
    assert written == set(RENDERED["nih_chestxray_ilm"])
    for name in ("pretrain.json", "inference.json"):
        config = json.loads((folder / "configs" / name).read_text())
        assert (config["dataset_name"], config["dataset_dir"], config["image_size"], config["batch_size"]) == (
            "toy",
            "/data/toy",
            128,
            4,
        )
    metadata = json.loads((folder / "configs" / "metadata.json").read_text())
    assert metadata["name"] == "Toy scans intermediate-layer MoCo pretraining"
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == [128, 128]
    assert metadata["network_data_format"]["inputs"]["image"]["modality"] == "ct"
    readme = (folder / "docs" / "README.md").read_text()
    assert "# Toy scans: MoCo pretraining" in readme and "bundle copy toy_ilm DIR" in readme
    assert "--dataset_dir /data/toy --output_dir runs" in readme and "{{" not in readme
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "pretrain.json"))
    assert parser.get_parsed_content("dataset_name") == "toy" and parser.get_parsed_content("batch_size") == 4


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
        assert parsed_settings(parser, "evaluation")["protocol"] == protocol
    parser.update({"protocol": "probing"})
    with pytest.raises(ValueError, match=r"^protocol: expected one of \['linear', 'finetune', 'probe'"):
        check_settings("evaluation", parsed_settings(parser, "evaluation"))
    assert Path(configs / "evaluate.json").is_file()
