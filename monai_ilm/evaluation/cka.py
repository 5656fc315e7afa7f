"""Centred kernel alignment (CKA), the feature-reuse similarity of the paper's Table 3.

Kaku et al. (NeurIPS 2021) measure *feature reuse* as the CKA (Kornblith et al., ICML 2019) between the
per-block features of a network before and after fine-tuning: a high CKA means the fine-tuned block still
computes (up to a linear map) what the self-supervised block computed. For two feature matrices
``X`` (n x d1) and ``Y`` (n x d2) whose rows are **the same n samples in the same order**, with Gram matrices
``K = k(X, X)``, ``L = l(Y, Y)`` and the centring matrix ``H = I - 11^T / n``::

    HSIC(K, L) = sum_ij (HKH)_ij (HLH)_ij          (the 1 / (n - 1)^2 factor cancels in the ratio)
    CKA(K, L)  = HSIC(K, L) / sqrt(HSIC(K, K) * HSIC(L, L))

Row alignment matters (docs/method.md D8): the original chest X-ray code re-shuffled the test set in every
process, so "before" and "after" rows were different images and the CKA was meaningless. These functions only
check that the row *counts* agree; keeping rows in the same sample order is the caller's job.

Numerics: everything is computed in float64 on **centred features** (linear kernel) or on distances computed
from centred features (RBF kernel). Post-ReLU features with a large common offset make the textbook formula
``K = X X^T`` followed by ``HKH`` cancel catastrophically in float32; centring first removes the offset
before any product is formed.

Neither SciPy nor scikit-learn implements CKA or HSIC, so both are written out here. The summaries over blocks
and subsets (:func:`~monai_ilm.evaluation.cka_summaries.cka_matrix`, ``bootstrap_cka``) live in
:mod:`monai_ilm.evaluation.cka_summaries`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from monai_ilm.statistics.arrays import as_matrix, check_same_rows

__all__ = [
    "KERNELS",
    "cka",
    "linear_cka",
    "rbf_cka",
    "StreamingLinearCKA",
]

KERNELS = ("linear", "linear_debiased", "rbf")


def _centred_pair(x: Any, y: Any, min_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a paired feature set and return both matrices with their column means removed."""
    xm = as_matrix(x, "x", min_rows=min_rows)
    ym = as_matrix(y, "y", min_rows=min_rows)
    check_same_rows(xm, ym, "x", "y")
    return xm - xm.mean(axis=0), ym - ym.mean(axis=0)


def _double_centre(k: np.ndarray) -> np.ndarray:
    """Return ``HKH`` for a symmetric Gram matrix ``K`` without forming ``H``."""
    return k - k.mean(axis=0, keepdims=True) - k.mean(axis=1, keepdims=True) + k.mean()


def _u_centre(k: np.ndarray) -> np.ndarray:
    """U-centre a Gram matrix (Szekely and Rizzo, 2014).

    For ``K`` with its diagonal set to zero, off-diagonal entries become
    ``K_ij - r_i / (n - 2) - r_j / (n - 2) + s / ((n - 1)(n - 2))`` (``r`` = row sums, ``s`` = total) and the
    diagonal stays zero. ``<U(K), U(L)> / (n (n - 3))`` is then the unbiased HSIC estimator of Song et al. (2012).
    """
    n = k.shape[0]
    k = k.copy()
    np.fill_diagonal(k, 0.0)
    row = k.sum(axis=0) / (n - 2)
    u = k - row[:, None] - row[None, :] + k.sum() / ((n - 1) * (n - 2))
    np.fill_diagonal(u, 0.0)
    return u


def _alignment(hsic_xy: float, hsic_xx: float, hsic_yy: float) -> float:
    """Return ``hsic_xy / sqrt(hsic_xx * hsic_yy)``, refusing degenerate (zero-variance) inputs."""
    for name, value in (("x", hsic_xx), ("y", hsic_yy)):
        if not value > 0.0:
            raise ValueError(
                f"{name}: expected features that vary across samples (self-similarity HSIC > 0), "
                f"got HSIC = {value:.3g} (CKA is undefined)."
            )
    return float(hsic_xy / np.sqrt(hsic_xx * hsic_yy))


def _gram_alignment(kx: np.ndarray, ky: np.ndarray) -> float:
    """CKA of two already centred (or U-centred) Gram matrices."""
    return _alignment(float(np.vdot(kx, ky)), float(np.vdot(kx, kx)), float(np.vdot(ky, ky)))


