"""Singular values of a matrix by the Gram or the SVD route, with the one rank tolerance.

Tall or wide inputs are resolved from the float64 Gram matrix of their short side, with an
a-posteriori error bound that falls back to an exact float64 SVD whenever the Gram matrix cannot
decide the rank or pin the effective rank (Eq. 1) down to far below test tolerances
(:func:`_gram_route`); near-square inputs take the exact float64 SVD (:func:`_svd_route`).
Singular values ``<= tol = sqrt(max(N, D)) * eps(dtype) * sigma_max`` (:func:`rank_tolerance`;
half-precision input also within its storage rounding) are outside the numerical rank.
"""

from __future__ import annotations

import math
import numbers
from typing import NamedTuple

import numpy as np

from .._backend import get_ops
from .._validation import check_float, check_matrix, check_structure

_EPS64 = float(np.finfo(np.float64).eps)
_EPS32 = float(np.finfo(np.float32).eps)
_SUBNORMAL64 = float(np.finfo(np.float64).smallest_subnormal)

#: Use the Gram route when the long side is at least this many times the short side. Forming
#: the Gram costs ~N*D^2 flops against ~2*N*D^2 + O(D^3) for an SVD; near-square inputs gain
#: little and would pay for a possible fallback twice.
GRAM_RATIO = 2.0


class SpectrumInfo(NamedTuple):
    """Diagnostics of one spectrum computation (see :func:`spectrum_info`).

    Attributes
    ----------
    sigma : array of shape (..., min(N, D))
        Singular values, float64, descending, zero beyond each element's numerical rank.
    rank : int64 array of shape (...)
        Numerical rank (number of singular values above ``tol``).
    tol : float64 array of shape (...)
        Tolerance applied to the singular values.
    route : str
        ``"gram"`` (all elements from the float64 Gram matrix), ``"svd"`` (exact float64 SVD)
        or ``"gram+svd"`` (Gram with an SVD fallback for some batch elements).
    n_fallback : int
        Number of batch elements that fell back from the Gram route to the SVD.
    """

    sigma: object
    rank: object
    tol: object
    route: str
    n_fallback: int


def _erank_target(eps_in: float) -> float:
    # The Gram route is accepted only if its certified effective-rank error is far below the
    # accuracy asked of the results (1e-9 relative for float64 inputs, 1e-6 for float32).
    return 1e-11 if eps_in <= 2 * _EPS64 else 1e-8


def _gram_error_radius(lam_max, n_long: int, n_short: int):
    """Half-width ``delta`` of the interval that holds each true ``sigma_j^2`` around ``lambda_j``.

    Forming ``G = X^T X`` in float64 sums ``n_long`` products per entry (exact for float32
    inputs); blocked BLAS summation has a rounding error that grows like ``sqrt(n_long) * eps``
    relative to ``||G||`` (probabilistic bound, Higham 2002 Sec. 3.3). ``eigvalsh`` is backward
    stable with a backward error of order ``n_short * eps * ||G||``. By Weyl's inequality both
    move each eigenvalue by at most their norm, hence ``c = sqrt(n_long) + n_short``.

    The second term covers underflow: each product below the float64 subnormal range can lose
    up to ``2^-1074``, so for float64 inputs of magnitude below ~1e-154 the band widens and the
    SVD (which scales internally) decides instead. Float32 squares never underflow in float64.
    """
    return (math.sqrt(n_long) + n_short) * _EPS64 * lam_max + n_long * _SUBNORMAL64 * (n_short + 1)


