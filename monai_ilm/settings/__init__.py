"""Every bundle setting checked before anything is built or trained, by one settings object per workflow.

Each bundle config declares its workflow's settings once, as a component, and checks them first::

    "settings": {"_target_": "monai_ilm.settings.PretrainingSettings", "method": "@method", ...},
    "initialize": ["$@settings.check()", ...]

:class:`PretrainingSettings` (``pretrain.json``, reused by ``multi_gpu.json``), :class:`EvaluationSettings`
(``evaluate.json``) and :class:`InferenceSettings` (``inference.json``) share the data and model settings of
:class:`WorkflowSettings`; the checkers of one value each are in :mod:`monai_ilm.checks`. Every
message has the form ``"<setting>: expected <what>, got <value>."``, and only ``ValueError`` and
``FileNotFoundError`` are raised, whatever the input.
"""

from __future__ import annotations

from monai_ilm.settings.common import WorkflowSettings, check_data_settings
from monai_ilm.settings.evaluation import EvaluationSettings, InferenceSettings
from monai_ilm.settings.pretraining import PretrainingSettings

__all__ = [
    "EvaluationSettings",
    "InferenceSettings",
    "PretrainingSettings",
    "WorkflowSettings",
    "check_data_settings",
]
