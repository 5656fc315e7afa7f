"""Realistic sample results for previewing the dashboard, for its tests and for the README screenshots.

``python -m dashboard.sample <root>`` writes ``<root>/results`` (the results table, written with
``monai_ilm.results.write_results``) and ``<root>/pretrain/<method>_seed<seed>/`` training logs (TensorBoard
event files; one run as ``metrics.csv``), the layout of the demo's ``demo_output``. The numbers are the
published ones (``paper_results.json``) plus seed noise, so the pages look like a real reproduction; they are
made up and must never be reported as results.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dashboard.cka import KERNELS, cka_metric_name
from dashboard.paper import load_paper_json
from dashboard.sample_logs import has_tensorboard, write_training_logs
from monai_ilm.results import config_hash, make_row, replicate_key, write_results
from monai_ilm.results.embeddings import write_embeddings
from monai_ilm.results.seeds import summarize

__all__ = ["SampleLayout", "write_sample", "write_sample_embeddings", "write_training_logs"]

DATASET_METRICS = {"nih": "mean_auc", "dr": "auc", "idc": "f1_macro"}
_TIMESTAMP = "2025-03-01T12:00:00+00:00"
_REPLICATED = ("linear", "finetune", "probe")  # the protocols whose real runs store bootstrap replicates
_N_REPLICATES = 200


@dataclass(frozen=True)
class SampleLayout:
    """Where :func:`write_sample` put things.

    Attributes:
        root: the root folder.
        results_dir: the results directory.
        pretrain_dir: the folder of the training-log runs.
        n_rows: number of results rows written.
        n_runs: number of results files written.
    """

    root: Path
    results_dir: Path
    pretrain_dir: Path
    n_rows: int
    n_runs: int


class _Published:
    """Base values for the sample numbers: the paper's where it has them, plausible defaults otherwise."""

    def __init__(self) -> None:
        self.data = load_paper_json()

    def perf(self, dataset: str, method: str, protocol: str, fraction: float, block: int | None = None) -> float:
        d = self.data
        try:
            if protocol == "linear":
                return d["linear"][dataset][method][0] / 100
            if protocol == "finetune":
                return d["finetune"][dataset][_key(fraction)][method][0] / 100
            if protocol == "probe":
                return d["probe"][dataset][method][int(block) - 1][0] / 100
        except KeyError:
            pass
        base = {
            "linear": 0.75,
            "finetune": 0.7 + 0.05 * math.log10(fraction * 100 + 1),
            "probe": 0.6 + 0.04 * (block or 4),
        }
        return base[protocol] + {"mse": 0.02, "barlow": 0.015, "supervised": -0.02}.get(method, 0.0)

    def reuse(self, dataset: str, method: str, fraction: float, block: int) -> float:
        try:
            return self.data["feature_reuse"][dataset][_key(fraction)][method][block - 1]
        except KeyError:
            return max(0.1, 0.95 - 0.18 * (block - 1) + (0.05 if method != "moco" else 0.0))


def _key(fraction: float) -> str:
    return {1.0: "1.0", 0.06: "0.06", 0.01: "0.01"}.get(round(fraction, 6), str(fraction))


def _frac_tag(fraction: float) -> str:
    return f"{fraction * 100:g}pct".replace(".", "p")


def _perf_row(
    rng,
    base: float,
    run_id: str,
    dataset: str,
    method: str,
    protocol: str,
    fraction: float,
    seed: int,
    metric: str,
    block: int | None,
    ckpt: str,
    chash: str,
) -> dict:
    value = float(np.clip(base + rng.normal(0, 0.004), 0.01, 0.999))
    half = float(rng.uniform(0.002, 0.007))
    return make_row(
        dataset=dataset,
        method=method,
        protocol=protocol,
        label_fraction=fraction,
        seed=seed,
        block=block,
        metric=metric,
        value=value,
        ci_low=max(value - half, 0.0),
        ci_high=min(value + half, 1.0),
        n={"nih": 22433, "dr": 10000, "idc": 55505}.get(dataset, 5000),
        run_id=run_id,
        checkpoint=ckpt,
        config_hash=chash,
        timestamp=_TIMESTAMP,
    )


def _cka_value(rng, base: float, kernel: str) -> float:
    shift = {"linear": 0.0, "rbf": 0.03, "linear_debiased": -0.06}.get(kernel, 0.0)
    return float(np.clip(base + shift + rng.normal(0, 0.01), -0.05, 1.0))


