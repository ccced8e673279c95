"""The spectrum-matched noise control: surrogates with a candidate's exact means and spectrum, and the noise test."""

from __future__ import annotations

import numpy as np

from .. import stats
from .._validation import InputError, check_int
from ..spectral import rank_tolerance
from .arrays import _as_numpy64, _like, _unit_scale
from .criterion import nan_last


def spectral_surrogates(X, n_surrogates: int = 10, *, seed: int = 0):
    """Noise surrogates of ``X`` with its exact column means and singular spectrum.

    With ``X = 1 mu^T + U S V^T`` (column means ``mu``, thin SVD of the centred matrix), each
    surrogate is ``1 mu^T + Q S V^T`` where ``Q`` is a Haar-random ``(N, r)`` orthonormal matrix
    orthogonal to the all-ones vector (QR of a column-centred Gaussian matrix, signs fixed by
    ``diag(R) > 0`` so that the law is exactly Haar). So a surrogate has, by construction, the
    same column means, the same centred covariance ``V S^2 V^T / N`` and therefore the same
    singular values (centred or not) as ``X``, while its rows are a random rotation of ``X``'s
    row space: they carry no information about any other modality or about labels.

    Why not Gaussian rows with ``X``'s covariance: their singular values scatter around ``X``'s
    by sampling error (Wishart), so a control built from them differs from the candidate in
    spectrum *and* in content; here it differs in content only.

    Parameters
    ----------
    X : ndarray or tensor of shape (N, D)
        The candidate modality's features.
    n_surrogates : int, default 10
    seed : int, default 0
        Surrogate ``j`` is drawn from ``numpy.random.default_rng([seed, j])``: it does not depend
        on how many surrogates are asked for.

    Returns
    -------
    ndarray or tensor of shape (n_surrogates, N, D)
        Same type, dtype and device as ``X`` (float64 for integer input).
    """
    n_surrogates = check_int(n_surrogates, "n_surrogates", low=1)
    seed = check_int(seed, "seed", low=0)
    X64 = _as_numpy64(X, "X")
    if X64.ndim != 2 or X64.shape[0] < 2 or X64.shape[1] < 1:
        raise InputError(f"X must be a 2-D (N >= 2, D >= 1) matrix, got shape {X64.shape}")
    if not np.isfinite(X64).all():
        raise InputError("X contains NaN or Inf values")
    factors = _spectral_factors(X64)
    out = np.stack([_draw_surrogate(factors, seed, j) for j in range(n_surrogates)])
    return _like(out, X)


def min_surrogates(alpha: float | None = None) -> int:
    """The fewest control draws whose empirical p-value can reach ``alpha``: ``ceil(1/alpha) - 1``
    (19 at :data:`rankfusion.stats.ALPHA` = 0.05, where the smallest p is 1/20)."""
    return stats.min_draws(stats.ALPHA if alpha is None else alpha)


def noise_test(criterion: float, controls, alpha: float | None = None) -> tuple[float, bool]:
    """Is a candidate's criterion above its noise control? ``(control_p, noise_like)``.

    ``controls`` are the same statistic computed for each surrogate (the same fits, the same
    averaging over replicates). ``control_p`` is the empirical p-value
    :func:`rankfusion.stats.empirical_p`, ``(1 + #{control >= criterion}) / (1 + n)``, valid at
    every level when the candidate is one more draw from the surrogates' law (P(p <= alpha) <=
    alpha, so the rejection region is ``p <= alpha``: a discrete p-value reaches alpha exactly);
    ``noise_like`` is ``control_p > alpha`` (:func:`rankfusion.stats.rejects` fails): not above
    the control at alpha.

    A NaN value (no mutual gain: a gain <= 0, so the harmonic mean is undefined) is ordered below
    every finite value, because a finite harmonic mean of two positive gains means more mutual
    enhancement than none; two NaN values tie. A NaN criterion is therefore never above its
    control (``control_p`` = 1). Only the order enters the p-value, never the NaN's size. An
    infinite value is refused.
    """
    alpha = stats.ALPHA if alpha is None else stats.check_alpha(alpha)
    c = np.asarray(controls, dtype=np.float64).ravel()
    if c.size == 0:
        raise InputError("controls must hold at least one surrogate value")
    if np.isinf(criterion) or np.any(np.isinf(c)):
        # NaN is "no mutual gain" and ranks last; an infinite harmonic mean of ERank gains cannot arise
        raise InputError(f"criterion and controls must be finite or NaN, got an infinite "
                         f"{'criterion' if np.isinf(criterion) else 'control'}")
    if not np.isfinite(criterion):
        return 1.0, True
    ordered = nan_last(np.concatenate([[float(criterion)], c]))  # NaN controls below the finite criterion
    p = stats.empirical_p(float(ordered[0]), ordered[1:])
    return p, not stats.rejects(p, alpha)


def _spectral_factors(X64: np.ndarray) -> tuple:
    """``(mu, s, vt, n, e)`` of :func:`spectral_surrogates`: column means, the nonzero singular values
    of the centred matrix and their right singular vectors (``(r,)`` and ``(r, D)``), row count,
    all of ``X * 2**-e`` (:func:`_unit_scale`; a surrogate is scaled back by ``2**e``).

    Computed once per matrix; every surrogate of it is drawn from these factors
    (:func:`_draw_surrogate`), so no draw repeats the SVD.
    """
    top = np.abs(X64).max()
    e = int(np.frexp(top)[1])
    X64 = _unit_scale(X64)  # one exact factor 2**-e: the mean of huge values cannot overflow
    mu = X64.mean(axis=0)
    _, s, vt = np.linalg.svd(X64 - mu, full_matrices=False)
    # Drop the numerically-zero directions (centring removes one, rank deficiency more): a random
    # Q column on them would inject energy that X does not have.
    tol = rank_tolerance(s[0] if s.size else 0.0, max(X64.shape), np.finfo(np.float64).eps)
    r = int(np.sum(s > tol))
    return mu, s[:r], vt[:r], X64.shape[0], e


def _draw_surrogate(factors: tuple, seed: int, j: int) -> np.ndarray:
    """Surrogate number ``j`` of :func:`spectral_surrogates` from :func:`_spectral_factors`."""
    mu, s, vt, n, e = factors
    rng = np.random.default_rng([seed, j])
    g = rng.standard_normal((n, s.size))
    g -= g.mean(axis=0)  # span(g) is orthogonal to the ones vector: column means stay mu
    q, rr = np.linalg.qr(g)
    q *= np.where(np.diag(rr) < 0, -1.0, 1.0)  # sign fix: makes the QR factor Haar-distributed
    return np.ldexp(mu + (q * s) @ vt, e)
