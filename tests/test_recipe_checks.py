"""The recipe check (monai_ilm.recipe_checks): the settings the old checks let through are checked, by the same
message form."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from monai_ilm.data import load_datalist
from monai_ilm.evaluation import EvaluationRun
from monai_ilm.handlers import MomentumUpdateHandler, NaNGuard, RepresentationHealthHandler
from monai_ilm.losses import InfoNCELoss
from monai_ilm.methods import intermediate_loss
from monai_ilm.networks.moco import BATCH_NORM_MODES, HEADS
from monai_ilm.recipe_checks import WORKFLOW_SETTINGS, check_settings, component_routes, recipe_settings


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("batch_norm", "global", "batch_norm: expected one of ['shuffle', 'sync', 'local'], got 'global'."),
        ("batch_norm", None, None),
        ("zero_init_residual", 1, "zero_init_residual: expected true or false, got 1."),
        ("zero_init_residual", "false", "zero_init_residual: expected true or false, got 'false'."),
        ("head", "mlp2", "head: expected one of ['linear', 'mlp'], got 'mlp2'."),
        ("augment_on", "gpu", "augment_on: expected one of ['device', 'loader'], got 'gpu'."),
        ("augment_on", "loader", None),
        ("cache", "ram", "cache: expected one of ['auto', 'memory', 'disk', 'cache_rate'], got 'ram'."),
        ("cache", "disk", None),
    ],
)
def test_network_settings_are_checked(key, value, expected):
    if expected is None:
        check_settings("pretraining", {key: value})
        return
    with pytest.raises(ValueError) as error:
        check_settings("pretraining", {key: value})
    assert str(error.value) == expected


@pytest.mark.parametrize("mode", BATCH_NORM_MODES)
def test_every_batch_norm_mode_and_head_of_moco_passes(mode):
    for head in HEADS:
        settings = {"batch_norm": mode, "head": head, "zero_init_residual": True}
        assert settings.items() <= check_settings("pretraining", settings).items()


def test_each_workflow_checks_the_shared_settings_and_its_own():
    shared = {"seed", "dataset_name", "dataset_dir", "output_dir", "backbone", "image_size", "nih_split"}
    for workflow in ("pretraining", "evaluation", "inference"):
        assert shared <= set(WORKFLOW_SETTINGS[workflow]), workflow
    assert {"protocol", "label_fraction"} <= set(WORKFLOW_SETTINGS["evaluation"])
    assert {"split", "embedding_dim"} <= set(WORKFLOW_SETTINGS["inference"])
    with pytest.raises(ValueError, match=r"^split: expected one of \['train', 'val', 'test'\], got 'dev'\.$"):
        check_settings("inference", {"split": "dev"})
    with pytest.raises(ValueError, match=r"^method: expected one of \['moco', 'mse', 'barlow'\], got 'supervised'"):
        check_settings("pretraining", {"method": "supervised"})
    check_settings("evaluation", {"method": "supervised"})  # no pretraining: the baseline of the evaluation


def test_the_compact_cache_needs_the_device_stage_and_a_writable_folder(tmp_path):
    """With ``augment_on="loader"`` the loader gives float views: only ``"auto"`` (falls back) or ``"cache_rate"``."""
    for cache in ("auto", "cache_rate"):
        check_settings("pretraining", {"cache": cache, "augment_on": "loader"})
    for cache in ("memory", "disk"):
        check_settings("pretraining", {"cache": cache, "augment_on": "device"})
        with pytest.raises(ValueError) as error:
            check_settings("pretraining", {"cache": cache, "augment_on": "loader"})
        assert str(error.value) == (
            "cache: expected 'auto' or 'cache_rate' with augment_on 'loader' (its loader gives float views, "
            f"not uint8 images), got '{cache}'."
        )
    check_settings("pretraining", {"cache_dir": str(tmp_path / "new" / "cache")})
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"^cache_dir: expected a folder .*, got '.*file', which is a file\.$"):
        check_settings("pretraining", {"cache_dir": str(tmp_path / "file")})


def test_recipe_settings_reads_the_configuration_being_parsed_overrides_included():
    """The expression gets the resolved values of the parser evaluating it: literals, expressions, overrides."""
    parser = ConfigParser(
        {
            "imports": ["$import monai_ilm", "$import monai_ilm.recipe_checks"],
            "dataset_name": "nih",
            "split": "val",
            "batch_size": "$2 * 4",
            "head": None,
            "not_a_setting": 1,
            "read": "$monai_ilm.recipe_checks.recipe_settings('inference')",
        }
    )
    parser.update({"split": "test"})
    # head is null (left out, as a setting not given); not_a_setting is no inference setting
    assert parser.get_parsed_content("read") == {"dataset_name": "nih", "split": "test", "batch_size": 8}
    with pytest.raises(RuntimeError, match=r"^recipe_settings: expected to be called from a bundle config being"):
        recipe_settings("inference")
    with pytest.raises(ValueError, match=r"^workflow: expected one of \['pretraining', 'evaluation', 'inference'\]"):
        check_settings("training", {})


def test_check_recipe_in_initialize_names_the_bad_override():
    parser = ConfigParser(
        {
            "imports": ["$import monai_ilm", "$import monai_ilm.recipe_checks"],
            "batch_size": 8,
            "queue_size": 64,
            "initialize": ["$monai_ilm.recipe_checks.check_recipe('pretraining')"],
        }
    )
    assert parser.get_parsed_content("initialize")[0]["queue_size"] == 64
    parser.update({"queue_size": 4})
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("initialize", lazy=False)
    assert str(error.value.__cause__) == (
        "queue_size: expected an integer of at least batch_size (8): a batch of keys must fit, got 4."
    )


def test_volume_settings_and_3d_backbones_belong_to_volume_data_sets():
    """``volume`` is for 3D data only and checked there; MONAI's 3D depths (``resnet10``) only for volumes."""
    good = {"intensity": "window", "window": [-1000, 400], "pixdim": [1.5, 1.5, 2.0]}
    check_settings("pretraining", {"dataset_name": "volumes", "volume": good, "backbone": "resnet10"})
    with pytest.raises(ValueError, match=r"volume: expected null for the 2D data set 'nih'"):
        check_settings("pretraining", {"dataset_name": "nih", "volume": good})
    with pytest.raises(ValueError, match=r"volume.window: expected \[a_min, a_max\] in HU"):
        check_settings("evaluation", {"dataset_name": "volumes", "volume": {"intensity": "window"}})
    with pytest.raises(ValueError, match=r"backbone: expected one of \['resnet18'"):
        check_settings("inference", {"dataset_name": "nih", "backbone": "resnet10"})


