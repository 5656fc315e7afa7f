"""Evaluation of monai-ilm models: downstream metrics, bootstrap intervals, CKA feature reuse and KS distances."""

from __future__ import annotations

from monai_ilm.evaluation.cka import KERNELS, StreamingLinearCKA, cka, linear_cka, rbf_cka
from monai_ilm.evaluation.cka_summaries import CKABootstrap, bootstrap_cka, cka_matrix
from monai_ilm.evaluation.intervals import (
    BootstrapCI,
    bootstrap_ci,
    percentile_interval,
    resample_indices,
    standard_error_interval,
)
from monai_ilm.evaluation.ks import KSResult, ks_distance, ks_rows
from monai_ilm.evaluation.metrics import MeanAUC, binary_auc, f1, mean_auc, roc_auc

__all__ = [
    "KERNELS",
    "CKABootstrap",
    "StreamingLinearCKA",
    "bootstrap_cka",
    "cka",
    "cka_matrix",
    "linear_cka",
    "rbf_cka",
    "BootstrapCI",
    "bootstrap_ci",
    "percentile_interval",
    "resample_indices",
    "standard_error_interval",
    "KSResult",
    "ks_distance",
    "ks_rows",
    "MeanAUC",
    "binary_auc",
    "f1",
    "mean_auc",
    "roc_auc",
]

# downstream evaluation: linear probe / fine-tuning, layer-wise probing, feature reuse (Tables 1-4)
from monai_ilm.evaluation.best_weights import BestWeights
from monai_ilm.evaluation.classifier import DownstreamClassifier, downstream_network
from monai_ilm.evaluation.feature_reuse import (
    FeatureReuseResult,
    feature_reuse,
    feature_reuse_from_features,
    feature_reuse_rows,
)
from monai_ilm.evaluation.features import (
    FeatureBatch,
    StageFeatures,
    batch_ids,
    check_ordered_loader,
    extract_stage_features,
    iter_stage_features,
    load_pretrained_encoder,
)
from monai_ilm.evaluation.prediction import (
    DownstreamResult,
    Predictions,
    evaluate_downstream,
    predict,
    run_downstream,
    score_predictions,
)
from monai_ilm.evaluation.probing import (
    FeatureBatches,
    probe_blocks,
    probe_features,
    probe_rows,
)
from monai_ilm.evaluation.protocols import DATASET_TASKS, EVALUATION_PROTOCOLS, EvaluationRun
from monai_ilm.evaluation.rows import downstream_rows
from monai_ilm.evaluation.tasks import PAPER_TASKS, TASKS, DownstreamTask, get_task
from monai_ilm.evaluation.training import FitResult, fit_downstream, task_metric

__all__ += [
    "DATASET_TASKS",
    "EVALUATION_PROTOCOLS",
    "EvaluationRun",
    "PAPER_TASKS",
    "TASKS",
    "BestWeights",
    "DownstreamClassifier",
    "DownstreamResult",
    "DownstreamTask",
    "FeatureBatch",
    "FeatureBatches",
    "FeatureReuseResult",
    "FitResult",
    "Predictions",
    "StageFeatures",
    "batch_ids",
    "check_ordered_loader",
    "downstream_network",
    "downstream_rows",
    "evaluate_downstream",
    "extract_stage_features",
    "feature_reuse",
    "feature_reuse_from_features",
    "feature_reuse_rows",
    "fit_downstream",
    "get_task",
    "iter_stage_features",
    "load_pretrained_encoder",
    "predict",
    "probe_blocks",
    "probe_features",
    "probe_rows",
    "run_downstream",
    "score_predictions",
    "task_metric",
]
