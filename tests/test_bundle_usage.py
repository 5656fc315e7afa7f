"""Which settings a workflow reads: the keys reachable by references from what it runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_ilm.bundle_usage import WORKFLOW_IDS, given_settings, read_keys, settings_read_by, unused
from monai_ilm.recipe_checks import check_settings

BUNDLES_DIR = Path(__file__).resolve().parents[1] / "bundles"
BUNDLES = sorted(path.name for path in BUNDLES_DIR.iterdir() if (path / "configs" / "pretrain.json").is_file())

CONFIG = {
    "imports": ["$import os"],
    "a": 1,
    "b": "@a",
    "c": "$@b + 1",
    "d": {"e": 2, "f": "@orphan"},
    "component": {"_target_": "Thing", "x": "@c", "y": "@d#e"},
    "initialize": ["$@component.setup()"],
    "run": [],
    "orphan": "@a",  # reads a, but nothing the workflow runs reads it
    "leaf": 3,
}


def test_read_keys_follow_references_from_what_the_workflow_runs():
    # initialize -> component -> c -> b -> a, and component -> d (d#e), d -> orphan; finalize is absent
    expected = {"initialize", "run", "component", "c", "b", "a", "d", "orphan", "imports", "bundle_root", "_meta_"}
    assert read_keys(CONFIG, WORKFLOW_IDS) == expected
    assert read_keys({**CONFIG, "d": {"e": 2}}, WORKFLOW_IDS) == expected - {"orphan"}


def test_unused_names_the_given_keys_nothing_reads_in_order():
    given = ["leaf", "a", "d#e", "new_key", "bundle_root", "leaf#sub", "run"]
    assert unused(given, {**CONFIG, "d": {"e": 2}}, WORKFLOW_IDS) == ["leaf", "new_key", "leaf#sub"]


def test_outside_a_bundle_run_nothing_is_given_and_check_passes():
    assert given_settings() is None
    assert check_settings("pretraining", {"method": "mse"})["method"] == "mse"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_every_setting_the_runner_passes_is_read_and_the_others_are_not(bundle, tmp_path):
    """The runner's arguments of each cell (experiment.Cell) are read by that cell's workflow."""
    configs = BUNDLES_DIR / bundle / "configs"
    pretraining = [configs / "pretrain.json", configs / "quick.json"]
    evaluation = [configs / "pretrain.json", configs / "evaluate.json", configs / "quick.json"]
    common = {"dataset_dir": tmp_path, "output_dir": tmp_path / "out", "bundle_root": str(BUNDLES_DIR / bundle)}
    pretrain = {**common, "method": "mse", "seed": 0, "max_epochs": 3, "layers": ["layer4"], "train#dataset#x": 1}
    assert settings_read_by(pretraining, pretrain) == pretrain
    assert settings_read_by(pretraining, {**pretrain, "label_fraction": 0.1, "evaluation_epochs": 5}) == pretrain
    for protocol in ("linear", "finetune", "probe", "feature_reuse", "ks"):
        evaluate = {**common, "method": "supervised", "seed": 1, "protocol": protocol, "label_fraction": 0.06}
        evaluate |= {"evaluation_epochs": 5, "cka_kernel": "rbf", "image_size": 32, "backbone": "resnet18"}
        given = {**evaluate, "max_epochs": 3, "queue_size": 16, "train#dataset#x": 1, "learning_rate": 0.1}
        assert settings_read_by(evaluation, given) == evaluate, protocol
