"""Representation health of the pretrained encoders, read from their training logs (no Streamlit here).

``RepresentationHealthHandler`` logs, each epoch, ``health/effective_rank_layer<k>``: the effective rank (Roy
and Vetterli, 2007) of stage ``k``'s pooled features. An effective rank near 1 means one direction holds almost
all the variance (collapse); CKA between such features is close to 1 whatever the network does, so a CKA cell
of a collapsed block describes the collapse, not feature reuse.
"""

from __future__ import annotations

import re

import pandas as pd

from dashboard.cka import EncoderPair

__all__ = ["COLLAPSE_RANK", "block_ranks", "collapsed_blocks", "pair_flags"]

COLLAPSE_RANK = 2.0  # the handler's ``collapse_rank`` default
_RANK_TAG = re.compile(r"^health/effective_rank_layer(\d+)$")


def block_ranks(logs: pd.DataFrame) -> pd.DataFrame:
    """The last logged effective rank of every pretraining run and block.

    Args:
        logs: the frame of :func:`dashboard.logs.load_runs`.

    Returns:
        Columns ``method``, ``seed``, ``run``, ``block``, ``epoch``, ``effective_rank``; empty when no run logged
        ``health/effective_rank_layer<k>``.
    """
    cols = ["method", "seed", "run", "block", "epoch", "effective_rank"]
    if logs.empty:
        return pd.DataFrame(columns=cols)
    blocks = logs["tag"].map(lambda t: _RANK_TAG.match(str(t)))
    rows = logs[blocks.notna()].assign(block=[int(m.group(1)) for m in blocks.dropna()])
    if rows.empty:
        return pd.DataFrame(columns=cols)
    last = rows.sort_values("step").groupby(["run", "block"], as_index=False).tail(1)
    out = last.rename(columns={"step": "epoch", "value": "effective_rank"})[cols]
    return out.sort_values(["method", "seed", "block"]).reset_index(drop=True)


def collapsed_blocks(ranks: pd.DataFrame, threshold: float = COLLAPSE_RANK) -> pd.DataFrame:
    """Method x block flags: True where a run of the method ended with an effective rank below ``threshold``.

    Args:
        ranks: from :func:`block_ranks` (already restricted to the selected runs).
        threshold: the collapse threshold.

    Returns:
        A boolean frame indexed by method with one column per block.
    """
    if ranks.empty:
        return pd.DataFrame(dtype=bool)
    flags = ranks.assign(collapsed=ranks["effective_rank"].astype(float) < threshold)
    return flags.pivot_table(index="method", columns="block", values="collapsed", aggfunc="max").astype(bool)


def pair_flags(matrix: pd.DataFrame, pair: EncoderPair, collapsed: pd.DataFrame) -> pd.DataFrame:
    """Cells of a block x block matrix that involve a collapsed block.

    Row ``i`` is flagged when block ``i`` of encoder A (``pair.method``, pretrained) collapsed; column ``j`` when
    encoder B is another pretrained encoder (``pair.other``) whose block ``j`` collapsed. The health of a
    fine-tuned encoder B is not logged, so its columns are never flagged.

    Args:
        matrix: from :func:`dashboard.cka.block_matrix` (index: blocks of A, columns: blocks of B).
        pair: the encoder pair.
        collapsed: from :func:`collapsed_blocks` (method x block).

    Returns:
        A boolean frame shaped like ``matrix``.
    """
    flags = pd.DataFrame(False, index=matrix.index, columns=matrix.columns)
    if collapsed.empty:
        return flags

    def blocks(method: str | None) -> set[int]:
        if method is None or method not in collapsed.index:
            return set()
        row = collapsed.loc[method]
        return {int(b) for b, bad in row.items() if bool(bad)}

    rows, cols = blocks(pair.method), blocks(pair.other)
    for i in matrix.index:
        for j in matrix.columns:
            flags.loc[i, j] = int(i) in rows or int(j) in cols
    return flags
