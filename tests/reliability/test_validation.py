"""Settings validation: every bad setting is named with its allowed values before anything is built.

The fuzz tests give random values of random types to every setting: validation either passes or
raises ``ValueError`` / ``FileNotFoundError`` whose message starts with the name of a setting that
was given (the bad one, or one it constrains), never another exception.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from monai_ilm.recipe_checks import WORKFLOW_SETTINGS, check_settings

BUNDLES = Path(__file__).resolve().parents[2] / "bundles"
PRETRAIN_KEYS = WORKFLOW_SETTINGS["pretraining"]
EVALUATION_KEYS = WORKFLOW_SETTINGS["evaluation"]
# a bad value of the key on the left may be reported under one of the keys it constrains
CONSTRAINS = {
    "layers": {"mse_weights", "mse_pool_sizes", "barlow_weights"},
    "batch_size": {"queue_size"},
}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@pytest.fixture(scope="module")
def folders():
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "data").mkdir()
        (root / "a_file").write_text("x")
        yield root


def validate_pretrain_settings(**values) -> None:
    check_settings("pretraining", values)


def validate_evaluation_settings(**values) -> None:
    check_settings("evaluation", values)


def recipe_settings(bundle: str, config: str = "pretrain.json", keys=PRETRAIN_KEYS) -> dict:
    """The literal values a bundle's recipe gives the validated settings (quick.json on top for pretraining)."""
    values = json.loads((BUNDLES / bundle / "configs" / config).read_text())
    if config == "pretrain.json":
        values.update(json.loads((BUNDLES / bundle / "configs" / "quick.json").read_text()))
    # expressions ("$...") and references ("@key") are resolved by the bundle parser, not here
    return {k: v for k, v in values.items() if k in keys and not (isinstance(v, str) and v[:1] in ("$", "@"))}


def valid_pretrain(folders) -> dict:
    return {
        **recipe_settings("nih_chestxray_ilm"),
        "dataset_dir": str(folders / "data"),
        "output_dir": str(folders / "out"),
    }


