"""Made-up pretraining logs for the sample results (:mod:`dashboard.sample`): loss parts that decay like a real MoCo
run, per-epoch validation loss and a learning rate, as TensorBoard event files or ``metrics.csv``."""

from __future__ import annotations

import csv
import importlib.util
import math
from pathlib import Path

import numpy as np

__all__ = ["has_tensorboard", "write_training_logs"]


def _loss_curves(method: str, seed: int, iterations: int) -> dict[str, np.ndarray]:
    """Per-iteration loss parts that decay like a real MoCo run."""
    rng = np.random.default_rng(1000 + seed + 17 * len(method))
    t = np.arange(iterations, dtype=float)
    parts = {"loss_infonce": 6.0 * np.exp(-t / (iterations / 3)) + 3.0 + rng.normal(0, 0.15, iterations)}
    if method in ("mse", "barlow"):
        scale = 0.5 if method == "mse" else 2.0
        for stage in (1, 2, 3, 4):
            decay = np.exp(-t / (iterations / (2 + stage)))
            parts[f"loss_layer{stage}"] = scale * (0.4 + decay / stage) + rng.normal(0, 0.02 * scale, iterations)
    parts["loss"] = sum(parts.values())
    return parts


def has_tensorboard() -> bool:
    """Whether TensorBoard event files can be written (``torch.utils.tensorboard`` needs ``tensorboard``)."""
    return importlib.util.find_spec("tensorboard") is not None


def write_training_logs(
    run_dir: str | Path, method: str, seed: int, iterations: int = 150, as_csv: bool = False
) -> Path:
    """Write one pretraining run's logs: per-iteration loss parts, per-epoch ``val_loss`` and a learning rate.

    Args:
        run_dir: the run folder (``.../pretrain/<method>_seed<seed>``).
        method: the method (``mse``/``barlow`` get ``loss_layer1`` ... ``loss_layer4``).
        seed: the seed (varies the noise).
        iterations: number of iterations.
        as_csv: write ``metrics.csv`` (step, tag, value) instead of TensorBoard event files.

    Returns:
        The run folder.
    """
    run_dir = Path(run_dir)
    parts = _loss_curves(method, seed, iterations)
    epochs = max(iterations // 25, 1)
    val = {e: float(parts["loss"][min((e + 1) * 25, iterations) - 1] * 1.05) for e in range(epochs)}
    lr = {i: 0.03 * 0.5 * (1 + math.cos(math.pi * i / iterations)) for i in range(0, iterations, 10)}
    if as_csv:
        run_dir.mkdir(parents=True, exist_ok=True)
        with open(run_dir / "metrics.csv", "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["step", "tag", "value"])
            for tag, values in parts.items():
                writer.writerows((i, tag, f"{v:.6f}") for i, v in enumerate(values))
            writer.writerows((e, "val_loss", f"{v:.6f}") for e, v in val.items())
            writer.writerows((i, "lr", f"{v:.6f}") for i, v in lr.items())
        return run_dir
    from torch.utils.tensorboard import SummaryWriter  # heavy import, only when event files are wanted

    writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
    try:
        for i in range(iterations):
            for tag, values in parts.items():
                writer.add_scalar(tag, float(values[i]), i)
            if i in lr:
                writer.add_scalar("lr", lr[i], i)
        for e, v in val.items():
            writer.add_scalar("val_loss", v, e)
    finally:
        writer.close()
    return run_dir
