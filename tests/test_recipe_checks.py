"""The recipe check (monai_ilm.recipe_checks): the settings the old checks let through are checked, by the same
message form."""

from __future__ import annotations

import pytest
from monai.bundle import ConfigParser

from monai_ilm.networks.moco import BATCH_NORM_MODES, HEADS
from monai_ilm.recipe_checks import WORKFLOW_SETTINGS, check_settings, recipe_settings


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
