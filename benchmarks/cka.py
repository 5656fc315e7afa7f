"""CKA: time and peak memory of the streaming linear CKA against full-Gram references.

What is measured
    For every N in ``--sizes`` (10,000 and 50,000 samples) and d in ``--dims`` (256 ... 2,048 features
    for both inputs), on synthetic paired features that look like network activations (post-ReLU, with
    a common offset of 3 on X, the two inputs mixing the same 64-d latent variables):

    * ``streaming-numpy`` / ``streaming-torch``: :class:`monai_ilm.evaluation.cka.StreamingLinearCKA`
      fed ``--batch-rows`` rows at a time as float32 NumPy arrays or torch CPU tensors (accumulated in
      float64 either way); the time counts ``update`` and ``compute`` only, not making the features;
    * ``numpy-gram``: the textbook float64 NumPy reference, K = X Xᵀ, L = Y Yᵀ, HKH and HLH by row and
      column means, CKA = <HKH, HLH> / (‖HKH‖ ‖HLH‖); run only where its N x N matrices fit in memory;
    * ``numpy-features``: a plain float64 NumPy reference on centred features,
      ‖Xcᵀ Yc‖² / (‖Xcᵀ Xc‖ ‖Ycᵀ Yc‖), the exactness reference where the Grams do not fit;
    * ``ckatorch``: ``ckatorch.cka_base`` (the published ``ckatorch`` package, full Gram in torch float64)
      if it imports and its Grams fit; ``torch-cka`` is reported as skipped with the reason.

    Each method runs in its own subprocess (``--threads`` BLAS / OpenMP / torch threads), cases in
    ascending size. Peak memory is the process's peak resident set during the computation minus its
    resident set just before it (the peak is reset through ``/proc/self/clear_refs``; inputs that a
    reference holds in full are made before the baseline); a second column gives the whole process's
    peak, interpreter and libraries included. ``|diff|`` is the absolute difference from the reference
    value (numpy-gram where it ran, else numpy-features).

Targets (issue): exact to 1e-6; N = 50,000 x 2,048 in under 60 s on 2 cores and under 1 GB.

Usage::

    python benchmarks/cka.py
    python benchmarks/cka.py --sizes 10000 --dims 256 2048 --methods streaming-numpy numpy-gram
    PYTHONPATH=/path/to/ckatorch python benchmarks/cka.py    # include the published package
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench  # noqa: E402  (puts the repository root on sys.path)
import numpy as np  # noqa: E402

NAME = "cka"
METHODS = ("streaming-numpy", "streaming-torch", "numpy-gram", "numpy-features", "ckatorch")
TARGET = {"abs_diff": 1e-6, "seconds": 60.0, "memory_mib": 1024.0, "case": (50000, 2048)}
LATENT = 64
MIX = 4  # latent coordinates summed into each feature
OFFSET = 3.0
GRAM_COPIES = {"numpy-gram": 4, "ckatorch": 6}  # N x N float64 matrices alive at once (measured, rounded up)
TORCH_CKA_REASON = (
    "torch-cka 0.21 has no function on feature matrices: its CKA class hooks two nn.Modules and averages "
    "a minibatch HSIC over a DataLoader (Nguyen et al. 2021), a different estimator from full-data CKA"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[10000, 50000])
    p.add_argument("--dims", type=int, nargs="+", default=[256, 512, 1024, 2048])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    p.add_argument("--batch-rows", type=int, default=1000, help="rows per streaming update (and per generated block)")
    p.add_argument(
        "--memory-budget-gib",
        type=float,
        default=None,
        help="largest Gram footprint to run (default: 60%% of free memory)",
    )
    p.add_argument("--threads", type=int, default=_bench.default_threads())
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--in-process", action="store_true", help="run every method in this process (quick checks; memory less precise)"
    )
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--cases", default=None, help=argparse.SUPPRESS)
    p.add_argument("--output-dir", default=None, help="where <name>.json goes (default benchmarks/results)")
    return p


# ------------------------------------------------------------------------------------------ features
def _mixing(seed: int, d: int) -> tuple[np.ndarray, ...]:
    """For each of the d features of X and of Y: which MIX latent coordinates it sums, with which weights."""
    rng = np.random.default_rng([seed, d])
    idx_x, idx_y = rng.integers(0, LATENT, (MIX, d)), rng.integers(0, LATENT, (MIX, d))
    w_x, w_y = (rng.standard_normal((MIX, d), dtype=np.float32) / np.float32(np.sqrt(MIX)) for _ in range(2))
    return idx_x, w_x, idx_y, w_y


def _mix(z: np.ndarray, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
    # element-wise only: a BLAS product may round differently with memory alignment or thread count,
    # and every method (each in its own process) must see bit-identical features
    out = z[:, idx[0]] * w[0]
    for k in range(1, len(idx)):
        out += z[:, idx[k]] * w[k]
    return out


def feature_blocks(n: int, d: int, seed: int, block: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Paired float32 blocks (X, Y) of ``block`` rows, bit-identical for every method (seeded per block)."""
    idx_x, w_x, idx_y, w_y = _mixing(seed, d)
    for start in range(0, n, block):
        rows = min(block, n - start)
        rng = np.random.default_rng([seed, d, start])
        z = rng.standard_normal((rows, LATENT), dtype=np.float32)
        x = np.maximum(_mix(z, idx_x, w_x), 0.0) + np.float32(OFFSET)
        y = _mix(z, idx_y, w_y)
        y += np.float32(0.5) * rng.standard_normal((rows, d), dtype=np.float32)
        yield x, np.maximum(y, 0.0)


