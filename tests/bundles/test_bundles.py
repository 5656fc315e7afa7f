"""Every bundle's recipes run, validate and export as a MONAI bundle should."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigWorkflow
from monai.bundle import run as bundle_run

from tests.bundles.conftest import BUNDLE_DATA, BUNDLES_DIR
from tests.helpers import CollectLogs, error_chain

BUNDLES = sorted(BUNDLE_DATA)


def configs(bundle: str, *names: str) -> list[str]:
    return [str(BUNDLES_DIR / bundle / "configs" / name) for name in names]


def run_pretrain(bundle: str, data: Path, output: Path, **overrides) -> None:
    bundle_run(
        config_file=configs(bundle, "pretrain.json", "quick.json"),
        meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"),
        logging_file=False,
        bundle_root=str(BUNDLES_DIR / bundle),
        dataset_dir=str(data),
        output_dir=str(output),
        **overrides,
    )


@pytest.mark.slow
@pytest.mark.parametrize("bundle", BUNDLES)
@pytest.mark.parametrize("method", ["moco", "mse", "barlow"])
def test_quick_pretraining_writes_checkpoints(bundle, method, bundle_data, tmp_path, request):
    # two epochs of three iterations: enough to exercise validation, checkpoints and the final save; the MSE run
    # is the session's shared one (the zoo checks export it)
    if method == "mse":
        tmp_path = request.getfixturevalue("quick_mse_runs")[bundle]
    else:
        run_pretrain(bundle, bundle_data[bundle], tmp_path, method=method, epoch_length=3)
    models = tmp_path / "pretrain" / f"{method}_seed0" / "models"
    final = torch.load(models / "checkpoint_final.pt", map_location="cpu", weights_only=True)
    assert {"network", "optimizer", "trainer"} <= set(final)
    assert ("intermediate_loss" in final) == (method != "moco")
    assert {"queue", "queue_ptr"} <= set(final["network"])
    trainer = final["trainer"]
    assert trainer["max_epochs"] == 2 and trainer["iteration"] == 2 * trainer["epoch_length"]
    assert (models / "model.pt").exists()
    assert list((tmp_path / "pretrain" / f"{method}_seed0" / "tensorboard").glob("events.out.tfevents.*"))


def train_workflow(bundle: str, data: Path, output: Path, **overrides) -> ConfigWorkflow:
    """The bundle's quick pretraining as an initialised ``ConfigWorkflow``."""
    workflow = ConfigWorkflow(
        config_file=configs(bundle, "pretrain.json", "quick.json"),
        meta_file=str(BUNDLES_DIR / bundle / "configs" / "metadata.json"),
        logging_file=False,
        workflow_type="train",
        bundle_root=str(BUNDLES_DIR / bundle),
        dataset_dir=str(data),
        output_dir=str(output),
        **overrides,
    )
    workflow.initialize()
    return workflow


def test_train_properties_are_complete(bundle_data, tmp_path):
    workflow = train_workflow("nih_chestxray_ilm", bundle_data["nih_chestxray_ilm"], tmp_path)
    assert workflow.check_properties() == []


@pytest.mark.parametrize("bundle", BUNDLES)
def test_metadata_names_image_in_and_pred_out(bundle):
    metadata = json.loads(Path(configs(bundle, "metadata.json")[0]).read_text())
    assert metadata["version"] in metadata["changelog"]
    assert "monai-ilm" in metadata["required_packages_version"]
    fmt = metadata["network_data_format"]
    assert list(fmt["inputs"]) == ["image"] and list(fmt["outputs"]) == ["pred"]


# the zoo's checks (verify_net_in_out, TorchScript export, inference) run on exported bundles: test_zoo.py


@pytest.mark.parametrize("bundle", BUNDLES)
def test_training_loader_gives_new_augmentations_every_epoch(bundle, bundle_data, tmp_path):
    """The recipe's DataLoader (0 workers in quick.json) and device stage draw fresh views each pass, none replayed."""
    workflow = train_workflow(bundle, bundle_data[bundle], tmp_path)
    loader = workflow.parser.get_parsed_content("train#dataloader")
    augment = workflow.parser.get_parsed_content("train#trainer").augment  # augment_on: "device"
    passes = []
    for _ in range(2):
        views = [view for batch in loader for view in augment(batch["image"])[0]]
        passes.append({view.numpy().tobytes() for view in views})
        assert len(passes[-1]) == len(views)
    assert not passes[0] & passes[1]


@pytest.mark.slow
def test_speed_options_run_and_log_every_log_interval(bundle_data, tmp_path):
    """bf16 autocast, channels_last, torch.compile (eager backend: no C++ compiler needed) and a logging interval."""
    bundle = "nih_chestxray_ilm"
    workflow = train_workflow(
        bundle,
        bundle_data[bundle],
        tmp_path,
        method="mse",
        max_epochs=1,
        epoch_length=5,
        amp=True,
        channels_last=True,
        compile=True,
        log_interval=2,
        **{"train#trainer#compile_kwargs": {"backend": "eager"}},
    )
    logs, logger = CollectLogs(), logging.getLogger("train")
    logger.addHandler(logs)
    try:
        workflow.run()
    finally:
        logger.removeHandler(logs)
    trainer = workflow.parser.get_parsed_content("train#trainer")
    network = workflow.parser.get_parsed_content("network_def")
    assert trainer.network is not network and trainer.network._orig_mod is network  # compiled, same weights
    assert trainer.amp and trainer.amp_kwargs == {"dtype": torch.bfloat16} and trainer.scaler is None
    assert network.encoder_q.net.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    logged = [message for message in logs.messages if "Iter:" in message]
    assert [m.split("Iter: ")[1].split(" ")[0] for m in logged] == ["2/5", "4/5"], logged
    final = torch.load(tmp_path / "pretrain" / "mse_seed0" / "models" / "checkpoint_final.pt", weights_only=True)
    assert not any("_orig_mod" in key for key in final["network"])


