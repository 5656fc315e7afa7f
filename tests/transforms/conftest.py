"""Tiny image files of every kind the loaders must handle."""

from __future__ import annotations

import nibabel
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def image_files(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (10, 20), dtype=np.uint8)  # 10 rows x 20 columns
    rgb = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    sixteen = (rng.integers(0, 65536, (10, 20))).astype(np.uint16)
    files = {
        "grey": (root / "grey.png", grey),
        "rgb": (root / "rgb.png", rgb),
        "sixteen": (root / "sixteen.png", sixteen),
        "rgba": (root / "rgba.png", np.concatenate([rgb, np.full((12, 16, 1), 7, np.uint8)], axis=-1)),
    }
    for path, array in files.values():
        Image.fromarray(array).save(path)
    Image.fromarray(grey).convert("LA").save(root / "grey_alpha.png")
    Image.fromarray(rgb).convert("P").save(root / "palette.png")
    Image.fromarray(rgb).save(root / "photo.jpeg", quality=95)
    volume = rng.normal(100, 10, (6, 7, 8)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(volume, np.eye(4)), str(root / "volume.nii.gz"))
    good = (root / "grey.png").read_bytes()
    (root / "truncated.png").write_bytes(good[: len(good) // 2])
    paths = {name: path for name, (path, _) in files.items()}
    paths.update(
        {
            name: root / f"{name}.{ext}"
            for name, ext in [("grey_alpha", "png"), ("palette", "png"), ("photo", "jpeg"), ("truncated", "png")]
        }
    )
    paths["volume"] = root / "volume.nii.gz"
    arrays = {name: array for name, (_, array) in files.items()}
    arrays["volume"] = volume
    return paths, arrays


@pytest.fixture(scope="session")
def xray_item(tmp_path_factory):
    """A datalist row like the NIH reader's: a 40 x 48 grey PNG with a 14-long multi-hot label."""
    path = tmp_path_factory.mktemp("xray") / "00000001_000.png"
    rows, cols = np.mgrid[0:40, 0:48]
    Image.fromarray((255 * (0.3 + 0.5 * np.exp(-((rows - 12) ** 2 + (cols - 30) ** 2) / 40.0))).astype(np.uint8)).save(
        path
    )
    return {"image": str(path), "label": [0.0] * 13 + [1.0], "patient_id": "1"}


@pytest.fixture(scope="session")
def rgb_item(image_files):
    return {"image": str(image_files[0]["rgb"]), "label": 1, "patient_id": "7"}
