"""Spectra, effective rank, channel informativeness, principal angles and rank gains.

Pure functions on NumPy arrays or torch tensors (the backend follows the input; torch
results stay on the input's device). Equation and definition numbers refer to Kim et al.,
"Countering Multi-modal Representation Collapse through Rank-targeted Fusion" (WACV 2026).
Numerical conventions are documented in ``docs/spectral.md``:

* singular values below the tolerance ``tol = sqrt(max(N, D)) * eps(dtype) * sigma_max`` are
  not part of the spectrum (numerical rank);
* Eq. 1 is computed without an epsilon inside the logarithm (``xlogy``);
* the all-zero matrix has numerical rank 0, an empty spectrum and effective rank 0.0;
* tall or wide inputs are resolved from the float64 Gram matrix of their short side, with an
  a-posteriori error bound that falls back to an exact float64 SVD whenever the Gram matrix
  cannot decide the rank or pin the effective rank down to far below test tolerances.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from ._backend import NumpyOps, chunk_rows_for, get_ops
from ._validation import check_float, check_int, check_matrix, check_structure, describe

__all__ = [
    "singular_values",
    "effective_rank",
    "numerical_rank",
    "channel_informativeness",
    "channel_statistic",
    "informativeness_from_statistic",
    "low_informative_channels",
    "flatten_tokens",
    "principal_angles",
    "injection_angles",
    "InjectionAngles",
    "rank_gain",
    "harmonic_mean_gain",
    "GramAccumulator",
    "SpectrumInfo",
    "spectrum_info",
    "rank_tolerance",
    "blended_channel_count",
    "dominant_k",
    "RankConvention",
    "CONVENTIONS",
    "convention_matrix",
    "rank_of_spectrum",
    "standardize_columns",
]

_EPS64 = float(np.finfo(np.float64).eps)
_SUBNORMAL64 = float(np.finfo(np.float64).smallest_subnormal)

#: Use the Gram route when the long side is at least this many times the short side. Forming
#: the Gram costs ~N*D^2 flops against ~2*N*D^2 + O(D^3) for an SVD; near-square inputs gain
#: little and would pay for a possible fallback twice.
GRAM_RATIO = 2.0


# --------------------------------------------------------------------------------------
# Core spectrum
# --------------------------------------------------------------------------------------


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


def rank_tolerance(sigma_max, n_long: int, eps: float):
    """The toolkit's one rank tolerance: ``tol = sqrt(max(N, D)) * eps * sigma_max``.

    Singular values ``<= tol`` are outside the numerical rank (docs/spectral.md: numpy's
    ``max(N, D) * eps`` drops real signal of large float32 feature matrices).

    Parameters
    ----------
    sigma_max : float, or array / tensor of shape (...)
        Largest singular value (a norm: ``rank_tolerance(||y||, ...)`` is the same cut
        relative to another vector's norm).
    n_long : int
        ``max(N, D)`` of the matrix.
    eps : float
        Machine epsilon of the input's dtype (float64's for integer input).

    Returns
    -------
    tol : same type and shape as ``sigma_max``
    """
    return math.sqrt(n_long) * eps * sigma_max


def _default_tol(ops, sigma_max, n_long, eps_in):
    return rank_tolerance(sigma_max, n_long, eps_in)


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


def _certify_gram(ops, gram, n_long: int, n_short: int, eps_in: float, tol):
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
        tol_arr = _default_tol(ops, sigma[..., :1], n_long, eps_in)
        # The tolerance itself is known only to within the relative error of lambda_max.
        widen = 2.0 * delta
    else:
        tol_arr = tol + 0.0 * sigma[..., :1]
        widen = 0.0 * delta
    tol2 = tol_arr * tol_arr
    ambiguous = ops.sum(((lam - delta) <= tol2 + widen) & (tol2 - widen < (lam + delta)), axis=-1) > 0
    bound = _gram_erank_bound(ops, lam, delta, tol2)
    return sigma, tol_arr, ambiguous | (bound > _erank_target(eps_in))


def _spectrum(X, *, center: bool, tol, chunk_rows: int | None = None) -> SpectrumInfo:
    """Structurally validated (..., N, D) input -> :class:`SpectrumInfo` (zero-padded sigma).

    Finiteness is established here: from the Gram diagonal on the Gram route, by a full scan
    before any SVD.
    """
    ops = get_ops(X)
    n, d = X.shape[-2], X.shape[-1]
    n_short, n_long = min(n, d), max(n, d)
    eps_in = ops.eps(X)
    mu = ops.mean64(X, -2) if center else None
    batch_shape = tuple(X.shape[:-2])

    def exact(Xe, mue):
        x64 = ops.to64(Xe)
        if mue is not None:
            x64 = x64 - mue
        return ops.svdvals64(x64)

    n_fallback = 0
    use_gram = n_long >= GRAM_RATIO * n_short
    if use_gram:
        if n >= d:
            xs, mus = X, mu
        else:
            # Wide input: the short side is the rows; X X^T = (X^T)^T (X^T), chunked over columns.
            xs = ops.mT(X)
            mus = None if mu is None else ops.mT(mu)
        gram = ops.gram64(xs, mus, chunk_rows)
        # Squares of finite entries overflowing float64 (|x| > ~1e154): the SVD route scales.
        use_gram = _finite_or_raise(ops, ops.diagonal(gram), X, "X")
    if use_gram:
        sigma, tol_arr, need = _certify_gram(ops, gram, n_long, n_short, eps_in, tol)
        if X.ndim == 2:
            if bool(need):
                sigma = exact(X, mu)
                tol_arr = tol_arr if tol is not None else _default_tol(ops, sigma[:1], n_long, eps_in)
                n_fallback = 1
        else:
            need_flat = need.reshape(-1)
            idx = ops.nonzero1d(need_flat)
            n_fallback = int(idx.shape[0])
            if n_fallback:
                xf = X.reshape((-1, n, d))
                muf = None if mu is None else mu.reshape((-1, 1, d))
                sf = sigma.reshape((-1, n_short))
                sf = ops.copy(sf)
                sf[idx] = exact(xf[idx], None if muf is None else muf[idx])
                sigma = sf.reshape(batch_shape + (n_short,))
                if tol is None:
                    tol_arr = _default_tol(ops, sigma[..., :1], n_long, eps_in)
        route = "gram" if n_fallback == 0 else ("svd" if n_fallback == max(1, int(np.prod(batch_shape))) else "gram+svd")
    else:
        check_matrix(X, "X")  # an SVD of NaN/Inf is undefined: scan before it
        sigma = exact(X, mu)
        tol_arr = _default_tol(ops, sigma[..., :1], n_long, eps_in) if tol is None else tol + 0.0 * sigma[..., :1]
        route = "svd"
    keep = sigma > tol_arr
    sigma = ops.where(keep, sigma, ops.zeros_like(sigma))
    rank = ops.int64(ops.sum(keep, axis=-1))
    return SpectrumInfo(sigma=sigma, rank=rank, tol=tol_arr[..., 0], route=route, n_fallback=n_fallback)


def _check_tol(tol):
    return check_float(tol, "tol", low=0.0, allow_none=True)


def spectrum_info(X, *, center: bool = False, tol: float | None = None) -> SpectrumInfo:
    """Singular values with diagnostics (route taken, fallbacks, tolerance, rank).

    Parameters
    ----------
    X : array or tensor of shape (..., N, D)
        Real, finite matrix or batch of matrices.
    center : bool, default False
        Subtract the column means (over N) first. The paper does not centre.
    tol : float, optional
        Absolute tolerance on singular values; default ``sqrt(max(N, D)) * eps * sigma_max``.

    Returns
    -------
    SpectrumInfo
        ``sigma`` is zero-padded to ``min(N, D)`` for every shape (also 2-D input).
    """
    X = check_structure(X, "X")
    X = get_ops(X).check_layout(X, "X")
    return _spectrum(X, center=bool(center), tol=_check_tol(tol))


def singular_values(X, *, center: bool = False, tol: float | None = None):
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
    info = spectrum_info(X, center=center, tol=tol)
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


def effective_rank(X_or_sigma, *, center: bool = False, tol: float | None = None,
                   convention: str = "paper", eps: float | None = None):
    """Effective rank (Eq. 1): ``exp(-sum_j p_j log p_j)``, ``p_j = sigma_j / ||Z||_*``.

    The sum runs over the numerical rank (singular values above ``tol``). No epsilon is added
    inside the logarithm (zero terms are dropped via ``xlogy``).

    ``convention`` selects another tool's definition instead (see :data:`CONVENTIONS` and
    docs/spectral.md, "Conventions"): the same spectrum computation, then the convention's
    choice of matrix (centred, unit rows), of spectrum (``sigma`` or ``sigma^2``) and of
    normalisation (:func:`rank_of_spectrum`).

    Parameters
    ----------
    X_or_sigma : array or tensor of shape (N, D), (..., N, D) or (r,)
        A matrix / batch of matrices, or a 1-D vector of singular values (finite, ``>= 0``;
        zeros are ignored; ``center`` and ``tol`` are then not used).
    center : bool, default False
        Subtract column means first.
    tol : float, optional
        See :func:`singular_values`.
    convention : str, default "paper"
        One of ``paper``, ``roy-vetterli``, ``rankme``, ``covariance``, ``diff-erank``,
        ``monai`` (:data:`CONVENTIONS`). Conventions other than ``paper`` fix the centring
        themselves (``center=True`` with them is a ``ValueError``).
    eps : float, optional
        Overrides the convention's ``eps`` (added to every ``p_j``; RankMe's 1e-7).

    Returns
    -------
    erank : float64 scalar (``np.float64`` / 0-d tensor) or float64 array of shape (...)
        ``1 <= erank <= rank`` for a non-zero matrix; ``0.0`` for the all-zero matrix
        (every convention). ``monai`` returns the normalised value in [0, 1].
    """
    x = X_or_sigma
    ops = get_ops(x)
    conv = _convention(convention)
    if conv.name != "paper" or eps is not None:
        if center:
            raise ValueError(f"center=True applies to convention='paper'; convention={conv.name!r} "
                             f"{'centres' if conv.center else 'does not centre'} by definition")
        if ops.ndim(x) == 1:
            if conv.center or conv.unit_rows or conv.per_max_rank:
                raise ValueError(f"X_or_sigma: convention={conv.name!r} needs the matrix, not a 1-D "
                                 f"vector of singular values ({describe(x)})")
            sigma = ops.to64(check_matrix(x, "X_or_sigma", min_ndim=1, allow_empty=True))
            if bool((sigma < 0).any()):
                raise ValueError(f"X_or_sigma: singular values must be >= 0, got a negative value ({describe(x)})")
            return rank_of_spectrum(sigma, conv.name, eps=eps)
        x = check_structure(x, "X_or_sigma")
        z, centre = convention_matrix(x, conv.name)
        info = spectrum_info(z, center=centre, tol=tol)
        return rank_of_spectrum(info.sigma, conv.name, shape=tuple(x.shape[-2:]), eps=eps)
    if ops.ndim(x) == 1:
        x = check_matrix(x, "X_or_sigma", min_ndim=1, allow_empty=True)
        sigma = ops.to64(x)
        if bool((sigma < 0).any()):
            raise ValueError(f"X_or_sigma: singular values must be >= 0, got a negative value ({describe(x)})")
        if sigma.shape[0] == 0:
            return ops.tofloat(ops.sum(sigma))
        return ops.tofloat(_entropy_rank(ops, sigma))
    info = spectrum_info(x, center=center, tol=tol)
    return ops.tofloat(_entropy_rank(ops, info.sigma))


# --------------------------------------------------------------------------------------
# Effective-rank conventions of other tools (docs/spectral.md, "Conventions")
# --------------------------------------------------------------------------------------


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


def rank_of_spectrum(sigma, convention: str = "paper", *, shape=None, eps: float | None = None):
    """A convention's effective rank from the singular values of its matrix.

    ``p_j = s_j / sum_i s_i (+ eps)`` with ``s = sigma ** power``, ``ERank = exp(-sum p log p)``
    (``0 log 0 = 0``), divided by ``min(N - 1, D)`` for ``monai``. The all-zero spectrum gives
    0.0 in every convention.

    Parameters
    ----------
    sigma : array or tensor of shape (r,) or (..., m)
        Non-negative singular values of :func:`convention_matrix`'s matrix (centred when the
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
    s = ops.to64(sigma)
    n_pad = 0
    if shape is not None:
        n, d = (int(v) for v in shape)
        n_pad = max(0, min(n, d) - int(s.shape[-1]))
    elif conv.per_max_rank:
        raise ValueError(f"shape: convention={conv.name!r} needs the matrix shape (N, D), got None")
    if s.shape[-1] == 0:
        return ops.tofloat(ops.sum(s, axis=-1))
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
    z = x - x.mean(axis=0)
    std = np.sqrt(np.mean(z * z, axis=0))
    std[constant] = 1.0
    z /= std
    z[:, constant] = 0.0
    return z, constant.astype(np.int64)