@pytest.mark.parametrize(
    "bundle", sorted(p.name for p in BUNDLES.iterdir() if (p / "configs" / "pretrain.json").exists())
)
@pytest.mark.parametrize("method", ["moco", "mse", "barlow"])
def test_every_bundle_recipe_passes(folders, bundle, method):
    values = {**recipe_settings(bundle), "method": method}
    validate_pretrain_settings(
        **{**values, "dataset_dir": str(folders / "data"), "output_dir": str(folders / "out" / "new")}
    )
    for protocol in ("finetune", "linear", "probe", "feature_reuse", "ks"):
        evaluation = recipe_settings(bundle, "evaluate.json", EVALUATION_KEYS)
        validate_evaluation_settings(**{**evaluation, "protocol": protocol}, method=method, seed=0)


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("method", "mes", "method: expected one of ['moco', 'mse', 'barlow'], got 'mes'"),
        ("layers", ["layer1", "layer1"], "layers: expected a non-empty list of distinct names from ['layer1'"),
        ("layers", [], "layers: expected a non-empty list"),
        ("layers", ["layer5"], "layers: expected a non-empty list of distinct names from"),
        ("mse_weights", [0.25, 0.25], "mse_weights: expected 4 finite weights >= 0 (one per entry of layers)"),
        ("mse_weights", [0.25, float("nan"), 0.25, 0.25], "mse_weights: expected 4 finite weights >= 0"),
        ("mse_weights", -1, "mse_weights: expected a finite number >= 0"),
        ("mse_pool_sizes", [16, 0, 4, 4], "mse_pool_sizes: expected 'reference', or 4 positive integers or nulls"),
        ("seed", -1, "seed: expected an integer of at least 0 and at most 4294967295"),
        ("seed", 2**32, "seed: expected an integer of at least 0 and at most 4294967295"),
        ("seed", 1.5, "seed: expected an integer"),
        ("image_size", 0, "image_size: expected an integer of at least 1"),
        ("batch_size", True, "batch_size: expected an integer of at least 1"),
        ("queue_size", 4, "queue_size: expected an integer of at least batch_size (8)"),
        ("max_epochs", "2", "max_epochs: expected an integer of at least 1"),
        ("epoch_length", 0, "epoch_length: expected an integer of at least 1"),
        ("temperature", 0.0, "temperature: expected a finite number > 0"),
        ("momentum", 1.01, "momentum: expected a finite number in [0, 1]"),
        ("momentum_schedule", "linear", "momentum_schedule: expected one of ['constant', 'cosine']"),
        ("cache_rate", 2, "cache_rate: expected a finite number in [0, 1]"),
        ("channels", 2, "channels: expected one of [1, 3]"),
        ("backbone", "resnet51", "backbone: expected one of ['resnet18'"),
        ("dataset_name", "chexpert", "dataset_name: expected one of ['nih', 'idc', 'dr'"),
        ("channels_last", "yes", "channels_last: expected true or false, got 'yes'"),
        ("compile", 1, "compile: expected true or false, got 1"),
        ("amp_dtype", "float32", "amp_dtype: expected one of ['bfloat16', 'float16'], got 'float32'"),
        ("log_interval", 0, "log_interval: expected an integer of at least 1"),
        ("nan_check_interval", 2.5, "nan_check_interval: expected an integer of at least 1"),
        ("checkpoint_iterations", -1, "checkpoint_iterations: expected an integer of at least 0"),
        ("skip_unreadable", "no", "skip_unreadable: expected true or false, got 'no'"),
        ("knn_interval", -1, "knn_interval: expected an integer of at least 0, got -1"),
        ("knn_bank_size", 0, "knn_bank_size: expected an integer of at least 1, got 0"),
        ("knn_val_size", 1.5, "knn_val_size: expected an integer of at least 1, got 1.5"),
        ("knn_cache_rate", 1.5, "knn_cache_rate: expected a finite number in [0, 1]"),
        ("health_samples", 1, "health_samples: expected an integer of at least 2, got 1"),
        ("collapse_rank", -1.0, "collapse_rank: expected a finite number >= 0"),
        ("collapse_patience", True, "collapse_patience: expected an integer of at least 0, got True"),
    ],
)
def test_bad_setting_is_named_with_the_allowed_values(folders, key, value, expected):
    with pytest.raises(ValueError) as error:
        validate_pretrain_settings(**{**valid_pretrain(folders), key: value})
    assert str(error.value).startswith(expected), str(error.value)


def test_layers_set_the_length_of_the_per_layer_settings(folders):
    values = {
        **valid_pretrain(folders),
        "layers": ["layer3", "layer4"],
        "mse_weights": [1.0, 1.0],
        "mse_pool_sizes": [2, 1],
    }
    validate_pretrain_settings(**values)
    with pytest.raises(ValueError, match=r"^mse_pool_sizes: expected 'reference', or 2 positive"):
        validate_pretrain_settings(**{**values, "mse_pool_sizes": [8, 4, 2, 1]})
    with pytest.raises(ValueError, match=r"^barlow_weights: expected 2 finite weights"):
        validate_pretrain_settings(**{**values, "method": "barlow"})  # the recipe's four Barlow weights
    validate_pretrain_settings(**{**values, "method": "moco"})  # plain MoCo has no per-layer settings


def test_iteration_checkpoints_must_follow_a_nan_check(folders):
    values = {**valid_pretrain(folders), "nan_check_interval": 50, "checkpoint_iterations": 200}
    validate_pretrain_settings(**values)
    validate_pretrain_settings(**{**values, "checkpoint_iterations": 0})
    with pytest.raises(
        ValueError, match=r"^checkpoint_iterations: expected 0 or a multiple of nan_check_interval \(50\)"
    ):
        validate_pretrain_settings(**{**values, "checkpoint_iterations": 120})


