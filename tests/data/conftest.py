"""Synthetic data sets in the real on-disk layouts, generated once per test session (tiny, seconds)."""

from __future__ import annotations

import pytest

from monai_ilm.data import synthetic


@pytest.fixture(scope="session")
def nih_dir(tmp_path_factory):
    return synthetic.make_nih_sample(
        tmp_path_factory.mktemp("nih"),
        n_patients=60,
        images_per_patient=2,
        image_size=32,
        images_per_folder=40,
        chexnet_lists=True,
    )


@pytest.fixture(scope="session")
def idc_dir(tmp_path_factory):
    return synthetic.make_idc_sample(
        tmp_path_factory.mktemp("idc"), n_patients=10, patches_per_patient=6, patch_size=24
    )


@pytest.fixture(scope="session")
def dr_kaggle_dir(tmp_path_factory):
    return synthetic.make_dr_sample(tmp_path_factory.mktemp("dr_kaggle"), n_patients=30, image_size=32)


@pytest.fixture(scope="session")
def dr_jama16_dir(tmp_path_factory):
    return synthetic.make_dr_sample(tmp_path_factory.mktemp("dr_jama16"), n_patients=30, image_size=32, layout="jama16")


@pytest.fixture(scope="session")
def nifti_dir(tmp_path_factory):
    return synthetic.make_nifti_sample(tmp_path_factory.mktemp("nifti"), n_patients=12, volume_size=8)


@pytest.fixture(scope="session")
def medmnist_file(tmp_path_factory):
    return synthetic.make_medmnist_sample(tmp_path_factory.mktemp("medmnist") / "toymnist.npz", split_sizes=(20, 6, 8))