def _gram_erank_bound(ops, lam, delta, tol2):
    """Certified bound on the relative error of Eq. 1 when sigma comes from the Gram route.

    With ``H = -sum p log p`` and ``p_j = sigma_j / S``, ``dH/dsigma_j = -(log p_j + H) / S`` and
    ``|d ERank| / ERank = |dH|``; each ``sigma_j`` is known to within
    ``[sqrt(lambda_j - delta), sqrt(lambda_j + delta)]``. Returns shape (...,).
    """
    keep = (lam - delta) > tol2
    s = ops.sqrt(ops.clip(lam, 0.0))
    hi = ops.sqrt(ops.clip(lam + delta, 0.0))
    lo = ops.sqrt(ops.clip(lam - delta, 0.0))
    ds = ops.where(keep, ops.clip(hi - s, 0.0) + ops.clip(s - lo, 0.0), ops.zeros_like(s))
    s = ops.where(keep, s, ops.zeros_like(s))
    total = ops.sum(s, axis=-1, keepdims=True)
    safe = ops.where(total > 0, total, total + 1.0)
    p = s / safe
    entropy = -ops.sum(ops.xlogy(p, p), axis=-1, keepdims=True)
    # log p_j only where p_j > 0 (kept sigmas); elsewhere ds is 0 and the factor is irrelevant.
    logp = ops.log(ops.where(keep, p, p + 1.0))
    return ops.sum(ops.abs(logp + entropy) * ds, axis=-1) / safe[..., 0]


def rank_tolerance(sigma_max, n_long: int, eps: float, fro=None, centred: bool = False):
    """The toolkit's one rank tolerance: ``tol = sqrt(max(N, D)) * eps * sigma_max``.

    Singular values ``<= tol`` are outside the numerical rank (docs/spectral.md: numpy's
    ``max(N, D) * eps`` drops real signal of large float32 feature matrices).

    Half-precision input (``eps`` above float32's: float16, bfloat16) is accumulated in float32
    and rounded once to its storage type, so its tolerance is the larger of float32's rule and
    the bound of that rounding, ``(eps / 2) * ||X||_F`` (each entry within half an ulp):
    ``sqrt(max(N, D)) * eps`` alone reaches ``sigma_max`` itself for a bfloat16 matrix of 16,384
    rows. For float32 and float64 the rounding bound never exceeds the rule
    (``||X||_F <= sqrt(min(N, D)) * sigma_max``), and the rule is used as written.

    Parameters
    ----------
    sigma_max : float, or array / tensor of shape (...)
        Largest singular value (a norm: ``rank_tolerance(||y||, ...)`` is the same cut
        relative to another vector's norm).
    n_long : int
        ``max(N, D)`` of the matrix.
    eps : float
        Machine epsilon of the input's dtype (float64's for integer input).
    fro : float, or array / tensor like ``sigma_max``, optional
        ``||X||_F`` (``sqrt(sum(sigma**2))``; a vector's norm), for half-precision input; without
        it the rule is used as written whatever ``eps``.
    centred : bool, default False
        ``sigma_max`` is the centred matrix's and ``fro`` the stored one's: the rounding bound
        ``(eps / 2) * ||X||_F`` then applies at every precision (centring removes the mean, not
        the rounding its size brought, in the data or in the mean itself).

    Returns
    -------
    tol : same type and shape as ``sigma_max``
    """
    half = fro is not None and eps > _EPS32
    grown_eps = _EPS32 if half else eps  # the precision the values were accumulated in
    tol = math.sqrt(n_long) * grown_eps * sigma_max
    if not (half or (centred and fro is not None)):
        return tol
    rounded = 0.5 * eps * fro
    return tol + (rounded - tol) * (rounded > tol)


def tolerance_fro(ops, X, eps: float):
    """``||X||_F`` of the stored matrix, the ``fro`` of :func:`rank_tolerance`, where it is used
    (``eps`` above float32's: half precision, whose squares cannot overflow float64), else None.
    Shape (..., 1) for a batch (..., N, D), a scalar for one matrix. Never the centred matrix's:
    centring removes the mean, not the rounding the mean's size brought."""
    if eps <= _EPS32:
        return None
    fro = ops.sqrt(ops.sum(ops.colsq64(X), axis=-1))
    return fro[..., None] if X.ndim > 2 else fro


