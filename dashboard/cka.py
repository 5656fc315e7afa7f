"""CKA rows of the results table: the naming convention (defined here, once) and the heatmap matrices.

Convention (``protocol="feature_reuse"`` rows):

* ``metric = "cka_<kernel>"`` with ``block = i``: feature reuse of block ``i`` (the paper's Table 3), i.e. CKA
  between block ``i`` of ``method``'s pretrained encoder and block ``i`` of the same encoder after fine-tuning
  at ``label_fraction`` (seed ``seed``). ``<kernel>`` is one of :data:`KERNELS`, the names of
  ``monai_ilm.evaluation.cka.KERNELS`` (``linear``, ``linear_debiased``, ``rbf``); any other ``cka_*`` name is
  shown as an additional kind.
* ``metric = "cka_<kernel>@b<j>"`` with ``block = i``: one entry of the full block x block matrix: block ``i`` of
  encoder A = ``method`` pretrained vs block ``j`` of encoder B = the same encoder fine-tuned at
  ``label_fraction``. The diagonal ``j == i`` may be omitted: it is taken from the plain ``cka_<kernel>`` row.
* ``metric = "cka_<kernel>@<other>:b<j>"`` with ``block = i``: block ``i`` of ``method``'s pretrained encoder vs
  block ``j`` of method ``<other>``'s pretrained encoder (an encoder-vs-encoder comparison, no fine-tuning;
  write ``label_fraction = 1.0``).

:func:`cka_metric_name` builds these names; :func:`parse_cka_metric` reads them back.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.data import aggregate_seeds, fraction_label, method_label, order_methods

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

KERNELS = ("linear", "rbf", "linear_debiased")
_KIND = re.compile(r"^cka_[A-Za-z0-9_]+$")
_PAIR = re.compile(r"^(?P<kind>cka_[A-Za-z0-9_]+)@(?:(?P<other>[A-Za-z0-9_.+\-]+):)?b(?P<block>\d+)$")


@dataclass(frozen=True)
class CKAMetric:
    """A parsed CKA metric name.

    Attributes:
        kind: the plain metric, e.g. ``"cka_linear"``.
        block_b: block ``j`` of encoder B, or None for a plain (diagonal, feature-reuse) row.
        other: the method of encoder B for an encoder-vs-encoder row, None for pretrained-vs-fine-tuned.
    """

    kind: str
    block_b: int | None = None
    other: str | None = None


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


def cka_metric_name(kernel: str, block_b: int | None = None, other: str | None = None) -> str:
    """The metric name of a CKA row under the convention of this module.

    Args:
        kernel: ``"linear"``, ``"rbf"``, ``"linear_debiased"`` (or another kernel name).
        block_b: block ``j`` of encoder B for a block x block entry, None for a feature-reuse row.
        other: method of encoder B for an encoder-vs-encoder entry (needs ``block_b``).

    Returns:
        E.g. ``"cka_linear"``, ``"cka_linear@b2"``, ``"cka_rbf@mse:b3"``.

    Raises:
        ValueError: for ``other`` without ``block_b`` or a name that would not parse back.
    """
    if other is not None and block_b is None:
        raise ValueError("other: an encoder-vs-encoder entry needs block_b.")
    name = f"cka_{kernel}"
    if block_b is not None:
        name += f"@{other}:b{int(block_b)}" if other is not None else f"@b{int(block_b)}"
    if parse_cka_metric(name) != CKAMetric(f"cka_{kernel}", None if block_b is None else int(block_b), other):
        raise ValueError(f"kernel/other: {kernel!r}/{other!r} do not give a parseable metric name ({name!r}).")
    return name


def parse_cka_metric(metric: str) -> CKAMetric | None:
    """Parse a CKA metric name.

    Args:
        metric: a metric name.

    Returns:
        The :class:`CKAMetric`, or None if ``metric`` is not a CKA metric.
    """
    if _KIND.match(metric):
        return CKAMetric(metric)
    m = _PAIR.match(metric)
    if m is None:
        return None
    return CKAMetric(m["kind"], int(m["block"]), m["other"])


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


def cka_kinds(df: pd.DataFrame) -> list[str]:
    """The CKA kinds to offer: the three standard ones first, then any other ``cka_*`` kind present.

    Args:
        df: results rows.

    Returns:
        Metric names such as ``["cka_linear", "cka_rbf", "cka_linear_debiased"]``.
    """
    standard = [f"cka_{k}" for k in KERNELS]
    present = set(_with_parsed(df)["cka_kind"])
    return standard + sorted(present - set(standard))


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