def _off_diagonal(diag_i: float, diag_j: float, i: int, j: int) -> float:
    """A plausible block x block entry: similarity decays with the distance between the blocks."""
    return math.sqrt(max(diag_i, 0.0) * max(diag_j, 0.0)) * 0.8 ** abs(i - j) * 0.9


def _replicates(rows: list[dict]) -> dict[str, np.ndarray | str]:
    """Made-up bootstrap replicates of the performance rows, stored like ``EvaluationRun`` stores real ones.

    Each row's replicates share a component with every other method of the same cell and seed (the same test
    resamples), as paired replicates do; the row's interval is reset to their percentile interval, so that
    :func:`monai_ilm.results.seeds.summarize` finds consistent numbers.
    """
    out: dict[str, np.ndarray | str] = {}
    for row in rows:
        if row["protocol"] not in _REPLICATED:
            continue
        cell = "|".join(str(row[k]) for k in ("dataset", "protocol", "label_fraction", "block", "metric", "seed"))
        shared = np.random.default_rng(zlib.crc32(cell.encode())).standard_normal(_N_REPLICATES)
        own = np.random.default_rng(zlib.crc32(f"{cell}|{row['method']}".encode())).standard_normal(_N_REPLICATES)
        spread = (row["ci_high"] - row["ci_low"]) / 3.92
        values = np.clip(row["value"] + spread * (0.8 * shared + 0.6 * own), 0.0, 1.0)
        row["ci_low"], row["ci_high"] = (float(v) for v in np.percentile(values, [2.5, 97.5]))
        out[replicate_key(row["metric"], row["block"])] = values
        out["test_ids_sha256"] = hashlib.sha256(f"{row['dataset']}-test-seed{row['seed']}".encode()).hexdigest()
    return out


def _write(results_dir: Path, rows: list[dict], meta: dict) -> int:
    write_results(results_dir, rows, meta, overwrite=True, replicates=_replicates(rows) or None)
    return len(rows)


def _meta(config: dict, seed: int, rng) -> tuple[dict, str, str]:
    ckpt = f"pretrain/{config['method']}_seed{seed}/checkpoint_final.pt" if config["method"] != "supervised" else ""
    timings = {
        "train_seconds": round(float(rng.uniform(600, 7200)), 1),
        "eval_seconds": round(float(rng.uniform(30, 300)), 1),
    }
    chash = config_hash(config)
    return (
        {"config": config, "checkpoint": ckpt, "seed": seed, "timings": timings, "host": "sample-generator"},
        ckpt,
        chash,
    )


