"""The feature matrices the spectral functions take: tokens flattened (Sec. 4.2), columns standardised."""

from __future__ import annotations

import numpy as np

from .._backend import get_ops
from .._validation import check_matrix, describe


def flatten_tokens(F, mask=None):
    """Token features (B, T, D) -> the (B*T, D) matrix of Sec. 4.2, optionally only valid steps.

    Parameters
    ----------
    F : array or tensor of shape (B, T, D)
    mask : bool array or tensor of shape (B, T), optional
        True marks a valid (unpadded) time step; only those rows are kept, in (b, t) order.

    Returns
    -------
    X : array or tensor of shape (B*T, D) or (n_valid, D)
        Same dtype and backend as ``F`` (a view when no mask is given and ``F`` is contiguous).
    """
    F = check_matrix(F, "F", min_ndim=3, allow_empty=True)
    shape = tuple(F.shape)
    if len(shape) != 3:
        raise ValueError(f"F must have shape (B, T, D), got {describe(F)}")
    if mask is None:
        return F.reshape(shape[0] * shape[1], shape[2])
    # A host mask for a torch F is moved to F's device (a NumPy F refuses a torch mask).
    mask = get_ops(F).bool_mask(mask, like=F, name="mask")
    if tuple(mask.shape) != shape[:2]:
        raise ValueError(f"mask must have shape {shape[:2]} to match F, got {describe(mask)}")
    return F[mask]


def standardize_columns(X):
    """Per-column z-scores ``(x_c - mean_c) / std_c`` (population std) for ``spectrum --standardize``.

    A column whose entries are all equal has no z-score (its std is 0, or rounding noise of
    the mean): it is set to exactly zero and reported, never divided by a rounding error.

    Parameters
    ----------
    X : ndarray of shape (N, D)

    Returns
    -------
    Z : float64 ndarray of shape (N, D)
    constant : int64 ndarray of shape (k,)
        Indices of the constant columns (zero in ``Z``).
    """
    X = check_matrix(X, "X")
    if len(X.shape) != 2:
        raise ValueError(f"X must be 2-D (N, D), got {describe(X)}")
    x = np.asarray(X, dtype=np.float64)
    constant = np.flatnonzero(np.ptp(x, axis=0) == 0)
    # each column scaled by the power of two that brings its largest |x| into [0.5, 1) (exact, and
    # z-scores do not depend on it): squares of columns near 1e200 would overflow, near 1e-170 underflow
    top = np.max(np.abs(x), axis=0) if x.shape[0] else np.zeros(x.shape[1])
    x = np.ldexp(x, -np.frexp(top)[1])
    z = x - x.mean(axis=0)
    std = np.sqrt(np.mean(z * z, axis=0))
    std[constant] = 1.0
    z /= std
    z[:, constant] = 0.0
    return z, constant.astype(np.int64)