NESTED_EMPTY = [[]]  # a value no setting allows: a setting without a rule would let it through


@pytest.mark.parametrize("workflow", sorted(WORKFLOW_SETTINGS))
def test_every_setting_of_a_workflow_has_a_rule(workflow):
    """Each setting is checked by the component the recipe passes it to, or by the recipe's own short rules."""
    for setting in WORKFLOW_SETTINGS[workflow]:
        context = {"method": "barlow"} if setting.startswith("barlow_") else {"method": "mse"}
        context = {} if setting == "method" or workflow != "pretraining" else context
        context = {"dataset_name": "volumes"} if setting == "volume" else context  # volume settings are for 3D
        with pytest.raises((ValueError, FileNotFoundError)) as error:
            check_settings(workflow, {**context, setting: NESTED_EMPTY})
        assert str(error.value).startswith(f"{setting}: expected "), (workflow, setting, str(error.value))


@pytest.mark.parametrize(
    "build, setting, value, workflow",
    [
        (lambda v: InfoNCELoss(temperature=v), "temperature", 0.0, "pretraining"),
        (lambda v: MomentumUpdateHandler(momentum=v), "momentum", 1.5, "pretraining"),
        (lambda v: NaNGuard(check_every=v), "nan_check_interval", 0, "pretraining"),
        (lambda v: RepresentationHealthHandler(collapse_rank=v), "collapse_rank", -1.0, "pretraining"),
        (lambda v: intermediate_loss("mse", layers=["layer4"], mse_weights=v), "mse_weights", [1.0, 1.0], None),
        (lambda v: EvaluationRun("linear", "nih", ".", ".", "moco", label_fraction=v), "label_fraction", 0.0, None),
        (lambda v: EvaluationRun("linear", "nih", ".", ".", "moco", max_epochs=v), "evaluation_epochs", 0, None),
        (lambda v: load_datalist("nih", ".", v), "split", "dev", "inference"),
    ],
)
def test_a_component_and_its_recipe_refuse_a_bad_value_by_one_rule(build, setting, value, workflow):
    """The rule is declared once, by the component; the recipe check applies it under the setting's name."""
    with pytest.raises(ValueError) as built:
        build(value)
    workflow = workflow or ("evaluation" if setting in WORKFLOW_SETTINGS["evaluation"] else "pretraining")
    context = {"method": "mse", "layers": ["layer4"]} if setting == "mse_weights" else {}
    with pytest.raises(ValueError) as checked:
        check_settings(workflow, {**context, setting: value})
    assert str(checked.value).startswith(f"{setting}: expected ")
    assert str(built.value).split(": expected ", 1)[1] == str(checked.value).split(": expected ", 1)[1]