def write_sample(
    root: str | Path,
    datasets: Sequence[str] = ("nih", "dr", "idc"),
    methods: Sequence[str] = ("moco", "mse", "barlow", "supervised"),
    fractions: Sequence[float] = (0.01, 0.06, 1.0),
    seeds: Sequence[int] = (0, 1),
    cka_fractions: Sequence[float] = (0.01, 0.06),
    blocks: Sequence[int] = (1, 2, 3, 4),
    training_logs: bool = True,
    iterations: int = 150,
    rng_seed: int = 0,
) -> SampleLayout:
    """Write a sample results directory (and training logs) under ``root``.

    Per dataset, method and seed: one linear-evaluation run, one fine-tuning run per fraction (the
    ``idc`` dataset also gets an ``auc`` metric so there is a metric choice), one probing run, one
    feature-reuse run (plain and block x block CKA rows for every kernel), one KS run; per dataset and seed
    one encoder-vs-encoder CKA run (MoCo vs MSE and vs Barlow Twins). ``supervised`` gets fine-tuning only.
    The performance runs store made-up bootstrap replicates (``<run_id>.replicates.npz``), and
    :func:`monai_ilm.results.seeds.summarize` then writes the runner's ``summary-<dataset>.csv`` rows (seed means
    with two-stage intervals, paired differences), exactly as after a real multi-seed experiment.
    Training logs are TensorBoard event files, except the last Barlow Twins seed (``metrics.csv``); all are
    ``metrics.csv`` when ``tensorboard`` is not installed.

    Args:
        root: output folder (``results/`` and ``pretrain/`` are created inside; existing runs are replaced).
        datasets: datasets.
        methods: methods.
        fractions: fine-tuning label fractions.
        seeds: seeds.
        cka_fractions: label fractions with feature-reuse rows.
        blocks: encoder blocks.
        training_logs: also write pretraining logs.
        iterations: iterations per training log.
        rng_seed: seed of the noise.

    Returns:
        The :class:`SampleLayout`.
    """
    root = Path(root)
    results_dir, pretrain_dir = root / "results", root / "pretrain"
    rng = np.random.default_rng(rng_seed)
    pub = _Published()
    n_rows = n_runs = 0
    for seed in seeds:
        for dataset in datasets:
            metric = DATASET_METRICS.get(dataset, "auc")
            for method in methods:
                pretrained = method != "supervised"
                protocols = ("linear", "finetune", "probe", "feature_reuse", "ks") if pretrained else ("finetune",)
                # one run per fine-tuning fraction, as the runner writes them (replicates are keyed by metric)
                cells = [(p, fractions) for p in protocols if p != "finetune"]
                cells += [("finetune", (f,)) for f in fractions] if "finetune" in protocols else []
                for protocol, cell_fractions in cells:
                    run_id = f"{protocol}-{dataset}-{method}-s{seed}"
                    if protocol == "finetune":
                        run_id += f"-f{_frac_tag(cell_fractions[0])}"
                    config = {
                        "dataset": dataset,
                        "method": method,
                        "protocol": protocol,
                        "seed": seed,
                        "encoder": "resnet50",
                        "epochs": 100 if protocol == "finetune" else 50,
                        "batch_size": 256,
                        "lr": 0.03 if protocol != "finetune" else 0.001,
                    }
                    if protocol in ("finetune", "feature_reuse"):
                        config["label_fractions"] = list(cell_fractions if protocol == "finetune" else cka_fractions)
                    meta, ckpt, chash = _meta(config, seed, rng)
                    rows = _protocol_rows(
                        rng,
                        pub,
                        protocol,
                        run_id,
                        dataset,
                        method,
                        seed,
                        metric,
                        cell_fractions,
                        cka_fractions,
                        blocks,
                        ckpt,
                        chash,
                    )
                    n_rows += _write(results_dir, rows, meta)
                    n_runs += 1
            pairs = [m for m in ("mse", "barlow") if m in methods] if "moco" in methods else []
            if pairs:
                run_id = f"cka-pretrained-{dataset}-s{seed}"
                meta, ckpt, chash = _meta(
                    {"dataset": dataset, "method": "moco", "compare": pairs, "seed": seed}, seed, rng
                )
                rows = _encoder_pair_rows(rng, pub, run_id, dataset, seed, pairs, blocks, ckpt, chash)
                n_rows += _write(results_dir, rows, meta)
                n_runs += 1
    if any(m != "supervised" for m in methods) and seeds:
        write_sample_embeddings(root, results_dir, datasets[0], [m for m in methods if m != "supervised"], seeds[0])
    for path in summarize(results_dir):  # the runner's seed_mean and paired_difference rows, as a real run has
        n_rows += len(path.read_text(encoding="utf-8").splitlines()) - 1
        n_runs += 1
    if training_logs:
        for method in (m for m in methods if m != "supervised"):
            for seed in seeds:
                as_csv = not has_tensorboard() or (method == "barlow" and seed == seeds[-1] and len(seeds) > 1)
                write_training_logs(pretrain_dir / f"{method}_seed{seed}", method, seed, iterations, as_csv)
    return SampleLayout(root, results_dir, pretrain_dir, n_rows, n_runs)


