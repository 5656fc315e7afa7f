"""The CKA naming convention and the heatmap matrices."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dashboard import cka
from dashboard.data import load_results
from dashboard.sample import SampleLayout
from monai_ilm.results import make_row, validate


def test_kernels_match_the_evaluation_package() -> None:
    # read monai_ilm.evaluation.cka.KERNELS without importing torch/MONAI
    source = Path(__file__).resolve().parents[2] / "monai_ilm" / "evaluation" / "cka.py"
    tree = ast.parse(source.read_text(encoding="utf-8"))
    kernels = next(
        ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "KERNELS" for t in node.targets)
    )
    assert set(cka.KERNELS) == set(kernels)


@pytest.mark.parametrize(
    ("args", "name", "parsed"),
    [
        (("linear",), "cka_linear", cka.CKAMetric("cka_linear")),
        (("rbf", 2), "cka_rbf@b2", cka.CKAMetric("cka_rbf", 2)),
        (("linear_debiased", 3, "mse"), "cka_linear_debiased@mse:b3", cka.CKAMetric("cka_linear_debiased", 3, "mse")),
    ],
)
def test_metric_names_round_trip(args, name, parsed) -> None:
    assert cka.cka_metric_name(*args) == name
    assert cka.parse_cka_metric(name) == parsed


def test_non_cka_metrics_and_bad_names() -> None:
    for metric in ("auc", "cka_linear@", "cka_linear@x", "cka_linear@bb2", "ks"):
        assert cka.parse_cka_metric(metric) is None
    with pytest.raises(ValueError):
        cka.cka_metric_name("linear", other="mse")
    with pytest.raises(ValueError):
        cka.cka_metric_name("linear", block_b=1, other="a:b")


def _rows(entries) -> pd.DataFrame:
    rows = [
        make_row(
            dataset="nih",
            method=m,
            protocol="feature_reuse",
            label_fraction=f,
            seed=s,
            block=i,
            metric=metric,
            value=v,
            n=10,
            run_id=f"r{s}",
            timestamp="2025-01-01T00:00:00+00:00",
        )
        for m, f, s, i, metric, v in entries
    ]
    return validate(pd.DataFrame(rows))


def test_block_matrix_fills_the_diagonal_from_plain_rows_and_averages_seeds() -> None:
    df = _rows(
        [
            ("moco", 0.01, 0, 1, "cka_linear", 0.9),
            ("moco", 0.01, 1, 1, "cka_linear", 0.7),
            ("moco", 0.01, 0, 2, "cka_linear", 0.5),
            ("moco", 0.01, 0, 1, "cka_linear@b2", 0.4),
            ("moco", 0.01, 1, 1, "cka_linear@b2", 0.2),
            ("moco", 0.01, 0, 2, "cka_linear@b1", 0.35),
            ("moco", 0.01, 0, 2, "cka_linear@b2", 0.55),  # explicit diagonal wins over the plain row
            ("moco", 1.0, 0, 1, "cka_linear@mse:b1", 0.8),
            ("moco", 0.01, 0, 1, "cka_rbf@b2", 0.99),
        ]
    )
    pair = cka.EncoderPair("moco", None, 0.01)
    matrix = cka.block_matrix(df, "nih", "cka_linear", pair)
    np.testing.assert_allclose(matrix.to_numpy(), [[0.8, 0.3], [0.35, 0.55]])
    assert list(matrix.index) == [1, 2] and list(matrix.columns) == [1, 2]
    pairs = cka.encoder_pairs(df, "nih", "cka_linear")
    assert pairs == [pair, cka.EncoderPair("moco", "mse", 1.0)]
    assert pairs[1].labels == ("MoCo (pretrained)", "MoCo + MSE (pretrained)")
    assert "fine-tuned, 1% labels" in pair.title
    other = cka.block_matrix(df, "nih", "cka_linear", pairs[1])
    assert other.shape == (1, 1) and other.iat[0, 0] == pytest.approx(0.8)
    assert cka.block_matrix(df, "nih", "cka_linear", cka.EncoderPair("mse", None, 0.01)).empty


def test_method_block_matrix_and_kinds(sample: SampleLayout) -> None:
    df = load_results(sample.results_dir).frame
    assert cka.cka_kinds(df) == ["cka_linear", "cka_rbf", "cka_linear_debiased"]
    matrix = cka.method_block_matrix(df, "dr", 0.06, "cka_rbf")
    assert list(matrix.index) == ["moco", "mse", "barlow"] and list(matrix.columns) == [1, 2, 3, 4]
    assert matrix.notna().all().all()
    assert cka.method_block_matrix(df, "dr", 0.5, "cka_rbf").empty
    assert len(cka.encoder_pairs(df, "idc", "cka_linear")) == 3 * 2 + 2  # fine-tuned pairs + MoCo vs MSE/Barlow
    assert cka.cka_kinds(df.iloc[:0]) == ["cka_linear", "cka_rbf", "cka_linear_debiased"]


def test_only_computed_kernels_are_offered_and_names_live_in_results() -> None:
    from monai_ilm.results import names

    assert cka.cka_metric_name is names.cka_metric_name and cka.parse_cka_metric is names.parse_cka_metric
    rows = pd.DataFrame({"protocol": ["feature_reuse"] * 2, "block": [1, 1], "metric": ["cka_linear", "cka_linear@b2"]})
    assert cka.cka_kinds(rows, present_only=True) == ["cka_linear"]
    assert cka.cka_kinds(rows.iloc[:0], present_only=True) == []