def _use_gram(n: int, d1: int, d2: int) -> bool:
    """Whether the n x n Gram route is cheaper than the d1 x d2 feature-space route."""
    return n * n * (d1 + d2) <= n * (d1 * d2 + d1 * d1 + d2 * d2)


def linear_cka(x: Any, y: Any, debiased: bool = False) -> float:
    """Linear CKA between two paired feature matrices.

    With centred features ``Xc``, ``Yc`` the linear-kernel HSIC has the feature-space form
    ``HSIC = ||Xc^T Yc||_F^2``, so ``CKA = ||Xc^T Yc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F)``
    (Kornblith et al., 2019, eq. 4). The cheaper of the n x n Gram route and the d x d feature route is used.
    Linear CKA is invariant to orthogonal transforms and isotropic scaling of either input, not to arbitrary
    invertible linear maps.

    ``debiased=True`` replaces both HSIC terms by the unbiased estimator of Song et al. (2012), Kornblith's
    ``debiased`` option; the result can then be slightly negative for unrelated features.

    Args:
        x: features of shape ``(n, d1, ...)`` (numpy array or torch tensor); trailing dimensions are flattened.
        y: features of shape ``(n, d2, ...)`` for **the same samples in the same order** (docs/method.md D8).
        debiased: use the unbiased HSIC estimator (needs ``n >= 4``).

    Returns:
        The CKA value, in [0, 1] for the biased estimator.

    Raises:
        ValueError: if an input is not at least 2-D, has too few rows or non-finite values, if the row counts
            differ, or if an input has zero variance.
    """
    xc, yc = _centred_pair(x, y, min_rows=4 if debiased else 2)
    if not _use_gram(xc.shape[0], xc.shape[1], yc.shape[1]):
        return StreamingLinearCKA(debiased=debiased).update(xc, yc).compute()
    kx, ky = xc @ xc.T, yc @ yc.T  # centred features, so these Grams are already centred
    if debiased:
        kx, ky = _u_centre(kx), _u_centre(ky)
    return _gram_alignment(kx, ky)


