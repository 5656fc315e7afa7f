"""``python -m monai_ilm preflight``: the NIH bundle's real pretraining at full size, and the problems it names."""

from __future__ import annotations

import pytest
import torch

from monai_ilm.cli import main
from monai_ilm.data.synthetic import make_nih_sample
from monai_ilm.preflight import run_preflight, sample_rows

BUNDLE = "nih_chestxray_ilm"
# small settings for the checks that need a run but not its size (the full-size run is its own test)
SMALL = {
    "backbone": "resnet18",
    "image_size": 64,
    "batch_size": 4,
    "queue_size": 256,
    "num_workers": 0,
    "mse_pool_sizes": [8, 4, 2, 1],
    "knn_bank_size": 16,
    "knn_val_size": 8,
    "health_samples": 8,
}


@pytest.fixture(scope="module")
def small_data(tmp_path_factory):
    return make_nih_sample(tmp_path_factory.mktemp("nih64"), n_patients=20, image_size=64, seed=0)


@pytest.fixture(scope="module")
def full_size_data(tmp_path_factory):
    # 80 patients x 2 images: 110 training and 18 validation images in the official split, one batch of 16 each
    return make_nih_sample(tmp_path_factory.mktemp("nih512"), n_patients=80, images_per_patient=2, image_size=512)


def preflight_cli(capsys, *args: str) -> tuple[int, str]:
    try:
        main(["preflight", "--bundle", BUNDLE, *args])
        code = 0
    except SystemExit as exit_:
        code = exit_.code
    return code, capsys.readouterr().out


def torchvision_resnet50_without_fc() -> int:
    from torchvision.models import resnet50

    net = resnet50()
    return sum(p.numel() for p in net.parameters()) - sum(p.numel() for p in net.fc.parameters())


@pytest.mark.slow
def test_nih_bundle_at_full_size_with_bf16_channels_last_and_compile(full_size_data, tmp_path, capsys):
    """ResNet-50, 512 px, batch 16 (pretrain.json), with the GPU speed settings forced on, one iteration on CPU.

    ``compile`` uses torch.compile's eager backend here: Inductor's first step of a tiny ResNet-18 MoCo took
    388 s on this 2-core machine (tests/engines/test_compile.py compares compiled and eager losses).
    """
    runs = tmp_path / "runs"
    settings = {
        "amp": True,
        "channels_last": True,
        "compile": True,
        "train#trainer#compile_kwargs": {"backend": "eager"},
    }
    report = run_preflight(BUNDLE, full_size_data, settings, iterations=1, output_dir=runs)
    text = "\n".join(report.lines())
    assert report.ok, text
    s, m, f = report.settings, report.model, report.figures
    assert (s["backbone"], s["image_size"], s["batch_size"], s["amp_dtype"]) == ("resnet50", 512, 16, "bfloat16")
    assert s["amp"] and s["channels_last"] and s["compile"]
    # the query encoder is torchvision's ResNet-50 without its classifier, plus the 2048 -> 128 linear head
    assert m["query_parameters"] == torchvision_resnet50_without_fc() + 2048 * 128 + 128
    n_train = report.data["train_images"]
    assert (n_train, report.data["val_images"]) == (110, 18)
    assert f["cache_bytes"] == n_train * 512 * 512  # one uint8 grey channel per X-ray
    assert f["iterations_per_epoch"] == n_train // 16
    assert f["loader_samples_per_s"] > 0 and f["step_samples_per_s"] > 0 and 0 <= f["data_wait_share"] <= 1
    assert f["run_s"] > 100 * f["epoch_s"]  # 100 epochs plus validation and kNN
    assert f["host_peak_bytes"] > 0 and "device_peak_bytes" not in f  # no CUDA here
    assert not runs.exists()  # the real run's folder is only checked, never written
    for line in ("model:", "input:", "host mem:", "throughput:", "data wait:", "estimate:", "cache:", "preflight: OK"):
        assert line in text


def test_a_bad_setting_exits_non_zero_naming_it(small_data, capsys):
    code, out = preflight_cli(capsys, "--dataset_dir", str(small_data), "--set", "batch_size=0")
    assert code == 1
    assert "PROBLEM [batch_size] batch_size: expected an integer of at least 1, got 0." in out
    assert out.rstrip().endswith("preflight: FAILED (fix the settings named above)")


def test_an_unknown_setting_is_named(small_data, capsys):
    code, out = preflight_cli(capsys, "--dataset_dir", str(small_data), "--set", "batchsize=8")
    assert code == 1 and "PROBLEM [batchsize] --set batchsize: expected a setting of the bundle" in out


def test_validation_that_never_runs_is_a_problem(small_data, capsys):
    args = ["--dataset_dir", str(small_data), "--set", "max_epochs=2", "--set", "val_interval=3"]
    args += [item for key, value in SMALL.items() for item in ("--set", f"{key}={value}")]
    args += ["--set", "batch_size=64"]  # and a batch larger than the 30 training images: no run starts
    code, out = preflight_cli(capsys, *args)
    assert code == 1
    assert "PROBLEM [val_interval] 3 > max_epochs 2" in out
    assert "PROBLEM [batch_size] loading the datalists: train split: has 30 images, fewer than batch_size 64" in out
    assert "throughput:" not in out


@pytest.mark.slow
def test_out_of_memory_in_the_step_names_batch_size(small_data, tmp_path, monkeypatch):
    from monai_ilm.engines import MoCoTrainer

    def out_of_memory(self, engine, batch):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(MoCoTrainer, "_iteration", out_of_memory)
    report = run_preflight(BUNDLE, small_data, SMALL, iterations=1, output_dir=tmp_path)
    assert not report.ok
    (problem,) = [p for p in report.problems if p.stops]
    assert problem.setting == "batch_size" and "out of memory on CPU at batch 4, 64 px (training)" in problem.message
    assert "lower batch_size (e.g. 2)" in problem.message


def test_a_failing_step_is_reported_by_its_own_error_not_the_config_expression(small_data, tmp_path, monkeypatch):
    from monai_ilm.engines import MoCoTrainer

    def disk_full(self, engine, batch):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(MoCoTrainer, "_iteration", disk_full)
    report = run_preflight(BUNDLE, small_data, SMALL, iterations=1, output_dir=tmp_path)
    (problem,) = [p for p in report.problems if p.stops]
    assert "No space left on device" in problem.message and "__local_refs" not in problem.message


@pytest.mark.slow
def test_a_cache_larger_than_memory_is_a_problem(small_data, tmp_path, monkeypatch):
    import monai_ilm.preflight as preflight

    monkeypatch.setattr(preflight, "_available_memory", lambda: 2**16)  # 64 KiB; the 30 images take 30 x 64 x 64 B
    report = run_preflight(BUNDLE, small_data, {**SMALL, "cache": "memory"}, iterations=1, output_dir=tmp_path)
    assert not report.ok and report.figures["cache_bytes"] == 30 * 64 * 64
    cache = next(p for p in report.problems if p.setting == "cache")
    assert cache.stops and "'memory' needs 0.1 MiB" in cache.message and "set cache 'auto'" in cache.message


def test_sample_rows_keeps_order_and_size():
    rows = list(range(100))
    picked = sample_rows(rows, 16, seed=3)
    assert len(picked) == len(set(picked)) == 16 and picked == sorted(picked)
    assert sample_rows(rows, 16, seed=3) == picked and sample_rows(rows, 500) == rows