def _route_fro(ops, X, eps: float, mu, centred_fro):
    """The ``fro`` of :func:`rank_tolerance` on a route: :func:`tolerance_fro`, or for centred input
    (``mu`` of shape (..., 1, D)) the stored ``||X||_F = sqrt(||X - mu||_F^2 + N ||mu||^2)`` from
    the centred matrix's ``centred_fro`` (shape (...)), with no square that could overflow."""
    if mu is None:
        return tolerance_fro(ops, X, eps)
    m = mu[..., 0, :]
    l1 = ops.sum(ops.abs(m), axis=-1)
    scale = ops.where(l1 > 0, l1, l1 + 1.0)
    mean_fro = math.sqrt(X.shape[-2]) * l1 * ops.sqrt(ops.sum((m / scale[..., None]) ** 2, axis=-1))
    big = ops.maximum(centred_fro, mean_fro)
    big_safe = ops.where(big > 0, big, big + 1.0)
    fro = big * ops.sqrt((centred_fro / big_safe) ** 2 + (mean_fro / big_safe) ** 2)
    return fro[..., None] if X.ndim > 2 else fro


def _sigma_fro(ops, sigma):
    """``sqrt(sum(sigma**2))`` along the last axis of descending ``sigma``, scaled by its first."""
    top = sigma[..., 0]
    safe = ops.where(top > 0, top, top + 1.0)
    return top * ops.sqrt(ops.sum((sigma / safe[..., None]) ** 2, axis=-1))


def _finite_or_raise(ops, reduced, X, name) -> bool:
    """Finiteness of ``X`` from a float64 sum of its squares that was computed anyway.

    A sum of squares is NaN/Inf iff some entry is, or (only for float64 entries beyond ~1e154)
    when the squares overflow. Returns True when finite; otherwise raises the standard
    NaN/Inf ``ValueError`` of :func:`check_matrix`, or returns False for a genuine overflow.
    This saves a full pass over ``X`` (17% of the benchmark's time) on the common path.
    """
    if ops.all_finite(reduced):
        return True
    check_matrix(X, name)
    return False


def _certify_gram(ops, gram, n_long: int, n_short: int, eps_in: float, tol, fro=None, centred=False):
    """Singular values from a float64 Gram matrix (..., n_short, n_short), and whether to trust them.

    Returns ``(sigma, tol, need)``: descending ``sqrt(max(lambda, 0))``, the tolerance of shape
    (..., 1), and a boolean of shape (...) that is True where the Gram route cannot certify the
    rank or pin Eq. 1 down to :func:`_erank_target` (the caller then needs an exact SVD).
    """
    lam = ops.eigvalsh_desc(gram)
    # Rounding can leave eigenvalues of a PSD matrix slightly negative; they are zeros.
    lam_max = ops.clip(lam[..., :1], 0.0)
    delta = _gram_error_radius(lam_max, n_long, n_short)
    sigma = ops.sqrt(ops.clip(lam, 0.0))
    if tol is None:
        tol_arr = rank_tolerance(sigma[..., :1], n_long, eps_in, fro, centred)
        # The tolerance itself is known only to within the relative error of lambda_max.
        widen = 2.0 * delta
    else:
        tol_arr = tol + 0.0 * sigma[..., :1]
        widen = 0.0 * delta
    with np.errstate(over="ignore"):  # a centred tolerance above ~1e154: nothing is kept, rightly
        tol2 = tol_arr * tol_arr
    ambiguous = ops.sum(((lam - delta) <= tol2 + widen) & (tol2 - widen < (lam + delta)), axis=-1) > 0
    bound = _gram_erank_bound(ops, lam, delta, tol2)
    return sigma, tol_arr, ambiguous | (bound > _erank_target(eps_in))


def _exact_sigma(ops, X, mu):
    """Singular values of ``X`` (minus ``mu`` when given) by an exact float64 SVD, descending."""
    x64 = ops.to64(X)
    if mu is not None:
        x64 = x64 - mu
    return ops.svdvals64(x64)


