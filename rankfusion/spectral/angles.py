"""Principal angles between subspaces, and the complementarity of injected channels (Table 6, Assumption 4)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .._backend import get_ops
from .._validation import check_float, check_int, check_matrix, describe, is_dask
from .routes import GRAM_RATIO, _gram_error_radius, numerical_rank, rank_tolerance, tolerance_fro


def dominant_k(sigma, energy: float = 0.9) -> int:
    """Size of the dominant subspace: the smallest ``k`` whose top-``k`` singular values hold
    ``energy`` of the squared spectrum (``sum_{i<=k} sigma_i^2 >= energy * sum_i sigma_i^2``).

    Parameters
    ----------
    sigma : array of shape (r,)
        Singular values in descending order (e.g. :func:`singular_values`), not all zero.
    energy : float, default 0.9
        Fraction in (0, 1].

    Returns
    -------
    k : int in [1, r]
    """
    energy = check_float(energy, "energy", low=0.0, high=1.0, low_open=True)
    sigma = np.asarray(get_ops(sigma).to_host(sigma), dtype=np.float64)
    if not np.all(np.isfinite(sigma)):
        raise ValueError(f"sigma must be finite, got {describe(sigma)}")
    if sigma.ndim != 1 or sigma.size == 0 or not sigma[0] > 0:
        raise ValueError(f"sigma must be a non-empty 1-D spectrum with sigma_1 > 0, got {describe(sigma)}")
    if np.any(np.diff(sigma) > 0) or sigma[-1] < 0:
        raise ValueError(f"sigma must be non-negative and in descending order (singular values), got {sigma[:8]}"
                         + (" ..." if sigma.size > 8 else ""))
    cum = np.cumsum(sigma**2) / np.sum(sigma**2)
    return int(min(np.searchsorted(cum, energy) + 1, sigma.size))


def _in_memory(func: str, **arrays) -> None:
    """Refuse dask arrays: these functions work on dense (n, p) bases, not on a row-chunked reduction."""
    for name, x in arrays.items():
        if is_dask(x):
            raise TypeError(f"{func} takes NumPy arrays or torch tensors, not a dask array ({name}: "
                            f"{describe(x)}); compute it first")


def _orth(ops, A, eps_in: float | None = None):
    """Orthonormal basis of the column space of A (float64) by a rank-revealing SVD; ``eps_in``: the
    epsilon of the data's own precision (default A's dtype's; give it for a float64 copy)."""
    n, p = A.shape
    eps_in = ops.eps(A) if eps_in is None else eps_in
    u, s, _ = ops.svd64(ops.to64(A))
    if s.shape[0] == 0:
        return u[:, :0]
    tol = rank_tolerance(float(s[0]), max(n, p), eps_in, tolerance_fro(ops, A, eps_in))
    r = int(ops.sum(s > tol))
    return u[:, :r]


def _angles_from_bases(ops, qa, qb):
    """Ascending principal angles (radians) between orthonormal bases qa (n, p), qb (n, q)."""
    c = qa.T @ qb
    cos = ops.svdvals64(c)  # descending cosines -> ascending angles
    m = cos.shape[0]
    if m == 0:
        return cos
    # Residual of the larger basis projected out of the smaller one: its singular values are
    # the sines of the same angles (Knyazev & Argentati 2002), accurate for small angles where
    # arccos of a cosine near 1 is not.
    res = qb - qa @ c if qa.shape[1] >= qb.shape[1] else qa - qb @ c.T
    sines = ops.svdvals64(res)[:m]
    small_from_sin = ops.arcsin(ops.clip(sines, -1.0, 1.0))
    small_from_sin = ops.flip_last(small_from_sin)
    from_cos = ops.arccos(ops.clip(cos, -1.0, 1.0))
    return ops.where(cos * cos >= 0.5, small_from_sin, from_cos)


def principal_angles(A, B, *, degrees: bool = False):
    """Principal angles between the column spaces of ``A`` and ``B``, ascending.

    Same definition and algorithm as :func:`scipy.linalg.subspace_angles` (orthonormal bases by
    a rank-revealing SVD, cosines from ``svdvals(Q_A^T Q_B)``, small angles from the sines of
    the residual), computed in float64; scipy returns them in descending order, this function
    in ascending order. Bases use the rank tolerance ``sqrt(max(n, p)) * eps * s_max``.

    Parameters
    ----------
    A : array or tensor of shape (n, p)
    B : array or tensor of shape (n, q)
    degrees : bool, default False

    Returns
    -------
    angles : float64 array of shape (min(rank A, rank B),)
        In ``[0, pi/2]`` (or degrees), ascending; same backend/device as the inputs.
    """
    ops = get_ops(A, B, names=("A", "B"))  # a mix of backends is its own error
    _in_memory("principal_angles", A=A, B=B)
    A = check_matrix(A, "A")
    B = check_matrix(B, "B")
    for name, M in (("A", A), ("B", B)):
        if len(M.shape) != 2:
            raise ValueError(f"{name} must be 2-D (n, p), got {describe(M)}")
    if A.shape[0] != B.shape[0]:
        raise ValueError(f"A and B must have the same number of rows, got {describe(A)} and {describe(B)}")
    theta = _angles_from_bases(ops, _orth(ops, A), _orth(ops, B))
    return ops.rad2deg(theta) if degrees else theta


