"""The closing line of a failed run: the innermost monai-ilm exception of the chain, on one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from monai.data import CacheDataset, DataLoader, Dataset
from PIL import Image

from monai_ilm import errors
from monai_ilm.data import UnreadableImageError
from monai_ilm.transforms import LoadImageWithPathd


@pytest.fixture
def truncated(tmp_path):
    path = tmp_path / "10_left.jpeg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(path)
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 2])
    return str(path)


def caught(function):
    try:
        function()
    except BaseException as error:  # noqa: BLE001 - the point is the exception
        return error
    raise AssertionError("expected an exception")


def test_summary_of_monais_caching_chain_names_the_file(truncated):
    error = caught(lambda: CacheDataset([{"image": truncated}], LoadImageWithPathd(keys="image"), num_workers=0))
    assert not isinstance(error, UnreadableImageError)  # MONAI wraps it at least once
    line = errors.summary(error)
    assert line.startswith(f"monai-ilm: UnreadableImageError: image file '{truncated}' cannot be read"), line
    assert "\n" not in line and "(key 'image')" not in line


def test_summary_of_a_dataloader_worker_failure_names_the_file(truncated):
    loader = DataLoader(Dataset([{"image": truncated}], LoadImageWithPathd(keys="image")), num_workers=1)
    error = caught(lambda: next(iter(loader)))
    line = errors.summary(error)
    assert line.startswith(f"monai-ilm: UnreadableImageError: image file '{truncated}' cannot be read"), line
    assert "\n" not in line and "Traceback" not in line
    assert "(key 'image')" not in line  # the innermost monai-ilm exception, not the transform's re-raise


def test_summary_without_a_monai_ilm_exception_gives_the_innermost():
    def fail():
        try:
            {}["missing_key"]
        except KeyError as inner:
            raise RuntimeError("outer\nwith two lines") from inner

    assert errors.summary(caught(fail)) == "monai-ilm: KeyError: 'missing_key'"
    assert errors.summary(RuntimeError("a\n  b")) == "monai-ilm: RuntimeError: a b"


def test_summary_stops_at_a_cycle_in_the_chain():
    first, second = ValueError("first"), ValueError("second")
    first.__context__, second.__context__ = second, first
    assert errors.summary(first) in ("monai-ilm: ValueError: first", "monai-ilm: ValueError: second")


def test_hook_prints_the_line_after_the_previous_hook_and_installs_once(monkeypatch, capsys):
    calls = []

    def previous(kind, value, traceback):
        calls.append(kind)
        print("TRACEBACK", file=sys.stderr)

    monkeypatch.setattr(sys, "excepthook", previous)
    errors.install_excepthook()
    hook = sys.excepthook
    errors.install_excepthook()
    assert sys.excepthook is hook  # a second install does not print the line twice
    error = caught(lambda: int("x"))
    sys.excepthook(type(error), error, error.__traceback__)
    assert calls == [ValueError]
    lines = capsys.readouterr().err.rstrip().splitlines()
    assert lines == ["TRACEBACK", "monai-ilm: ValueError: invalid literal for int() with base 10: 'x'"]
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)  # an interrupt is not a failure to explain
    assert capsys.readouterr().err.rstrip().splitlines() == ["TRACEBACK"]


def test_cli_failure_before_any_bundle_runs_ends_with_the_root_cause(tmp_path):
    import subprocess

    command = [
        sys.executable,
        "-m",
        "monai_ilm",
        "experiment",
        "--bundle",
        "no_such_bundle",
        "--dataset_dir",
        str(tmp_path),
        "--output_dir",
        str(tmp_path / "out"),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    assert result.returncode != 0
    last = result.stderr.rstrip().splitlines()[-1]
    assert last.startswith("monai-ilm: ") and "no_such_bundle" in last, result.stderr[-2000:]
