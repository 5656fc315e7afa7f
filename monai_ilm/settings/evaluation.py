"""The settings of a downstream evaluation (``evaluate.json``, one protocol per run).

The protocols are those of the results table (:data:`monai_ilm.results.schema.PROTOCOLS`); the
methods are the pretraining methods plus ``"supervised"`` (a randomly initialised encoder).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from monai_ilm.checks import check_bool, check_choice, check_int, check_real
from monai_ilm.methods import METHODS
from monai_ilm.results.schema import PROTOCOLS
from monai_ilm.settings.common import WorkflowSettings

__all__ = ["EVALUATION_METHODS", "EvaluationSettings", "InferenceSettings"]

EVALUATION_METHODS = (*METHODS, "supervised")


@dataclass(kw_only=True)
class EvaluationSettings(WorkflowSettings):
    """The settings of an evaluation recipe; a setting left out (None) is not checked.

    Besides those of :class:`~monai_ilm.settings.common.WorkflowSettings`:

    Args:
        protocol: one of :data:`monai_ilm.results.schema.PROTOCOLS`.
        method: a pretraining method or ``"supervised"`` (no pretraining).
        label_fraction: the labelled fraction, in (0, 1].
        evaluation_epochs, evaluation_batch_size, n_resamples: positive integers.
        evaluation_lr: > 0.
        ci_method: one of the interval methods; cka_kernel: one of the CKA kernels.
        amp, standardize_features: true or false.
    """

    protocol: object = None
    method: object = None
    label_fraction: object = None
    evaluation_epochs: object = None
    evaluation_batch_size: object = None
    evaluation_lr: object = None
    n_resamples: object = None
    ci_method: object = None
    cka_kernel: object = None
    amp: object = None
    standardize_features: object = None

    workflow_name: ClassVar[str] = "evaluation"

    def check(self) -> EvaluationSettings:
        """Check every given setting; returns ``self``.

        Raises:
            ValueError: for a setting given to the run that evaluation does not read, or the first bad setting,
                naming it and the allowed values.
            FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
        """
        self.check_used()
        from monai_ilm.evaluation import KERNELS
        from monai_ilm.evaluation.intervals import METHODS as CI_METHODS

        self.check_given(
            {
                "protocol": partial(check_choice, allowed=PROTOCOLS),
                "method": partial(check_choice, allowed=EVALUATION_METHODS),
                "label_fraction": partial(check_real, low=0.0, high=1.0, low_open=True),
                "evaluation_epochs": check_int,
                "evaluation_batch_size": check_int,
                "n_resamples": check_int,
                "evaluation_lr": partial(check_real, low=0.0, low_open=True),
                "ci_method": partial(check_choice, allowed=CI_METHODS),
                "cka_kernel": partial(check_choice, allowed=KERNELS),
                "amp": check_bool,
                "standardize_features": check_bool,
            }
        )
        super().check()
        return self


@dataclass(kw_only=True)
class InferenceSettings(WorkflowSettings):
    """The settings of the embedding workflow (``inference.json``); a setting left out (None) is not checked.

    Besides those of :class:`~monai_ilm.settings.common.WorkflowSettings`:

    Args:
        split: ``"train"``, ``"val"`` or ``"test"``.
        batch_size, embedding_dim: positive integers.
        head: one of :data:`monai_ilm.networks.moco.HEADS`.
    """

    split: object = None
    batch_size: object = None
    embedding_dim: object = None
    head: object = None

    workflow_name: ClassVar[str] = "inference"

    def check(self) -> InferenceSettings:
        """Check every given setting; returns ``self``.

        Raises:
            ValueError: for a setting given to the run that inference does not read, or the first bad setting,
                naming it and the allowed values.
            FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
        """
        self.check_used()
        from monai_ilm.data.splits import SPLIT_NAMES
        from monai_ilm.networks.moco import HEADS

        self.check_given(
            {
                "split": partial(check_choice, allowed=SPLIT_NAMES),
                "batch_size": check_int,
                "embedding_dim": check_int,
                "head": partial(check_choice, allowed=HEADS),
            }
        )
        super().check()
        return self