def _svd_route(ops, X, mu, tol, n_long: int, eps_in: float):
    """The exact route: ``(sigma, tol, "svd", 0)`` from a float64 SVD of every element.

    Finiteness is established first by a full scan (an SVD of NaN/Inf is undefined).
    """
    check_matrix(X, "X")
    sigma = _exact_sigma(ops, X, mu)
    fro = _route_fro(ops, X, eps_in, mu, _sigma_fro(ops, sigma))
    tol_arr = (rank_tolerance(sigma[..., :1], n_long, eps_in, fro, mu is not None) if tol is None
               else tol + 0.0 * sigma[..., :1])
    return sigma, tol_arr, "svd", 0


def _gram_route(ops, X, mu, tol, eps_in: float, chunk_rows: int | None):
    """The fast route: ``(sigma, tol, route, n_fallback)`` from the float64 Gram matrix of the short
    side, certified by :func:`_certify_gram`; each element it cannot certify falls back to an exact
    SVD. None when finite squares overflow float64 (``|x| > ~1e154``): the SVD route scales.

    Finiteness is established here, from the Gram diagonal.
    """
    n, d = X.shape[-2], X.shape[-1]
    n_short, n_long = min(n, d), max(n, d)
    batch_shape = tuple(X.shape[:-2])
    if n >= d:
        xs, mus = X, mu
    else:
        # Wide input: the short side is the rows; X X^T = (X^T)^T (X^T), chunked over columns.
        xs = ops.mT(X)
        mus = None if mu is None else ops.mT(mu)
    gram = ops.gram64(xs, mus, chunk_rows)
    if not _finite_or_raise(ops, ops.diagonal(gram), X, "X"):
        return None
    centred = mu is not None
    fro = _route_fro(ops, X, eps_in, mu, ops.sqrt(ops.sum(ops.diagonal(gram), axis=-1)))
    sigma, tol_arr, need = _certify_gram(ops, gram, n_long, n_short, eps_in, tol, fro, centred)
    n_fallback = 0
    if X.ndim == 2:
        if bool(need):
            sigma = _exact_sigma(ops, X, mu)
            tol_arr = tol_arr if tol is not None else rank_tolerance(sigma[:1], n_long, eps_in, fro, centred)
            n_fallback = 1
    else:
        idx = ops.nonzero1d(need.reshape(-1))
        n_fallback = int(idx.shape[0])
        if n_fallback:
            xf = X.reshape((-1, n, d))
            muf = None if mu is None else mu.reshape((-1, 1, d))
            sf = ops.copy(sigma.reshape((-1, n_short)))
            sf[idx] = _exact_sigma(ops, xf[idx], None if muf is None else muf[idx])
            sigma = sf.reshape(batch_shape + (n_short,))
            if tol is None:
                tol_arr = rank_tolerance(sigma[..., :1], n_long, eps_in, fro, centred)
    route = "gram" if n_fallback == 0 else ("svd" if n_fallback == max(1, int(np.prod(batch_shape))) else "gram+svd")
    return sigma, tol_arr, route, n_fallback


def _spectrum(X, *, center: bool, tol, chunk_rows: int | None = None, data_eps: float | None = None) -> SpectrumInfo:
    """Structurally validated (..., N, D) input -> :class:`SpectrumInfo` (zero-padded sigma).

    The Gram route (:func:`_gram_route`) when one side is at least :data:`GRAM_RATIO` times the
    other and the squares fit float64, else the SVD route (:func:`_svd_route`).
    """
    ops = get_ops(X)
    n, d = X.shape[-2], X.shape[-1]
    n_long = max(n, d)
    eps_in = ops.eps(X) if data_eps is None else float(data_eps)
    mu = ops.mean64(X, -2) if center else None
    found = None
    if n_long >= GRAM_RATIO * min(n, d):
        found = _gram_route(ops, X, mu, tol, eps_in, chunk_rows)
    if found is None:
        found = _svd_route(ops, X, mu, tol, n_long, eps_in)
    sigma, tol_arr, route, n_fallback = found
    keep = sigma > tol_arr
    sigma = ops.where(keep, sigma, ops.zeros_like(sigma))
    rank = ops.int64(ops.sum(keep, axis=-1))
    return SpectrumInfo(sigma=sigma, rank=rank, tol=tol_arr[..., 0], route=route, n_fallback=n_fallback)


