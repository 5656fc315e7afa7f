from __future__ import annotations

import pandas as pd
import pytest

from monai_ilm.results.rows import config_hash, make_row
from monai_ilm.results.schema import COLUMNS, SCHEMA, empty_frame, validate
from tests.results._rows import row


def test_valid_rows_get_canonical_dtypes():
    df = validate(pd.DataFrame([row(), row(block=3, protocol="probe", ci_low=None, ci_high=None)]))
    assert list(df.columns) == list(COLUMNS)
    assert {c.name: str(df[c.name].dtype) for c in SCHEMA} == {c.name: c.dtype for c in SCHEMA}
    assert df["block"].isna().tolist() == [True, False]
    assert df.loc[1, "block"] == 3


def test_strings_from_csv_are_parsed():
    text = {k: ("" if v is None else str(v)) for k, v in row().items()}
    df = validate(pd.DataFrame([text]))
    assert df.loc[0, "value"] == 0.851 and df.loc[0, "seed"] == 0 and pd.isna(df.loc[0, "block"])


def test_empty_frame_validates():
    assert len(validate(empty_frame())) == 0


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"seed": "abc"}, "column 'seed': expected an integer or empty, got row 0: 'abc'"),
        ({"seed": 1.5}, "column 'seed': expected an integer"),
        ({"value": None}, "column 'value': expected a finite number, got row 0: None"),
        ({"value": float("inf")}, "column 'value': expected a finite number"),
        ({"block": "x"}, "column 'block': expected an integer or empty"),
        ({"dataset": ""}, "column 'dataset': expected a non-empty string"),
        ({"method": 3}, "column 'method': expected a non-empty string"),
        ({"timestamp": "yesterday"}, "column 'timestamp': expected an ISO-8601 timestamp string"),
        ({"protocol": "linear_probe"}, "column 'protocol': expected one of"),
        ({"label_fraction": 0.0}, r"column 'label_fraction': expected a fraction in \(0, 1\]"),
        ({"n": 0}, "column 'n': expected a sample count >= 1"),
        ({"ci_low": None}, "column 'ci_low': expected ci_low and ci_high both given or both empty"),
        ({"ci_low": 0.9, "ci_high": 0.8}, "column 'ci_high': expected ci_high >= ci_low"),
    ],
)
def test_bad_values_name_column_and_expectation(overrides, message):
    with pytest.raises(ValueError, match=message):
        validate(pd.DataFrame([row(**overrides)]))


def test_missing_and_unexpected_columns():
    with pytest.raises(ValueError, match=r"missing column\(s\) \['seed'\]"):
        validate(pd.DataFrame([row()]).drop(columns="seed"))
    with pytest.raises(ValueError, match=r"unexpected column\(s\) \['extra'\]"):
        validate(pd.DataFrame([row(extra=1)]))


def test_empty_checkpoint_allowed():
    assert validate(pd.DataFrame([row(checkpoint="", config_hash="")])).loc[0, "checkpoint"] == ""


def test_make_row_and_config_hash():
    r = make_row(**{k: v for k, v in row().items() if k not in ("block", "ci_low", "ci_high", "timestamp")})
    assert r["block"] is None and r["ci_low"] is None and list(r) == list(COLUMNS)
    validate(pd.DataFrame([r]))
    with pytest.raises(ValueError, match=r"unknown column\(s\) \['colour'\]"):
        make_row(colour="red")
    with pytest.raises(ValueError, match=r"fields: expected values for the required column\(s\)"):
        make_row(dataset="x")
    assert config_hash({"a": 1, "b": [1, 2]}) == config_hash({"b": [1, 2], "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})
    with pytest.raises(ValueError, match="config: expected a JSON-serialisable"):
        config_hash({"a": object()})