# --------------------------------------------------------------------------------------
# Channel informativeness (Definition 1, Sec. 4.2)
# --------------------------------------------------------------------------------------


def channel_informativeness(X, k: int | None = None, *, center: bool = False):
    """Channel informativeness (Definition 1): ``I_c = sum_{i<=k} sigma_i^2 v_{i,c}^2``.

    With ``k=None`` the sum runs over all ``r`` singular directions (Sec. 4.2), which equals
    the column energy ``||x_c||^2 = (X^T X)_{cc}``; it is computed as such, without any
    eigendecomposition. With ``k`` the top-``k`` eigenpairs of the float64 Gram matrix
    ``X^T X = V diag(sigma^2) V^T`` are used (no SVD of the tall matrix).

    Parameters
    ----------
    X : array or tensor of shape (N, D) or (..., N, D)
        Feature matrix (rows: tokens/time steps, columns: channels).
    k : int, optional
        Number of top singular directions, ``1 <= k <= D``. ``None`` means all.
    center : bool, default False
        Subtract column means first.

    Returns
    -------
    scores : float64 array of shape (D,) or (..., D)
        On torch input a float64 tensor on the input's device; gradients flow where torch
        supports them (eigh needs distinct eigenvalues).

    Notes
    -----
    If ``sigma_k == sigma_{k+1}`` the top-``k`` subspace is not unique and neither is ``I_c``.
    """
    X = check_structure(X, "X")
    d = X.shape[-1]
    k = check_int(k, "k", low=1, high=d, allow_none=True)
    ops = get_ops(X)
    X = ops.check_layout(X, "X")
    mu = ops.mean64(X, -2) if center else None
    if k is None:
        energy = ops.colsq64(X, mu)
        # Finite X whose energies overflow float64 keeps its (correctly rounded) inf scores.
        _finite_or_raise(ops, energy, X, "X")
        return energy
    gram = ops.gram64(X, mu)
    if not _finite_or_raise(ops, ops.diagonal(gram), X, "X"):
        raise ValueError(f"X has entries too large for a float64 Gram matrix (squares overflow): {describe(X)}")
    lam, v = ops.eigh_desc(gram)
    return topk_informativeness(lam, v, k)


