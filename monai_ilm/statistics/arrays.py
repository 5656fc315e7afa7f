"""Input checking shared by the statistics of the evaluation and of the results.

Every public evaluation function accepts numpy arrays, torch tensors or nested sequences. These helpers turn
them into float64 numpy arrays once, and raise a ``ValueError`` that names the offending argument and says what
was expected, so that a wrong shape is caught at the boundary rather than deep inside a formula.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["to_numpy", "as_matrix", "check_same_rows", "as_binary_labels"]


def to_numpy(x: Any, name: str, dtype: Any = np.float64) -> np.ndarray:
    """Convert ``x`` (numpy array, torch tensor or sequence) to a numpy array of ``dtype``.

    Torch tensors are detached and copied to the CPU; no torch import is needed when torch is not used.

    Args:
        x: the input data.
        name: argument name used in error messages.
        dtype: target numpy dtype.

    Returns:
        A numpy array of ``dtype``.

    Raises:
        ValueError: if ``x`` cannot be converted to a numeric array.
    """
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # torch.Tensor, without importing torch
        x = x.detach().cpu()
        if str(x.dtype) == "torch.bfloat16":  # numpy has no bfloat16 (mixed-precision features)
            x = x.float()
        x = x.numpy()
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name}: expected a numeric array, got {type(x).__name__} ({err}).") from err


def _check_finite(arr: np.ndarray, name: str) -> None:
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: expected finite values, got NaN or infinity.")


def as_matrix(x: Any, name: str, min_rows: int = 1) -> np.ndarray:
    """Return ``x`` as a finite float64 matrix of shape ``(n, d)``, flattening any trailing dimensions.

    Args:
        x: array-like of shape ``(n, d1, d2, ...)`` with at least two dimensions.
        name: argument name used in error messages.
        min_rows: smallest acceptable number of rows ``n``.

    Returns:
        A float64 array of shape ``(n, d1 * d2 * ...)``.

    Raises:
        ValueError: if ``x`` has fewer than two dimensions, fewer than ``min_rows`` rows, no columns, or
            non-finite values.
    """
    arr = to_numpy(x, name)
    if arr.ndim < 2:
        raise ValueError(f"{name}: expected an array of shape (n_samples, n_features, ...), got shape {arr.shape}.")
    if arr.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} rows (samples), got {arr.shape[0]}.")
    arr = arr.reshape(arr.shape[0], -1)
    if arr.shape[1] == 0:
        raise ValueError(f"{name}: expected at least one feature column, got shape {arr.shape}.")
    _check_finite(arr, name)
    return arr


def check_same_rows(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> None:
    """Raise unless ``a`` and ``b`` have the same number of rows (paired samples).

    Args:
        a: first array.
        b: second array.
        name_a: name of ``a`` for the error message.
        name_b: name of ``b`` for the error message.

    Raises:
        ValueError: if the first dimensions differ.
    """
    if a.shape[0] != b.shape[0]:
        raise ValueError(
            f"{name_a} and {name_b}: expected the same number of rows (the same samples in the same order), "
            f"got {a.shape[0]} and {b.shape[0]}."
        )


def as_binary_labels(y: Any, name: str) -> np.ndarray:
    """Return ``y`` as an int array after checking that every value is 0 or 1.

    Args:
        y: array-like of labels (any shape).
        name: argument name used in error messages.

    Returns:
        An int64 array with the same shape as ``y``.

    Raises:
        ValueError: if a value is not 0 or 1.
    """
    arr = to_numpy(y, name)
    if arr.size and not np.all((arr == 0) | (arr == 1)):
        bad = np.unique(arr[(arr != 0) & (arr != 1)])[:5]
        raise ValueError(f"{name}: expected binary labels in {{0, 1}}, got {bad.tolist()}.")
    return arr.astype(np.int64)