def _check_tol(tol):
    return check_float(tol, "tol", low=0.0, allow_none=True)


def spectrum_info(X, *, center: bool = False, tol: float | None = None,
                  data_eps: float | None = None) -> SpectrumInfo:
    """Singular values with diagnostics (route taken, fallbacks, tolerance, rank).

    Parameters
    ----------
    X : array or tensor of shape (..., N, D)
        Real, finite matrix or batch of matrices.
    center : bool, default False
        Subtract the column means (over N) first. The paper does not centre.
    tol : float, optional
        Absolute tolerance on singular values; default ``sqrt(max(N, D)) * eps * sigma_max``.
    data_eps : float, optional
        The ``eps`` of that default: the machine epsilon of the data's own precision, by default
        ``X``'s dtype's. Give the original dtype's when ``X`` is a float64 transform of
        lower-precision data (z-scored columns, centred unit rows): its rounding noise is the
        original's, and float64's epsilon would count it as rank.

    Returns
    -------
    SpectrumInfo
        ``sigma`` is zero-padded to ``min(N, D)`` for every shape (also 2-D input).
    """
    X = check_structure(X, "X")
    X = get_ops(X).check_layout(X, "X")
    if data_eps is not None:
        if isinstance(data_eps, bool) or not isinstance(data_eps, numbers.Real) or not 0 < data_eps < 1:
            raise ValueError(f"data_eps must be a machine epsilon in (0, 1), got {data_eps!r}")
        data_eps = float(data_eps)
    return _spectrum(X, center=bool(center), tol=_check_tol(tol), data_eps=data_eps)


def singular_values(X, *, center: bool = False, tol: float | None = None, data_eps: float | None = None):
    """Singular values of the numerical rank, descending, exact to float64 accuracy.

    The route is chosen for speed without giving up accuracy: when one side is at least
    twice the other, the float64-accumulated Gram matrix of the short side is diagonalised
    (``eigvalsh``) and ``sigma = sqrt(max(lambda, 0))``; an a-posteriori bound decides whether
    that resolves the rank and the effective rank (Eq. 1) to far below float64/float32 test
    tolerances, and falls back to an exact float64 SVD otherwise. Near-square inputs go
    straight to the float64 SVD.

    Parameters
    ----------
    X : ndarray or torch.Tensor of shape (N, D) or (..., N, D)
        Real, finite. Integer inputs are accepted (float64 epsilon).
    center : bool, default False
        Subtract column means first (the paper does not centre).
    tol : float, optional
        Absolute threshold: singular values ``<= tol`` are dropped. Default
        ``sqrt(max(N, D)) * eps(X.dtype) * sigma_max``.
    data_eps : float, optional
        ``eps`` of that default in place of ``X``'s dtype's (:func:`spectrum_info`).

    Returns
    -------
    sigma : float64 array of shape (r,) for 2-D input, (..., min(N, D)) for batched input
        2-D: the ``r`` singular values above ``tol`` (``r`` is the numerical rank; empty for
        the zero matrix). Batched: zero-padded beyond each element's numerical rank. torch
        input gives a float64 tensor on the input's device.

    Raises
    ------
    ValueError
        If ``X`` has fewer than 2 dimensions, is empty or contains NaN/Inf.
    """
    info = spectrum_info(X, center=center, tol=tol, data_eps=data_eps)
    if len(info.sigma.shape) == 1:
        r = int(info.rank)
        return info.sigma[:r]
    return info.sigma


def numerical_rank(X, *, center: bool = False, tol: float | None = None):
    """Number of singular values above ``tol`` (see :func:`singular_values`).

    Returns
    -------
    rank : int64 scalar (2-D) or int64 array of shape (...) (batched); torch.long on torch input
    """
    return spectrum_info(X, center=center, tol=tol).rank