def topk_informativeness(lam, v, k: int):
    """Definition 1 from eigenpairs of ``X^T X``: ``I_c = sum_{i<=k} lambda_i v_{c,i}^2``.

    The one implementation of the top-``k`` sum (``lambda_i = sigma_i^2``), shared by
    :func:`channel_informativeness`, :class:`GramAccumulator` and :mod:`rankfusion.theorem`.

    Parameters
    ----------
    lam : array or tensor of shape (..., m)
        Eigenvalues in descending order (``m >= k``).
    v : array or tensor of shape (..., D, m)
        The matching eigenvectors as columns (``V`` of ``X = U diag(sigma) V^T``).
    k : int

    Returns
    -------
    scores : array or tensor of shape (..., D)
    """
    ops = get_ops(lam)
    # Tiny negative eigenvalues of the PSD Gram matrix are rounding; they carry no energy.
    lam = ops.clip(lam[..., :k], 0.0)
    vk = v[..., :, :k]
    return ops.sum(vk * vk * lam[..., None, :], axis=-1)


def channel_statistic(X, k: int | None = None):
    """The additive statistic Definition 1 is computed from: column energies or the Gram matrix.

    For row blocks ``X = [X_1; X_2; ...]`` the statistic of ``X`` is the sum of the blocks'
    statistics, so informativeness over a batch split across processes is
    ``informativeness_from_statistic(sum_r channel_statistic(X_r, k), k)`` (one all-reduce).

    Parameters
    ----------
    X : array or tensor of shape (N, D)
    k : int, optional
        ``None``: the column energies ``||x_c||^2``, shape (D,) (Sec. 4.2's all-``r`` sum).
        An int: the float64 Gram matrix ``X^T X``, shape (D, D), for the top-``k`` sum.

    Returns
    -------
    float64 array or tensor of shape (D,) or (D, D), on the input's backend and device.
    """
    X = check_structure(X, "X")
    k = check_int(k, "k", low=1, high=X.shape[-1], allow_none=True)
    ops = get_ops(X)
    stat = ops.colsq64(X, None) if k is None else ops.gram64(X, None)
    _finite_or_raise(ops, stat if k is None else ops.diagonal(stat), X, "X")
    return stat