def full_features(n: int, d: int, seed: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """The whole (n, d) float32 X and Y, filled block by block (no transient second copy)."""
    x, y = np.empty((n, d), np.float32), np.empty((n, d), np.float32)
    for i, (xb, yb) in enumerate(feature_blocks(n, d, seed, block)):
        x[i * block : i * block + len(xb)], y[i * block : i * block + len(yb)] = xb, yb
    return x, y


# ------------------------------------------------------------------------------------------- methods
def streaming(n: int, d: int, seed: int, block: int, use_torch: bool) -> tuple[float, float]:
    """(CKA, seconds in update/compute) of StreamingLinearCKA fed block by block."""
    import torch

    from monai_ilm.evaluation.cka import StreamingLinearCKA

    acc, seconds = StreamingLinearCKA(), 0.0
    for xb, yb in feature_blocks(n, d, seed, block):
        if use_torch:
            xb, yb = torch.from_numpy(xb), torch.from_numpy(yb)
        start = time.perf_counter()
        acc.update(xb, yb)
        seconds += time.perf_counter() - start
    start = time.perf_counter()
    value = acc.compute()
    return value, seconds + time.perf_counter() - start


def numpy_gram(x: np.ndarray, y: np.ndarray) -> float:
    """Textbook linear CKA with N x N float64 Grams (Kornblith et al. 2019, eq. 2 with H K H)."""
    k = x.astype(np.float64) @ x.astype(np.float64).T
    k -= k.mean(axis=0, keepdims=True)
    k -= k.mean(axis=1, keepdims=True)
    lg = y.astype(np.float64) @ y.astype(np.float64).T
    lg -= lg.mean(axis=0, keepdims=True)
    lg -= lg.mean(axis=1, keepdims=True)
    return float(np.vdot(k, lg) / (np.linalg.norm(k) * np.linalg.norm(lg)))


def numpy_features(x: np.ndarray, y: np.ndarray) -> float:
    """Linear CKA in feature space on centred float64 features: ‖XcᵀYc‖² / (‖XcᵀXc‖ ‖YcᵀYc‖)."""
    xc = x.astype(np.float64)
    xc -= xc.mean(axis=0)
    yc = y.astype(np.float64)
    yc -= yc.mean(axis=0)
    cross = np.linalg.norm(xc.T @ yc) ** 2
    return float(cross / (np.linalg.norm(xc.T @ xc) * np.linalg.norm(yc.T @ yc)))


def ckatorch_value(x: np.ndarray, y: np.ndarray) -> float:
    import ckatorch
    import torch

    return float(ckatorch.cka_base(torch.from_numpy(x), torch.from_numpy(y), kernel="linear"))


def ckatorch_status() -> str | None:
    """None if ``ckatorch`` imports, else why not."""
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        import ckatorch  # noqa: F401
    except Exception as exc:  # any import failure means: not usable here
        return f"ckatorch not importable ({type(exc).__name__}: {exc}); install with `pip install ckatorch`"
    return None


# -------------------------------------------------------------------------------------------- memory
def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where impossible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure(method: str, n: int, d: int, seed: int, block: int) -> dict[str, Any]:
    """Run one method on one case and return value, seconds and memory figures."""
    inputs = full_features(n, d, seed, block) if method not in ("streaming-numpy", "streaming-torch") else None
    base_kib = _status_kib("VmRSS") or 0
    resettable = reset_peak()
    start = time.perf_counter()
    if method.startswith("streaming"):
        value, seconds = streaming(n, d, seed, block, use_torch=method == "streaming-torch")
    else:
        fn = {"numpy-gram": numpy_gram, "numpy-features": numpy_features, "ckatorch": ckatorch_value}[method]
        value = fn(*inputs)
        seconds = time.perf_counter() - start
    peak_kib = _status_kib("VmHWM") if resettable else None
    del inputs
    return {
        "method": method,
        "n": n,
        "d": d,
        "value": value,
        "seconds": seconds,
        "peak_increase_mib": None if peak_kib is None else (peak_kib - base_kib) / 1024.0,
        "process_peak_mib": None if peak_kib is None else peak_kib / 1024.0,
    }


def worker(method: str, cases: list[list[int]], seed: int, block: int, threads: int) -> list[dict[str, Any]]:
    """Run ``method`` on every case in this process, printing one RESULT line per case."""
    import torch

    torch.set_num_threads(threads)
    if method.startswith("streaming"):  # warm the code path (imports, BLAS start-up)
        streaming(2 * block, 16, seed, block, method == "streaming-torch")
    results = []
    for n, d in cases:
        result = measure(method, n, d, seed, block)
        print("RESULT " + json.dumps(result), flush=True)
        results.append(result)
    return results


def run_worker(method: str, cases: list[list[int]], args: argparse.Namespace) -> list[dict[str, Any]]:
    """``worker`` in a fresh subprocess with the thread count pinned for BLAS, OpenMP and torch."""
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(args.threads)
    env["MALLOC_MMAP_THRESHOLD_"] = "131072"  # large arrays are mmapped and returned at once: a clean RSS
    env.setdefault("MPLBACKEND", "Agg")
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", method, "--cases", json.dumps(cases)]
    command += ["--seed", str(args.seed), "--batch-rows", str(args.batch_rows), "--threads", str(args.threads)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    results = [json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0:
        print(
            f"[{method}] exited {proc.returncode} after {len(results)} case(s):\n{proc.stderr[-2000:]}", file=sys.stderr
        )
    return results


# ---------------------------------------------------------------------------------------------- main
def _available_gib() -> float:
    kib = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                kib = int(line.split()[1])
    except OSError:
        pass
    return (kib or 8 * 2**20) / 2**20


def plan(args: argparse.Namespace, budget_gib: float) -> tuple[dict[str, list[list[int]]], dict[str, str]]:
    """Which cases each method runs, and why the others are skipped."""
    cases = sorted([[n, d] for n in args.sizes for d in args.dims], key=lambda c: c[0] * c[1])
    todo: dict[str, list[list[int]]] = {}
    skipped: dict[str, str] = {"torch-cka": TORCH_CKA_REASON}
    for method in args.methods:
        if method == "ckatorch" and (reason := ckatorch_status()) is not None:
            skipped["ckatorch"] = reason
            continue
        todo[method] = []
        for n, d in cases:
            need = GRAM_COPIES.get(method, 0) * n * n * 8 / 2**30
            if need > budget_gib:
                skipped[f"{method} N={n}"] = (
                    f"its N x N float64 Grams need ~{need:.0f} GiB > budget {budget_gib:.1f} GiB"
                )
            elif (
                method == "numpy-features"
                and "numpy-gram" in args.methods
                and GRAM_COPIES["numpy-gram"] * n * n * 8 / 2**30 <= budget_gib
            ):
                continue  # the Gram reference already covers this case
            else:
                todo[method].append([n, d])
    return todo, skipped


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    args = build_parser().parse_args(argv)
    if args.worker:
        worker(args.worker, json.loads(args.cases), args.seed, args.batch_rows, args.threads)
        return {}
    _bench.set_threads(args.threads)
    info = _bench.machine_info()
    budget = args.memory_budget_gib if args.memory_budget_gib is not None else 0.6 * _available_gib()
    todo, skipped = plan(args, budget)
    results: list[dict[str, Any]] = []
    for method, cases in todo.items():
        if not cases:
            continue
        print(f"running {method} on {len(cases)} case(s) ...", flush=True)
        if args.in_process:
            results += worker(method, cases, args.seed, args.batch_rows, args.threads)
        else:
            results += run_worker(method, cases, args)
    reference = {}
    for ref in ("numpy-features", "numpy-gram"):  # the Gram reference wins where both ran
        reference.update({(r["n"], r["d"]): r["value"] for r in results if r["method"] == ref})
    for r in results:
        ref = reference.get((r["n"], r["d"]))
        r["abs_diff"] = None if ref is None else abs(r["value"] - ref)
    results.sort(key=lambda r: (r["n"], r["d"], METHODS.index(r["method"])))
    target = _check_target(results)
    rows = [
        [
            r["n"],
            r["d"],
            r["method"],
            f"{r['value']:.10f}",
            "-" if r["abs_diff"] is None else f"{r['abs_diff']:.1e}",
            f"{r['seconds']:.2f}",
            _mib(r["peak_increase_mib"]),
            _mib(r["process_peak_mib"]),
        ]
        for r in results
    ]
    notes = [f"skipped {k}: {v}" for k, v in skipped.items()]
    notes.append(
        f"target: streaming exact to {TARGET['abs_diff']:g}, N=50,000 x 2,048 in < {TARGET['seconds']:.0f} s and "
        f"< {TARGET['memory_mib']:.0f} MiB -> {target['summary']}"
    )
    _bench.print_report(
        f"linear CKA: streaming ({args.batch_rows} rows/update) vs references, {args.threads} threads",
        info,
        ["N", "d", "method", "CKA", "|diff|", "seconds", "peak +MiB", "process peak MiB"],
        rows,
        notes,
    )
    payload = {
        "name": NAME,
        "command": "python benchmarks/cka.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": info,
        "settings": {k: v for k, v in vars(args).items() if k not in ("output_dir", "worker", "cases")},
        "memory_budget_gib": budget,
        "results": results,
        "skipped": skipped,
        "target": target,
    }
    _bench.write_result(NAME, payload, args.output_dir)
    return payload


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def _check_target(results: list[dict[str, Any]]) -> dict[str, Any]:
    streaming_rows = [r for r in results if r["method"].startswith("streaming")]
    diffs = [r["abs_diff"] for r in streaming_rows if r["abs_diff"] is not None]
    exact = bool(diffs) and max(diffs) <= TARGET["abs_diff"]
    big = [r for r in streaming_rows if (r["n"], r["d"]) == TARGET["case"]]
    fast = bool(big) and all(r["seconds"] < TARGET["seconds"] for r in big)
    small = bool(big) and all(
        r["peak_increase_mib"] is not None and r["peak_increase_mib"] < TARGET["memory_mib"] for r in big
    )
    parts = [f"exact {'MET' if exact else 'NOT MET'} (max |diff| {max(diffs) if diffs else float('nan'):.1e})"]
    if big:
        parts.append(f"time {'MET' if fast else 'NOT MET'}, memory {'MET' if small else 'NOT MET'}")
    else:
        parts.append("N=50,000 x 2,048 not run")
    return {
        "exact": exact,
        "time": fast if big else None,
        "memory": small if big else None,
        "summary": "; ".join(parts),
    }


if __name__ == "__main__":
    main()
