"""Opening images: truncated and corrupt files are reported by name or skipped with a count."""

from __future__ import annotations

import logging

import nibabel
import numpy as np
import pytest
from PIL import Image

from monai_ilm.data.integrity import UnreadableImageError, check_image_readable, verify_images


@pytest.fixture
def files(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32), dtype=np.uint8)).save(good)
    truncated = tmp_path / "truncated.png"
    truncated.write_bytes(good.read_bytes()[:600])  # cut inside the pixel data
    no_end = tmp_path / "no_end.png"
    no_end.write_bytes(good.read_bytes()[:-12])  # pixel data complete, end chunk missing
    garbage = tmp_path / "garbage.jpeg"
    garbage.write_bytes(b"this is not a jpeg")
    volume = tmp_path / "vol.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((2, 2, 2), np.float32), np.eye(4)), str(volume))
    return {
        "good": good,
        "truncated": truncated,
        "no_end": no_end,
        "garbage": garbage,
        "volume": volume,
        "missing": tmp_path / "no.png",
    }


def test_check_image_readable(files):
    check_image_readable(files["good"])
    check_image_readable(files["volume"])
    for name in ("truncated", "no_end", "garbage"):
        with pytest.raises(UnreadableImageError, match=f"image file '{files[name]}' cannot be read"):
            check_image_readable(files[name])
    with pytest.raises(FileNotFoundError, match="no.png"):
        check_image_readable(files["missing"])
    assert issubclass(UnreadableImageError, ValueError)


def test_verify_images_raises_or_skips_with_count(files, caplog):
    rows = [{"image": str(files[k])} for k in ("good", "truncated", "volume", "garbage", "missing")]
    rows.append({"image": np.zeros((2, 2))})  # in-memory images are kept as they are
    with pytest.raises(UnreadableImageError, match="truncated.png"):
        verify_images(rows)
    with caplog.at_level(logging.WARNING):
        kept, skipped = verify_images(rows, skip_unreadable=True)
    assert [r["image"] for r in kept[:2]] == [str(files["good"]), str(files["volume"])] and len(kept) == 3
    assert skipped == [str(files[k]) for k in ("truncated", "garbage", "missing")]
    assert "skipped 3 of 6 unreadable images" in caplog.text
