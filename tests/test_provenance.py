"""What a number was made from: the resolved configuration and the identity of the data it reads."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from monai_ilm.experiment import bundles_root
from monai_ilm.provenance import bundle_settings, data_changes, data_identity, fingerprint

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


def _images(folder, n=4, size=8):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n):
        path = folder / f"{i}.png"
        Image.fromarray(np.full((size, size), 10 * i, dtype=np.uint8)).save(path)
        rows.append({"image": str(path), "label": i % 2, "image_id": path.name})
    return rows


def test_data_identity_follows_replaced_added_and_removed_images_and_labels(tmp_path):
    from PIL import Image

    rows = _images(tmp_path / "images")
    before = data_identity({"train": rows})
    assert data_identity({"train": rows})["digest"] == before["digest"] and before["images"] == 4
    Image.fromarray(np.full((9, 9), 200, dtype=np.uint8)).save(rows[1]["image"])  # same name, new pixels
    replaced = data_identity({"train": rows})
    assert replaced["digest"] != before["digest"]
    assert data_changes(before["manifest"], replaced["manifest"]) == "1 image (1 replaced)"
    relabelled = [dict(row, label=1 - row["label"]) if i == 0 else row for i, row in enumerate(rows)]
    fewer = data_identity({"train": relabelled[:-1]})
    assert data_changes(replaced["manifest"], fewer["manifest"]) == "2 images (1 relabelled, 1 removed)"
    moved = data_identity({"train": rows[:2], "val": rows[2:]})  # the same images, two in another split
    assert data_changes(replaced["manifest"], moved["manifest"]) == "2 images (2 moved)"


def test_data_identity_reads_no_image_content(tmp_path, monkeypatch):
    rows = _images(tmp_path / "images")
    before = data_identity({"train": rows})
    stat = os.stat(rows[0]["image"])
    with open(rows[0]["image"], "r+b") as handle:  # same size, same modification time: not noticed (stat only)
        handle.seek(stat.st_size - 1)
        handle.write(b"\x00")
    os.utime(rows[0]["image"], ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert data_identity({"train": rows})["digest"] == before["digest"]


def test_data_identity_hashes_tables_and_in_memory_arrays(tmp_path):
    table = tmp_path / "labels.csv"
    table.write_text("id,label\n0,1\n")
    a = np.zeros((40, 40), dtype=np.uint8)
    b = a.copy()
    b[20, 20] = 1  # differs only in the middle, where str(ndarray) shows "..."
    assert str(a) == str(b)
    first = data_identity({"train": [{"image": a, "image_id": "0"}]}, tables=[table])
    assert data_identity({"train": [{"image": b, "image_id": "0"}]}, tables=[table])["digest"] != first["digest"]
    stat = os.stat(table)
    table.write_text("id,label\n0,0\n")
    os.utime(table, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # same size and time: the content hash tells
    second = data_identity({"train": [{"image": a, "image_id": "0"}]}, tables=[table])
    assert second["digest"] != first["digest"]
    assert data_changes(first["manifest"], second["manifest"]) == "labels.csv content"
