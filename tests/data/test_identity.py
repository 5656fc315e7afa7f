"""The identity of the data a run reads: images by stat, arrays and tables by content, changes said in words."""

from __future__ import annotations

import os

import numpy as np

from monai_ilm.data.identity import data_changes, data_identity


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