def informativeness_from_statistic(stat, k: int | None = None):
    """Definition 1 from :func:`channel_statistic`: energies as they are, or the top-``k`` sum
    (:func:`topk_informativeness` of the Gram matrix's eigenpairs, descending).

    Parameters
    ----------
    stat : array or tensor of shape (D,) (``k=None``) or (..., D, D) (``k`` given)
    k : int, optional

    Returns
    -------
    float64 array or tensor of shape (..., D)
    """
    if k is None:
        return stat
    lam, v = get_ops(stat).eigh_desc(stat)
    return topk_informativeness(lam, v, k)


def low_informative_channels(scores, *, eta: float | None = None, k_prime: int | None = None):
    """The low-informativeness set: ``{c : I_c <= eta}`` (Def. 1) or the bottom ``k'`` (Eq. 3).

    Parameters
    ----------
    scores : array or tensor of shape (D,) (or (..., D) with ``k_prime``)
        Channel informativeness, e.g. from :func:`channel_informativeness`.
    eta : float, optional
        Threshold of Definition 1 (``I_c <= eta`` is low). Exactly one of ``eta``/``k_prime``.
    k_prime : int, optional
        Number of lowest-scoring channels (Eq. 3), ``0 <= k_prime <= D``. Ties are broken
        by the lower channel index.

    Returns
    -------
    channels : int64 array (torch.long tensor on the scores' device) of shape (n_low,) or (..., k_prime)
        Channel indices sorted ascending.
    """
    if (eta is None) == (k_prime is None):
        raise ValueError(f"give exactly one of eta or k_prime, got eta={eta!r}, k_prime={k_prime!r}")
    ops = get_ops(scores)
    if eta is not None:
        scores = check_matrix(scores, "scores", min_ndim=1)
        if ops.ndim(scores) != 1:
            raise ValueError(f"scores must be 1-D when eta is given, got {describe(scores)}")
        eta = check_float(eta, "eta")
        return ops.nonzero1d(scores <= eta)
    scores = check_matrix(scores, "scores", min_ndim=1)
    d = scores.shape[-1]
    k_prime = check_int(k_prime, "k_prime", low=0, high=d)
    # A stable sort keeps equal scores in index order, so ties go to the lower channel index.
    order = ops.stable_argsort(scores, axis=-1)[..., :k_prime]
    return ops.int64(ops.sort(order, axis=-1))


