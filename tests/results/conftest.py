"""The hand-made long-form results table shared by the table tests."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.results._rows import DR, NIH, cell


@pytest.fixture
def long_table() -> pd.DataFrame:
    """A hand-made slice of the paper's tables (paper_results.md), in long form."""
    rows = [
        # Table 1 (linear evaluation, 100 %); supervised comes from full fine-tuning
        cell(NIH, "moco", "linear", 1.0, "mean_auc", 0.744, 0.739, 0.750),
        cell(NIH, "mse", "linear", 1.0, "mean_auc", 0.748, 0.742, 0.754),
        cell(DR, "moco", "linear", 1.0, "auc", 0.746, 0.745, 0.747),
        cell(DR, "mse", "linear", 1.0, "auc", 0.848, 0.846, 0.850),
        # Table 2 (fine-tuning)
        cell(NIH, "supervised", "finetune", 1.0, "mean_auc", 0.798, 0.792, 0.803),
        cell(NIH, "supervised", "finetune", 0.06, "mean_auc", 0.652, 0.646, 0.658),
        cell(NIH, "supervised", "finetune", 0.01, "mean_auc", 0.578, 0.572, 0.584),
        cell(NIH, "moco", "finetune", 0.01, "mean_auc", 0.592, 0.586, 0.599),
        cell(NIH, "moco", "finetune", 0.06, "mean_auc", 0.698, 0.693, 0.704),
        cell(NIH, "mse", "finetune", 0.01, "mean_auc", 0.614, 0.607, 0.620),
        cell(NIH, "mse", "finetune", 0.06, "mean_auc", 0.705, 0.699, 0.710),
        cell(DR, "supervised", "finetune", 1.0, "auc", 0.941, 0.941, 0.942),
    ]
    # Table 3 (feature reuse, NIH, 1 % and 6 %)
    cka = {
        ("moco", 0.01): [0.81, 0.80, 0.57, 0.41],
        ("mse", 0.01): [0.97, 0.83, 0.65, 0.42],
        ("moco", 0.06): [0.72, 0.75, 0.66, 0.39],
        ("mse", 0.06): [0.97, 0.84, 0.55, 0.43],
    }
    for (method, frac), values in cka.items():
        rows += [cell(NIH, method, "feature_reuse", frac, "cka_rbf", v, block=b + 1) for b, v in enumerate(values)]
    # Table 4 (probing, NIH MoCo)
    probe = [(0.588, 0.584, 0.593), (0.595, 0.590, 0.600), (0.653, 0.648, 0.658), (0.744, 0.739, 0.750)]
    rows += [cell(NIH, "moco", "probe", 1.0, "mean_auc", *v, block=b + 1) for b, v in enumerate(probe)]
    return pd.DataFrame(rows)
