"""The settings of a downstream evaluation (``evaluate.json``, one protocol per run).

The protocols are those of the results table (:data:`monai_ilm.results.schema.PROTOCOLS`); the
methods are the pretraining methods plus ``"supervised"`` (a randomly initialised encoder).
"""

from __future__ import annotations

from dataclasses import dataclass

from monai_ilm.methods import METHODS
from monai_ilm.results.schema import PROTOCOLS
from monai_ilm.settings.checks import check_bool, check_choice, check_int, check_real
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
        amp: true or false.
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

    def check(self) -> EvaluationSettings:
        """Check every given setting; returns ``self``.

        Raises:
            ValueError: for the first bad setting, naming it and the allowed values.
            FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
        """
        from monai_ilm.evaluation import KERNELS
        from monai_ilm.evaluation.intervals import METHODS as CI_METHODS

        if self.protocol is not None:
            check_choice("protocol", self.protocol, PROTOCOLS)
        if self.method is not None:
            check_choice("method", self.method, EVALUATION_METHODS)
        if self.label_fraction is not None:
            check_real("label_fraction", self.label_fraction, low=0.0, high=1.0, low_open=True)
        for key in ("evaluation_epochs", "evaluation_batch_size", "n_resamples"):
            if getattr(self, key) is not None:
                check_int(key, getattr(self, key))
        if self.evaluation_lr is not None:
            check_real("evaluation_lr", self.evaluation_lr, low=0.0, low_open=True)
        if self.ci_method is not None:
            check_choice("ci_method", self.ci_method, CI_METHODS)
        if self.cka_kernel is not None:
            check_choice("cka_kernel", self.cka_kernel, KERNELS)
        if self.amp is not None:
            check_bool("amp", self.amp)
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

    def check(self) -> InferenceSettings:
        """Check every given setting; returns ``self``.

        Raises:
            ValueError: for the first bad setting, naming it and the allowed values.
            FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
        """
        from monai_ilm.data.splits import SPLIT_NAMES
        from monai_ilm.networks.moco import HEADS

        if self.split is not None:
            check_choice("split", self.split, SPLIT_NAMES)
        for key in ("batch_size", "embedding_dim"):
            if getattr(self, key) is not None:
                check_int(key, getattr(self, key))
        if self.head is not None:
            check_choice("head", self.head, HEADS)
        super().check()
        return self
