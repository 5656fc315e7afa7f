"""Fuzzed data-set files: a reader either works or fails with an error that names the file or folder.

Garbled metadata tables, split lists and split CSVs in the NIH, IDC and EyePACS layouts, and random
bytes saved as PNG/JPEG images: ``load_datalist`` (and image verification) may only raise
``ValueError`` (``UnreadableImageError`` is one) or ``FileNotFoundError`` raised by monai-ilm's own
checks, never a ``KeyError``, ``IndexError`` or an error from inside pandas, numpy, PIL or torch.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import monai_ilm
from monai_ilm.data import load_datalist, synthetic
from monai_ilm.data.integrity import UnreadableImageError, check_image_readable
from monai_ilm.transforms import LoadImageWithPathd

PACKAGE = Path(monai_ilm.__file__).resolve().parent
LOADER = LoadImageWithPathd(keys="image")
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SPLITS = st.sampled_from(["train", "val", "test"])


def garble(text: str, data: st.DataObject) -> bytes:
    """``text`` with a few random edits: cut, inserted junk (quotes, separators, NULs, non-UTF-8), dropped spans."""
    raw = text.encode()
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        at = data.draw(st.integers(0, len(raw)), label="at")
        kind = data.draw(st.sampled_from(["cut", "insert", "delete", "replace_all"]), label="kind")
        junk = data.draw(
            st.one_of(
                st.binary(max_size=30), st.text(alphabet=',"\n\r\t|;\x00 abc123.-_png', max_size=30).map(str.encode)
            ),
            label="junk",
        )
        if kind == "cut":
            raw = raw[:at]
        elif kind == "insert":
            raw = raw[:at] + junk + raw[at:]
        elif kind == "delete":
            raw = raw[:at] + raw[at + data.draw(st.integers(1, 40), label="span") :]
        else:
            raw = junk
    return raw


def raised_in(error: BaseException) -> str:
    """The file of the frame that raised ``error``."""
    tb = error.__traceback__
    while tb.tb_next is not None:
        tb = tb.tb_next
    return tb.tb_frame.f_code.co_filename


def assert_clean_failure(error: BaseException) -> None:
    """An error a user can act on: the right type, raised by monai-ilm's own checks, not a library's internals."""
    assert isinstance(error, (ValueError, FileNotFoundError)), f"{type(error).__name__}: {error}"
    module = type(error).__module__
    assert not module.startswith(("pandas", "PIL", "torch", "numpy")), f"{module}.{type(error).__name__}: {error}"
    origin = Path(raised_in(error)).resolve()
    assert PACKAGE in origin.parents, f"raised inside {origin}: {type(error).__name__}: {error}"


def load_or_fail(dataset: str, root: Path, split: str, **kwargs) -> None:
    try:
        rows = load_datalist(dataset, root, split, **kwargs)
    except (ValueError, FileNotFoundError) as error:
        assert_clean_failure(error)
    except Exception as error:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{dataset} reader leaked {type(error).__module__}.{type(error).__name__}: {error}")
    else:
        assert all(isinstance(row, dict) and "image" in row for row in rows)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    base = tmp_path_factory.mktemp("fuzz_samples")
    return {
        "nih": synthetic.make_nih_sample(base / "nih", n_patients=16, images_per_patient=2, image_size=16),
        "idc": synthetic.make_idc_sample(
            base / "idc", n_patients=6, patches_per_patient=4, patch_size=8, write_split_csvs=True
        ),
        "dr": synthetic.make_dr_sample(base / "dr", n_patients=12, image_size=16),
    }


def copy_of(source: Path) -> Path:
    """A throw-away copy of a sample data set (a hypothesis example cannot use a function-scoped tmp_path)."""
    root = Path(tempfile.mkdtemp(prefix="fuzz_")) / "data"
    shutil.copytree(source, root)
    return root


def garble_and_load(source: Path, names: list[str], data, dataset: str, split: str, **kwargs) -> None:
    """Garble one of ``names`` in a copy of ``source``, then load it: it must load or fail cleanly."""
    root = copy_of(source)
    try:
        name = data.draw(st.sampled_from(names))
        (root / name).write_bytes(garble((root / name).read_text(), data))
        load_or_fail(dataset, root, split, **kwargs)
    finally:
        shutil.rmtree(root.parent)


@FUZZ
@given(data=st.data(), split=SPLITS)
def test_garbled_nih_files(samples, data, split):
    source = data.draw(st.sampled_from(["official", "seeded"]))
    names = ["Data_Entry_2017_v2020.csv", "train_val_list.txt", "test_list.txt"]
    garble_and_load(samples["nih"], names, data, "nih", split, split_source=source, require_all_classes=False)


@FUZZ
@given(data=st.data(), split=SPLITS)
def test_garbled_idc_split_csvs(samples, data, split):
    names = ["train_split.csv", "val_split.csv", "test_split.csv"]
    garble_and_load(samples["idc"], names, data, "idc", split, split_source="csv")


@FUZZ
@given(data=st.data(), split=SPLITS)
def test_garbled_dr_labels(samples, data, split):
    garble_and_load(samples["dr"], ["trainLabels.csv"], data, "dr", split, require_all_classes=False)


@FUZZ
@given(data=st.data(), split=SPLITS)
def test_garbled_csv_datalist(tmp_path_factory, samples, data, split):
    root = copy_of(samples["dr"])
    try:
        images = sorted(p.name for p in (root / "train").iterdir())[:6]
        text = "image,label,patient_id,split\n" + "".join(
            f"train/{name},{i % 2},{i // 2},{['train', 'val', 'test'][i % 3]}\n" for i, name in enumerate(images)
        )
        (root / "datalist.csv").write_bytes(garble(text, data))
        load_or_fail("csv", root, split)
    finally:
        shutil.rmtree(root.parent)


@FUZZ
@given(payload=st.binary(max_size=2000), suffix=st.sampled_from([".png", ".jpeg", ".jpg"]), keep=st.integers(0, 400))
def test_random_bytes_and_truncated_images_load_or_fail_by_name(samples, payload, suffix, keep):
    folder = Path(tempfile.mkdtemp(prefix="fuzz_img_"))
    try:
        sources = {
            ".png": next((samples["nih"] / "images_001" / "images").iterdir()),
            ".jpeg": next((samples["dr"] / "train").iterdir()),
        }
        real = sources.get(suffix, sources[".jpeg"]).read_bytes()
        for name, content in (("random", payload), ("truncated", real[:keep]), ("spliced", real[:keep] + payload)):
            path = folder / f"{name}{suffix}"
            path.write_bytes(content)
            for read in (check_image_readable, lambda p: LOADER({"image": str(p)})):
                try:
                    read(path)
                except UnreadableImageError as error:  # anything else fails the test
                    assert str(path) in str(error)
    finally:
        shutil.rmtree(folder)