def blended_channel_count(exchange_ratio: float, n_channels: int) -> int:
    """Number ``k'`` of channels RTF blends (Eq. 3): ``round(exchange_ratio * D)``.

    The one definition used by the model (:class:`rankfusion.model.RankEnhancingTokenFuser`),
    the analyses of its features (angles, Theorem 3.1 checks) and the ``theorem`` command's
    default, so that an analysis studies as many channels as the model blends. Python's
    ``round`` (ties to even; ``0.1 * 32 = 3.2 -> 3``); ``exchange_ratio = 0`` gives 0 (no
    blending).

    Parameters
    ----------
    exchange_ratio : float
        Fraction of the channels blended, in [0, 1].
    n_channels : int
        Token width ``D``, ``>= 1``.

    Returns
    -------
    k_prime : int in [0, D]
    """
    exchange_ratio = check_float(exchange_ratio, "exchange_ratio", low=0.0, high=1.0)
    n_channels = check_int(n_channels, "n_channels", low=1)
    return int(round(exchange_ratio * n_channels))


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
    if sigma.ndim != 1 or sigma.size == 0 or not sigma[0] > 0:
        raise ValueError(f"sigma must be a non-empty 1-D spectrum with sigma_1 > 0, got {describe(sigma)}")
    cum = np.cumsum(sigma**2) / np.sum(sigma**2)
    return int(min(np.searchsorted(cum, energy) + 1, sigma.size))


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


# --------------------------------------------------------------------------------------
# Principal angles (Table 6, Assumption 4)
# --------------------------------------------------------------------------------------


def _orth(ops, A):
    """Orthonormal basis of the column space of A (float64) by a rank-revealing SVD."""
    n, p = A.shape
    eps_in = ops.eps(A)
    u, s, _ = ops.svd64(ops.to64(A))
    if s.shape[0] == 0:
        return u[:, :0]
    tol = rank_tolerance(float(s[0]), max(n, p), eps_in)
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
    ops = get_ops(A, B, names=("A", "B"))
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


def _top_left_basis(ops, X, k):
    """Orthonormal basis (T, k) of the top-k left singular subspace of X (T, D)."""
    t, d = X.shape
    if t >= GRAM_RATIO * d:
        # span(U_k) = span(X V_k); V_k from the float64 Gram matrix, re-orthonormalised by QR.
        _, v = ops.eigh_desc(ops.gram64(X))
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
    ops = get_ops(X, Y, names=("X", "Y"))
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
    theta = _angles_from_bases(ops, qa, _orth(ops, yl))
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


# --------------------------------------------------------------------------------------
# Gains (Sec. 3.2, Fig. 3)
# --------------------------------------------------------------------------------------


