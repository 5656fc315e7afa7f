"""The one table of display labels: methods, data sets, protocols, metrics and table columns (no Streamlit here).

Every title, axis label and column header of the dashboard goes through these functions, so that no raw results
name (``mean_auc``, ``cka_linear``, ``run_id``) reaches the page; unknown names fall back to a readable form.
"""

from __future__ import annotations

import math

from monai_ilm.datasets import paper_datasets
from monai_ilm.results.names import parse_cka_metric

__all__ = [
    "COLUMN_LABELS",
    "DATASET_LABELS",
    "DATASET_SHORT_LABELS",
    "KERNEL_LABELS",
    "METHOD_LABELS",
    "METHOD_SHORT_LABELS",
    "METRIC_LABELS",
    "PROTOCOL_LABELS",
    "column_label",
    "dataset_label",
    "dataset_short_label",
    "fraction_label",
    "method_label",
    "method_short_label",
    "metric_label",
    "metric_unit_label",
    "readable",
    "readable_columns",
]

METHOD_LABELS = {"moco": "MoCo", "mse": "MoCo + MSE", "barlow": "MoCo + Barlow Twins", "supervised": "Supervised"}
DATASET_LABELS = {dataset.name: dataset.label for dataset in paper_datasets()}  # monai_ilm.datasets
METHOD_SHORT_LABELS = {"barlow": "MoCo + BT"}  # Barlow Twins, for narrow tables
DATASET_SHORT_LABELS = {"nih": "NIH", "dr": "DR", "idc": "IDC"}  # the paper's own abbreviations, for narrow tables
PROTOCOL_LABELS = {
    "linear": "linear evaluation",
    "finetune": "fine-tuning",
    "probe": "layer-wise probing",
    "feature_reuse": "feature reuse (CKA)",
    "ks": "KS distance",
}
METRIC_LABELS = {
    "mean_auc": "Mean AUC",
    "auc": "AUC",
    "roc_auc": "AUC",
    "f1": "F1",
    "f1_macro": "Macro F1",
    "accuracy": "Accuracy",
    "balanced_accuracy": "Balanced accuracy",
    "ks": "KS distance",
    "ks_vs_100": "KS distance to 100 % labels",
}
KERNEL_LABELS = {"linear": "linear", "rbf": "RBF", "linear_debiased": "linear, debiased"}
COLUMN_LABELS = {
    "run_id": "Run",
    "dataset": "Data set",
    "datasets": "Data sets",
    "method": "Method",
    "methods": "Methods",
    "protocol": "Protocol",
    "protocols": "Protocols",
    "label_fraction": "Labels",
    "seed": "Seed",
    "seeds": "Seeds",
    "block": "Block",
    "block_a": "Block of A",
    "block_b": "Block of B",
    "metric": "Metric",
    "metrics": "Metrics",
    "value": "Value",
    "ci_low": "CI low",
    "ci_high": "CI high",
    "n": "n",
    "n_rows": "Rows",
    "checkpoint": "Checkpoint",
    "config_hash": "Config hash",
    "timestamp": "Written",
    "kind": "Row kind",
    "baseline": "Baseline",
    "fractions": "Label fractions",
    "label_fractions": "Label fractions",
    "rows": "Rows",
    "written_at": "Written",
    "problem": "Problem",
    "status": "Status",
    "file": "File",
    "encoder_a": "Encoder A",
    "encoder_b": "Encoder B",
    "effective_rank": "Effective rank",
    "finding": "Finding",
}


def method_label(method: str) -> str:
    """Display name of a method (``"mse"`` -> ``"MoCo + MSE"``); unknown names are returned unchanged."""
    return METHOD_LABELS.get(method, method)


def dataset_label(dataset: str) -> str:
    """Display name of a data set; unknown names are returned unchanged."""
    return DATASET_LABELS.get(dataset, dataset)


