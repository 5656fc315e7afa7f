"""Generated data sets in the published layouts, one per bundle, shared by the bundle tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_ilm.data.synthetic import make_dr_sample, make_idc_sample, make_nih_sample

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
BUNDLE_DATA = {
    "nih_chestxray_ilm": lambda root: make_nih_sample(root, n_patients=30, image_size=64, seed=0),
    "breast_histopathology_ilm": lambda root: make_idc_sample(root, n_patients=12, patches_per_patient=10, seed=0),
    "diabetic_retinopathy_ilm": lambda root: make_dr_sample(root, n_patients=40, image_size=64, seed=0),
}


@pytest.fixture(scope="session")
def bundle_data(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for bundle, make in BUNDLE_DATA.items():
        root = tmp_path_factory.mktemp(bundle) / "data"
        make(root)
        roots[bundle] = root
    return roots
