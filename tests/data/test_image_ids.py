"""Every datalist row carries a stable image id that survives the transforms, the collate and the predictions."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data import DataLoader, Dataset

from monai_ilm.data import load_datalist
from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.transforms import eval_transforms, finetune_transforms

SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def layouts(nih_dir, idc_dir, dr_kaggle_dir, dr_jama16_dir, nifti_dir):
    return {
        "nih": (nih_dir, {}),
        "idc": (idc_dir, {}),
        "dr": (dr_kaggle_dir, {}),
        "folder": (dr_jama16_dir, {"patient_pattern": r"^(\d+)_"}),
        "nifti": (nifti_dir, {}),
    }


@pytest.mark.parametrize("dataset", ["nih", "idc", "dr", "folder", "nifti"])
def test_file_rows_are_named_by_their_path_inside_dataset_dir(layouts, dataset):
    root, kwargs = layouts[dataset]
    ids = []
    for split in SPLITS:
        for row in load_datalist(dataset, root, split, seed=0, **kwargs):
            assert row["image_id"] == os.path.relpath(row["image"], Path(root).resolve()).replace(os.sep, "/")
            assert not row["image_id"].startswith(("/", "..")) and Path(row["image"]).name in row["image_id"]
            ids.append(row["image_id"])
    assert len(ids) == len(set(ids))


def test_nih_ids_are_the_published_relative_paths(nih_dir):
    rows = load_datalist("nih", nih_dir, "test")
    assert all(r["image_id"] == f"{Path(r['image']).parent.parent.name}/images/{r['image_name']}" for r in rows)


def test_medmnist_rows_are_named_by_split_and_index(medmnist_file):
    rows = load_datalist("medmnist", medmnist_file, "val")
    assert [r["image_id"] for r in rows] == [f"toymnist-val-{i}" for i in range(6)]


def test_ids_survive_a_label_fraction(nih_dir):
    rows = load_datalist("nih", nih_dir, "train", seed=0, label_fraction=0.3)
    assert all(r["image_id"].endswith(r["image_name"]) for r in rows)


@pytest.mark.parametrize("make", [eval_transforms, finetune_transforms])
def test_ids_survive_the_presets_and_the_collate(nih_dir, make):
    rows = load_datalist("nih", nih_dir, "val")
    loader = DataLoader(Dataset(rows, make("nih", image_size=16, channels=3)), batch_size=4, shuffle=False)
    collated = [image_id for batch in loader for image_id in batch["image_id"]]
    assert collated == [r["image_id"] for r in rows]


@pytest.fixture(scope="module")
def tiny_nih(tmp_path_factory):
    return make_nih_sample(tmp_path_factory.mktemp("nih_ids"), n_patients=12, images_per_patient=2, image_size=16)


def _evaluation_run(root, output_dir):
    from monai_ilm.evaluation import EvaluationRun

    return EvaluationRun(
        protocol="linear",
        dataset_name="nih",
        dataset_dir=str(root),
        output_dir=str(output_dir),
        method="supervised",
        backbone="resnet18",
        image_size=16,
        batch_size=5,
        device="cpu",
    )


def test_predictions_are_named_by_image(tiny_nih, tmp_path):
    from monai_ilm.evaluation.prediction import predict

    run = _evaluation_run(tiny_nih, tmp_path)
    loader = run.loader("test")
    torch.manual_seed(0)
    network = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, 14))
    predictions = predict(network, loader, device="cpu")
    listed = sorted((tiny_nih / "test_list.txt").read_text().split())
    assert sorted(Path(i).name for i in predictions.ids) == listed
    assert predictions.ids == [r["image_id"] for r in loader.dataset.data]
    assert len(predictions.ids) > 5  # more than one batch


def test_features_are_named_by_image(tiny_nih, tmp_path):
    from monai_ilm.evaluation.features import extract_stage_features

    run = _evaluation_run(tiny_nih, tmp_path)
    loader = run.loader("val")
    features = extract_stage_features(run.encoder(None), loader, blocks=(4,), device="cpu")
    assert list(features.ids) == [r["image_id"] for r in loader.dataset.data]
    assert all(np.char.endswith(np.asarray(features.ids), ".png"))
