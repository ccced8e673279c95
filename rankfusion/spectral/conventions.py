"""Eq. 1 on a spectrum, and the effective-rank conventions of other tools (docs/spectral.md, "Conventions").

:func:`_entropy_rank` is the one implementation of Eq. 1's ``exp(-sum p log p)`` on singular
values; a :class:`RankConvention` is another tool's choice of matrix (centred, unit rows), of
spectrum (``sigma`` or ``sigma^2``) and of normalisation, applied by :func:`rank_of_spectrum`.
"""

from __future__ import annotations

import math
from typing import NamedTuple

from .._backend import get_ops
from .._validation import InputError, check_float, check_matrix, describe


def _entropy_rank(ops, sigma, eps: float = 0.0, n_pad: int = 0):
    """Eq. 1 on zero-padded singular values along the last axis; 0.0 where all are zero.

    ``eps > 0`` adds ``eps`` to every ``p_j`` of the last axis and of ``n_pad`` further zero
    entries (the RankMe-style conventions, :data:`CONVENTIONS`); Eq. 1 has ``eps = 0``.
    """
    total = ops.sum(sigma, axis=-1, keepdims=True)
    safe = ops.where(total > 0, total, total + 1.0)
    p = sigma / safe
    if eps:
        p = p + eps
    # xlogy(0, 0) = 0: padded zeros and dropped singular values contribute nothing, no epsilon.
    h = -ops.sum(ops.xlogy(p, p), axis=-1)
    if eps and n_pad:
        h = h - n_pad * eps * math.log(eps)
    return ops.where(total[..., 0] > 0, ops.exp(h), ops.zeros_like(h))


class RankConvention(NamedTuple):
    """One published definition of the effective rank, as a choice over one spectrum.

    Attributes
    ----------
    name : str
    center : bool
        Subtract the column means before the spectrum.
    unit_rows : bool
        Scale every (centred) row to unit Euclidean norm first (all-zero rows stay zero).
    power : int
        1: ``p_j`` from the singular values ``sigma_j``; 2: from ``sigma_j^2`` (the
        eigenvalues of the (co)variance matrix up to a positive factor that cancels).
    eps : float
        Added to every ``p_j`` of all ``min(N, D)`` spectrum entries, zeros included.
    per_max_rank : bool
        Divide the effective rank by ``min(N - 1, D)`` (the largest rank a centred N x D
        matrix can have), giving a value in [0, 1].
    source : str
        Where the definition comes from.
    """

    name: str
    center: bool
    unit_rows: bool
    power: int
    eps: float
    per_max_rank: bool
    source: str


#: The effective-rank definitions selectable by name. ``paper`` is Eq. 1 and the default.
CONVENTIONS = {
    c.name: c
    for c in (
        RankConvention("paper", False, False, 1, 0.0, False,
                       "Kim et al., WACV 2026, Eq. 1: singular values of the uncentred matrix, p = sigma / nuclear norm"),
        RankConvention("roy-vetterli", False, False, 1, 0.0, False,
                       "Roy & Vetterli, EUSIPCO 2007: the same formula over all min(N, D) singular values, 0 log 0 = 0"),
        RankConvention("rankme", False, False, 1, 1e-7, False,
                       "Garrido et al., ICML 2023 (RankMe): p = sigma / ||sigma||_1 + eps over min(N, D) values"),
        RankConvention("covariance", True, False, 2, 1e-7, False,
                       "centred covariance eigenvalues (PCA explained-variance ratios) + eps, as reptrix computes RankMe"),
        RankConvention("diff-erank", True, True, 2, 0.0, False,
                       "Wei et al., NeurIPS 2024 (Diff-eRank): centred unit-norm rows, covariance / its trace"),
        RankConvention("monai", True, False, 1, 0.0, True,
                       "MONAI EmbeddingCollapseMetric: singular values of the centred matrix, ERank / min(N - 1, D)"),
    )
}


