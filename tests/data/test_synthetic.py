"""Sample-data generators: real layouts, determinism, speed, learnable class structure, command line."""

from __future__ import annotations

import hashlib
import time

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monai_ilm.data import load_datalist, synthetic
from monai_ilm.data.nih import NIH_FINDINGS
from monai_ilm.transforms import eval_transforms


def _digest(root):
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


@pytest.mark.parametrize("writer", ["nih", "idc", "dr", "dr-jama16", "nifti"])
def test_same_seed_same_files_other_seed_other_files(tmp_path, writer):
    kwargs = {
        "nih": dict(n_patients=6, image_size=16),
        "idc": dict(n_patients=3, patches_per_patient=3, patch_size=12),
        "dr": dict(n_patients=4, image_size=16),
        "dr-jama16": dict(n_patients=5, image_size=16),
        "nifti": dict(n_patients=2, volume_size=6),
    }[writer]
    write = synthetic.LAYOUT_WRITERS[writer]
    a, b, c = (write(tmp_path / name, seed=seed, **kwargs) for name, seed in (("a", 0), ("b", 0), ("c", 1)))
    assert _digest(a) == _digest(b) != _digest(c)


def test_a_few_hundred_images_in_seconds(tmp_path):
    started = time.perf_counter()
    synthetic.make_nih_sample(tmp_path / "nih", n_patients=100, images_per_patient=3, image_size=64)
    synthetic.make_idc_sample(tmp_path / "idc", n_patients=10, patches_per_patient=30)
    synthetic.make_dr_sample(tmp_path / "dr", n_patients=100, image_size=64)
    assert time.perf_counter() - started < 15


def _pixels(image):
    return image.ravel()


def _colour_histograms(image):
    return np.concatenate([np.histogram(channel, bins=16, range=(0, 1))[0] / channel.size for channel in image])


def _features_and_labels(dataset, root, split, size, features=_pixels):
    transform = eval_transforms(dataset, image_size=size, channels=3)
    items = [transform(row) for row in load_datalist(dataset, root, split)]
    return np.stack([features(i["image"].numpy()) for i in items]), np.stack([np.asarray(i["label"]) for i in items])


@pytest.mark.parametrize("dataset", ["idc", "dr"])
def test_class_structure_is_learnable(tmp_path, dataset):
    """Nuclei density (IDC) and lesions (DR) show in the colour statistics: a linear probe beats the majority class."""
    if dataset == "idc":
        root = synthetic.make_idc_sample(tmp_path, n_patients=10, patches_per_patient=16, patch_size=24)
    else:
        root = synthetic.make_dr_sample(tmp_path, n_patients=60, image_size=32)
    x_train, y_train = _features_and_labels(dataset, root, "train", 24, _colour_histograms)
    x_test, y_test = _features_and_labels(dataset, root, "test", 24, _colour_histograms)
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000)).fit(x_train, y_train)
    assert probe.score(x_test, y_test) > max(np.mean(y_test), 1 - np.mean(y_test)) + 0.1


def test_nih_findings_are_learnable(nih_dir):
    """Each finding's blob sits at its own place: a linear probe on the pixels ranks it well above chance."""
    x_train, y_train = _features_and_labels("nih", nih_dir, "train", 32)
    x_test, y_test = _features_and_labels("nih", nih_dir, "test", 32)
    from sklearn.metrics import roc_auc_score

    aucs = []
    for finding in range(len(NIH_FINDINGS)):
        if 0 < y_train[:, finding].sum() < len(y_train) and 0 < y_test[:, finding].sum() < len(y_test):
            model = LogisticRegression(max_iter=2000).fit(x_train, y_train[:, finding])
            aucs.append(roc_auc_score(y_test[:, finding], model.decision_function(x_test)))
    assert len(aucs) >= 10 and np.mean(aucs) > 0.7


def test_command_line(tmp_path, capsys):
    root = synthetic.main(
        ["--layout", "idc", "--output_dir", str(tmp_path / "idc"), "--n_patients", "2", "--image_size", "10"]
    )
    assert "wrote the idc sample" in capsys.readouterr().out
    assert len(list(root.glob("*/*/*_idx5_x*_y*_class*.png"))) == 40
    npz = synthetic.main(["--layout", "medmnist", "--output_dir", str(tmp_path / "mm")])
    assert npz.name == "sample.npz" and len(load_datalist("medmnist", npz, "test")) == 20


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"^n_patients: expected a positive integer, got 0\."):
        synthetic.make_nih_sample(tmp_path, n_patients=0)
    with pytest.raises(ValueError, match="^bit_depth: expected 8 or 16, got "):
        synthetic.make_nih_sample(tmp_path, bit_depth=12)
    with pytest.raises(ValueError, match="^layout: expected 'kaggle' or 'jama16', got "):
        synthetic.make_dr_sample(tmp_path, layout="flat")