class InjectionAngles(NamedTuple):
    """Complementarity of injected channels with a principal subspace (Table 6, Assumption 4).

    Attributes
    ----------
    angle : float64 scalar
        Mean principal angle between span(U_k) and span(Y[:, low]): the single number we
        report as Table 6's "angle between subspaces" (see docs/spectral.md).
    principal : float64 array of shape (m,)
        All principal angles, ascending, ``m = min(k, rank Y[:, low])``.
    per_channel : float64 array of shape (len(low),)
        Angle between each injected channel ``y_c`` and span(U_k) (``atan2(||y_c - P y_c||,
        ||P y_c||)``); NaN for an all-zero channel. ``cot^2`` of it is the left side of
        Assumption 4 over the residual energy outside ``U_k``.
    """

    angle: object
    principal: object
    per_channel: object


#: The Gram route's subspace is used when its rounding, over the eigen-gap at k, tilts it by at most
#: this (sin of the angle, Davis-Kahan): far below any angle the tables print.
_GRAM_TILT = 1e-6


def _top_left_basis(ops, X, k):
    """Orthonormal basis (T, k) of the top-k left singular subspace of X (T, D).

    Tall X: ``span(U_k) = span(X V_k)`` with ``V_k`` from the float64 Gram matrix, re-orthonormalised
    by QR, when the Gram matrix's error radius over the gap ``lambda_k - lambda_{k+1}`` is at most
    :data:`_GRAM_TILT`; otherwise (an ill-conditioned X whose k-th and next singular values are near
    its rounding: the Gram basis was 8 % off on the small angle) and for near-square X, a float64 SVD.
    """
    t, d = X.shape
    if t >= GRAM_RATIO * d:
        lam, v = ops.eigh_desc(ops.gram64(X))
        lam = ops.to_host(lam)
        delta = float(_gram_error_radius(max(float(lam[0]), 0.0), t, d))
        gap = float(lam[k - 1]) - (float(lam[k]) if k < d else 0.0)
        if delta <= _GRAM_TILT * gap:
            return ops.qr_q(ops.matmul64(X, v[:, :k]))
    u, _, _ = ops.svd64(ops.to64(X))
    return u[:, :k]


def injection_angles(X, Y, low, k: int, *, degrees: bool = True) -> InjectionAngles:
    """Angles between the top-k left-singular subspace of X and the injected channels Y[:, low].

    Table 6 of the paper measures the complementarity of a modality ``Y`` injected into the
    low-informativeness channels of ``X`` (Assumption 4 of Theorem 3.1): higher angles (closer
    to 90 degrees) mean the injected signals lie outside the dominant subspace of ``X``.

    Parameters
    ----------
    X : array or tensor of shape (T, D_x)
        Features of the receiving modality (rows: tokens).
    Y : array or tensor of shape (T, D_y)
        Features of the injecting modality, rows aligned with ``X``.
    low : int array of shape (n_low,)
        Channel indices (e.g. :func:`low_informative_channels` of ``X``) into ``Y``'s columns.
    k : int
        Size of the dominant subspace, ``1 <= k <= rank(X)``.
    degrees : bool, default True

    Returns
    -------
    InjectionAngles
    """
    ops = get_ops(X, Y, names=("X", "Y"))  # a mix of backends is its own error
    _in_memory("injection_angles", X=X, Y=Y)
    X = check_matrix(X, "X")
    Y = check_matrix(Y, "Y")
    if len(X.shape) != 2 or len(Y.shape) != 2:
        raise ValueError(f"X and Y must be 2-D, got {describe(X)} and {describe(Y)}")
    if X.shape[0] != Y.shape[0]:
        raise ValueError(f"X and Y must have the same number of rows, got {describe(X)} and {describe(Y)}")
    low_np = get_ops(low).to_host(low)
    if low_np.ndim != 1 or low_np.size == 0 or low_np.dtype.kind not in "iu":
        raise ValueError(f"low must be a non-empty 1-D integer array of channel indices, got {describe(low_np)}")
    if low_np.min() < 0 or low_np.max() >= Y.shape[1]:
        raise ValueError(f"low must index Y's {Y.shape[1]} columns, got values in [{low_np.min()}, {low_np.max()}]")
    r = int(numerical_rank(X))
    k = check_int(k, "k", low=1, high=max(r, 1))
    if r == 0:
        raise ValueError("X is the zero matrix: it has no principal subspace")
    qa = _top_left_basis(ops, X, k)
    yl = ops.to64(Y[:, ops.index(low_np, like=Y)])
    theta = _angles_from_bases(ops, qa, _orth(ops, yl, ops.eps(Y)))  # yl is a float64 copy of Y's columns
    proj = qa.T @ yl
    res = yl - qa @ proj
    pn = ops.sqrt(ops.sum(proj * proj, axis=0))
    rn = ops.sqrt(ops.sum(res * res, axis=0))
    per = ops.atan2(rn, pn)
    # An all-zero injected channel has no direction: NaN, not the atan2(0, 0) = 0 convention.
    per = ops.where((pn == 0) & (rn == 0), ops.nan_like(per), per)
    mean = ops.mean_or_nan(theta)
    if degrees:
        theta, per, mean = ops.rad2deg(theta), ops.rad2deg(per), ops.rad2deg(mean)
    return InjectionAngles(angle=mean, principal=theta, per_channel=per)
