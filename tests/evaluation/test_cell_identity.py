"""What identifies an evaluation cell: the data identity of the splits its protocol reads."""

from __future__ import annotations

import numpy as np
from PIL import Image

from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.evaluation.cell_identity import cell_settings


def _fields(data, **kwargs):
    return {
        "dataset_name": "nih",
        "dataset_dir": str(data),
        "output_dir": "out",
        "seed": 0,
        "label_fraction": 1.0,
        "datalist_options": None,
        "max_epochs": 3,
        **kwargs,
    }


def test_a_cell_sees_a_replaced_image_of_the_splits_it_reads_only(tmp_path):
    data = make_nih_sample(tmp_path / "nih", n_patients=10, image_size=8, seed=0)
    before = {p: cell_settings(p, _fields(data)) for p in ("finetune", "feature_reuse", "ks")}
    assert "data_identity" not in before["ks"]  # ks reads only what finetune saved
    train_image = (data / "train_val_list.txt").read_text().split()[0]
    path = next(data.glob(f"images_*/images/{train_image}"))
    Image.fromarray(np.full((9, 9), 255, dtype=np.uint8)).save(path)  # same name, new pixels
    after = {p: cell_settings(p, _fields(data)) for p in ("finetune", "feature_reuse", "ks")}
    assert after["finetune"]["data_identity"] != before["finetune"]["data_identity"]
    assert after["feature_reuse"] == before["feature_reuse"]  # it reads the test split only
    assert after["ks"] == before["ks"]


def test_the_label_fraction_and_seed_give_other_data_identities(tmp_path):
    data = make_nih_sample(tmp_path / "nih", n_patients=20, image_size=8, seed=0)
    full = cell_settings("finetune", _fields(data))["data_identity"]
    assert cell_settings("finetune", _fields(data, label_fraction=0.3))["data_identity"] != full
    assert cell_settings("finetune", _fields(data))["data_identity"] == full