def _as_erank(x, name, center):
    ops = get_ops(x)
    if ops.ndim(x) == 0:
        return ops.erank_value(x, name)
    return effective_rank(x, center=center)


def rank_gain(before, after, *, relative: bool = False, center: bool = False):
    """Effective-rank gain of one modality through fusion (Sec. 3.2, Delta_m).

    ``Delta = ERank(after) - ERank(before)`` (absolute, the default, as in Fig. 3/Fig. 6),
    or ``(ERank(after) - ERank(before)) / ERank(before)`` with ``relative=True``.

    Parameters
    ----------
    before, after : float, or array/tensor of shape (N, D) / (..., N, D) / (r,)
        Effective-rank values (0-d) or features (anything :func:`effective_rank` accepts).
    relative : bool, default False
    center : bool, default False
        Passed to :func:`effective_rank` for feature inputs.

    Returns
    -------
    gain : float64 scalar or array (tensor on torch input)
        Relative gain is NaN when ``ERank(before) == 0`` (undefined).
    """
    b = _as_erank(before, "before", center)
    a = _as_erank(after, "after", center)
    gain = a - b
    if not relative:
        return gain
    ops = get_ops(gain)
    safe = ops.where(b > 0, b, b + 1.0)
    return ops.tofloat(ops.where(b > 0, gain / safe, gain * float("nan")))


def harmonic_mean_gain(gain_a, gain_b):
    """Harmonic mean of two effective-rank gains (Sec. 3.2, Fig. 3): ``2ab / (a + b)``.

    Defined only when both gains are positive: a zero or negative gain means fusion did not
    help that modality, and ``2ab/(a+b)`` then stops being a "magnitude and symmetry" score
    (it can be large and positive for two negative gains, or blow up when ``a = -b``).
    Such pairs get NaN; callers rank them last.

    Parameters
    ----------
    gain_a, gain_b : float or array/tensor (broadcastable)

    Returns
    -------
    hm : float64 scalar or array (tensor on torch input); NaN where either gain is <= 0 or NaN.
    """
    ops = get_ops(gain_a, gain_b, names=("gain_a", "gain_b"))
    # Scalars join the other argument's backend and device.
    a = ops.float64(gain_a, like=gain_b)
    b = ops.float64(gain_b, like=a)
    ok = (a > 0) & (b > 0)
    one = ops.ones_like(a + b)
    lo = ops.where(ok, ops.minimum(a, b), one)
    hi = ops.where(ok, ops.maximum(a, b), one)
    # 2ab/(a+b) written as lo * 2 / (1 + lo/hi): no underflow of ab, no overflow of a+b.
    return ops.tofloat(ops.where(ok, lo * (2.0 / (1.0 + lo / hi)), ops.nan_like(lo)))


# --------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------