def _protocol_rows(
    rng,
    pub: _Published,
    protocol: str,
    run_id: str,
    dataset: str,
    method: str,
    seed: int,
    metric: str,
    fractions,
    cka_fractions,
    blocks,
    ckpt: str,
    chash: str,
) -> list[dict]:
    common = {"run_id": run_id, "dataset": dataset, "method": method, "seed": seed, "ckpt": ckpt, "chash": chash}

    def perf(base, prot, frac, met, block=None):
        return _perf_row(rng, base, common["run_id"], dataset, method, prot, frac, seed, met, block, ckpt, chash)

    if protocol == "linear":
        return [perf(pub.perf(dataset, method, "linear", 1.0), "linear", 1.0, metric)]
    if protocol == "finetune":
        rows = [perf(pub.perf(dataset, method, "finetune", f), "finetune", f, metric) for f in fractions]
        if dataset == "idc":
            rows += [perf(pub.perf(dataset, method, "finetune", f) + 0.08, "finetune", f, "auc") for f in fractions]
        return rows
    if protocol == "probe":
        return [perf(pub.perf(dataset, method, "probe", 1.0, b), "probe", 1.0, metric, b) for b in blocks]
    if protocol == "ks":
        return [
            make_row(
                dataset=dataset,
                method=method,
                protocol="ks",
                label_fraction=1.0,
                seed=seed,
                metric="ks",
                value=float(rng.uniform(0.02, 0.2)),
                n=1000,
                run_id=run_id,
                checkpoint=ckpt,
                config_hash=chash,
                timestamp=_TIMESTAMP,
            )
        ]
    rows = []
    for frac in cka_fractions:
        for kernel in KERNELS:
            diag = {b: _cka_value(rng, pub.reuse(dataset, method, frac, b), kernel) for b in blocks}
            for i in blocks:
                rows.append(
                    _cka_row(dataset, method, frac, seed, i, cka_metric_name(kernel), diag[i], run_id, ckpt, chash)
                )
                for j in blocks:
                    if i != j:
                        value = _off_diagonal(diag[i], diag[j], i, j) + float(rng.normal(0, 0.01))
                        name = cka_metric_name(kernel, block_b=j)
                        rows.append(_cka_row(dataset, method, frac, seed, i, name, value, run_id, ckpt, chash))
    return rows


def _cka_row(dataset, method, fraction, seed, block, metric, value, run_id, ckpt, chash) -> dict:
    return make_row(
        dataset=dataset,
        method=method,
        protocol="feature_reuse",
        label_fraction=fraction,
        seed=seed,
        block=block,
        metric=metric,
        value=float(np.clip(value, -0.1, 1.0)),
        n=2000,
        run_id=run_id,
        checkpoint=ckpt,
        config_hash=chash,
        timestamp=_TIMESTAMP,
    )


def _encoder_pair_rows(rng, pub, run_id, dataset, seed, others, blocks, ckpt, chash) -> list[dict]:
    rows = []
    for other in others:
        for kernel in KERNELS:
            for i in blocks:
                for j in blocks:
                    base = pub.reuse(dataset, other, 0.01, min(i, j)) * 0.85 ** abs(i - j) * (0.95 if i == j else 0.8)
                    value = _cka_value(rng, base, kernel)
                    name = cka_metric_name(kernel, block_b=j, other=other)
                    rows.append(_cka_row(dataset, "moco", 1.0, seed, i, name, value, run_id, ckpt, chash))
    return rows


def write_sample_embeddings(
    root: Path, results_dir: Path, dataset: str, methods: Sequence[str], seed: int, n: int = 120
) -> list[Path]:
    """Made-up test-set embeddings of the probing runs of one dataset and seed, with small generated images.

    Every method sees the same ``n`` test images (``<root>/sample_images/*.png``); its features are three label
    clusters, tighter for the intermediate-layer methods, so the explorer has something to show.

    Returns:
        The ``<run_id>.embeddings.npz`` files written.
    """
    from PIL import Image  # only the sample needs to write images

    rng = np.random.default_rng(7)
    labels = rng.integers(0, 3, size=n)
    image_dir = root / "sample_images"
    image_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, label in enumerate(labels):
        path = image_dir / f"test_{i:03d}.png"
        base = np.linspace(40, 200, 32)[None, :] * (0.6 + 0.2 * label)
        pixels = np.clip(base + rng.normal(0, 25, (32, 32)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels, mode="L").save(path)
        paths.append(str(path))
    centres = rng.normal(0, 3, size=(3, 32))
    written = []
    for k, method in enumerate(methods):
        spread = 1.6 if method == "moco" else 1.0
        features = centres[labels] + rng.normal(0, spread, size=(n, 32)) + k * 0.1
        run_id = f"probe-{dataset}-{method}-s{seed}"
        written.append(
            write_embeddings(results_dir, run_id, features, paths, labels=labels, method=method, split="test", block=4)
        )
    return written


def main(argv: Sequence[str] | None = None) -> None:
    """Command line: ``python -m dashboard.sample <root> [--seeds 0 1] [--no-logs]``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("root", help="output folder; results/ and pretrain/ are written inside")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--no-logs", action="store_true", help="skip the training logs")
    args = parser.parse_args(argv)
    layout = write_sample(args.root, seeds=args.seeds, training_logs=not args.no_logs)
    print(f"wrote {layout.n_rows} rows in {layout.n_runs} runs to {layout.results_dir}")
    print(f"view: streamlit run dashboard/app.py -- --results {layout.results_dir}")


if __name__ == "__main__":
    main()
