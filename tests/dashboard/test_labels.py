"""The one label table: no raw results name reaches a title, axis or header."""

from __future__ import annotations

import pandas as pd

from dashboard import labels


def test_metric_labels() -> None:
    assert labels.metric_label("mean_auc") == "Mean AUC" and labels.metric_label("f1_macro") == "Macro F1"
    assert labels.metric_label("cka_linear") == "CKA (linear)" and labels.metric_label("cka_rbf@b2") == "CKA (RBF)"
    assert labels.metric_label("cka_linear_debiased") == "CKA (linear, debiased)"
    assert labels.metric_label("auc_Pleural_Thickening") == "AUC · Pleural Thickening"
    assert labels.metric_label("some_new_metric") == "some new metric"
    assert labels.metric_unit_label(["mean_auc", "auc"]) == "Mean AUC, AUC (%)"


def test_column_labels_and_readable_tables() -> None:
    assert (
        labels.column_label("run_id") == "Run" and labels.column_label("time: train_seconds") == "Time: train seconds"
    )
    frame = pd.DataFrame(
        {
            "run_id": ["a"],
            "method": ["mse"],
            "dataset": ["nih"],
            "metric": ["mean_auc"],
            "label_fraction": [0.01],
            "seeds": [(0, 1)],
        }
    )
    shown = labels.readable(frame)
    assert list(shown.columns) == ["Run", "Method", "Data set", "Metric", "Labels", "Seeds"]
    assert shown.iloc[0].tolist() == ["a", "MoCo + MSE", "NIH ChestX-ray14", "Mean AUC", "1%", "0, 1"]
    assert frame.columns[0] == "run_id"  # the input (and so the CSV download) keeps the raw names


def test_run_browser_lists_are_labelled() -> None:
    frame = pd.DataFrame({"datasets": ["nih, dr"], "methods": ["moco, barlow"], "protocols": ["finetune"], "rows": [3]})
    shown = labels.readable(frame)
    assert list(shown.columns) == ["Data sets", "Methods", "Protocols", "Rows"]
    assert shown.iloc[0].tolist() == [
        "NIH ChestX-ray14, Diabetic Retinopathy",
        "MoCo, MoCo + Barlow Twins",
        "fine-tuning",
        3,
    ]
