"""Results rows of a downstream result."""

from __future__ import annotations

import numpy as np
import pandas as pd

from monai_ilm.evaluation import (
    downstream_rows,
)
from monai_ilm.results import validate


def test_per_finding_rows(random_classifier_outputs):
    r = random_classifier_outputs["multilabel"]
    rows = downstream_rows(
        r, "finetune", "nih", "mse", 0.01, 0, "run-2", per_class_rows=True, class_names=["A", "B", "C"]
    )
    table = validate(pd.DataFrame(rows))
    assert list(table["metric"]) == ["mean_auc", "auc_A", "auc_B", "auc_C"]
    np.testing.assert_allclose(table["value"].iloc[1:], r.per_class)
