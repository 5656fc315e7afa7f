"""CKA rows of the results table as heatmap matrices.

The row names (``cka_<kernel>``, ``cka_<kernel>@b<j>``, ``cka_<kernel>@<other>:b<j>``) are defined in
:mod:`monai_ilm.results.names`, shared with the feature-reuse protocol that writes them; they are re-exported here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.data import aggregate_seeds, order_methods
from dashboard.labels import fraction_label, method_label
from monai_ilm.results.names import CKA_KERNELS as KERNELS
from monai_ilm.results.names import CKAMetric, cka_metric_name, parse_cka_metric

__all__ = [
    "KERNELS",
    "CKAMetric",
    "EncoderPair",
    "block_matrix",
    "cka_kinds",
    "cka_metric_name",
    "encoder_pairs",
    "method_block_matrix",
    "parse_cka_metric",
]


@dataclass(frozen=True)
class EncoderPair:
    """A pair of encoders with a block x block CKA matrix.

    Attributes:
        method: method of encoder A (always the pretrained encoder).
        other: method of encoder B for an encoder-vs-encoder pair, None when B is A fine-tuned.
        label_fraction: the fine-tuning label fraction of B (1.0 for encoder-vs-encoder pairs).
    """

    method: str
    other: str | None
    label_fraction: float

    @property
    def labels(self) -> tuple[str, str]:
        """Axis titles of encoder A and encoder B."""
        a = f"{method_label(self.method)} (pretrained)"
        if self.other is None:
            return a, f"{method_label(self.method)} (fine-tuned, {fraction_label(self.label_fraction)} labels)"
        return a, f"{method_label(self.other)} (pretrained)"

    @property
    def title(self) -> str:
        """A one-line description of the pair."""
        a, b = self.labels
        return f"{a} vs {b}"


def _with_parsed(df: pd.DataFrame) -> pd.DataFrame:
    """Feature-reuse rows with a block and a CKA metric, with ``kind``, ``block_b`` and ``other`` columns
    (``other`` is ``""`` for rows of a pretrained-vs-fine-tuned pair)."""
    rows = df[(df["protocol"] == "feature_reuse") & df["block"].notna()]
    parsed = {m: parse_cka_metric(m) for m in rows["metric"].unique()}
    rows = rows[rows["metric"].isin([m for m, p in parsed.items() if p is not None])]
    if rows.empty:
        return rows.assign(
            cka_kind=pd.Series(dtype=object), block_b=pd.Series(dtype="Int64"), other=pd.Series(dtype=object)
        )
    return rows.assign(
        cka_kind=rows["metric"].map(lambda m: parsed[m].kind),
        block_b=rows["metric"].map(lambda m: parsed[m].block_b).astype("Int64"),
        other=rows["metric"].map(lambda m: parsed[m].other or ""),  # "" = fine-tuned pair
    )


def cka_kinds(df: pd.DataFrame, present_only: bool = False) -> list[str]:
    """The CKA kinds to offer: the three standard ones first, then any other ``cka_*`` kind present.

    Args:
        df: results rows.
        present_only: offer only kinds that have rows in ``df`` (a kernel never computed gives no button).

    Returns:
        Metric names such as ``["cka_linear", "cka_rbf", "cka_linear_debiased"]``.
    """
    standard = [cka_metric_name(k) for k in KERNELS]
    present = set(_with_parsed(df)["cka_kind"])
    kinds = standard + sorted(present - set(standard))
    return [k for k in kinds if k in present] if present_only else kinds


def method_block_matrix(df: pd.DataFrame, dataset: str, label_fraction: float, kind: str) -> pd.DataFrame:
    """Feature reuse of every method and block for one dataset and label fraction (mean over seeds).

    Args:
        df: results rows.
        dataset: the dataset.
        label_fraction: the fine-tuning label fraction.
        kind: the CKA metric, e.g. ``"cka_linear"``.

    Returns:
        A frame indexed by method (display order) with one column per block (ints); empty if no rows.
    """
    rows = df[
        (df["protocol"] == "feature_reuse")
        & (df["dataset"] == dataset)
        & (df["metric"] == kind)
        & df["block"].notna()
        & np.isclose(df["label_fraction"].to_numpy(dtype=float), label_fraction, atol=1e-9)
    ]
    if rows.empty:
        return pd.DataFrame()
    agg = aggregate_seeds(rows)
    table = agg.pivot_table(index="method", columns="block", values="value", aggfunc="mean")
    table.columns = [int(c) for c in table.columns]
    return table.reindex(order_methods(table.index))[sorted(table.columns)]


def encoder_pairs(df: pd.DataFrame, dataset: str, kind: str) -> list[EncoderPair]:
    """The encoder pairs with block x block entries for a dataset and CKA kind.

    Args:
        df: results rows.
        dataset: the dataset.
        kind: the CKA metric, e.g. ``"cka_linear"``.

    Returns:
        Pairs in display order (method, then fine-tuned pairs by label fraction, then encoder-vs-encoder).
    """
    rows = _with_parsed(df[df["dataset"] == dataset])
    rows = rows[(rows["cka_kind"] == kind) & rows["block_b"].notna()]
    pairs = {
        EncoderPair(m, o or None, round(float(f), 9))
        for m, o, f in zip(rows["method"], rows["other"], rows["label_fraction"])
    }
    rank = {m: i for i, m in enumerate(order_methods([p.method for p in pairs] + [p.other or "" for p in pairs]))}
    return sorted(
        pairs, key=lambda p: (rank[p.method], p.other is not None, rank.get(p.other or "", 0), p.label_fraction)
    )


def block_matrix(df: pd.DataFrame, dataset: str, kind: str, pair: EncoderPair) -> pd.DataFrame:
    """The block x block CKA matrix of an encoder pair (mean over seeds).

    Entry ``(i, j)`` is CKA between block ``i`` of encoder A and block ``j`` of encoder B. For a
    pretrained-vs-fine-tuned pair, missing diagonal entries are filled from the plain feature-reuse rows.

    Args:
        df: results rows.
        dataset: the dataset.
        kind: the CKA metric, e.g. ``"cka_linear"``.
        pair: the encoder pair.

    Returns:
        A frame with index ``block_a`` and columns ``block_b`` (ints, ascending); NaN for missing entries;
        empty if the pair has no rows.
    """
    rows = _with_parsed(df[(df["dataset"] == dataset) & (df["method"] == pair.method)])
    rows = rows[
        (rows["cka_kind"] == kind)
        & np.isclose(rows["label_fraction"].to_numpy(dtype=float), pair.label_fraction, atol=1e-9)
    ]
    other = rows["other"] == (pair.other or "")
    entries = rows[rows["block_b"].notna() & other]
    if entries.empty:
        return pd.DataFrame()
    cells = aggregate_seeds(entries.assign(metric=entries["block_b"].astype(int).astype(str)))
    cells = cells.assign(block_a=cells["block"].astype(int), block_b=cells["metric"].astype(int))
    if pair.other is None:
        diagonal = rows[rows["block_b"].isna()]
        if not diagonal.empty:
            diag = aggregate_seeds(diagonal)
            diag = diag.assign(block_a=diag["block"].astype(int), block_b=diag["block"].astype(int))
            known = set(zip(cells["block_a"], cells["block_b"]))
            diag = diag[[(a, b) not in known for a, b in zip(diag["block_a"], diag["block_b"])]]
            cells = pd.concat([cells, diag], ignore_index=True)
    blocks_a = sorted(cells["block_a"].unique())
    blocks_b = sorted(cells["block_b"].unique())
    matrix = cells.pivot_table(index="block_a", columns="block_b", values="value", aggfunc="mean")
    return matrix.reindex(index=blocks_a, columns=blocks_b)


def pair_options(pairs: Sequence[EncoderPair]) -> dict[str, EncoderPair]:
    """Human-readable labels for a list of pairs (for a select box)."""
    return {p.title: p for p in pairs}
