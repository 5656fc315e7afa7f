"""The settings every workflow shares (data set, split, model input, seed), and the base of the settings objects.

A workflow's settings object is declared once in its bundle config, one ``"key": "@key"`` per setting, and
checked first in ``initialize``::

    "settings": {"_target_": "monai_ilm.settings.PretrainingSettings", "method": "@method", ...},
    "initialize": ["$@settings.check()", ...]

A setting left out (None) is not checked. The allowed values come from the modules that own them: data
sets from :mod:`monai_ilm.datasets`, backbones from :mod:`monai_ilm.networks.backbones`, NIH split
sources from :mod:`monai_ilm.data.nih`...
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from monai_ilm.checks import check_bool, check_choice, check_existing_path, check_int, check_writable_dir
from monai_ilm.data.dispatch import check_data_settings
from monai_ilm.data.nih import SPLIT_SOURCES as NIH_SPLITS
from monai_ilm.datasets import DATASETS
from monai_ilm.networks.backbones import BACKBONES

__all__ = ["CHANNELS", "MAX_IMAGE_SIZE", "MAX_SEED", "NIH_SPLITS", "WorkflowSettings", "check_data_settings"]

MAX_SEED = 2**32 - 1  # numpy's global seed, which MONAI's set_determinism sets, must fit in 32 bits
MAX_IMAGE_SIZE = 16384  # pixels per side; larger is a typo (or a units mix-up), not a chest X-ray
CHANNELS = (1, 3)


@dataclass(kw_only=True)
class WorkflowSettings:
    """The settings every workflow reads; subclasses add their own and extend :meth:`check`.

    Args:
        seed: an integer in [0, 2**32 - 1].
        dataset_name: a data set of :data:`monai_ilm.datasets.DATASETS`.
        dataset_dir: an existing file or folder (the error quotes the data set's layout).
        output_dir: a writable (or creatable) folder.
        backbone: a torchvision ResNet of :data:`monai_ilm.networks.backbones.BACKBONES`.
        channels: 1 or 3.
        image_size: a positive integer up to 16384.
        num_workers: an integer >= 0.
        nih_split: ``"official"``, ``"chexnet"`` or ``"seeded"``; used by ``dataset_name`` ``"nih"`` only
            (other data sets accept only the default ``"official"``, which they ignore).
        val_fraction: null (each data set's own default) or a number in (0, 1): the share of the
            train+val patients that form val, wherever a validation split is drawn.
        require_all_classes: true or false (raise, rather than warn, when a class misses a split).
        skip_unreadable: true or false (drop missing and unreadable images with a logged count, rather than stop).

    Inside ``monai.bundle run``, each workflow's :meth:`check` first refuses a setting given to the run that
    the workflow does not read (:meth:`check_used`).
    """

    workflow_name: ClassVar[str] = "this workflow"

    seed: object = None
    dataset_name: object = None
    dataset_dir: object = None
    output_dir: object = None
    backbone: object = None
    channels: object = None
    image_size: object = None
    num_workers: object = None
    nih_split: object = None
    val_fraction: object = None
    require_all_classes: object = None
    skip_unreadable: object = None

    @classmethod
    def names(cls) -> tuple[str, ...]:
        """The settings this object checks, as the bundles spell them."""
        return tuple(field.name for field in dataclasses.fields(cls))

    def given(self) -> dict[str, object]:
        """The settings given (not None)."""
        return {name: getattr(self, name) for name in self.names() if getattr(self, name) is not None}

    def check_given(self, checks: Mapping[str, Callable[[str, object], object]]) -> None:
        """Call ``checks[name](name, value)`` for every setting in ``checks`` that is given (not None)."""
        for name, check in checks.items():
            value = getattr(self, name)
            if value is not None:
                check(name, value)

    def check_used(self) -> None:
        """Refuse a setting given to the running bundle that this workflow does not read.

        Raises:
            ValueError: naming the setting, the workflow and where the setting is read
                (see :func:`monai_ilm.settings.usage.check_given_settings_used`).
        """
        from monai_ilm.settings.usage import check_given_settings_used  # MONAI's bundle code, only when checked

        check_given_settings_used(self.workflow_name)

    def check(self) -> WorkflowSettings:
        """Check every given setting; returns ``self``.

        Raises:
            ValueError: for the first bad setting, naming it and the allowed values.
            FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
        """
        self.check_data()
        self.check_model()
        return self

    def check_data(self) -> None:
        """The seed, the data set, its folder, the output folder and the split settings."""
        known = isinstance(self.dataset_name, str) and self.dataset_name in DATASETS
        layout = DATASETS[self.dataset_name].expected_layout if known else "the data set's files"
        self.check_given(  # in this order: the data set's name before its folder, whose error quotes its layout
            {
                "seed": partial(check_int, minimum=0, maximum=MAX_SEED),
                "dataset_name": partial(check_choice, allowed=tuple(DATASETS)),
                "dataset_dir": partial(check_existing_path, expected=layout),
                "output_dir": check_writable_dir,
            }
        )
        check_data_settings(self.dataset_name, self.nih_split, self.val_fraction, self.require_all_classes)
        self.check_given({"skip_unreadable": check_bool, "num_workers": partial(check_int, minimum=0)})

    def check_model(self) -> None:
        """The backbone and its input."""
        self.check_given(
            {
                "backbone": partial(check_choice, allowed=BACKBONES),
                "channels": partial(check_choice, allowed=CHANNELS),
                "image_size": partial(check_int, maximum=MAX_IMAGE_SIZE),
            }
        )