def test_a_setting_is_checked_by_the_component_the_recipe_gives_it_to():
    """Routes follow the recipe from what it runs: an edited component brings its own rule, an unused one none."""
    config = {
        "imports": ["$import monai_ilm.recipe_checks"],
        "temperature": 0.0,
        "loss": {"_target_": "monai_ilm.losses.InfoNCELoss", "temperature": "@temperature"},
        "unused": {"_target_": "monai_ilm.handlers.MomentumUpdateHandler", "momentum": "@temperature"},
        "run": ["$@loss"],
    }
    routes = component_routes(config)
    assert [(r.setting, r.target, r.argument) for r in routes] == [
        ("temperature", "monai_ilm.losses.InfoNCELoss", "temperature")
    ]
    with pytest.raises(ValueError, match=r"^temperature: expected a finite number > 0, got 0\.0\.$"):
        check_settings("pretraining", {"temperature": 0.0}, config)
    config["loss"] = {"_target_": "monai_ilm.handlers.MomentumUpdateHandler", "momentum": "@temperature"}
    check_settings("pretraining", {"temperature": 0.0}, config)  # a momentum of 0 is allowed
    with pytest.raises(ValueError, match=r"^temperature: expected a finite number in \[0, 1\], got 2\.0\.$"):
        check_settings("pretraining", {"temperature": 2.0}, config)


def test_a_value_written_on_a_component_is_checked_by_its_rule_before_anything_is_built():
    """A nested override (``--contrastive_loss#temperature 0``) is named by its id, as the user typed it."""
    parser = ConfigParser(
        {
            "imports": ["$import monai_ilm", "$import monai_ilm.recipe_checks"],
            "temperature": 0.07,
            "contrastive_loss": {"_target_": "monai_ilm.losses.InfoNCELoss", "temperature": "@temperature"},
            "initialize": ["$monai_ilm.recipe_checks.check_recipe('pretraining')"],
            "run": ["$@contrastive_loss"],
        }
    )
    parser.get_parsed_content("initialize", lazy=False)
    parser.update({"contrastive_loss#temperature": 0})
    with pytest.raises(RuntimeError) as error:
        parser.get_parsed_content("initialize", lazy=False)
    assert str(error.value.__cause__) == "contrastive_loss#temperature: expected a finite number > 0, got 0."
