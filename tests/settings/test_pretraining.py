"""PretrainingSettings: the settings the old checks let through are checked, by the same message form."""

from __future__ import annotations

import pytest

from monai_ilm.networks.moco import BATCH_NORM_MODES, HEADS
from monai_ilm.settings import EvaluationSettings, InferenceSettings, PretrainingSettings


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("batch_norm", "global", "batch_norm: expected one of ['shuffle', 'sync', 'local'], got 'global'."),
        ("batch_norm", None, None),
        ("zero_init_residual", 1, "zero_init_residual: expected true or false, got 1."),
        ("zero_init_residual", "false", "zero_init_residual: expected true or false, got 'false'."),
        ("head", "mlp2", "head: expected one of ['linear', 'mlp'], got 'mlp2'."),
        ("augment_on", "gpu", "augment_on: expected one of ['device', 'loader'], got 'gpu'."),
        ("augment_on", "loader", None),
        ("cache", "ram", "cache: expected one of ['auto', 'memory', 'disk', 'cache_rate'], got 'ram'."),
        ("cache", "disk", None),
    ],
)
def test_network_settings_are_checked(key, value, expected):
    if expected is None:
        PretrainingSettings(**{key: value}).check()
        return
    with pytest.raises(ValueError) as error:
        PretrainingSettings(**{key: value}).check()
    assert str(error.value) == expected


@pytest.mark.parametrize("mode", BATCH_NORM_MODES)
def test_every_batch_norm_mode_and_head_of_moco_passes(mode):
    for head in HEADS:
        settings = PretrainingSettings(batch_norm=mode, head=head, zero_init_residual=True)
        assert settings.check() is settings


def test_each_workflow_checks_the_shared_settings_and_its_own():
    shared = {"seed", "dataset_name", "dataset_dir", "output_dir", "backbone", "image_size", "nih_split"}
    for cls in (PretrainingSettings, EvaluationSettings, InferenceSettings):
        assert shared <= set(cls.names()), cls.__name__
    assert {"protocol", "label_fraction"} <= set(EvaluationSettings.names())
    assert {"split", "embedding_dim"} <= set(InferenceSettings.names())
    with pytest.raises(ValueError, match=r"^split: expected one of \['train', 'val', 'test'\], got 'dev'\.$"):
        InferenceSettings(split="dev").check()
    with pytest.raises(ValueError, match=r"^method: expected one of \['moco', 'mse', 'barlow'\], got 'supervised'"):
        PretrainingSettings(method="supervised").check()
    EvaluationSettings(method="supervised").check()  # no pretraining: the baseline of the evaluation


def test_the_compact_cache_needs_the_device_stage_and_a_writable_folder(tmp_path):
    """With ``augment_on="loader"`` the loader gives float views: only ``"auto"`` (falls back) or ``"cache_rate"``."""
    for cache in ("auto", "cache_rate"):
        PretrainingSettings(cache=cache, augment_on="loader").check()
    for cache in ("memory", "disk"):
        PretrainingSettings(cache=cache, augment_on="device").check()
        with pytest.raises(ValueError) as error:
            PretrainingSettings(cache=cache, augment_on="loader").check()
        assert str(error.value) == (
            "cache: expected 'auto' or 'cache_rate' with augment_on 'loader' (its loader gives float views, "
            f"not uint8 images), got '{cache}'."
        )
    PretrainingSettings(cache_dir=str(tmp_path / "new" / "cache")).check()
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=r"^cache_dir: expected a folder .*, got '.*file', which is a file\.$"):
        PretrainingSettings(cache_dir=str(tmp_path / "file")).check()
