"""What a number was made from: the resolved configuration (the data identity: tests/data/test_identity.py)."""

from __future__ import annotations

import json

import pytest

from monai_ilm.experiment import bundles_root
from monai_ilm.provenance import bundle_settings, fingerprint

CONFIGS = bundles_root() / "nih_chestxray_ilm" / "configs"
FILES = [CONFIGS / "pretrain.json", CONFIGS / "quick.json"]


@pytest.mark.parametrize(
    "override",
    [
        {"optimizer#momentum": 0.5},
        {"optimizer#_target_": "torch.optim.AdamW"},
        {"train#pipeline#image_size": 32},
        {"network_def#queue_size": 128},
        {"contrastive_loss#temperature": 0.2},
    ],
)
def test_a_nested_override_changes_the_pretraining_fingerprint(override):
    assert fingerprint(bundle_settings(FILES, override)) != fingerprint(bundle_settings(FILES))


def test_a_component_edit_in_a_config_file_changes_the_fingerprint(tmp_path):
    optimizer = json.loads(FILES[0].read_text())["optimizer"]
    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"optimizer": {**optimizer, "momentum": 0.5}}))
    same = tmp_path / "same.json"
    same.write_text(json.dumps({"optimizer": optimizer}))
    assert fingerprint(bundle_settings([*FILES, extra])) != fingerprint(bundle_settings(FILES))
    assert fingerprint(bundle_settings([*FILES, same])) == fingerprint(bundle_settings(FILES))


def test_a_changed_component_is_named_by_its_path():
    settings = bundle_settings(FILES, {"optimizer#momentum": 0.5})
    assert settings["optimizer#momentum"] == 0.5 and bundle_settings(FILES)["optimizer#momentum"] == 0.9


def test_the_worker_count_enters_only_where_it_changes_the_draws():
    # the device stage draws every augmentation from its own generator: the loader workers only decode
    device = [fingerprint(bundle_settings(FILES, {"num_workers": n})) for n in (0, 3)]
    assert device[0] == device[1]
    # loader augmentation: MONAI seeds each worker's transforms with base seed + worker id, so the draws move
    loader = [fingerprint(bundle_settings(FILES, {"augment_on": "loader", "num_workers": n})) for n in (0, 3)]
    assert loader[0] != loader[1]