def test_paths(folders):
    values = valid_pretrain(folders)
    with pytest.raises(
        FileNotFoundError,
        match=r"^dataset_dir: expected a NIH ChestX-ray14 folder holding Data_Entry_2017.*, got '.*missing'",
    ):
        validate_pretrain_settings(**{**values, "dataset_dir": str(folders / "missing")})
    with pytest.raises(ValueError, match=r"^output_dir: expected a folder .*, got '.*a_file', which is a file"):
        validate_pretrain_settings(**{**values, "output_dir": str(folders / "a_file" / "runs")})
    with pytest.raises(ValueError, match=r"^dataset_dir: expected a path, got ''"):
        validate_pretrain_settings(**{**values, "dataset_dir": ""})
    with pytest.raises(ValueError, match=r"^dataset_dir: expected a path that can be checked, got"):
        validate_pretrain_settings(**{**values, "dataset_dir": "x" * 5000})


def test_evaluation_settings():
    validate_evaluation_settings(protocol="linear", method="supervised", label_fraction=0.01, seed=3)
    for key, value, expected in [
        ("label_fraction", 0.0, "label_fraction: expected a finite number in (0, 1]"),
        ("label_fraction", 1.5, "label_fraction: expected a finite number in (0, 1]"),
        ("protocol", "probing", "protocol: expected one of ['linear', 'finetune', 'probe', 'feature_reuse', 'ks']"),
        ("method", "simclr", "method: expected one of ['moco', 'mse', 'barlow', 'supervised']"),
        ("ci_method", "bca", "ci_method: expected one of ['percentile', 'standard_error']"),
        ("cka_kernel", "poly", "cka_kernel: expected one of ['linear', 'linear_debiased', 'rbf']"),
        ("n_resamples", 0, "n_resamples: expected an integer of at least 1"),
    ]:
        with pytest.raises(ValueError) as error:
            validate_evaluation_settings(**{key: value})
        assert str(error.value).startswith(expected), str(error.value)


SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.binary(max_size=6),
    st.sampled_from(["moco", "mse", "barlow", "layer1", "layer4", "reference", "cosine", "nih", "resnet18", "linear"]),
)
JUNK = st.one_of(
    SCALARS,
    st.lists(SCALARS, max_size=6),
    st.tuples(SCALARS, SCALARS),
    st.dictionaries(st.text(max_size=4), SCALARS, max_size=3),
    st.sampled_from([[], ["layer1", "layer3"], [0.5, 0.5], [16, None, 4, 1], float("nan"), 2**64, -0.0]),
)


def assert_named(error: BaseException, keys) -> None:
    assert isinstance(error, (ValueError, FileNotFoundError)), f"{type(error).__name__}: {error}"
    named = str(error).split(":", 1)[0]
    assert named in keys, f"names '{named}', expected one of {sorted(keys)}: {error}"


def path_values(folders):
    paths = [folders / "data", folders / "missing", folders / "a_file", folders / "a_file" / "x"]
    return st.sampled_from([*map(str, paths), "", " ", "\0", "~no_such_user_xyz/x", "x" * 5000, folders / "data"])


@FUZZ
@given(data=st.data())
def test_fuzzed_pretrain_settings_fail_only_with_a_named_setting(folders, data):
    values = valid_pretrain(folders)
    key = data.draw(st.sampled_from(PRETRAIN_KEYS), label="key")
    values[key] = data.draw(path_values(folders) if key.endswith("_dir") else JUNK, label="value")
    try:
        validate_pretrain_settings(**values)
    except Exception as error:  # noqa: BLE001 - the point of the test
        assert_named(error, {key} | CONSTRAINS.get(key, set()))


@FUZZ
@given(data=st.data())
def test_fuzzed_settings_everywhere_never_crash(folders, data):
    values = {
        key: data.draw(path_values(folders) if key.endswith("_dir") else JUNK, label=key)
        for key in data.draw(st.lists(st.sampled_from(PRETRAIN_KEYS), unique=True), label="keys")
    }
    try:
        validate_pretrain_settings(**values)
    except Exception as error:  # noqa: BLE001
        assert_named(error, set(values))
    evaluation = {
        key: data.draw(JUNK, label=key) for key in data.draw(st.lists(st.sampled_from(EVALUATION_KEYS), unique=True))
    }
    try:
        validate_evaluation_settings(**evaluation)
    except Exception as error:  # noqa: BLE001
        assert_named(error, set(evaluation))
