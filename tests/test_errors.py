"""The closing line of a failed run: the innermost monai-ilm exception of the chain, on one line."""

from __future__ import annotations

import sys
from pathlib import Path

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


@pytest.fixture
def hook(monkeypatch):
    """The closing-line hook installed over a previous hook that records its calls and prints TRACEBACK."""
    calls = []

    def previous(kind, value, traceback):
        calls.append(kind)
        print("TRACEBACK", file=sys.stderr)

    monkeypatch.setattr(sys, "excepthook", previous)
    monkeypatch.setattr(errors.warnings, "filters", list(errors.warnings.filters))  # the trust filter stays here
    errors.install_excepthook()
    installed = sys.excepthook
    errors.install_excepthook()
    assert sys.excepthook is installed  # a second install does not print the line twice
    return calls


def test_hook_prints_two_lines_and_writes_the_traceback_to_a_file(hook, monkeypatch, capsys):
    monkeypatch.delenv(errors.TRACEBACK_ENV, raising=False)
    error = caught(lambda: int("x"))
    sys.excepthook(type(error), error, error.__traceback__)
    assert hook == []  # Python's traceback is not printed
    lines = capsys.readouterr().err.rstrip().splitlines()
    assert len(lines) == 2 and lines[1] == "monai-ilm: ValueError: invalid literal for int() with base 10: 'x'", lines
    path = lines[0].split("full traceback in ")[1].split(" (")[0]
    assert lines[0] == f"monai-ilm: the run failed; full traceback in {path} (MONAI_ILM_TRACEBACK=1 prints it)"
    text = Path(path).read_text(encoding="utf-8")
    Path(path).unlink()
    assert text.startswith("Traceback (most recent call last):") and 'int("x")' in text
    assert text.rstrip().endswith("ValueError: invalid literal for int() with base 10: 'x'")


def test_hook_prints_the_traceback_when_asked_or_for_an_interrupt(hook, monkeypatch, capsys):
    monkeypatch.setenv(errors.TRACEBACK_ENV, "1")
    error = caught(lambda: int("x"))
    sys.excepthook(type(error), error, error.__traceback__)
    assert hook == [ValueError]
    lines = capsys.readouterr().err.rstrip().splitlines()
    assert lines == ["TRACEBACK", "monai-ilm: ValueError: invalid literal for int() with base 10: 'x'"]
    monkeypatch.setenv(errors.TRACEBACK_ENV, "0")
    sys.excepthook(KeyboardInterrupt, KeyboardInterrupt(), None)  # an interrupt is not a failure to explain
    assert capsys.readouterr().err.rstrip().splitlines() == ["TRACEBACK"]


def test_trust_warning_is_shown_once_whatever_configs_it_names(monkeypatch):
    """MONAI's warning names the config files; Python's "once" would show each new list of files again."""
    monkeypatch.setattr(errors.warnings, "filters", [])
    message = "parsing config_file {}: ... (see https://github.com/Project-MONAI/MONAI/security/advisories/{})."
    with errors.warnings.catch_warnings(record=True) as shown:
        errors.show_trust_warning_once()
        errors.show_trust_warning_once()
        for configs in (["pretrain.json"], ["pretrain.json", "evaluate.json"], ["pretrain.json"]):
            errors.warnings.warn(message.format(configs, errors.TRUST_ADVISORY), UserWarning, stacklevel=1)
            with errors.warnings.catch_warnings():  # as the runs' own blocks do: the registries of shown warnings reset
                pass
        errors.warnings.warn("another warning", UserWarning, stacklevel=1)
    texts = [str(w.message) for w in shown]
    assert texts == [message.format(["pretrain.json"], errors.TRUST_ADVISORY), "another warning"], texts


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


ADVISORY = "GHSA-873f-pvrv-4x83"  # the advisory MONAI's config-trust warning names
RUNS = """
import sys
from monai.bundle import run
from monai_ilm import errors

bundle, data, out = sys.argv[1:4]
configs = bundle + "/configs/"


def bundle_run(names, **overrides):
    try:
        run(config_file=[configs + n for n in names], meta_file=configs + "metadata.json", logging_file=False,
            bundle_root=bundle, output_dir=out, **overrides)
    except Exception as error:
        print("failed:", errors.summary(error), file=sys.stderr)


quick = {"dataset_dir": data, "max_epochs": 1, "epoch_length": 1, "knn_interval": 0}
bundle_run(["pretrain.json"], dataset_dir=out + "/missing")  # its initialize installs the filter
bundle_run(["pretrain.json", "evaluate.json"], dataset_dir=out + "/missing")
bundle_run(["pretrain.json", "quick.json"], **quick)
bundle_run(["pretrain.json", "quick.json"], **quick)
bundle_run(["pretrain.json", "evaluate.json", "quick.json"], dataset_dir=out + "/missing")
"""


@pytest.mark.slow
def test_trust_warning_once_per_process_over_several_bundle_runs(tmp_path):
    """MONAI warns at every new list of configs (the demo: 33 times); monai-ilm's bundles make it once a process."""
    import os
    import subprocess

    from monai_ilm.data.synthetic import make_dr_sample

    bundle = Path(__file__).resolve().parents[1] / "bundles" / "diabetic_retinopathy_ilm"
    data = make_dr_sample(tmp_path / "dr", n_patients=40, image_size=64, seed=0)
    command = [sys.executable, "-c", RUNS, str(bundle), str(data), str(tmp_path / "out")]
    env = {key: value for key, value in os.environ.items() if key != "PYTHONWARNINGS"} | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False, cwd=tmp_path)
    assert result.returncode == 0 and result.stderr.count("failed: ") == 3, result.stderr[-3000:]
    assert result.stderr.count(ADVISORY) == 1, result.stderr[-3000:]
    assert (tmp_path / "out" / "pretrain" / "mse_seed0" / "models" / "model.pt").is_file()
