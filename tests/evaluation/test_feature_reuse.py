"""Feature reuse: aligned rows, CKA(encoder, itself) = 1, streamed linear CKA equals the full-matrix formula."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from monai.data import DataLoader, MetaTensor

from monai_ilm.evaluation import (
    DownstreamClassifier,
    batch_ids,
    extract_stage_features,
    feature_reuse,
    feature_reuse_from_features,
    feature_reuse_rows,
    fit_downstream,
    linear_cka,
    rbf_cka,
)
from monai_ilm.networks import resnet_encoder
from monai_ilm.results import validate


def items(n: int = 20, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(3, 32, 32, generator=g), "label": i % 2, "id": f"img{i}"} for i in range(n)]


@pytest.fixture(scope="module")
def encoders():
    """A "pretrained" encoder and a "fine-tuned" copy trained for one epoch on labelled images."""
    torch.manual_seed(0)
    before = resnet_encoder("resnet18")
    net = DownstreamClassifier(copy.deepcopy(before), 2)
    data = DataLoader(items(16, seed=1), batch_size=8)
    fit_downstream(net, data, data, "binary_auc", max_epochs=1, lr=1e-2, device="cpu", log_name=None)
    return before, net.encoder


def test_cka_of_an_encoder_with_itself_is_one_per_block(encoders):
    before, _ = encoders
    loader = DataLoader(items(), batch_size=6)
    for kernel in ("linear", "linear_debiased", "rbf"):
        result = feature_reuse(before, copy.deepcopy(before), loader, kernel=kernel, device="cpu", id_key="id")
        assert result.blocks == (1, 2, 3, 4) and result.n == 20
        for block in result.blocks:
            assert result.cka[block] == pytest.approx(1.0, abs=1e-6), (kernel, block)
        assert result.ids == [f"img{i}" for i in range(20)]


def test_streamed_cka_equals_linear_cka_on_full_matrices(encoders):
    before, after = encoders
    loader = DataLoader(items(), batch_size=6)
    result = feature_reuse(before, after, loader, matrix=True, keep_features=True, device="cpu", id_key="id")
    # independent extraction, one encoder at a time, with another batch size
    feats_b = extract_stage_features(before, DataLoader(items(), batch_size=20), device="cpu", id_key="id")
    feats_a = extract_stage_features(after, DataLoader(items(), batch_size=20), device="cpu", id_key="id")
    assert result.before.ids == result.after.ids == feats_b.ids == feats_a.ids
    values = []
    for block in result.blocks:
        expected = linear_cka(feats_b.block(block), feats_a.block(block))
        assert result.cka[block] == pytest.approx(expected, rel=1e-5)
        values.append(result.cka[block])
    np.testing.assert_allclose(np.diag(result.matrix), values, rtol=1e-5)
    assert result.matrix.shape == (4, 4) and all(0.0 < v <= 1.0 + 1e-9 for v in values)
    assert min(values) < 0.999  # fine-tuning did change the features


def test_debiased_and_rbf_kernels(encoders):
    before, after = encoders
    loader = DataLoader(items(), batch_size=6)
    debiased = feature_reuse(before, after, loader, kernel="linear_debiased", keep_features=True, device="cpu")
    rbf = feature_reuse(before, after, loader, kernel="rbf", sigma=None, device="cpu")
    for block in (1, 4):
        x, y = debiased.before.block(block), debiased.after.block(block)
        assert debiased.cka[block] == pytest.approx(linear_cka(x, y, debiased=True), rel=1e-5, abs=1e-9)
        assert rbf.cka[block] == pytest.approx(rbf_cka(x, y), rel=1e-6)
    with pytest.raises(ValueError, match="sigma"):
        feature_reuse(before, after, loader, kernel="linear", sigma=0.8, device="cpu")
    with pytest.raises(ValueError, match="max_rbf_samples"):
        feature_reuse(before, after, loader, kernel="rbf", max_rbf_samples=10, device="cpu")


def test_paper_subsampling_protocol_and_rows(encoders):
    before, after = encoders
    result = feature_reuse(before, after, DataLoader(items(), batch_size=6), n_sets=3, subset_size=10, device="cpu")
    assert set(result.subsets) == {1, 2, 3, 4} and result.subsets[1].values.shape == (3,)
    assert result.before is None  # features were only kept for the subsets
    table = validate(pd.DataFrame(feature_reuse_rows(result, "idc", "mse", 0.01, 0, "reuse-1")))
    assert list(table["block"]) == [1, 2, 3, 4] and set(table["metric"]) == {"cka_linear"}
    assert set(table["protocol"]) == {"feature_reuse"} and set(table["n"]) == {20}
    np.testing.assert_allclose(table["value"], [result.cka[b] for b in (1, 2, 3, 4)])
    subsets = pd.DataFrame(feature_reuse_rows(result, "idc", "mse", 0.01, 0, "reuse-1", value="subsets"))
    np.testing.assert_allclose(subsets["value"], [result.subsets[b].mean for b in (1, 2, 3, 4)])


def test_misaligned_feature_sets_are_refused(encoders):
    """docs/method.md D8: features of different orders (or a shuffled loader) must not be compared."""
    before, after = encoders
    data = items()
    feats_b = extract_stage_features(before, DataLoader(data, batch_size=5), device="cpu", id_key="id")
    feats_a = extract_stage_features(after, DataLoader(data[::-1], batch_size=5), device="cpu", id_key="id")
    with pytest.raises(ValueError, match="same samples in the same order"):
        feature_reuse_from_features(feats_b, feats_a)
    aligned = extract_stage_features(after, DataLoader(data, batch_size=7), device="cpu", id_key="id")
    result = feature_reuse_from_features(feats_b, aligned)
    assert result.cka[4] == pytest.approx(linear_cka(feats_b.block(4), aligned.block(4)))
    with pytest.raises(ValueError, match="shuffle=False"):
        feature_reuse(before, after, DataLoader(data, batch_size=5, shuffle=True), device="cpu")


def test_sample_ids_from_metatensor_file_names_or_positions():
    images = MetaTensor(torch.zeros(2, 1, 4, 4), meta={"filename_or_obj": ["a.png", "b.png"]})
    assert batch_ids({"image": images}, 2, offset=0) == ["a.png", "b.png"]
    assert batch_ids({"image": torch.zeros(3, 1, 4, 4)}, 3, offset=5) == ["5", "6", "7"]
    assert batch_ids({"image": images, "pid": torch.tensor([7, 8])}, 2, 0, id_key="pid") == ["7", "8"]
    with pytest.raises(ValueError, match="id_key"):
        batch_ids({"image": images}, 2, 0, id_key="pid")


def _closed_form_linear_cka(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019), eq. (2): ||Y'X||_F^2 / (||X'X||_F ||Y'Y||_F) on centred features."""
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(y.T @ x) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_matrix_rows_hold_every_off_diagonal_block_pair(encoders):
    before, after = encoders
    result = feature_reuse(
        before, after, DataLoader(items(), batch_size=6), matrix=True, keep_features=True, device="cpu"
    )
    table = validate(pd.DataFrame(feature_reuse_rows(result, "nih", "mse", 0.01, 0, "reuse-1")))
    plain = table[table["metric"] == "cka_linear"]
    assert list(plain["block"]) == [1, 2, 3, 4]
    pairs = table[table["metric"] != "cka_linear"]
    assert len(pairs) == 12 and set(pairs["metric"]) == {f"cka_linear@b{j}" for j in (1, 2, 3, 4)}
    for row in pairs.itertuples():
        j = int(row.metric.split("@b")[1])
        assert j != row.block
        x, y = result.before.block(int(row.block)), result.after.block(j)
        assert row.value == pytest.approx(_closed_form_linear_cka(x.astype(np.float64), y.astype(np.float64)), rel=1e-5)
