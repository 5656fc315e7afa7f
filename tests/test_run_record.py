"""The record every pretraining run keeps of itself (monai_ilm.run_record)."""

from __future__ import annotations

import json

import pytest
import torch
from monai.bundle import ConfigParser

from monai_ilm.networks import MoCo, resnet_encoder
from monai_ilm.run_record import RUN_RECORD, RunRecordHandler, network_record, read_run_record, write_run_record
from tests.bundles.conftest import BUNDLES_DIR


def test_network_record_reads_the_shapes_of_the_built_network():
    network = MoCo(resnet_encoder("resnet18"), embedding_dim=32, queue_size=64)
    # torchvision ResNet-18: stage widths 64, 128, 256, 512; the pooled output is the last one
    assert network_record(network) == {
        "class": "MoCo",
        "feature_dim": 512,
        "stage_channels": [64, 128, 256, 512],
        "embedding_dim": 32,
        "queue_shape": [32, 64],
    }


def test_handler_writes_the_settings_atomically_when_attached(tmp_path):
    settings = {"backbone": "resnet18", "image_size": 64, "queue_size": 64, "method": "mse", "seed": 3}
    handler = RunRecordHandler(tmp_path / "run", settings, MoCo(resnet_encoder("resnet18"), queue_size=64))
    assert not (tmp_path / "run").exists()  # nothing is written before the trainer is built
    handler.attach(engine=None)
    record = read_run_record(tmp_path / "run")
    assert record["settings"] == {
        "backbone": "resnet18",
        "image_size": 64,
        "queue_size": 64,
        "method": "mse",
        "seed": 3,
    }
    assert record["network"]["feature_dim"] == 512 and record["world_size"] == 1
    assert set(record["code_version"]) >= {"monai_ilm", "monai", "torch", "python"}
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [RUN_RECORD]  # no partial file left
    assert RunRecordHandler.rank_zero_only


def test_every_pretraining_config_attaches_the_record_to_its_run_folder(tmp_path):
    for bundle in sorted(p.name for p in BUNDLES_DIR.iterdir() if (p / "configs" / "pretrain.json").is_file()):
        parser = ConfigParser()
        parser.read_config(str(BUNDLES_DIR / bundle / "configs" / "pretrain.json"))
        handlers = parser["train"]["handlers"]
        records = [h for h in handlers if h["_target_"] == "monai_ilm.run_record.RunRecordHandler"]
        assert records == [
            {
                "_target_": "monai_ilm.run_record.RunRecordHandler",
                "run_dir": "@run_dir",
                "settings": "$monai_ilm.recipe_checks.recipe_settings('pretraining')",
                "network": "@network_def",
            }
        ], bundle


def test_a_missing_record_is_none_and_a_broken_one_is_named(tmp_path):
    assert read_run_record(tmp_path) is None
    (tmp_path / RUN_RECORD).write_text("[1, 2]")
    with pytest.raises(ValueError, match=r"run_record.json: expected a JSON object with 'settings', got list."):
        read_run_record(tmp_path)
    with pytest.raises(TypeError, match="settings: expected a mapping of the run's settings, got int."):
        write_run_record(tmp_path, 3)
    write_run_record(tmp_path, {"image_size": 64, "path": tmp_path})
    assert json.loads((tmp_path / RUN_RECORD).read_text())["settings"] == {"image_size": 64, "path": str(tmp_path)}


def test_the_recipe_records_its_resolved_settings_overrides_included(tmp_path):
    configs = BUNDLES_DIR / "nih_chestxray_ilm" / "configs"
    parser = ConfigParser()
    parser.read_config([str(configs / "pretrain.json"), str(configs / "quick.json")])
    parser.update({"dataset_dir": str(tmp_path), "output_dir": str(tmp_path / "out"), "queue_size": 512})
    handler = parser.get_parsed_content("train#handlers#0")
    assert isinstance(handler, RunRecordHandler)
    handler.attach(engine=None)
    settings = read_run_record(handler.run_dir)["settings"]
    # the override, quick.json over pretrain.json, and the recipe's own literals and expressions
    assert (settings["queue_size"], settings["image_size"], settings["method"], settings["seed"]) == (512, 64, "mse", 0)
    assert settings["output_dir"] == str(tmp_path / "out") and settings["amp"] is torch.cuda.is_available()
    assert "val_fraction" not in settings  # null: not given, as before
    assert "train" not in settings and "network_def" not in settings  # components are not settings