class GramAccumulator:
    """Streaming float64 Gram matrix of a (N, D) matrix given in row chunks.

    For features larger than memory (e.g. ``np.load(path, mmap_mode="r")``): feed row chunks
    with :meth:`update`, combine partial accumulators with :meth:`merge`, and read the spectrum
    at the end. Chunks may also be torch tensors (e.g. activations, :mod:`rankfusion.monitor`):
    the float64 state then stays on their device and only the D x D matrix is copied to the host
    when the spectrum is read. With ``center=True`` the centred co-moment matrix is maintained with the
    pairwise update of Chan, Golub & LeVeque (1979), never as ``G - n mu mu^T`` (which cancels
    catastrophically when the mean dominates).

    The accumulator never holds ``X``, so it cannot fall back to an SVD: its spectrum is
    *Gram-accurate*: each ``sigma_j^2`` is known to within ``delta = (sqrt(n) + D) * eps64 *
    lambda_max`` (see :meth:`error_radius`), i.e. singular values are resolved down to about
    ``sqrt(delta)``. :meth:`n_ambiguous` counts those whose keep/drop decision the Gram
    matrix cannot make.

    Rows are scaled by a power of two (exact) that brings the largest ``|x|`` seen into
    [0.5, 1) before they are multiplied, and results are scaled back: values whose squares
    would underflow float64 (``|x|`` below ~1e-154, e.g. denormals) or overflow it (above
    ~1e154) get the same Gram-accurate spectrum as values of order 1, as the in-memory route
    (which falls back to a scaling SVD there) gives them.

    Parameters
    ----------
    center : bool, default False
    chunk_rows : int, optional
        Rows cast to float64 at a time inside :meth:`update`; default: 32 MiB of float64.
    """

    def __init__(self, center: bool = False, chunk_rows: int | None = None):
        self.center = bool(center)
        self.chunk_rows = check_int(chunk_rows, "chunk_rows", low=1, allow_none=True)
        self._n = 0
        self._d = None
        self._eps = 0.0
        self._mean = None
        self._m2 = None
        self._exp = None  # the stored moments are in units of 2**_exp (None: nothing non-zero yet)

    @property
    def n_rows(self) -> int:
        """Number of rows seen so far."""
        return self._n

    @property
    def n_channels(self):
        """D (None before the first update)."""
        return self._d

    @property
    def gram(self):
        """(D, D) float64 ``X^T X`` (centred co-moment matrix with ``center=True``), a copy.

        A NumPy array, or a torch tensor on the chunks' device when they were tensors."""
        self._require()
        return get_ops(self._m2).ldexp(self._m2, 2 * self._e)

    @property
    def mean(self):
        """(D,) float64 column means of the rows seen (tracked with or without centring)."""
        self._require()
        return get_ops(self._mean).ldexp(self._mean, self._e)

    @property
    def _e(self) -> int:
        return 0 if self._exp is None else self._exp

    def _rescale(self, exp: int) -> None:
        """Store the moments in units of ``2**exp`` (``exp >= self._exp``: exact up to underflow of
        entries below ``2**-1074`` of the new unit, far below the Gram error radius)."""
        if self._exp is not None and exp > self._exp:
            shift = self._exp - exp
            self._m2 = get_ops(self._m2).ldexp(self._m2, 2 * shift)
            self._mean = get_ops(self._mean).ldexp(self._mean, shift)
        self._exp = exp if self._exp is None else max(exp, self._exp)

    def _host_m2(self):
        # The spectrum is read from a host copy: D x D is small, and one code path (NumPy)
        # applies the tolerance and the eigenvalue tail whatever device accumulated the rows.
        return get_ops(self._m2).to_host(self._m2)

    def _check_backend(self, x, what):
        if self._m2 is None:
            return
        mine, theirs = get_ops(self._m2), get_ops(x)
        if mine.name != theirs.name or mine.device(self._m2) != theirs.device(x):
            kind = {"numpy": "a NumPy array", "torch": "a torch tensor"}.get(mine.name, f"a {mine.name} array")
            where = kind + (f" on {mine.device(self._m2)}" if mine.device(self._m2) is not None else "")
            raise TypeError(f"{what} must be {where} like the previous chunks, got {describe(x)}"
                            + (f" on {theirs.device(x)}" if theirs.device(x) is not None else ""))

    def _require(self):
        if self._n == 0:
            raise ValueError("GramAccumulator is empty: call update(chunk) with at least one row first")

    def update(self, chunk) -> GramAccumulator:
        """Add rows. ``chunk`` : ndarray (or memmap) of shape (n, D), any real dtype, or a torch
        tensor (detached; every chunk on the same device, where the float64 state is kept)."""
        chunk = check_structure(chunk, "chunk", allow_empty=True)
        if len(chunk.shape) != 2:
            raise ValueError(f"chunk must be 2-D (n, D), got {describe(chunk)}")
        self._check_backend(chunk, "chunk")
        ops = get_ops(chunk)
        chunk = ops.detach(chunk)  # the accumulator never joins an autograd graph
        if self._d is None:
            self._d = chunk.shape[1]
            z = ops.to64(chunk[:0])  # (0, D): zeros below come out on the chunk's backend and device
            self._m2, self._mean = z.T @ z, z.sum(0)
        elif chunk.shape[1] != self._d:
            raise ValueError(f"chunk must have {self._d} columns like the previous chunks, got {describe(chunk)}")
        self._eps = max(self._eps, ops.eps(chunk))
        rows = self.chunk_rows or chunk_rows_for(self._d)
        for start in range(0, chunk.shape[0], rows):
            c = ops.to64(chunk[start : start + rows])
            nb = c.shape[0]
            with np.errstate(all="ignore"):  # NaN/Inf are caught from the diagonal below
                top = float(abs(c).max()) if c.shape[0] else 0.0
                if 0.0 < top < math.inf:
                    self._rescale(math.frexp(top)[1])
                c = ops.ldexp(c, -self._e)  # a power of two: exact
                mb = c.mean(0)
                if self.center:
                    cc = c - mb
                    m2b = cc.T @ cc
                else:
                    m2b = c.T @ c
            if not _finite_or_raise(ops, ops.diagonal(m2b), c, "chunk"):
                raise ValueError(f"chunk has entries too large for a float64 Gram matrix: {describe(chunk)}")
            self._combine(nb, mb, m2b)
        return self

    def _combine(self, nb, mb, m2b):
        na = self._n
        n = na + nb
        diff = mb - self._mean
        if self.center:
            # Chan et al. pairwise merge of co-moments: exact in exact arithmetic and stable.
            self._m2 += m2b + diff[:, None] * diff[None, :] * (na * nb / n)
        else:
            self._m2 += m2b
        self._mean += diff * (nb / n)
        self._n = n

    def merge(self, other: GramAccumulator) -> GramAccumulator:
        """Fold another accumulator (same D and ``center``) into this one; returns self."""
        if not isinstance(other, GramAccumulator):
            raise TypeError(f"other must be a GramAccumulator, got {type(other).__name__}")
        if other.center != self.center:
            raise ValueError(f"other.center={other.center} does not match center={self.center}")
        if other._n == 0:
            return self
        self._check_backend(other._m2, "other's state")
        if self._d is None:
            self._d, self._mean, self._m2 = other._d, other._mean * 0.0, other._m2 * 0.0
        elif other._d != self._d:
            raise ValueError(f"other has {other._d} channels, this accumulator has {self._d}")
        self._eps = max(self._eps, other._eps)
        if other._exp is not None:
            self._rescale(other._exp)
        shift = other._e - self._e  # <= 0
        self._combine(other._n, get_ops(other._mean).ldexp(other._mean, shift), get_ops(other._m2).ldexp(other._m2, 2 * shift))
        return self

    def error_radius(self) -> float:
        """``delta``: every true ``sigma_j^2`` lies within ``lambda_j +- delta``."""
        self._require()
        return float(np.ldexp(self._radius(), 2 * self._e))

    def _radius(self) -> float:
        # in the stored units (see _rescale)
        lam_max = max(float(np.linalg.eigvalsh(self._host_m2())[-1]), 0.0)
        return _gram_error_radius(lam_max, max(self._n, self._d), min(self._n, self._d))

    def _eig(self):
        lam = np.linalg.eigvalsh(self._host_m2())[::-1]
        # Only min(n, D) eigenvalues can be non-zero; the rest are rounding of exact zeros.
        return lam[: min(self._n, self._d)]

    def _tol2(self, lam, tol):
        if tol is None:
            smax = math.sqrt(max(float(lam[0]), 0.0))
            t = _default_tol(NumpyOps, smax, max(self._n, self._d), self._eps)
        else:
            t = float(np.ldexp(_check_tol(tol), -self._e))  # in the stored units
        return t * t

    def singular_values(self, tol: float | None = None):
        """(r,) float64 singular values above ``tol`` (default as :func:`singular_values`), descending."""
        return np.ldexp(self._sigma(tol), self._e)

    def _sigma(self, tol):
        # in the stored units (see _rescale)
        self._require()
        lam = self._eig()
        tol2 = self._tol2(lam, tol)
        # Clip: tiny negative eigenvalues of the PSD Gram matrix are rounding errors.
        sigma = np.sqrt(np.clip(lam, 0.0, None))
        return sigma[lam > tol2].copy()

    def n_ambiguous(self, tol: float | None = None) -> int:
        """How many eigenvalues lie within ``delta`` of ``tol^2`` (rank decision not certain)."""
        self._require()
        lam = self._eig()
        tol2 = self._tol2(lam, tol)
        delta = self._radius()
        return int(np.sum((lam - delta <= tol2) & (tol2 < lam + delta)))

    def numerical_rank(self, tol: float | None = None) -> int:
        """Number of singular values above ``tol``."""
        return int(self._sigma(tol).shape[0])

    def effective_rank(self, tol: float | None = None) -> np.float64:
        """Eq. 1 of the accumulated matrix (0.0 for the zero matrix)."""
        s = self._sigma(tol)  # Eq. 1 is scale-invariant: no need to scale back
        if s.shape[0] == 0:
            return np.float64(0.0)
        return np.float64(_entropy_rank(NumpyOps, s))

    def channel_informativeness(self, k: int | None = None):
        """Definition 1 from the accumulated Gram matrix: (D,) float64."""
        self._require()
        k = check_int(k, "k", low=1, high=self._d, allow_none=True)
        m2 = self._host_m2()
        if k is None:
            return np.ldexp(np.diag(m2), 2 * self._e)
        lam, v = NumpyOps.eigh_desc(m2)
        return np.ldexp(topk_informativeness(lam, v, k), 2 * self._e)

