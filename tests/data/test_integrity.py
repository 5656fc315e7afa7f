"""Opening images: truncated and corrupt files are reported by name or skipped with a count."""

from __future__ import annotations

import logging
from pathlib import Path

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


# ---------------------------------------------------------------- the quick check run before caching
def _jpeg(path, seed=0):
    pixels = np.random.default_rng(seed).integers(0, 255, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path, quality=90)
    return path


@pytest.fixture
def damaged(tmp_path, files):
    """Files a full decode rejects and the quick check must reject too, by name -> path."""
    good = _jpeg(tmp_path / "good.jpeg").read_bytes()
    cases = {
        "jpeg_cut_in_half": good[: len(good) // 2],
        "jpeg_without_end_marker": good[:-2],
        "empty.png": b"",
    }
    paths = {name: tmp_path / (name if "." in name else f"{name}.jpeg") for name in cases}
    for name, raw in cases.items():
        paths[name].write_bytes(raw)
    paths.update({"png_cut": files["truncated"], "png_without_end": files["no_end"], "garbage": files["garbage"]})
    volume = files["volume"].read_bytes()
    paths["nii_gz_cut"] = tmp_path / "cut.nii.gz"
    paths["nii_gz_cut"].write_bytes(volume[: len(volume) - 6])
    return paths


def test_quick_check_rejects_what_a_full_decode_rejects(files, damaged, tmp_path):
    from monai_ilm.data.integrity import quick_check_image

    for path in damaged.values():
        with pytest.raises(UnreadableImageError):
            check_image_readable(path)  # the reference: every pixel decoded
        with pytest.raises(UnreadableImageError, match=f"image file '{path}' cannot be read"):
            quick_check_image(path)
    with pytest.raises(FileNotFoundError, match="no.png"):
        quick_check_image(files["missing"])


def test_quick_check_accepts_intact_files_even_with_padding_after_the_end(files, tmp_path):
    from monai_ilm.data.integrity import quick_check_image

    padded = tmp_path / "padded.jpeg"
    padded.write_bytes(_jpeg(tmp_path / "plain.jpeg").read_bytes() + b"\x00" * 100)  # some cameras pad with zeros
    check_image_readable(padded)  # the reference accepts it, so the quick check must too
    for path in (files["good"], files["volume"], tmp_path / "plain.jpeg", padded):
        quick_check_image(path)


def rows_of(paths):
    return [{"image": str(p), "label": 0} for p in paths]


def test_check_datalists_lists_every_unreadable_file_in_one_error(files, damaged, tmp_path):
    from monai_ilm.data.integrity import check_datalists

    good = [_jpeg(tmp_path / f"ok{i}.jpeg", seed=i) for i in range(10)]
    bad = sorted(str(p) for p in damaged.values())
    datalists = {"train": rows_of(good + [Path(p) for p in bad[:4]]), "val": rows_of(good[:3] + bad[4:])}
    with pytest.raises(UnreadableImageError) as error:
        check_datalists(datalists, batch_size=2)
    message = str(error.value)
    assert f"{len(bad)} of {10 + 3 + len(bad)} that cannot be read" in message, message
    shown = [p for p in bad if f"'{p}'" in message]
    assert len(shown) == 5 and f"and {len(bad) - 5} more" in message, message
    assert "skip_unreadable" in message
    assert len(datalists["train"]) == 14  # nothing dropped when raising


def test_check_datalists_drops_unreadable_rows_in_place_with_a_count(damaged, tmp_path, caplog):
    from monai_ilm.data.integrity import check_datalists

    good = [_jpeg(tmp_path / f"ok{i}.jpeg", seed=i) for i in range(4)]
    train = rows_of([good[0], damaged["jpeg_cut_in_half"], good[1], good[2]])
    val = rows_of([damaged["empty.png"], good[3]])
    val.append({"image": np.zeros((4, 4)), "label": 1})  # in-memory images are kept as they are
    with caplog.at_level(logging.WARNING):
        checked = check_datalists({"train": train, "val": val}, batch_size=2, skip_unreadable=True, num_workers=2)
    assert [r["image"] for r in train] == [str(good[0]), str(good[1]), str(good[2])]
    assert [r["image"] for r in val][:1] == [str(good[3])] and len(val) == 2
    assert checked["train"] is train and checked["val"] is val
    assert "skipped 2 of 7 unreadable images" in caplog.text


@pytest.mark.parametrize(
    "sizes, batch_size, drop_last, replicas, message",
    [
        ({"train": 20, "val": 5}, 8, True, 1, "val split: has 5 images, fewer than batch_size 8 with drop_last"),
        ({"train": 7, "val": 9}, 8, True, 1, "train split: has 7 images, fewer than batch_size 8 with drop_last"),
        ({"train": 40, "val": 12}, 8, True, 2, "val split: has 12 images, 6 per process over 2 processes, fewer"),
        ({"train": 3, "val": 1, "test": 0}, 16, False, 1, "test split: has 0 images"),
    ],
)
def test_check_datalists_stops_a_split_that_gives_no_batch(tmp_path, sizes, batch_size, drop_last, replicas, message):
    from monai_ilm.data.integrity import check_datalists

    datalists = {name: [{"image": np.zeros((2, 2)), "label": 0}] * n for name, n in sizes.items()}
    with pytest.raises(ValueError) as error:
        check_datalists(datalists, batch_size=batch_size, drop_last=drop_last, num_replicas=replicas)
    assert str(error.value).startswith(message), str(error.value)
    assert "batch_size" in str(error.value)


@pytest.mark.parametrize(
    "sizes, batch_size, drop_last, replicas",
    [
        ({"train": 8, "val": 8}, 8, True, 1),
        ({"train": 1, "val": 1, "test": 1}, 16, False, 1),
        ({"train": 16, "val": 17}, 8, True, 2),
    ],
)
def test_check_datalists_passes_splits_that_fill_a_batch(sizes, batch_size, drop_last, replicas):
    from monai_ilm.data.integrity import check_datalists

    datalists = {name: [{"image": np.zeros((2, 2)), "label": 0}] * n for name, n in sizes.items()}
    assert check_datalists(datalists, batch_size=batch_size, drop_last=drop_last, num_replicas=replicas) == datalists


def test_readers_skip_unreadable_drops_truncated_images_with_the_quick_check(tmp_path, caplog):
    from monai_ilm.data import load_datalist, synthetic

    root = synthetic.make_dr_sample(tmp_path / "dr", n_patients=12, image_size=32)
    rows = load_datalist("dr", root, "train")
    victim = rows[1]["image"]
    raw = Path(victim).read_bytes()
    Path(victim).write_bytes(raw[: len(raw) // 2])
    assert load_datalist("dr", root, "train") == rows  # without the option, contents are not looked at here
    with caplog.at_level(logging.WARNING):
        kept = load_datalist("dr", root, "train", skip_unreadable=True)
    assert [r["image"] for r in kept] == [r["image"] for r in rows if r["image"] != victim]
    assert f"skipped 1 of {len(rows)} unreadable images: '{victim}'" in caplog.text
