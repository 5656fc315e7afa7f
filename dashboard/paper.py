"""The paper's published numbers (``paper_results.json``) as rows of the results schema.

Turning the published tables into ordinary results rows lets the same ``monai_ilm.results`` table builders
produce them in exactly the shape of our own tables, so the overview can put them side by side.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd

from monai_ilm.results import make_row, validate

__all__ = ["PAPER_JSON", "PAPER_RUN_ID", "load_paper_json", "paper_frame"]

PAPER_JSON = Path(__file__).with_name("paper_results.json")
PAPER_RUN_ID = "paper"
_TIMESTAMP = "2021-12-06T00:00:00+00:00"  # NeurIPS 2021


def load_paper_json(path: str | os.PathLike = PAPER_JSON) -> dict[str, Any]:
    """Read the published numbers.

    Args:
        path: the JSON file (default: ``dashboard/paper_results.json``).

    Returns:
        The parsed JSON object.
    """
    return json.loads(Path(path).read_text(encoding="utf-8"))


def _row(
    dataset: str,
    method: str,
    protocol: str,
    fraction: float,
    metric: str,
    value: float,
    ci: tuple[float, float] | None = None,
    block: int | None = None,
    scale: float = 0.01,
) -> dict:
    lo, hi = (None, None) if ci is None else (ci[0] * scale, ci[1] * scale)
    return make_row(
        dataset=dataset,
        method=method,
        protocol=protocol,
        label_fraction=float(fraction),
        seed=0,
        block=block,
        metric=metric,
        value=value * scale,
        ci_low=lo,
        ci_high=hi,
        n=1,
        run_id=PAPER_RUN_ID,
        timestamp=_TIMESTAMP,
    )


def paper_frame(
    data: dict[str, Any] | None = None, finetune_methods: tuple[str, ...] = ("supervised",)
) -> pd.DataFrame:
    """The published numbers as a validated results frame (values as fractions, e.g. AUC 0.744).

    Args:
        data: the parsed JSON (default: :func:`load_paper_json`).
        finetune_methods: methods whose linear-table entry is a fully trained network (stored as a
            ``protocol="finetune"`` row at 100 % labels, as ``linear_evaluation_table(finetune_methods=...)``
            expects).

    Returns:
        One row per published cell (``run_id="paper"``).
    """
    data = load_paper_json() if data is None else data
    metrics, cka = data["metrics"], data.get("cka_metric", "cka_rbf")
    rows = []
    for dataset, by_method in data["linear"].items():
        for method, (v, lo, hi) in by_method.items():
            protocol = "finetune" if method in finetune_methods else "linear"
            rows.append(_row(dataset, method, protocol, 1.0, metrics[dataset], v, (lo, hi)))
    for dataset, by_fraction in data["finetune"].items():
        for fraction, by_method in by_fraction.items():
            for method, (v, lo, hi) in by_method.items():
                rows.append(_row(dataset, method, "finetune", float(fraction), metrics[dataset], v, (lo, hi)))
    for dataset, by_fraction in data["feature_reuse"].items():
        for fraction, by_method in by_fraction.items():
            for method, values in by_method.items():
                for block, v in enumerate(values, start=1):
                    rows.append(_row(dataset, method, "feature_reuse", float(fraction), cka, v, block=block, scale=1.0))
    for dataset, by_method in data["probe"].items():
        for method, cells in by_method.items():
            for block, (v, lo, hi) in enumerate(cells, start=1):
                rows.append(_row(dataset, method, "probe", 1.0, metrics[dataset], v, (lo, hi), block=block))
    frame = pd.DataFrame(rows).drop_duplicates(["dataset", "method", "protocol", "label_fraction", "block", "metric"])
    return validate(frame)
