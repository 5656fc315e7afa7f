"""Representation health next to CKA: collapsed blocks and the cells they flag."""

from __future__ import annotations

import pandas as pd

from dashboard import health
from dashboard.cka import EncoderPair


def _ranks() -> pd.DataFrame:
    rows = [("moco", 0, b, r) for b, r in ((1, 1.2), (2, 5.0), (3, 1.4), (4, 9.0))]
    rows += [("mse", 0, b, r) for b, r in ((1, 8.0), (2, 1.1), (3, 7.0), (4, 6.0))]
    frame = pd.DataFrame(rows, columns=["method", "seed", "block", "effective_rank"])
    return frame.assign(run=frame["method"] + "_seed0", epoch=2)


def test_collapsed_blocks_below_the_threshold() -> None:
    flags = health.collapsed_blocks(_ranks())
    assert flags.loc["moco"].tolist() == [True, False, True, False]
    assert flags.loc["mse"].tolist() == [False, True, False, False]
    assert health.collapsed_blocks(_ranks(), threshold=1.0).to_numpy().sum() == 0


def test_pair_flags_mark_rows_of_a_and_columns_of_another_pretrained_b() -> None:
    matrix = pd.DataFrame(0.5, index=[1, 2, 3, 4], columns=[1, 2, 3, 4])
    collapsed = health.collapsed_blocks(_ranks())
    finetuned = health.pair_flags(matrix, EncoderPair("moco", None, 0.06), collapsed)
    # rows of MoCo's collapsed blocks 1 and 3; the fine-tuned encoder's health is unknown, so no column
    assert finetuned.any(axis=1).tolist() == [True, False, True, False] and finetuned.loc[2].sum() == 0
    pretrained = health.pair_flags(matrix, EncoderPair("moco", "mse", 1.0), collapsed)
    assert pretrained.loc[2, 2] and pretrained.loc[4, 2] and not pretrained.loc[2, 4]  # column 2: MSE's block 2
    assert not health.pair_flags(matrix, EncoderPair("barlow", None, 0.06), collapsed).to_numpy().any()
    assert not health.pair_flags(matrix, EncoderPair("moco", None, 0.06), pd.DataFrame()).to_numpy().any()