@pytest.mark.slow
def test_compact_cache_on_disk_is_written_under_cache_dir_and_reused_by_a_later_run(bundle_data, tmp_path):
    """``cache: "disk"``: the first run fills one uint8 ``.npy`` under ``cache_dir``, a later run maps it as it is."""
    from monai_ilm.data import CompactCacheDataset

    bundle, cache_dir = "diabetic_retinopathy_ilm", tmp_path / "cache"
    settings = {"method": "moco", "max_epochs": 1, "epoch_length": 2, "knn_interval": 0}
    default = train_workflow(bundle, bundle_data[bundle], tmp_path / "default", **settings)
    in_memory = default.parser.get_parsed_content("train#dataset")
    assert isinstance(in_memory, CompactCacheDataset) and not in_memory.on_disk  # "auto": small data stays in memory
    settings |= {"cache": "disk", "cache_dir": str(cache_dir)}
    run_pretrain(bundle, bundle_data[bundle], tmp_path / "first", **settings)
    assert (tmp_path / "first" / "pretrain" / "moco_seed0" / "models" / "checkpoint_final.pt").exists()
    (array,) = cache_dir.glob("compact_*.npy")
    assert sorted(p.name for p in cache_dir.iterdir()) == sorted([array.name, array.with_suffix(".extras.pt").name])
    assert np.load(array, mmap_mode="r").shape == (len(in_memory), 3, 64, 64)
    written = (array.stat().st_ino, array.stat().st_mtime_ns)

    second = train_workflow(bundle, bundle_data[bundle], tmp_path / "second", **settings)
    dataset = second.parser.get_parsed_content("train#dataset")
    assert dataset.on_disk and dataset.path == array and isinstance(dataset.images, np.memmap)
    assert (array.stat().st_ino, array.stat().st_mtime_ns) == written  # mapped as it is, not filled again
    assert all(torch.equal(dataset[i]["image"], in_memory[i]["image"]) for i in range(len(dataset)))
    second.run()
    assert (tmp_path / "second" / "pretrain" / "moco_seed0" / "models" / "checkpoint_final.pt").exists()
    assert len(list(cache_dir.iterdir())) == 2


# a run killed with SIGKILL resumes with the same command: tests/reliability/test_bundle.py (one shared run)


def test_wrong_dataset_dir_stops_with_a_clear_message(tmp_path):
    with pytest.raises(Exception) as error:
        run_pretrain("nih_chestxray_ilm", tmp_path / "missing", tmp_path / "out")
    assert "dataset_dir" in error_chain(error.value) and "Data_Entry_2017" in error_chain(error.value)
    assert not (tmp_path / "out" / "pretrain").exists()


def test_method_typo_stops_with_a_clear_message(bundle_data, tmp_path):
    with pytest.raises(Exception) as error:
        run_pretrain("nih_chestxray_ilm", bundle_data["nih_chestxray_ilm"], tmp_path, method="mes")
    assert "method" in error_chain(error.value) and "'mse'" in error_chain(error.value)
    assert not list(tmp_path.rglob("*.pt"))


def test_missing_metadata_table_stops_with_a_clear_message(bundle_data, tmp_path):
    import shutil

    data = tmp_path / "nih"
    shutil.copytree(bundle_data["nih_chestxray_ilm"], data)
    (data / "Data_Entry_2017_v2020.csv").unlink()
    with pytest.raises(Exception) as error:
        run_pretrain("nih_chestxray_ilm", data, tmp_path / "out")
    assert "Data_Entry_2017" in error_chain(error.value)


@pytest.mark.parametrize("bundle", BUNDLES)
def test_recipes_only_target_known_packages(bundle):
    allowed = ("monai_ilm.", "torch.", "ignite.", "monai.")
    monai_short_names = {
        "CacheDataset",
        "DataLoader",
        "Dataset",
        "SimpleInferer",
        "ValidationHandler",
        "StatsHandler",
        "TensorBoardStatsHandler",
        "CheckpointSaver",
        "CheckpointLoader",
        "DistributedSampler",
        "SupervisedEvaluator",
    }

    def targets(node):
        if isinstance(node, dict):
            if "_target_" in node:
                yield node["_target_"]
            for value in node.values():
                yield from targets(value)
        elif isinstance(node, list):
            for value in node:
                yield from targets(value)

    for path in (BUNDLES_DIR / bundle / "configs").glob("*.json"):
        for target in targets(json.loads(path.read_text())):
            assert target.startswith(allowed) or target in monai_short_names, (path.name, target)
    assert not (BUNDLES_DIR / bundle / "scripts").exists()
