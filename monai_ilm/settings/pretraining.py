"""The settings of MoCo pretraining with intermediate-layer losses (``pretrain.json``, ``multi_gpu.json``).

A wrong setting otherwise surfaces late and far from its cause: a typo in ``layers`` as a shape error
inside the loss after the data has been cached, ``queue_size < batch_size`` at the first enqueue, an
unwritable ``output_dir`` when the first checkpoint is saved. :meth:`PretrainingSettings.check` checks
them all before anything is built (docs/method.md §4-§6 for what they mean).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import ClassVar

from monai_ilm.checks import (
    as_list,
    check_bool,
    check_choice,
    check_int,
    check_layers,
    check_pool_sizes,
    check_real,
    check_weights,
    check_writable_dir,
    fail,
    is_int,
)
from monai_ilm.data.compact_cache import CACHE_MODES
from monai_ilm.handlers.momentum_update import SCHEDULES
from monai_ilm.methods import METHODS
from monai_ilm.networks.backbones import STAGE_NAMES
from monai_ilm.networks.moco import BATCH_NORM_MODES, HEADS
from monai_ilm.settings.common import WorkflowSettings

__all__ = ["AMP_DTYPES", "PretrainingSettings"]

AMP_DTYPES = ("bfloat16", "float16")


@dataclass(kw_only=True)
class PretrainingSettings(WorkflowSettings):
    """The settings of a pretraining recipe; a setting left out (None) is not checked.

    Besides those of :class:`~monai_ilm.settings.common.WorkflowSettings`:

    Args:
        method: one of :data:`monai_ilm.methods.METHODS`.
        layers: distinct stage names, a subset of ``layer1`` ... ``layer4`` (for ``mse`` and ``barlow``).
        mse_weights, barlow_weights: one finite weight >= 0, or one per entry of ``layers``.
        mse_pool_sizes: ``"reference"``, or a positive size or null (no pooling) per entry of ``layers``.
        barlow_scale: > 0. barlow_offdiag_weight: >= 0. barlow_projector_dims: positive widths.
        zero_init_residual: true or false. batch_norm: one of :data:`monai_ilm.networks.moco.BATCH_NORM_MODES`.
        head: one of :data:`monai_ilm.networks.moco.HEADS`. embedding_dim: a positive integer.
        batch_size, max_epochs, val_interval: positive integers. epoch_length: null or a positive integer.
        cache: where the decoded training images are kept, one of :data:`monai_ilm.data.CACHE_MODES`
            (``"memory"`` and ``"disk"`` need ``augment_on`` ``"device"``, whose loader gives uint8 images).
        cache_dir: a writable (or creatable) folder for the on-disk compact cache.
        cache_rate: in [0, 1]. learning_rate: > 0. weight_decay: >= 0. temperature: > 0.
        queue_size: an integer >= batch_size (a batch of keys must fit in the queue).
        momentum: in [0, 1]. momentum_schedule: ``"constant"`` or ``"cosine"``.
        amp, channels_last, compile: true or false.
        augment_on: where the two views are made, one of :data:`monai_ilm.transforms.AUGMENT_ON`.
        amp_dtype: ``"bfloat16"`` or ``"float16"`` (the latter with a gradient scaler on CUDA).
        log_interval, nan_check_interval: positive integers (iterations).
        checkpoint_iterations: an integer >= 0 (0: no iteration checkpoints); with ``nan_check_interval``
            above 1, a multiple of it, so every iteration checkpoint follows a NaN check.
        knn_interval: an integer >= 0 (epochs between online kNN scores; 0: off).
        knn_bank_size, knn_val_size: positive integers. knn_cache_rate: in [0, 1].
        health_samples: an integer >= 2. collapse_rank: a number >= 0. collapse_patience: an integer >= 0 (0: off).
    """

    method: object = None
    layers: object = None
    mse_weights: object = None
    mse_pool_sizes: object = None
    barlow_weights: object = None
    barlow_scale: object = None
    barlow_offdiag_weight: object = None
    barlow_projector_dims: object = None
    zero_init_residual: object = None
    embedding_dim: object = None
    head: object = None
    batch_norm: object = None
    batch_size: object = None
    cache: object = None
    cache_dir: object = None
    cache_rate: object = None
    max_epochs: object = None
    epoch_length: object = None
    val_interval: object = None
    learning_rate: object = None
    weight_decay: object = None
    queue_size: object = None
    temperature: object = None
    momentum: object = None
    momentum_schedule: object = None
    amp: object = None
    amp_dtype: object = None
    channels_last: object = None
    compile: object = None
    augment_on: object = None
    log_interval: object = None
    nan_check_interval: object = None
    checkpoint_iterations: object = None
    knn_interval: object = None
    knn_bank_size: object = None
    knn_val_size: object = None
    knn_cache_rate: object = None
    health_samples: object = None
    collapse_rank: object = None
    collapse_patience: object = None

    workflow_name: ClassVar[str] = "pretraining"

    def check(self) -> PretrainingSettings:
        """Check every given setting; returns ``self``.

        Raises:
            ValueError: for a setting given to the run that pretraining does not read, or the first bad
                setting, naming it and the allowed values.
            FileNotFoundError: when ``dataset_dir`` does not exist (naming it and the expected layout).
        """
        self.check_used()
        if self.method is not None:
            check_choice("method", self.method, METHODS)
        if self.layers is not None:
            check_layers("layers", self.layers, STAGE_NAMES)
        if self.method is not None:
            self._check_intermediate_loss()
        self.check_data()
        self.check_model()
        self._check_network()
        self._check_schedule()
        self._check_contrast()
        self._check_speed()
        self._check_nan_checks()
        self._check_monitoring()
        return self

    def _check_intermediate_loss(self) -> None:
        """The settings of the intermediate-layer loss that ``method`` uses (none for plain MoCo)."""
        if self.method == "moco":
            return
        layers = STAGE_NAMES if self.layers is None else check_layers("layers", self.layers, STAGE_NAMES)
        num_layers = len(layers)
        if self.method == "mse":
            self.check_given(
                {
                    "mse_weights": partial(check_weights, num_layers=num_layers),
                    "mse_pool_sizes": partial(check_pool_sizes, num_layers=num_layers),
                }
            )
            return
        self.check_given(
            {
                "barlow_weights": partial(check_weights, num_layers=num_layers),
                "barlow_scale": partial(check_real, low=0.0, low_open=True),
                "barlow_offdiag_weight": partial(check_real, low=0.0),
            }
        )
        dims = self.barlow_projector_dims
        if dims is not None:
            listed = as_list("barlow_projector_dims", dims, "positive layer widths")
            if not listed or not all(is_int(d) and d >= 1 for d in listed):
                raise fail("barlow_projector_dims", "a non-empty list of positive layer widths", dims)

    def _check_network(self) -> None:
        self.check_given(
            {
                "zero_init_residual": check_bool,
                "embedding_dim": check_int,
                "head": partial(check_choice, allowed=HEADS),
                "batch_norm": partial(check_choice, allowed=BATCH_NORM_MODES),
                "batch_size": check_int,
            }
        )

    def _check_schedule(self) -> None:
        self._check_cache()
        self.check_given(
            {
                "cache_rate": partial(check_real, low=0.0, high=1.0),
                "max_epochs": check_int,
                "epoch_length": check_int,
                "val_interval": check_int,
                "learning_rate": partial(check_real, low=0.0, low_open=True),
                "weight_decay": partial(check_real, low=0.0),
            }
        )

    def _check_cache(self) -> None:
        if self.cache is not None:
            check_choice("cache", self.cache, CACHE_MODES)
            if self.augment_on == "loader" and self.cache in ("memory", "disk"):
                raise fail(
                    "cache",
                    "'auto' or 'cache_rate' with augment_on 'loader' (its loader gives float views, not uint8 images)",
                    self.cache,
                )
        if self.cache_dir is not None:
            check_writable_dir("cache_dir", self.cache_dir)

    def _check_contrast(self) -> None:
        if self.queue_size is not None:
            minimum = self.batch_size if is_int(self.batch_size) else 1
            if not is_int(self.queue_size) or self.queue_size < minimum:
                raise fail(
                    "queue_size",
                    f"an integer of at least batch_size ({minimum}): a batch of keys must fit",
                    self.queue_size,
                )
        self.check_given(
            {
                "temperature": partial(check_real, low=0.0, low_open=True),
                "momentum": partial(check_real, low=0.0, high=1.0),
                "momentum_schedule": partial(check_choice, allowed=SCHEDULES),
            }
        )

    def _check_speed(self) -> None:
        from monai_ilm.transforms.device_augment import AUGMENT_ON  # the transforms import more than settings need

        self.check_given(
            {
                "amp": check_bool,
                "channels_last": check_bool,
                "compile": check_bool,
                "amp_dtype": partial(check_choice, allowed=AMP_DTYPES),
                "augment_on": partial(check_choice, allowed=AUGMENT_ON),
                "log_interval": check_int,
            }
        )

    def _check_nan_checks(self) -> None:
        every = 1 if self.nan_check_interval is None else check_int("nan_check_interval", self.nan_check_interval)
        if self.checkpoint_iterations is not None:
            check_int("checkpoint_iterations", self.checkpoint_iterations, minimum=0)
            if self.checkpoint_iterations % every:
                raise fail(
                    "checkpoint_iterations",
                    f"0 or a multiple of nan_check_interval ({every}), so no checkpoint holds an unchecked step",
                    self.checkpoint_iterations,
                )

    def _check_monitoring(self) -> None:
        """The settings of ``OnlineKNNHandler`` and ``RepresentationHealthHandler``."""
        self.check_given(
            {
                "knn_interval": partial(check_int, minimum=0),
                "knn_bank_size": check_int,
                "knn_val_size": check_int,
                "health_samples": partial(check_int, minimum=2),
                "collapse_patience": partial(check_int, minimum=0),
                "knn_cache_rate": partial(check_real, low=0.0, high=1.0),
                "collapse_rank": partial(check_real, low=0.0),
            }
        )
