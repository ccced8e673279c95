"""Effective rank of a matrix (Eq. 1) and effective-rank gains through fusion (Sec. 3.2, Fig. 3)."""

from __future__ import annotations

import numpy as np

from .._backend import get_ops
from .._validation import check_structure, describe
from .conventions import _convention, _entropy_rank, convention_matrix, rank_of_spectrum, spectrum64
from .routes import spectrum_info


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
        zeros are ignored; ``center=True`` or a ``tol`` with it is a ``ValueError``).
    center : bool, default False
        Subtract column means first.
    tol : float, optional
        See :func:`singular_values`.
    convention : str, default "paper"
        One of ``paper``, ``roy-vetterli``, ``rankme``, ``covariance``, ``diff-erank``,
        ``monai`` (:data:`CONVENTIONS`). Conventions other than ``paper`` fix the centring
        themselves (``center=True`` with them is a ``ValueError``; with ``paper`` and an ``eps`` it
        centres as without one).
    eps : float, optional
        Overrides the convention's ``eps`` (added to every ``p_j``; RankMe's 1e-7).

    Returns
    -------
    erank : float64 scalar (``np.float64`` / 0-d tensor) or float64 array of shape (...)
        ``1 <= erank <= rank`` for a non-zero matrix; ``0.0`` for the all-zero matrix
        (every convention). ``monai`` returns the normalised value in [0, 1]. With an ``eps``
        (``rankme``, ``covariance``, or given) the bound is approximate: the ``eps`` added to
        every ``p_j`` can lift the value slightly above the numerical rank (a rank-1 matrix gives
        about 1.00008 under ``rankme``).
    """
    x = X_or_sigma
    ops = get_ops(x)
    conv = _convention(convention)
    if center and conv.name != "paper":
        raise ValueError(f"center=True applies to convention='paper' only; convention={conv.name!r} "
                         f"{'centres' if conv.center else 'does not centre'} by definition")
    if ops.ndim(x) == 1 and (center or tol is not None):
        # a spectrum has no columns to centre, and its values are taken as given (zeros ignored)
        what = "center=True" if center else f"tol={tol!r}"
        hint = "" if center else ": drop the values you count as zero first"
        raise ValueError(f"{what} applies to a matrix; X_or_sigma is a 1-D vector of singular values "
                         f"({describe(x)}){hint}")
    if conv.name != "paper" or eps is not None:
        if ops.ndim(x) == 1:
            if conv.center or conv.unit_rows or conv.per_max_rank:
                raise ValueError(f"X_or_sigma: convention={conv.name!r} needs the matrix, not a 1-D "
                                 f"vector of singular values ({describe(x)})")
            return rank_of_spectrum(spectrum64(x, "X_or_sigma"), conv.name, eps=eps)
        x = check_structure(x, "X_or_sigma")
        z, centre = convention_matrix(x, conv.name)
        # a float64 transform of x: its rounding noise is x's, so is the tolerance's epsilon
        info = spectrum_info(z, center=centre or center, tol=tol, data_eps=get_ops(x).eps(x))
        return rank_of_spectrum(info.sigma, conv.name, shape=tuple(x.shape[-2:]), eps=eps)
    if ops.ndim(x) == 1:
        return ops.tofloat(_entropy_rank(ops, spectrum64(x, "X_or_sigma")))
    info = spectrum_info(x, center=center, tol=tol)
    return ops.tofloat(_entropy_rank(ops, info.sigma))


def _as_erank(x, name, center):
    ops = get_ops(x)
    if ops.ndim(x) == 0:
        return ops.erank_value(x, name)
    if ops.ndim(x) == 1 and center:
        raise ValueError(f"center=True applies to features; {name} is a 1-D vector of singular values ({describe(x)})")
    return effective_rank(x, center=center)


def rank_gain(before, after, *, relative: bool = False, center: bool = False):
    """Effective-rank gain of one modality through fusion (Sec. 3.2, Delta_m).

    ``Delta = ERank(after) - ERank(before)`` (absolute, the default, as in Fig. 3/Fig. 6),
    or ``(ERank(after) - ERank(before)) / ERank(before)`` with ``relative=True``.

    Parameters
    ----------
    before, after : float, or array/tensor of shape (N, D) / (..., N, D) / (r,)
        Effective-rank values (0-d) or features (anything :func:`effective_rank` accepts), both of
        one backend; a value given as a Python float, NumPy scalar or 0-d NumPy array joins the
        other argument's backend and device.
    relative : bool, default False
    center : bool, default False
        Passed to :func:`effective_rank` for feature inputs.

    Returns
    -------
    gain : float64 scalar or array (tensor on torch input)
        Relative gain is NaN when ``ERank(before) == 0`` (undefined).
    """
    # a 0-d NumPy array is a value, as a NumPy scalar is
    before, after = (x[()] if isinstance(x, np.ndarray) and x.ndim == 0 else x for x in (before, after))
    # one backend per call: a NumPy array with a torch tensor (or a dask array with either) is a TypeError
    get_ops(before, after, names=("before", "after"))
    b = _as_erank(before, "before", center)
    a = _as_erank(after, "after", center)
    # a Python or NumPy scalar joins the other argument's backend and device
    ops = get_ops(a, b)
    b = ops.float64(b, like=a)
    a = ops.float64(a, like=b)
    gain = ops.tofloat(a - b)
    if not relative:
        return gain
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
