"""Row factories shared by the results tests."""

from __future__ import annotations

from typing import Any


def row(**overrides: Any) -> dict[str, Any]:
    """A valid results row; keyword arguments override columns."""
    base = {
        "dataset": "idc",
        "method": "mse",
        "protocol": "finetune",
        "label_fraction": 0.01,
        "seed": 0,
        "block": None,
        "metric": "f1_macro",
        "value": 0.851,
        "ci_low": 0.847,
        "ci_high": 0.854,
        "n": 55000,
        "run_id": "run-a",
        "checkpoint": "ckpt/mse.pt",
        "config_hash": "abc123",
        "timestamp": "2025-01-31T12:00:00+00:00",
    }
    base.update(overrides)
    return base


NIH, DR = "nih", "dr"


def cell(dataset, method, protocol, fraction, metric, value, low=None, high=None, block=None, **kw):
    return row(
        dataset=dataset,
        method=method,
        protocol=protocol,
        label_fraction=fraction,
        metric=metric,
        value=value,
        ci_low=low,
        ci_high=high,
        block=block,
        run_id=f"{method}-{protocol}",
        **kw,
    )
