"""Task presets: the corrected and the paper-faithful metrics."""

from __future__ import annotations

from monai_ilm.evaluation import (
    PAPER_TASKS,
    TASKS,
    get_task,
)


def test_task_presets():
    assert set(TASKS) == set(PAPER_TASKS) == {"multilabel", "binary_auc", "f1"}
    assert get_task("f1") is TASKS["f1"] and get_task("f1", paper_faithful=True) is PAPER_TASKS["f1"]
    assert get_task(TASKS["multilabel"]) is TASKS["multilabel"]
