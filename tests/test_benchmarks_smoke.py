"""The benchmark scripts run end to end at toy sizes and write their JSON (no timing is asserted)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name: str) -> ModuleType:
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(autouse=True)
def _restore_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_step_overhead_smoke(tmp_path):
    args = ["--methods", "mse", "--image-size", "32", "--batch-size", "4", "--queue-size", "64", "--steps", "2"]
    args += ["--repeats", "1", "--warmup", "1", "--check-steps", "1", "--threads", "1", "--output-dir", str(tmp_path)]
    payload = load("step_overhead").main(args)
    assert set(payload["ratios"]) == {"moco_mse"} and payload["ratios"]["moco_mse"] > 0
    method = payload["methods"]["moco_mse"]
    assert method["loss_match"]["max_loss_diff"] < 1e-4  # the bare loop does the same math
    assert method["host_calls"]["per_step"] == 0  # nothing reads a tensor back inside a step
    assert json.loads((tmp_path / "step_overhead.json").read_text())["ratios"] == payload["ratios"]


def test_cka_smoke(tmp_path):
    args = ["--sizes", "600", "--dims", "8", "24", "--methods", "streaming-numpy", "streaming-torch", "numpy-gram"]
    args += ["--batch-rows", "200", "--in-process", "--threads", "1", "--output-dir", str(tmp_path)]
    payload = load("cka").main(args)
    streaming = [r for r in payload["results"] if r["method"].startswith("streaming")]
    assert len(streaming) == 4 and all(r["abs_diff"] < 1e-9 for r in streaming)
    assert payload["target"]["exact"] and "torch-cka" in payload["skipped"]
    assert (tmp_path / "cka.json").exists()


def test_data_pipeline_smoke(tmp_path):
    args = ["--presets", "nih", "--configs", "cache+loader w0", "--workers", "0", "--repeats", "1"]
    args += ["--max-batches", "2", "--patients", "12", "--source-size", "48", "--methods", "moco", "--threads", "1"]
    args += ["--data-dir", str(tmp_path), "--output-dir", str(tmp_path), "--rotation-sizes", "32"]
    payload = load("data_pipeline").main(args)
    assert set(payload["rotation_ms_per_view"][32]) == {"monai_RandRotated", "RandRotationd"}
    entry = payload["presets"]["nih"]["configs"]["cache+loader w0"]
    assert entry["correct"] and entry["loader_samples_per_s"] > 0 and entry["e2e_samples_per_s"] > 0
    assert payload["fastest_correct"]["nih"] == "cache+loader w0"
    assert (tmp_path / "data_pipeline.json").exists()


def test_gpu_throughput_cpu_smoke(tmp_path):
    module = load("gpu_throughput")
    if not torch.cuda.is_available():
        assert module.main(["--output-dir", str(tmp_path)])["skipped"]  # exits cleanly without a GPU
    args = [
        "--device",
        "cpu",
        "--smoke",
        "--methods",
        "mse",
        "--configs",
        "bf16-cl",
        "--e2e-configs",
        "fp32",
        "--threads",
        "1",
        "--output-dir",
        str(tmp_path),
    ]
    payload = module.main(args)
    results = payload["results"]["moco_mse"]
    assert results["model-only bf16-cl"]["images_per_s"] > 0 and results["end-to-end fp32"]["images_per_s"] > 0
    assert not payload["target"]["met"]  # never claimed on a CPU


def test_monitoring_overhead_smoke(tmp_path):
    args = ["--image-size", "32", "--batch-size", "4", "--queue-size", "64", "--steps", "3", "--knn-images", "16"]
    args += ["--health-samples", "8", "--repeats", "1", "--threads", "1", "--output-dir", str(tmp_path)]
    payload = load("monitoring_overhead").main(args)
    assert set(payload["epoch_share"]) == {"nih", "dr", "idc"} and payload["seconds_per_knn_image"] > 0
    assert json.loads((tmp_path / "monitoring_overhead.json").read_text())["target"] == 0.05


def test_end_to_end_smoke(tmp_path, capsys):
    args = ["--steps", "2", "--repeats", "1", "--warmup", "1", "--patients", "12", "--source-size", "48"]
    args += ["--image-size", "32", "--batch-size", "4", "--queue-size", "16", "--core-samples", "1", "--threads", "1"]
    args += ["--data-dir", str(tmp_path), "--output-dir", str(tmp_path)]
    payload = load("end_to_end").main(args)
    rates = payload["quick"]["samples_per_s"]
    assert set(rates) == {"in-memory", "device", "loader"} and all(rate > 0 for rate in rates.values())
    assert payload["ratio"] == rates["device"] / rates["in-memory"]
    assert payload["cache"]["uint8_grey_bytes"] == 112_120 * 512 * 512
    assert set(payload["loader_cores_512px"]) == {
        "loader (two views, cached image)",
        "device, cached (uint8 read)",
        "device, uncached (decode + resize)",
    }
    assert capsys.readouterr().out.rstrip().splitlines()[-1] == f"end-to-end ratio: {payload['ratio']:.3f}"
    assert json.loads((tmp_path / "end_to_end.json").read_text())["ratio"] == payload["ratio"]
