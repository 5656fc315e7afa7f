"""A bundle run that cannot succeed stops before training, and its last line says why.

Splits too small for a batch, unreadable images found before caching (or dropped with
``skip_unreadable``), and the one closing ``monai-ilm: ...`` line of a failed ``python -m monai.bundle run``
or ``python -m monai_ilm experiment``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from monai.bundle import ConfigWorkflow
from monai.bundle import run as bundle_run

from monai_ilm.data import load_datalist
from monai_ilm.datasets import bundle_datasets
from monai_ilm.experiment import bundle_command
from tests.bundles.conftest import BUNDLE_DATA, BUNDLES_DIR
from tests.helpers import error_chain

BUNDLES = sorted(BUNDLE_DATA)
DATASET = bundle_datasets()
ENV = {key: value for key, value in os.environ.items() if key != "MONAI_ILM_TRACEBACK"} | {"OMP_NUM_THREADS": "1"}


def configs(bundle: str, *names: str) -> list[str]:
    return [str(BUNDLES_DIR / bundle / "configs" / name) for name in names]


def run_bundle(bundle: str, names: tuple[str, ...], data: Path, output: Path, **overrides) -> None:
    bundle_run(
        config_file=configs(bundle, *names),
        meta_file=configs(bundle, "metadata.json")[0],
        logging_file=False,
        bundle_root=str(BUNDLES_DIR / bundle),
        dataset_dir=str(data),
        output_dir=str(output),
        **overrides,
    )


def damaged_copy(source: Path, target: Path, dataset: str, split: str, damage) -> tuple[Path, str]:
    """A copy of the data set at ``target`` with one image of ``split`` damaged; returns the copy and the image."""
    shutil.copytree(source, target)
    victim = load_datalist(dataset, target, split)[1]["image"]
    raw = Path(victim).read_bytes()
    Path(victim).write_bytes(damage(raw))
    return target, victim


def cut_in_half(raw: bytes) -> bytes:
    return raw[: len(raw) // 2]


def bad_chunk_checksum(raw: bytes) -> bytes:
    at = raw.index(b"IDAT") + 8  # a byte of PNG pixel data: the file is complete but its CRC no longer matches
    return raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]


def last_line(text: str) -> str:
    return text.rstrip().splitlines()[-1]


@pytest.mark.parametrize("bundle", BUNDLES)
def test_val_split_smaller_than_batch_size_stops_before_training(bundle, bundle_data, tmp_path):
    """With drop_last, a val split smaller than a batch gives no validation and so no model.pt: stop at the start."""
    data = bundle_data[bundle]
    n_val = len(load_datalist(DATASET[bundle], data, "val", require_all_classes=False))
    n_train = len(load_datalist(DATASET[bundle], data, "train", require_all_classes=False))
    assert n_val + 1 <= n_train  # only val is too small
    with pytest.raises(Exception) as error:
        run_bundle(bundle, ("pretrain.json", "quick.json"), data, tmp_path, method="moco", batch_size=n_val + 1)
    chain = error_chain(error.value)
    assert f"val split: has {n_val} images, fewer than batch_size {n_val + 1} with drop_last" in chain, chain
    assert not list(tmp_path.rglob("*.pt"))


def test_evaluation_stops_on_an_empty_split_before_training(bundle_data, tmp_path, monkeypatch):
    import monai_ilm.evaluation.protocols as protocols

    real = protocols.load_datalist

    def without_test_rows(dataset, dataset_dir, split, **kwargs):
        return [] if split == "test" else real(dataset, dataset_dir, split, **kwargs)

    monkeypatch.setattr(protocols, "load_datalist", without_test_rows)
    bundle = "diabetic_retinopathy_ilm"
    with pytest.raises(Exception) as error:
        run_bundle(
            bundle,
            ("pretrain.json", "evaluate.json", "quick.json"),
            bundle_data[bundle],
            tmp_path,
            method="supervised",
            label_fraction=1.0,
        )
    assert "test split: has 0 images" in error_chain(error.value), error_chain(error.value)
    assert not (tmp_path / "evaluation").exists() or not list((tmp_path / "evaluation").rglob("*.pt"))
    assert not (tmp_path / "results").exists()


def test_evaluation_names_an_unreadable_image_before_training(bundle_data, tmp_path):
    bundle = "diabetic_retinopathy_ilm"
    data, victim = damaged_copy(bundle_data[bundle], tmp_path / "dr", "dr", "test", cut_in_half)
    with pytest.raises(Exception) as error:
        run_bundle(
            bundle, ("pretrain.json", "evaluate.json", "quick.json"), data, tmp_path / "out", method="supervised"
        )
    chain = error_chain(error.value)
    assert victim in chain and "skip_unreadable" in chain, chain
    assert not (tmp_path / "out" / "results").exists()


def test_unreadable_image_stops_pretraining_before_caching_or_is_skipped(bundle_data, tmp_path):
    bundle = "diabetic_retinopathy_ilm"
    data, victim = damaged_copy(bundle_data[bundle], tmp_path / "dr", "dr", "train", cut_in_half)
    common = {
        "config_file": configs(bundle, "pretrain.json", "quick.json"),
        "meta_file": configs(bundle, "metadata.json")[0],
        "logging_file": False,
        "workflow_type": "train",
        "bundle_root": str(BUNDLES_DIR / bundle),
        "dataset_dir": str(data),
        "output_dir": str(tmp_path / "out"),
    }
    with pytest.raises(Exception) as error:
        ConfigWorkflow(**common).initialize()
    chain = error_chain(error.value)
    assert f"'{victim}'" in chain and "skip_unreadable" in chain, chain
    assert "CacheDataset" not in chain  # found by the check in initialize, not while caching

    workflow = ConfigWorkflow(**common, skip_unreadable=True)
    workflow.initialize()
    rows = load_datalist("dr", data, "train")
    dataset = workflow.parser.get_parsed_content("train#dataset")
    assert len(dataset) == len(rows) - 1 and victim not in [row["image"] for row in dataset.data]


def a_2d_slice(raw: bytes) -> bytes:
    """A complete, readable NIfTI file whose header describes one 2D slice, not a volume."""
    import nibabel

    return gzip.compress(nibabel.Nifti1Image(np.zeros((8, 8), dtype=np.uint8), affine=np.eye(4)).to_bytes())


@pytest.mark.parametrize("damage", [cut_in_half, a_2d_slice], ids=["truncated", "header_of_a_2d_slice"])
def test_a_bad_volume_is_named_before_3d_pretraining_caches_anything(damage, bundle_data, tmp_path):
    """The NIfTI folder + labels.csv layout: a truncated file or an unusable header stops ``initialize``."""
    bundle = "ct_mr_volumes_ilm"
    data, victim = damaged_copy(bundle_data[bundle], tmp_path / "volumes", "volumes", "train", damage)
    workflow = ConfigWorkflow(
        config_file=configs(bundle, "pretrain.json", "quick.json"),
        meta_file=configs(bundle, "metadata.json")[0],
        logging_file=False,
        workflow_type="train",
        bundle_root=str(BUNDLES_DIR / bundle),
        dataset_dir=str(data),
        output_dir=str(tmp_path / "out"),
    )
    with pytest.raises(Exception) as error:
        workflow.initialize()
    chain = error_chain(error.value)
    assert victim in chain and "skip_unreadable" in chain, chain
    assert "CacheDataset" not in chain and not (tmp_path / "out" / "cache").exists()


@pytest.mark.parametrize(
    "bundle, damage",
    [("diabetic_retinopathy_ilm", cut_in_half), ("nih_chestxray_ilm", bad_chunk_checksum)],
    ids=["truncated_jpeg_found_before_caching", "bad_png_checksum_found_while_caching"],
)
def test_failed_bundle_run_ends_with_the_root_cause(bundle, damage, bundle_data, tmp_path):
    data, victim = damaged_copy(bundle_data[bundle], tmp_path / "data", DATASET[bundle], "train", damage)
    command = bundle_command(
        BUNDLES_DIR / bundle,
        "pretrain.json",
        {"dataset_dir": data, "output_dir": tmp_path / "out", "method": "moco"},
        extra_configs=["quick.json"],
    )
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, check=False)
    assert result.returncode != 0
    line = last_line(result.stderr)
    assert line.startswith("monai-ilm: UnreadableImageError: ") and victim in line, result.stderr[-3000:]
    assert len(stderr_lines(result.stderr)) <= 5, result.stderr[-3000:]  # not the traceback of every re-raise


def test_failed_experiment_ends_with_the_root_cause(bundle_data, tmp_path):
    bundle = "diabetic_retinopathy_ilm"
    data, victim = damaged_copy(bundle_data[bundle], tmp_path / "data", "dr", "val", cut_in_half)
    command = [
        sys.executable,
        "-m",
        "monai_ilm",
        "experiment",
        "--bundle",
        bundle,
        "--dataset_dir",
        str(data),
        "--output_dir",
        str(tmp_path / "out"),
        "--methods",
        "moco",
        "--fractions",
        "1.0",
        "--quick",
        "--no_supervised",
    ]
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, check=False)
    assert result.returncode != 0
    line = last_line(result.stderr)
    assert line.startswith("monai-ilm: UnreadableImageError: ") and victim in line, result.stderr[-3000:]


# ---------------------------------------------------------------------------------------------- unused settings
def test_a_setting_pretraining_does_not_read_is_refused_before_caching(bundle_data, tmp_path):
    """``label_fraction`` is read by evaluate.json only: pretraining refuses it rather than ignore it."""
    bundle = "diabetic_retinopathy_ilm"
    with pytest.raises(Exception) as error:
        run_bundle(bundle, ("pretrain.json", "quick.json"), bundle_data[bundle], tmp_path, label_fraction=2)
    chain = error_chain(error.value)
    assert (
        "label_fraction: expected a setting that pretraining reads (pretrain.json, quick.json), got 2, "
        "which it would ignore (a setting of evaluate.json)." in chain
    ), chain
    assert not (tmp_path / "cache").exists() and not list(tmp_path.rglob("*.pt"))


def test_a_misspelt_setting_is_refused_with_the_closest_names(bundle_data, tmp_path):
    bundle = "nih_chestxray_ilm"
    with pytest.raises(Exception) as error:
        run_bundle(bundle, ("pretrain.json", "quick.json"), bundle_data[bundle], tmp_path, max_epoch=1)
    chain = error_chain(error.value)
    assert "max_epoch: expected a setting that pretraining reads (pretrain.json, quick.json), got 1" in chain, chain
    assert "did you mean max_epochs" in chain, chain


def test_evaluation_refuses_a_pretraining_setting_and_checks_its_own(bundle_data, tmp_path):
    """Evaluation loads pretrain.json too, but does not run its trainer: ``max_epochs`` would change nothing."""
    bundle = "breast_histopathology_ilm"
    names = ("pretrain.json", "evaluate.json", "quick.json")
    with pytest.raises(Exception) as error:
        run_bundle(bundle, names, bundle_data[bundle], tmp_path, method="supervised", max_epochs=3)
    chain = error_chain(error.value)
    assert (
        "max_epochs: expected a setting that evaluation reads (pretrain.json, evaluate.json, quick.json), got 3, "
        "which it would ignore (nothing evaluation runs reads it)." in chain
    ), chain
    with pytest.raises(Exception) as error:
        run_bundle(bundle, names, bundle_data[bundle], tmp_path, method="supervised", label_fraction=2)
    assert "label_fraction: expected a finite number in (0, 1], got 2." in error_chain(error.value)
    assert not list(tmp_path.rglob("*.pt"))


# ---------------------------------------------------------------------------------------------- short failures
def stderr_lines(text: str) -> list[str]:
    """The lines a terminal shows (a progress bar redrawn with carriage returns is one line)."""
    return [line for line in text.rstrip("\n").split("\n") if line.strip()]


def missing_image(data: Path, target: Path) -> tuple[Path, str]:
    shutil.copytree(data, target)
    victim = load_datalist("dr", target, "train")[1]["image"]
    Path(victim).unlink()
    return target, victim


@pytest.mark.slow
@pytest.mark.parametrize("case", ["unused_setting", "bad_setting", "missing_dataset_dir", "missing_image"])
def test_failed_bundle_command_shows_the_cause_in_a_few_lines(case, bundle_data, tmp_path):
    """A failing ``python -m monai.bundle run``: <= 5 lines on stderr, the cause last, the traceback in a file."""
    bundle, data = "diabetic_retinopathy_ilm", bundle_data["diabetic_retinopathy_ilm"]
    overrides: dict = {"dataset_dir": data, "output_dir": tmp_path / "out"}
    if case == "unused_setting":  # issue #22's example: pretraining would otherwise run and exit 0
        overrides["label_fraction"] = 2
        expected = "monai-ilm: ValueError: label_fraction: expected a setting that pretraining reads"
    elif case == "bad_setting":
        overrides["max_epochs"] = 0
        expected = "monai-ilm: ValueError: max_epochs: expected an integer of at least 1, got 0."
    elif case == "missing_dataset_dir":
        overrides["dataset_dir"] = tmp_path / "missing"
        expected = "monai-ilm: FileNotFoundError: dataset_dir: expected "
    else:
        overrides["dataset_dir"], victim = missing_image(data, tmp_path / "data")
        expected = "monai-ilm: "
    command = bundle_command(BUNDLES_DIR / bundle, "pretrain.json", overrides, extra_configs=["quick.json"])
    result = subprocess.run(command, capture_output=True, text=True, env=ENV, check=False)
    assert result.returncode != 0
    lines = stderr_lines(result.stderr)
    assert len(lines) <= 5 and lines[-1].startswith(expected), result.stderr[-3000:]
    if case == "missing_image":
        assert victim in lines[-1] and "skip_unreadable" in lines[-1], lines[-1]
    where = lines[-2].split("full traceback in ")[1].split(" (")[0]
    assert lines[-2] == f"monai-ilm: the run failed; full traceback in {where} (MONAI_ILM_TRACEBACK=1 prints it)"
    assert "Traceback (most recent call last):" in Path(where).read_text(encoding="utf-8")
    Path(where).unlink()
    assert not (tmp_path / "out" / "cache").exists() and not list(tmp_path.rglob("*.pt"))
