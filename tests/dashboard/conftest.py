"""Fixtures of the dashboard tests: generated results directories (good, empty, malformed)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dashboard.sample import SampleLayout, write_sample

APP = Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


@pytest.fixture(scope="session")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleLayout:
    """3 datasets x 4 methods x 3 fractions x 2 seeds, probing blocks, CKA (plain and block x block), KS, and
    pretraining logs (TensorBoard event files for five runs, metrics.csv for one)."""
    return write_sample(tmp_path_factory.mktemp("sample"))


@pytest.fixture(scope="session")
def empty_results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An existing results directory without any run."""
    path = tmp_path_factory.mktemp("empty") / "results"
    path.mkdir()
    return path


MALFORMED = {
    "broken.csv": "missing column(s)",
    "tampered-run.csv": "does not match the checksum",
    "badvalue.csv": "results column 'value'",
    "badjson.csv": "Expecting",
}


@pytest.fixture(scope="session")
def malformed(tmp_path_factory: pytest.TempPathFactory, sample: SampleLayout) -> Path:
    """A results directory with some good runs and one file for each kind of problem (see :data:`MALFORMED`),
    plus unreadable training logs next to it."""
    root = tmp_path_factory.mktemp("malformed")
    results = root / "results"
    results.mkdir()
    for name in ("finetune-nih-moco-s0", "finetune-nih-mse-s0", "probe-nih-moco-s0", "feature_reuse-nih-moco-s0"):
        for suffix in (".csv", ".json"):
            shutil.copy(sample.results_dir / f"{name}{suffix}", results / f"{name}{suffix}")
    (results / "broken.csv").write_text("garbage,,,\n1,2,3,4\n", encoding="utf-8")
    # a CSV edited after writing: its sidecar checksum no longer matches
    good = (sample.results_dir / "linear-nih-moco-s0.csv").read_text(encoding="utf-8")
    (results / "tampered-run.csv").write_text(
        good.replace("linear-nih-moco-s0", "tampered-run") + "\n", encoding="utf-8"
    )
    shutil.copy(sample.results_dir / "linear-nih-moco-s0.json", results / "tampered-run.json")
    # no sidecar, a non-numeric value
    lines = good.replace("linear-nih-moco-s0", "badvalue").splitlines()
    cells = lines[1].split(",")
    cells[7] = "abc"
    (results / "badvalue.csv").write_text("\n".join([lines[0], ",".join(cells)]) + "\n", encoding="utf-8")
    # a good CSV with an unreadable JSON sidecar
    (results / "badjson.csv").write_text(good.replace("linear-nih-moco-s0", "badjson"), encoding="utf-8")
    (results / "badjson.json").write_text("{not json", encoding="utf-8")
    logs = root / "pretrain"
    (logs / "moco_seed0").mkdir(parents=True)
    (logs / "moco_seed0" / "metrics.csv").write_text("step,tag\n0,loss\n", encoding="utf-8")
    (logs / "mse_seed0" / "tensorboard").mkdir(parents=True)
    (logs / "mse_seed0" / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"\x00not an event file" * 20)
    return results