def _convention(name) -> RankConvention:
    if isinstance(name, RankConvention):
        return name
    if name not in CONVENTIONS:
        raise ValueError(f"convention must be one of {list(CONVENTIONS)}, got {name!r}")
    return CONVENTIONS[name]


def convention_matrix(X, convention: str = "paper"):
    """The matrix whose spectrum a convention uses, and whether to centre it.

    Only ``diff-erank`` changes the matrix: rows centred (float64 column means) and scaled to
    unit norm (all-zero rows stay zero); centring is then already done. Every other convention
    returns ``X`` itself with its ``center`` flag, for :func:`spectrum_info` to apply.

    Parameters
    ----------
    X : array or tensor of shape (..., N, D)
    convention : str

    Returns
    -------
    (Z, center) : (array or tensor of shape (..., N, D), bool)
    """
    conv = _convention(convention)
    if not conv.unit_rows:
        return X, conv.center
    ops = get_ops(X)
    check_matrix(X, "X")
    z = ops.to64(X) - ops.mean64(X, -2)
    norm = ops.sqrt(ops.sum(z * z, axis=-1, keepdims=True))
    return z / ops.where(norm > 0, norm, norm + 1.0), False


def spectrum64(sigma, name: str):
    """``sigma`` as float64 singular values (an array or tensor of shape (r,) or (..., m)), or an
    :class:`InputError` naming ``name``: NaN, infinite or negative entries are no spectrum (they
    would read as the all-zero one, whose effective rank is 0.0)."""
    s = get_ops(sigma).to64(check_matrix(sigma, name, min_ndim=1, allow_empty=True))
    if bool((s < 0).any()):
        raise InputError(f"{name}: singular values must be >= 0, got a negative value ({describe(sigma)})")
    return s


def rank_of_spectrum(sigma, convention: str = "paper", *, shape=None, eps: float | None = None):
    """A convention's effective rank from the singular values of its matrix.

    ``p_j = s_j / sum_i s_i (+ eps)`` with ``s = sigma ** power``, ``ERank = exp(-sum p log p)``
    (``0 log 0 = 0``), divided by ``min(N - 1, D)`` for ``monai``. The all-zero spectrum gives
    0.0 in every convention.

    Parameters
    ----------
    sigma : array or tensor of shape (r,) or (..., m)
        Finite, non-negative singular values (otherwise a ``ValueError`` naming ``sigma``) of :func:`convention_matrix`'s matrix (centred when the
        convention centres), descending or not; zeros are padding.
    convention : str
    shape : (N, D), optional
        Shape of the matrix. Needed by ``monai``; with an ``eps`` a 1-D ``sigma`` shorter than
        ``min(N, D)`` is zero-padded to that length (the sources sum over ``min(N, D)`` values).
    eps : float, optional
        Overrides the convention's ``eps``.

    Returns
    -------
    erank : float64 scalar or array of shape (...) (tensor on torch input)
    """
    conv = _convention(convention)
    eps = conv.eps if eps is None else check_float(eps, "eps", low=0.0)
    ops = get_ops(sigma)
    s = spectrum64(sigma, "sigma")
    n_pad = 0
    if shape is not None:
        n, d = (int(v) for v in shape)
        n_pad = max(0, min(n, d) - int(s.shape[-1]))
    elif conv.per_max_rank:
        raise ValueError(f"shape: convention={conv.name!r} needs the matrix shape (N, D), got None")
    if conv.power == 2:
        # p_j = sigma_j^2 / sum sigma^2, squared after scaling by the sum (no overflow)
        total = ops.sum(s, axis=-1, keepdims=True)
        s = s / ops.where(total > 0, total, total + 1.0)
        s = s * s
    # The all-zero spectrum gives 0.0 in every convention (with eps it would give ~1).
    er = _entropy_rank(ops, s, eps, n_pad)
    if conv.per_max_rank:
        m = min(n - 1, d)
        er = er / m if m > 0 else er * 0.0
    return ops.tofloat(er)
