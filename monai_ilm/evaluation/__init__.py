"""Evaluation of monai-ilm models: downstream metrics, bootstrap intervals, CKA feature reuse and KS distances."""

from __future__ import annotations

from monai_ilm.evaluation.cka import (
    KERNELS,
    CKABootstrap,
    StreamingLinearCKA,
    bootstrap_cka,
    cka,
    cka_matrix,
    linear_cka,
    median_bandwidth,
    rbf_cka,
    rbf_kernel,
)
from monai_ilm.evaluation.intervals import (
    BootstrapCI,
    bootstrap_ci,
    percentile_interval,
    resample_indices,
    standard_error_interval,
)
from monai_ilm.evaluation.ks import KSResult, ks_distance, ks_statistic
from monai_ilm.evaluation.metrics import MeanAUC, binary_auc, f1, mean_auc, roc_auc

__all__ = [
    "KERNELS",
    "CKABootstrap",
    "StreamingLinearCKA",
    "bootstrap_cka",
    "cka",
    "cka_matrix",
    "linear_cka",
    "median_bandwidth",
    "rbf_cka",
    "rbf_kernel",
    "BootstrapCI",
    "bootstrap_ci",
    "percentile_interval",
    "resample_indices",
    "standard_error_interval",
    "KSResult",
    "ks_distance",
    "ks_statistic",
    "MeanAUC",
    "binary_auc",
    "f1",
    "mean_auc",
    "roc_auc",
]
