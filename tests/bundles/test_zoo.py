"""The MONAI model zoo's checks, written from its documented behaviour, on the shipped bundles and on a bundle
exported from a quick pretraining run of each data set.

What the zoo's CI checks (see ../shared/reference/monai_bundle_schema/README.md): metadata valid against the
official schema it names, ``models/model.pt`` present or listed in ``large_files.yml``, a new version that is a
key of the changelog, ``verify_net_in_out``, ``ckpt_export`` in script mode (and trace mode), the bundle's own
inference on data, the workflow's properties, and its pre-commit rules (JSON formatting, end of file, trailing
whitespace).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow, ckpt_export, verify_net_in_out
from monai.bundle import run as bundle_run
from packaging.version import Version

import monai_ilm
from monai_ilm.networks import MoCo, resnet_encoder
from monai_ilm.results import make_row, write_results
from tests.bundles.conftest import BUNDLE_DATA, BUNDLES_DIR, QUICK_NETWORK, SHARED_SCHEMAS

BUNDLES = sorted(BUNDLE_DATA)
SCHEMA_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/meta_schema_20240725.json"


def official_schema(url: str) -> dict:
    """The official schema file a metadata's ``schema`` URL names, from ../shared; skips where it is absent."""
    path = SHARED_SCHEMAS / url.rsplit("/", 1)[-1]
    if not path.is_file():
        pytest.skip(f"the official MONAI schema '{path}' is not available (it lives in ../shared)")
    return json.loads(path.read_text())


def schema_errors(metadata: dict) -> list[str]:
    import jsonschema

    schema = official_schema(metadata["schema"])
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [error.message for error in validator.iter_errors(metadata)]


def metadata_of(bundle: Path) -> dict:
    return json.loads((bundle / "configs" / "metadata.json").read_text())


@pytest.mark.parametrize("bundle", BUNDLES)
def test_shipped_metadata_validates_against_the_official_schema_it_names(bundle):
    metadata = metadata_of(BUNDLES_DIR / bundle)
    assert metadata["schema"] == SCHEMA_URL
    assert schema_errors(metadata) == []
    assert metadata["version"] in metadata["changelog"]
    assert metadata["required_packages_version"]["monai-ilm"] == monai_ilm.__version__
    # the shipped recipe is ResNet-50: (N, 3, H, W) -> (N, 2048), no spatial axes
    pred = metadata["network_data_format"]["outputs"]["pred"]
    assert pred["num_channels"] == 2048 and pred["spatial_shape"] == []


def test_official_schema_rejects_the_old_metadata_layout():
    """The defect of issue 15: metadata naming the 2022 schema lacked its required optional_packages_version."""
    metadata = metadata_of(BUNDLES_DIR / "nih_chestxray_ilm")
    metadata["schema"] = SCHEMA_URL.replace("20240725", "20220324")
    assert any("optional_packages_version" in message for message in schema_errors(metadata))
    del metadata["copyright"]
    metadata["schema"] = SCHEMA_URL
    assert any("copyright" in message for message in schema_errors(metadata))


@pytest.mark.parametrize("bundle", BUNDLES)
def test_exported_bundle_layout_version_and_metadata(bundle, exported_bundles):
    exported = exported_bundles[bundle]
    assert {p.name for p in exported.iterdir()} == {
        "configs",
        "docs",
        "models",
        "LICENSE",
        "large_files.yml",
        ".gitignore",
    }
    for name in (
        "configs/inference.json",
        "configs/metadata.json",
        "docs/README.md",
        "models/model.pt",
        "models/model.ts",
    ):
        assert (exported / name).is_file(), name
    metadata, shipped = metadata_of(exported), metadata_of(BUNDLES_DIR / bundle)
    assert schema_errors(metadata) == []
    assert Version(metadata["version"]) > Version(shipped["version"])
    assert metadata["version"] in metadata["changelog"] and "mse_seed0" in metadata["changelog"][metadata["version"]]
    # the quick recipe: ResNet-18 at 64 px (volumes: ResNet-10 at 28^3 voxels), 512 features
    channels, *spatial = QUICK_NETWORK[bundle][2]
    assert metadata["network_data_format"]["inputs"]["image"]["spatial_shape"] == spatial
    assert metadata["network_data_format"]["inputs"]["image"]["num_channels"] == channels
    assert metadata["network_data_format"]["outputs"]["pred"]["num_channels"] == 512
    # large_files.yml lists both weight files with their md5, as the zoo downloads and checks them
    listed = (exported / "large_files.yml").read_text()
    for name in ("models/model.pt", "models/model.ts"):
        assert f'path: "{name}"' in listed and hashlib.md5((exported / name).read_bytes()).hexdigest() in listed
    inference = json.loads((exported / "configs" / "inference.json").read_text())
    assert inference["network_def"]["f"] == "$os.path.join(@bundle_root, 'models', 'model.ts')"