def _squared_distances(xc: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances ``D_ij = |x_i|^2 + |x_j|^2 - 2 x_i.x_j`` (clipped at 0)."""
    # one BLAS product instead of scipy's pdist: much faster for 2,048-d features, and exact enough once centred
    sq = np.einsum("ij,ij->i", xc, xc)
    d = sq[:, None] + sq[None, :] - 2.0 * (xc @ xc.T)
    np.maximum(d, 0.0, out=d)
    np.fill_diagonal(d, 0.0)
    return d


def _median_of_nonzero(d: np.ndarray, name: str) -> float:
    values = d[np.triu_indices(d.shape[0], k=1)]
    values = values[values > 0.0]
    if values.size == 0:
        raise ValueError(
            f"{name}: expected at least two distinct rows (for the median-distance bandwidth), got identical rows."
        )
    return float(np.sqrt(np.median(values)))


def _check_sigma(sigma: float | None) -> None:
    if sigma is not None and not (np.isfinite(sigma) and sigma > 0):
        raise ValueError(f"sigma: expected a positive finite bandwidth or None (median heuristic), got {sigma!r}.")


def _rbf_from_centred(xc: np.ndarray, sigma: float | None, name: str) -> np.ndarray:
    d = _squared_distances(xc)
    bandwidth = _median_of_nonzero(d, name) if sigma is None else sigma
    return np.exp(-d / (2.0 * bandwidth**2))


def rbf_cka(x: Any, y: Any, sigma: float | None = None, debiased: bool = False) -> float:
    """RBF-kernel CKA, as used for the paper's feature-reuse table (``kernel_CKA`` in the original code).

    The same ``sigma`` is used for ``x`` and ``y``; with ``sigma=None`` each input gets its own median-heuristic
    bandwidth. The paper used an absolute ``sigma = 0.8`` on raw features, which is degenerate for
    high-dimensional or large-norm features (docs/method.md D9): every off-diagonal kernel entry underflows to
    ~0, both kernels become ~I and CKA -> 1 whatever the features. Prefer ``sigma=None`` or :func:`linear_cka`;
    pass ``sigma=0.8`` only to reproduce the paper's numbers.

    Args:
        x: features of shape ``(n, d1, ...)``.
        y: features of shape ``(n, d2, ...)`` for the same samples in the same order (docs/method.md D8).
        sigma: absolute bandwidth, or ``None`` for the per-input median heuristic.
        debiased: use the unbiased HSIC estimator (needs ``n >= 4``).

    Returns:
        The CKA value.

    Raises:
        ValueError: for malformed inputs, differing row counts, a non-positive ``sigma``, or degenerate inputs.
    """
    _check_sigma(sigma)
    xc, yc = _centred_pair(x, y, min_rows=4 if debiased else 2)
    kx, ky = _rbf_from_centred(xc, sigma, "x"), _rbf_from_centred(yc, sigma, "y")
    centre = _u_centre if debiased else _double_centre
    return _gram_alignment(centre(kx), centre(ky))


def cka(x: Any, y: Any, kernel: str = "linear", sigma: float | None = None) -> float:
    """CKA with the kernel chosen by name: ``"linear"``, ``"linear_debiased"`` or ``"rbf"``.

    Args:
        x: features of shape ``(n, d1, ...)``.
        y: features of shape ``(n, d2, ...)`` for the same samples in the same order.
        kernel: one of :data:`KERNELS`.
        sigma: RBF bandwidth (``None`` = median heuristic); must be ``None`` for the linear kernels.

    Returns:
        The CKA value.

    Raises:
        ValueError: for an unknown ``kernel``, a ``sigma`` given with a linear kernel, or bad inputs.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel: expected one of {KERNELS}, got {kernel!r}.")
    if kernel == "rbf":
        return rbf_cka(x, y, sigma=sigma)
    if sigma is not None:
        raise ValueError(f"sigma: expected None with kernel={kernel!r} (only kernel='rbf' uses it), got {sigma!r}.")
    return linear_cka(x, y, debiased=kernel == "linear_debiased")


class StreamingLinearCKA:
    """Exact linear CKA accumulated over batches of paired rows, in O(d^2) memory.

    With centred features the linear HSIC is ``||Xc^T Yc||_F^2`` and ``Xc^T Yc = X^T Y - s_x s_y^T / n``
    (``s`` = column sums), so it suffices to accumulate ``X^T X``, ``Y^T Y``, ``X^T Y`` and the column sums:
    50,000 samples of 2,048-d features need three 2,048 x 2,048 float64 matrices and never an n x n Gram.
    Rows are shifted by the first batch's column means before accumulation (CKA is translation invariant), so
    large common offsets, e.g. post-ReLU features, do not cancel catastrophically.

    For ``debiased=True`` the unbiased HSIC of Song et al. (2012) is expanded in the same way; besides the
    matrices above it needs the row norms ``q_i = |x_i|^2`` through ``sum_i x_i q_i``-type vectors and scalars.

    Batches that are torch tensors are accumulated in float64 **on the tensor's device** (e.g. a GPU); numpy
    batches on the CPU. The backend is fixed by the first batch; later batches are converted to it.

    Example::

        acc = StreamingLinearCKA()
        for before, after in zip(loader_before, loader_after):  # same samples, same order
            acc.update(before, after)
        similarity = acc.compute()

    Args:
        debiased: use the unbiased HSIC estimator instead of the biased one.
    """

    def __init__(self, debiased: bool = False) -> None:
        self.debiased = debiased
        self.reset()

    def reset(self) -> None:
        """Forget all accumulated batches."""
        self._device: torch.device | None = None
        self._use_torch = False
        self._n = 0
        self._shift: tuple[Any, Any] | None = None
        self._acc: dict[str, Any] = {}

    @property
    def n_samples(self) -> int:
        """Number of paired rows accumulated so far."""
        return self._n

    def _to_backend(self, batch: Any, name: str, n_features: int | None) -> Any:
        if self._use_torch:
            arr = torch.as_tensor(batch, dtype=torch.float64, device=self._device)
            if arr.ndim < 2:
                raise ValueError(f"{name}: expected shape (n_samples, n_features, ...), got {tuple(arr.shape)}.")
            arr = arr.reshape(arr.shape[0], -1)
            if not bool(torch.isfinite(arr).all()):
                raise ValueError(f"{name}: expected finite values, got NaN or infinity.")
        else:
            arr = as_matrix(batch, name)
        if n_features is not None and arr.shape[1] != n_features:
            raise ValueError(f"{name}: expected {n_features} features as in earlier batches, got {arr.shape[1]}.")
        return arr

    def _start(self, x_batch: Any, y_batch: Any) -> None:
        tensor = next((b for b in (x_batch, y_batch) if isinstance(b, torch.Tensor)), None)
        self._use_torch = tensor is not None
        self._device = tensor.device if tensor is not None else None

    def update(self, x_batch: Any, y_batch: Any) -> StreamingLinearCKA:
        """Add a batch of paired rows.

        Args:
            x_batch: features of shape ``(b, d1, ...)``.
            y_batch: features of shape ``(b, d2, ...)`` for the same ``b`` samples in the same order.

        Returns:
            ``self``, so calls can be chained.

        Raises:
            ValueError: if a batch is malformed, the batches have different row counts, or the feature
                dimensions differ from earlier batches.
        """
        if self._shift is None:
            self._start(x_batch, y_batch)
        dims = (None, None) if self._shift is None else (self._shift[0].shape[0], self._shift[1].shape[0])
        xb = self._to_backend(x_batch, "x_batch", dims[0])
        yb = self._to_backend(y_batch, "y_batch", dims[1])
        check_same_rows(xb, yb, "x_batch", "y_batch")
        if xb.shape[0] == 0:
            return self
        if self._shift is None:
            self._shift = (xb.mean(0), yb.mean(0))
        xb, yb = xb - self._shift[0], yb - self._shift[1]
        self._n += xb.shape[0]
        for key, value in self._batch_statistics(xb, yb).items():
            self._acc[key] = value if key not in self._acc else self._acc[key] + value
        return self

    def _batch_statistics(self, xb: Any, yb: Any) -> dict[str, Any]:
        stats = {"sx": xb.sum(0), "sy": yb.sum(0), "xx": xb.T @ xb, "yy": yb.T @ yb, "xy": xb.T @ yb}
        if self.debiased:
            qx, qy = (xb * xb).sum(1), (yb * yb).sum(1)
            stats.update(
                qx=qx.sum(),
                qy=qy.sum(),
                qxqx=(qx * qx).sum(),
                qyqy=(qy * qy).sum(),
                qxqy=(qx * qy).sum(),
                x_qx=xb.T @ qx,
                x_qy=xb.T @ qy,
                y_qy=yb.T @ qy,
                y_qx=yb.T @ qx,
            )
        return stats

    def _biased_hsic(self, cross: str, s1: str, s2: str) -> float:
        a = self._acc
        centred = a[cross] - a[s1][:, None] * a[s2][None, :] / self._n
        return float((centred * centred).sum())

    def _unbiased_hsic(self, cross: str, s1: str, s2: str, q1: str, q2: str, v1: str, v2: str, q12: str) -> float:
        """Song et al. (2012) HSIC_1 from accumulated sums; ``K~``/``L~`` are Grams with zeroed diagonals.

        ``tr(K~L~) = ||X^T Y||^2 - sum q1 q2``, ``1^T K~ 1 = |s1|^2 - sum q1``, and
        ``1^T K~ L~ 1 = s1^T X^T Y s2 - s1^T (sum x q2) - s2^T (sum y q1) + sum q1 q2``.
        """
        a, n = self._acc, self._n
        trace = float((a[cross] * a[cross]).sum()) - float(a[q12])
        ones_k = float((a[s1] * a[s1]).sum()) - float(a[q1])
        ones_l = float((a[s2] * a[s2]).sum()) - float(a[q2])
        ones_kl = float(a[s1] @ a[cross] @ a[s2]) - float(a[s1] @ a[v1]) - float(a[s2] @ a[v2]) + float(a[q12])
        total = trace + ones_k * ones_l / ((n - 1) * (n - 2)) - 2.0 * ones_kl / (n - 2)
        return total / (n * (n - 3))

    def compute(self) -> float:
        """Return the CKA of all rows seen so far.

        Returns:
            The linear CKA (debiased if requested).

        Raises:
            ValueError: if fewer than 2 rows (4 for the debiased estimator) were accumulated or an input has
                zero variance.
        """
        needed = 4 if self.debiased else 2
        if self._n < needed:
            raise ValueError(
                f"update: expected at least {needed} paired rows in total before compute(), got {self._n}."
            )
        if not self.debiased:
            return _alignment(
                self._biased_hsic("xy", "sx", "sy"),
                self._biased_hsic("xx", "sx", "sx"),
                self._biased_hsic("yy", "sy", "sy"),
            )
        return _alignment(
            self._unbiased_hsic("xy", "sx", "sy", "qx", "qy", "x_qy", "y_qx", "qxqy"),
            self._unbiased_hsic("xx", "sx", "sx", "qx", "qx", "x_qx", "x_qx", "qxqx"),
            self._unbiased_hsic("yy", "sy", "sy", "qy", "qy", "y_qy", "y_qy", "qyqy"),
        )
