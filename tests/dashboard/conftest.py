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
    "tampered-run.csv": "expected the checksum in its .json sidecar",
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
    for name in (
        "finetune-nih-moco-s0-f1pct",
        "finetune-nih-mse-s0-f1pct",
        "probe-nih-moco-s0",
        "feature_reuse-nih-moco-s0",
    ):
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
    (results / "broken.embeddings.npz").write_bytes(b"not a zip file")
    logs = root / "pretrain"
    (logs / "moco_seed0").mkdir(parents=True)
    (logs / "moco_seed0" / "metrics.csv").write_text("step,tag\n0,loss\n", encoding="utf-8")
    (logs / "mse_seed0" / "tensorboard").mkdir(parents=True)
    (logs / "mse_seed0" / "tensorboard" / "events.out.tfevents.1.host").write_bytes(b"\x00not an event file" * 20)
    return results


@pytest.fixture(scope="session")
def demo_like(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Results shaped like ``python -m monai_ilm demo`` output: sidecars with the runner's metadata (sample data
    directory, quick settings, code version), the 4 x 4 linear CKA matrix of collapsed features, KS, NIH
    per-finding AUCs, the runner's summary rows, and a pretraining run with its record and health logs."""
    import json

    from monai_ilm.results import make_row, read_results, write_results
    from monai_ilm.results.summaries import runs_stamp

    root = tmp_path_factory.mktemp("demo")
    results = root / "results"
    (root / "sample_data" / "nih").mkdir(parents=True)
    pretraining = {
        "fingerprint": "e062185952796f2d",
        "status": "done",
        "settings": {
            "method": "moco",
            "seed": 0,
            "backbone": "resnet18",
            "image_size": 64,
            "max_epochs": 2,
            "queue_size": 256,
            "temperature": 0.07,
            "mse_weights": [0.25] * 4,
        },
        "code_version": {
            "git_commit": "1739c5f4",
            "monai": "1.6.1",
            "monai_ilm": "0.1.0",
            "torch": "2.14.1",
            "python": "3.11.7",
        },
    }
    common = {"dataset": "nih", "seed": 0, "n": 36, "timestamp": "2026-01-01T00:00:00+00:00"}

    def write(run_id: str, rows: list[dict], protocol: str) -> None:
        meta = {
            "fingerprint": "f" * 16,
            "settings": {"image_size": 64, "max_epochs": 3, "protocol": protocol},
            "dataset_dir": str(root / "sample_data" / "nih"),
            "pretraining": pretraining,
            "code_version": pretraining["code_version"],
            "device": "cpu",
            "seconds": 3.2,
            "seed": 0,
        }
        write_results(results, [make_row(**common, run_id=run_id, **r) for r in rows], meta)

    for method, auc in (("moco", 0.55), ("mse", 0.60)):
        finetune = [
            {
                "method": method,
                "protocol": "finetune",
                "label_fraction": f,
                "metric": "mean_auc",
                "value": auc,
                "ci_low": auc - 0.1,
                "ci_high": auc + 0.1,
            }
            for f in (0.06, 1.0)
        ]
        finetune += [
            {
                "method": method,
                "protocol": "finetune",
                "label_fraction": 0.06,
                "metric": f"auc_{finding}",
                "value": auc + d,
            }
            for finding, d in (("Effusion", 0.05), ("Mass", -0.02))
        ]
        write(f"nih-finetune-{method}-seed0-frac0.06", finetune, "finetune")
        cka = [
            {
                "method": method,
                "protocol": "feature_reuse",
                "label_fraction": 0.06,
                "block": i,
                "metric": "cka_linear" if i == j else f"cka_linear@b{j}",
                "value": 1.0 if i == j else 0.99,
            }
            for i in (1, 2, 3, 4)
            for j in (1, 2, 3, 4)
        ]
        write(f"nih-feature_reuse-{method}-seed0-frac0.06", cka, "feature_reuse")
        write(
            f"nih-ks-{method}-seed0-frac0.06",
            [{"method": method, "protocol": "ks", "label_fraction": 0.06, "metric": "ks_vs_100", "value": 0.3}],
            "ks",
        )
    summary = {
        **common,
        "seed": None,
        "seeds": "0",
        "run_id": "summary-nih",
        "protocol": "finetune",
        "label_fraction": 0.06,
        "metric": "mean_auc",
    }
    # the runner's summary rows carry the stamp of the runs they combine (monai_ilm.results.summaries.runs_stamp)
    runs = read_results(results).query("protocol == 'finetune' and label_fraction == 0.06 and metric == 'mean_auc'")
    write_results(
        results,
        [
            make_row(
                **summary,
                method="mse",
                kind="paired_difference",
                baseline="moco",
                value=0.05,
                ci_low=-0.08,
                ci_high=0.17,
                config_hash=runs_stamp(runs),
            ),
            make_row(
                **summary,
                method="mse",
                kind="seed_mean",
                value=0.60,
                ci_low=0.50,
                ci_high=0.70,
                config_hash=runs_stamp(runs[runs["method"] == "mse"]),
            ),
        ],
        {"kind": "summary"},
    )
    run = root / "pretrain" / "moco_seed0"
    run.mkdir(parents=True)
    (run / "run_settings.json").write_text(json.dumps(pretraining), encoding="utf-8")
    # as the trainer logs: iteration losses at step = iteration, epoch means at step = epoch, under one tag
    lines = ["step,tag,value"] + [
        f"{s},loss,{v}" for s, v in ((1, 5), (2, 4), (3, 3), (1, 4), (4, 3), (5, 3), (6, 2), (2, 2.7))
    ]
    lines += [f"{e},health/effective_rank_layer{k},1.{k}" for e in (1, 2) for k in (1, 2, 3, 4)] + ["2,val_loss,4.0"]
    (run / "metrics.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return results