@pytest.mark.parametrize("bundle", BUNDLES)
def test_exported_bundle_net_in_out_and_torchscript_script_and_trace(
    bundle, exported_bundles, quick_mse_runs, tmp_path
):
    exported = exported_bundles[bundle]
    meta, config = str(exported / "configs" / "metadata.json"), str(exported / "configs" / "inference.json")
    # as the zoo's ci/verify_bundle.py calls them: with the bundle's folder as bundle_root
    root = str(exported)
    verify_net_in_out(net_id="network_def", meta_file=meta, config_file=config, device="cpu", bundle_root=root)
    traced = tmp_path / "model_trace.ts"
    ckpt_export(
        net_id="network_def",
        filepath=str(traced),
        ckpt_file=str(exported / "models" / "model.pt"),
        meta_file=meta,
        config_file=config,
        use_trace=True,
        input_shape=[1, *QUICK_NETWORK[bundle][2]],
        bundle_root=root,
    )
    # the reference: the full pretraining network, eager, with the run's own weights
    backbone, spatial_dims, shape = QUICK_NETWORK[bundle]
    eager = MoCo(resnet_encoder(backbone, spatial_dims, shape[0]), queue_size=256).eval()
    run_weights = quick_mse_runs[bundle] / "pretrain" / "mse_seed0" / "models" / "model.pt"
    eager.load_state_dict(torch.load(run_weights, map_location="cpu", weights_only=True))
    x = torch.rand(3, *shape)
    scripted = torch.jit.load(str(exported / "models" / "model.ts"))  # written by the export in script mode
    assert isinstance(scripted, torch.jit.RecursiveScriptModule) and hasattr(scripted, "embed")
    with torch.no_grad():
        for exported_model in (scripted, torch.jit.load(str(traced))):
            torch.testing.assert_close(exported_model(x), eager(x), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(scripted.embed(x), eager.projector_q(eager(x)), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_exported_bundle_infers_on_sample_data_with_complete_properties(
    bundle, exported_bundles, bundle_data, tmp_path
):
    exported = exported_bundles[bundle]
    arguments = {
        "config_file": str(exported / "configs" / "inference.json"),
        "logging_file": False,
        "meta_file": str(exported / "configs" / "metadata.json"),
        "bundle_root": str(exported),
        "dataset_dir": str(bundle_data[bundle]),
        "output_dir": str(tmp_path),
        "num_workers": 0,
    }
    workflow = ConfigWorkflow(workflow_type="infer", **arguments)
    workflow.initialize()
    assert not workflow.check_properties()
    bundle_run(**arguments)
    lines = [line.split(",") for line in (tmp_path / "embeddings.csv").read_text().splitlines()]
    embeddings = np.array([[float(v) for v in line[1:]] for line in lines])
    # one line per image file of the data set, each with the 512-d ResNet-18 representation
    suffixes = (".png", ".jpg", ".jpeg", ".nii", ".nii.gz")
    images = {str(p) for p in bundle_data[bundle].rglob("*") if p.name.lower().endswith(suffixes)}
    assert {line[0] for line in lines} == images and embeddings.shape == (len(images), 512)
    assert np.isfinite(embeddings).all()


def test_export_fills_performance_from_the_runs_rows_only(quick_mse_runs, tmp_path):
    from monai_ilm.export import export_bundle

    run = quick_mse_runs["nih_chestxray_ilm"] / "pretrain" / "mse_seed0"
    results = tmp_path / "results"
    common = {"dataset": "nih", "method": "mse", "label_fraction": 0.01, "metric": "mean_auc", "n": 40}
    write_results(
        results,
        [
            make_row(
                **common,
                protocol="linear",
                seed=0,
                value=0.6125,
                ci_low=0.51,
                ci_high=0.70,
                run_id="linear_mse_s0",
                checkpoint=str(run / "models" / "model.pt"),
            )
        ],
    )
    write_results(
        results,
        [
            make_row(
                **common,
                protocol="linear",
                seed=1,
                value=0.7777,
                run_id="linear_mse_s1",
                checkpoint="elsewhere/mse_seed1/models/model.pt",
            )
        ],
    )  # another seed's run
    write_results(
        results,
        [make_row(**{**common, "method": "moco"}, protocol="linear", seed=0, value=0.4444, run_id="linear_moco_s0")],
    )  # another method
    write_results(
        results,
        [
            make_row(
                **common,
                protocol="linear",
                seed=None,
                value=0.6951,
                kind="seed_mean",
                seeds="0,1",
                run_id="summary_linear_mse",
            )
        ],
    )
    exported = export_bundle("nih_chestxray_ilm", run, tmp_path / "export", results_dir=results, image_size=64)
    readme = (exported / "docs" / "README.md").read_text()
    performance = readme.split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert "`mse_seed0`" in performance and "0.6125" in performance and "0.5100 - 0.7000" in performance
    assert "0.6951" in performance and "0,1" in performance
    assert "0.7777" not in performance and "0.4444" not in performance
    assert metadata_of(exported)["eval_metrics"] == {"linear_0.01_mean_auc": 0.6125}
    assert schema_errors(metadata_of(exported)) == []


def test_export_without_results_gives_no_numbers(quick_mse_runs, tmp_path):
    from monai_ilm.export import export_bundle

    run = quick_mse_runs["nih_chestxray_ilm"] / "pretrain" / "mse_seed0"
    exported = export_bundle(
        "nih_chestxray_ilm", run, tmp_path / "export", results_dir=tmp_path / "none", image_size=64
    )
    performance = (exported / "docs" / "README.md").read_text().split("## Performance", 1)[1].split("\n## ", 1)[0]
    assert "no numbers are given" in performance and "|" not in performance
    assert "eval_metrics" not in metadata_of(exported)


def bundle_files(root: Path) -> list[Path]:
    text = {".json", ".md", ".txt", ".conf", ".yml", ""}
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix in text)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_pre_commit_rules_json_format_end_of_file_trailing_whitespace(bundle, exported_bundles):
    for root in (BUNDLES_DIR / bundle, exported_bundles[bundle]):
        files = bundle_files(root)
        assert any(p.name == "LICENSE" for p in files)
        for path in files:
            text = path.read_text()
            # end-of-file-fixer: exactly one newline at the end; trailing-whitespace: none on any line
            assert text.endswith("\n") and not text.endswith("\n\n"), path
            assert not [n for n, line in enumerate(text.splitlines(), 1) if line != line.rstrip()], path
            if path.suffix == ".json":  # pretty-format-json --no-sort-keys --indent 4
                assert text == json.dumps(json.loads(text), indent=4) + "\n", path


@pytest.mark.parametrize("bundle", BUNDLES)
def test_licence_is_the_full_apache_text(bundle):
    text = (BUNDLES_DIR / bundle / "LICENSE").read_text()
    for heading in (
        "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION",
        "1. Definitions.",
        "4. Redistribution.",
        "9. Accepting Warranty or Additional Liability.",
        "END OF TERMS AND CONDITIONS",
        "APPENDIX: How to apply the Apache License to your work.",
    ):
        assert heading in text, heading


def test_exported_volume_inference_equals_monai_ilm_preprocessing_and_network(exported_bundles, bundle_data, tmp_path):
    """The exported 3D ``inference.json`` (MONAI transforms and TorchScript only) gives, for each NIfTI file, the
    representation of monai-ilm's own evaluation preprocessing through the eager query network."""
    from monai_ilm.networks import MoCoQueryNetwork
    from monai_ilm.transforms import eval_transforms

    bundle = "ct_mr_volumes_ilm"
    exported, data = exported_bundles[bundle], bundle_data[bundle]
    bundle_run(
        config_file=str(exported / "configs" / "inference.json"),
        logging_file=False,
        meta_file=str(exported / "configs" / "metadata.json"),
        bundle_root=str(exported),
        dataset_dir=str(data),
        output_dir=str(tmp_path),
        num_workers=0,
    )
    lines = [line.split(",") for line in (tmp_path / "embeddings.csv").read_text().splitlines()]
    paths = [line[0] for line in lines]
    assert len(paths) == len(list(data.rglob("*.nii.gz")))
    backbone, spatial_dims, shape = QUICK_NETWORK[bundle]
    network = MoCoQueryNetwork(resnet_encoder(backbone, spatial_dims, shape[0]), 128, "linear").eval()
    network.load_state_dict(torch.load(exported / "models" / "model.pt", map_location="cpu", weights_only=True))
    transform = eval_transforms("volumes", image_size=shape[-1], channels=shape[0])
    with torch.no_grad():
        reference = network(torch.stack([transform({"image": path})["image"] for path in paths])).numpy()
    embeddings = np.array([[float(v) for v in line[1:]] for line in lines])
    # the same MONAI operations in both (nibabel, RAS, min-max, trilinear resize): float32 rounding only
    np.testing.assert_allclose(embeddings, reference, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_exported_readme_describes_the_input_the_network_takes(bundle, exported_bundles):
    """The exported README's Input section gives the network's input shape and what its files are: NIfTI volumes
    resized trilinearly for the 3D bundle, image files with a centred crop for the 2D ones."""
    readme = (exported_bundles[bundle] / "docs" / "README.md").read_text()
    section = readme.split("## Input", 1)[1].split("\n## ", 1)[0]
    shape = " x ".join(str(n) for n in QUICK_NETWORK[bundle][2])
    assert f"`image`: {shape} float32" in section
    volumes = QUICK_NETWORK[bundle][1] == 3
    assert ("NIfTI volumes" in section) is volumes and ("image files" in section) is not volumes
    assert ("resized trilinearly" in section) is volumes and ("centred" in section) is not volumes


@pytest.mark.parametrize("bundle", BUNDLES)
def test_exported_requirements_name_the_reader_of_its_files(bundle, exported_bundles):
    """The exported inference reads NIfTI with MONAI's NibabelReader (3D) or image files with its PILReader (2D):
    ``required_packages_version`` names that reader's package, so the zoo's CI installs it, and not the other."""
    metadata = json.loads((exported_bundles[bundle] / "configs" / "metadata.json").read_text())
    required = metadata["required_packages_version"]
    inference = (exported_bundles[bundle] / "configs" / "inference.json").read_text()
    volumes = QUICK_NETWORK[bundle][1] == 3
    assert ("NibabelReader" in inference) is volumes
    assert ("nibabel" in required) is volumes and ("pillow" in required) is not volumes, required
