"""Evaluation of monai-ilm models: downstream metrics, CKA feature reuse, KS distances and the downstream protocols."""

from __future__ import annotations

from monai_ilm.utils import lazy_package

# each name is loaded from its module on first use: importing one module of the package loads only what it needs
__all__ = lazy_package(
    __name__,
    {
        "best_weights": ("BestWeights",),
        "cka": ("KERNELS", "StreamingLinearCKA", "cka", "linear_cka", "rbf_cka"),
        "cka_summaries": ("CKABootstrap", "bootstrap_cka", "cka_matrix"),
        "classifier": ("DownstreamClassifier", "downstream_network"),
        "feature_reuse": ("FeatureReuseResult", "feature_reuse", "feature_reuse_from_features", "feature_reuse_rows"),
        "features": (
            "FeatureBatch",
            "StageFeatures",
            "batch_ids",
            "check_ordered_loader",
            "extract_stage_features",
            "iter_stage_features",
            "load_pretrained_encoder",
        ),
        "ks": ("KSResult", "ks_distance", "ks_rows"),
        "metrics": ("MeanAUC", "binary_auc", "f1", "mean_auc", "roc_auc"),
        "prediction": (
            "DownstreamResult",
            "Predictions",
            "evaluate_downstream",
            "predict",
            "run_downstream",
            "score_predictions",
        ),
        "probing": ("FeatureBatches", "probe_blocks", "probe_features", "probe_rows"),
        "protocols": ("DATASET_TASKS", "EvaluationRun"),
        "downstream_rows": ("downstream_rows",),
        "tasks": ("DownstreamTask", "PAPER_TASKS", "TASKS", "get_task"),
        "training": ("FitResult", "fit_downstream", "task_metric"),
    },
)
