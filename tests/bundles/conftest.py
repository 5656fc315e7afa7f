"""Generated data sets in the published layouts, one quick pretraining run and one exported bundle per data set,
shared by the bundle tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from monai_ilm.data.synthetic import make_dr_sample, make_idc_sample, make_nih_sample, make_volume_csv_sample

BUNDLES_DIR = Path(__file__).resolve().parents[2] / "bundles"
SHARED_SCHEMAS = (Path(__file__).resolve().parents[2] / ".." / "shared" / "reference" / "monai_bundle_schema").resolve()
BUNDLE_DATA = {
    "nih_chestxray_ilm": lambda root: make_nih_sample(root, n_patients=30, image_size=64, seed=0),
    "breast_histopathology_ilm": lambda root: make_idc_sample(root, n_patients=12, patches_per_patient=10, seed=0),
    "diabetic_retinopathy_ilm": lambda root: make_dr_sample(root, n_patients=40, image_size=64, seed=0),
    # a NIfTI folder with a labels CSV: what users bring (the MedMNIST 3D route is the experiment's, on real data)
    "ct_mr_volumes_ilm": lambda root: make_volume_csv_sample(
        root, n_patients=40, volumes_per_patient=3, volume_size=16, seed=0
    ),
}

# what each bundle's quick.json trains, written out here rather than read from the configs under test:
# (backbone, spatial dimensions, input shape without the batch axis)
QUICK_NETWORK = {
    "nih_chestxray_ilm": ("resnet18", 2, (3, 64, 64)),
    "breast_histopathology_ilm": ("resnet18", 2, (3, 64, 64)),
    "diabetic_retinopathy_ilm": ("resnet18", 2, (3, 64, 64)),
    "ct_mr_volumes_ilm": ("resnet10", 3, (1, 28, 28, 28)),
}


@pytest.fixture(scope="session")
def bundle_data(tmp_path_factory) -> dict[str, Path]:
    roots = {}
    for bundle, make in BUNDLE_DATA.items():
        root = tmp_path_factory.mktemp(bundle) / "data"
        make(root)
        roots[bundle] = root
    return roots


@pytest.fixture(scope="session")
def quick_mse_runs(bundle_data, tmp_path_factory) -> dict[str, Path]:
    """One quick MoCo+MSE pretraining per bundle (two epochs of three iterations): ``{bundle: output_dir}``."""
    from monai.bundle import run as bundle_run

    outputs = {}
    for bundle in BUNDLE_DATA:
        output = tmp_path_factory.mktemp(f"{bundle}_run")
        configs = BUNDLES_DIR / bundle / "configs"
        bundle_run(
            config_file=[str(configs / "pretrain.json"), str(configs / "quick.json")],
            meta_file=str(configs / "metadata.json"),
            logging_file=False,
            bundle_root=str(BUNDLES_DIR / bundle),
            dataset_dir=str(bundle_data[bundle]),
            output_dir=str(output),
            method="mse",
            epoch_length=3,
        )
        outputs[bundle] = output
    return outputs


@pytest.fixture(scope="session")
def exported_bundles(quick_mse_runs, tmp_path_factory) -> dict[str, Path]:
    """The bundle exported from each quick run (``python -m monai_ilm export``): ``{bundle: bundle folder}``."""
    from monai_ilm.export import export_bundle

    return {
        bundle: export_bundle(
            bundle,
            output / "pretrain" / "mse_seed0",
            tmp_path_factory.mktemp(bundle) / "export",
            image_size=QUICK_NETWORK[bundle][2][-1],
        )
        for bundle, output in quick_mse_runs.items()
    }
