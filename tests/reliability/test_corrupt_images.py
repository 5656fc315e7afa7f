"""Corrupt and truncated PNG/JPEG files met by the readers (``verify=True``) and by the image loader.

``tests/data/test_integrity.py`` covers ``check_image_readable`` and ``verify_images`` on a cut PNG, a
PNG without its end chunk and a text file named ``.jpeg``; here: real JPEGs cut short or without
their end marker, a PNG with a damaged chunk checksum and an empty file, through ``load_datalist``
(the error names the file; ``skip_unreadable=True`` drops it and logs the count) and through
``LoadImageWithPathd``.
"""

from __future__ import annotations

import logging
import shutil

import pytest

from monai_ilm.data import UnreadableImageError, load_datalist, synthetic
from monai_ilm.transforms import LoadImageWithPathd


def cut_in_half(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def without_end_marker(raw: bytes) -> bytes:
    return raw[:-2]  # JPEG's EOI (FF D9); the scan data is complete


def bad_chunk_checksum(raw: bytes) -> bytes:
    at = raw.index(b"IDAT") + 8  # a byte of PNG pixel data: its CRC no longer matches
    return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]


def empty(raw: bytes) -> bytes:
    return b""


OPTIONS = {"require_all_classes": False}  # tiny samples: a split may miss a class
CASES = {
    "dr": [cut_in_half, without_end_marker, empty],  # JPEG
    "nih": [cut_in_half, bad_chunk_checksum, empty],  # PNG
}


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    base = tmp_path_factory.mktemp("corrupt_samples")
    return {
        "nih": synthetic.make_nih_sample(base / "nih", n_patients=16, images_per_patient=2, image_size=32),
        "dr": synthetic.make_dr_sample(base / "dr", n_patients=12, image_size=32),
    }


@pytest.mark.parametrize(
    "dataset, damage", [(d, f) for d, fs in CASES.items() for f in fs], ids=lambda v: getattr(v, "__name__", v)
)
def test_reader_names_the_damaged_image_or_skips_it_with_a_count(samples, tmp_path, caplog, dataset, damage):
    root = tmp_path / dataset
    shutil.copytree(samples[dataset], root)
    rows = load_datalist(dataset, root, "train", verify=True, **OPTIONS)
    victim = rows[len(rows) // 2]["image"]
    with open(victim, "rb") as handle:
        raw = handle.read()
    with open(victim, "wb") as handle:
        handle.write(damage(raw))

    with pytest.raises(UnreadableImageError, match=f"image file '{victim}' cannot be read"):
        load_datalist(dataset, root, "train", verify=True, **OPTIONS)
    with caplog.at_level(logging.WARNING):
        kept = load_datalist(dataset, root, "train", verify=True, skip_unreadable=True, **OPTIONS)
    assert [r["image"] for r in kept] == [r["image"] for r in rows if r["image"] != victim]
    assert f"skipped 1 of {len(rows)} unreadable images: '{victim}'" in caplog.text


@pytest.mark.parametrize("damage", CASES["dr"], ids=lambda f: f.__name__)
def test_loader_names_the_damaged_jpeg_and_the_key(samples, tmp_path, damage):
    source = next((samples["dr"] / "train").glob("*.jpeg"))
    broken = tmp_path / source.name
    broken.write_bytes(damage(source.read_bytes()))
    loader = LoadImageWithPathd(keys="image")
    assert loader({"image": str(source)})["image"].shape[0] == 3
    with pytest.raises(UnreadableImageError, match=f"image file '{broken}' cannot be read.*key 'image'"):
        loader({"image": str(broken)})