def method_short_label(method: str) -> str:
    """A method's name for narrow tables (``"barlow"`` -> ``"MoCo + BT"``), else :func:`method_label`."""
    return METHOD_SHORT_LABELS.get(method, method_label(method))


def dataset_short_label(dataset: str) -> str:
    """An abbreviation of a data set for narrow tables (``"nih"`` -> ``"NIH"``); unknown names unchanged."""
    return DATASET_SHORT_LABELS.get(dataset, dataset)


def fraction_label(fraction: float) -> str:
    """A label fraction as a percentage: ``0.01`` -> ``"1%"``, ``0.125`` -> ``"12.5%"``."""
    pct = float(fraction) * 100.0
    return f"{pct:.0f}%" if math.isclose(pct, round(pct), abs_tol=1e-6) else f"{pct:.3g}%"


def metric_label(metric: str) -> str:
    """Display name of a metric: ``"mean_auc"`` -> ``"Mean AUC"``, ``"cka_rbf"`` -> ``"CKA (RBF)"``,
    ``"auc_Effusion"`` -> ``"AUC · Effusion"``; other names with underscores as spaces."""
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    cka = parse_cka_metric(metric)
    if cka is not None:
        kernel = cka.kind.removeprefix("cka_")
        return f"CKA ({KERNEL_LABELS.get(kernel, kernel.replace('_', ' '))})"
    for prefix in ("auc_", "f1_"):
        if metric.startswith(prefix):
            return f"{METRIC_LABELS[prefix[:-1]]} · {metric[len(prefix) :].replace('_', ' ')}"
    return metric.replace("_", " ")


def metric_unit_label(metrics: list[str] | tuple[str, ...]) -> str:
    """An axis title for performance metrics shown in percent: ``["mean_auc"]`` -> ``"Mean AUC (%)"``."""
    names = list(dict.fromkeys(metric_label(m) for m in metrics))
    return f"{', '.join(names)} (%)" if names else ""


def column_label(column: str) -> str:
    """Display header of a results or run-table column: ``"run_id"`` -> ``"Run"``; unknown names readable."""
    if column in COLUMN_LABELS:
        return COLUMN_LABELS[column]
    if column.startswith("time: "):
        return f"Time: {column.removeprefix('time: ').replace('_', ' ')}"
    return column.replace("_", " ")


def readable(frame):
    """A copy of a table for display: method, data set, protocol, metric and label-fraction values as labels,
    tuples as text, and the column headers through :func:`column_label` (downloads keep the raw names).

    Args:
        frame: a ``pandas.DataFrame`` with results columns.

    Returns:
        The display copy.
    """
    mappers = {
        "method": method_label,
        "dataset": dataset_label,
        "protocol": lambda p: PROTOCOL_LABELS.get(p, p),
        "metric": metric_label,
        "label_fraction": lambda f: f if f != f else fraction_label(f),
    }
    joined = {"datasets": dataset_label, "methods": method_label, "protocols": lambda p: PROTOCOL_LABELS.get(p, p)}
    out = frame.copy()
    for column, mapper in joined.items():  # comma-joined lists of the run browser
        if column in out.columns:
            out[column] = out[column].map(
                lambda v, m=mapper: ", ".join(m(x.strip()) for x in v.split(",")) if isinstance(v, str) and v else v
            )
    for column, mapper in mappers.items():
        if column in out.columns:
            out[column] = out[column].map(lambda v, m=mapper: v if v is None else m(v))
    for column in out.columns:
        if out[column].dtype == object and out[column].map(lambda v: isinstance(v, tuple)).any():
            out[column] = out[column].map(lambda v: ", ".join(map(str, v)) if isinstance(v, tuple) else v)
    return out.rename(columns=readable_columns(out.columns))


def readable_columns(columns) -> dict[str, str]:
    """``{column: label}`` for ``DataFrame.rename(columns=...)``."""
    return {c: column_label(str(c)) for c in columns}
