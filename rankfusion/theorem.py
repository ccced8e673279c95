"""Theorem 3.1 on trial: its quantities, assumptions with slack, conclusion and verdict.

The paper (Sec. 3.1, App. A) claims that blending the low-informativeness channels of a
representation ``X`` with channels of another modality ``Y`` (Definition 2) raises the
effective rank (Eq. 1) under four assumptions. :func:`theorem_3_1` builds ``X'`` for *your*
``X``, ``Y``, channel set and blending coefficients, and reports the statement's quantities,
each assumption's truth and slack, the proof's intermediate claims of Eqs. 11, 12, 39 and 47-49
evaluated on the data, ERank before and after, a verdict, and a sufficient condition that *is*
proven (strict majorization of the normalised spectrum, ``docs/theory.md``). Lemma A.1's
subspace perturbation bound (Eqs. 6 and 13) and the per-channel bound of Eq. 36 are not evaluated.

The theorem as stated is false: ``docs/theory.md`` gives counterexamples in which all four
assumptions hold and the effective rank falls, and names the proof steps that fail. The
checker therefore never assumes the conclusion; it measures it.

Conventions (decided once, see ``docs/theory.md``; selectable where that is meaningful):

* ``r`` is the numerical rank of ``X``: singular values ``<= tol`` are dropped, with
  ``tol = sqrt(max(T, D)) * eps * sigma_1`` and ``eps`` of the inputs' dtype (docs/spectral.md).
* Informativeness (Definition 1) sums over the top-``k`` right singular vectors by default
  (``informativeness="topk"``, the statement); ``"full"`` uses all ``r``, i.e. the column
  energy ``||x_c||^2`` that the proof uses in Eq. 15 and Sec. 4.2 uses.
* Assumption 4's residual space is ``span{u_{k+1}, ..., u_r}`` (``residual="rank"``, the
  statement); ``"complement"`` uses the whole orthogonal complement of ``span{u_1..u_k}``.
* "zero-mean" (Assumption 1) means ``|<y_c, 1>| / (||y_c|| sqrt(T)) <= zero_mean_tol``.
* A constant the caller leaves out takes the value most favourable to the assumptions that
  the inputs allow (beta = max ||y_c||, epsilon = ||Delta||_F^2, gamma = max alignment ratio,
  eta = max I_c over C_low). Because each assumption only gets easier as that constant moves
  this way, "the assumptions hold for some constants" is equivalent to "they hold for these".

Everything is computed in float64 with NumPy; torch tensors are accepted and converted.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import re
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from ._backend import NumpyOps
from ._validation import InputError, check_choice, check_float, check_int, check_matrix, is_torch, option_name
from .spectral.routes import tolerance_fro
from .spectral import (
    blended_channel_count,
    effective_rank,
    low_informative_channels,
    rank_tolerance,
    spectrum_info,
    topk_informativeness,
)
from .config import R3DConfig

__all__ = [
    "Check",
    "TheoremReport",
    "theorem_3_1",
    "majorization_check",
    "default_k",
    "default_k_prime",
    "VERDICT_ROSE",
    "VERDICT_NOT_RISEN",
    "VERDICT_FAILS",
]

VERDICT_ROSE = "holds-and-rank-rose"
VERDICT_NOT_RISEN = "holds-but-rank-did-not-rise"
VERDICT_FAILS = "assumption-fails"

#: Relative change of ERank below which "rose" is not claimed: ERank is computed to a few
#: ulps, so a change of 1e-9 * ERank is far above rounding and far below any real effect.
DEFAULT_RISE_RTOL = 1e-9
#: Cosine between y_c and the all-ones vector tolerated as "zero-mean" (Assumption 1).
DEFAULT_ZERO_MEAN_TOL = 1e-6


@dataclass(frozen=True, kw_only=True)
class Check:
    """One inequality ``lhs <= rhs`` (or ``lhs < rhs`` when ``strict``) and how far it is from failing.

    Attributes
    ----------
    name : str
        ``"definition-1"``, ``"assumption-1"`` ... ``"assumption-4"``, or a proof equation
        such as ``"eq12"``.
    holds : bool
        Whether the condition holds (computed exactly, not from ``slack``; see ``detail``).
    slack : float
        Signed distance from the boundary, ``rhs - lhs`` in the units of the inequality:
        ``>= 0`` means it holds (``> 0`` for strict ones), negative means it fails by that much.
    lhs, rhs : float
        The two sides as evaluated (``inf`` where a side is unbounded).
    strict : bool
        Whether the inequality is strict.
    detail : str
        The inequality in words, with any extra condition folded into ``holds``.
    """

    name: str
    holds: bool
    slack: float
    lhs: float
    rhs: float
    strict: bool = False
    detail: str = ""


@dataclass(frozen=True)
class TheoremReport:
    """Everything :func:`theorem_3_1` measured. Frozen; ``to_dict()`` gives a JSON-able dict.

    Arrays indexed by channel have shape (D,); arrays indexed by blended channel have shape
    (n_low,) and follow the order of ``low``. Norms are Euclidean, squared where the name says so.
    """

    # --- set-up
    shape: tuple
    k: int
    rank: int
    rank_after: int
    tol: float
    informativeness_convention: str
    residual_convention: str
    # --- spectrum of X (Notation, Theorem 3.1)
    sigma: np.ndarray
    sigma_after: np.ndarray
    sigma_k: float
    sigma_k1: float
    delta_k: float
    # --- Definition 1
    informativeness: np.ndarray
    informativeness_topk: np.ndarray
    column_energy: np.ndarray
    low: np.ndarray
    n_low: int
    k_prime: int | None
    # --- Definition 2
    alpha: np.ndarray
    # --- constants and where they came from ("given" or "tightest")
    eta: float
    beta: float
    epsilon: float
    gamma: float
    constant_sources: dict
    # --- per blended channel (Assumptions 1 and 4, Eq. 18)
    y_norm: np.ndarray
    y_mean_cosine: np.ndarray
    y_dominant_sq: np.ndarray
    y_residual_sq: np.ndarray
    y_outside_sq: np.ndarray
    alignment_ratio: np.ndarray
    x_dot_y: np.ndarray
    # --- the modification Delta = X' - X (Step 1)
    delta_fro_sq: float
    delta_spectral: float
    x_dot_delta: float
    fro_sq_before: float
    fro_sq_after: float
    # --- assumptions, conclusion, verdict
    assumptions: tuple
    erank_before: float
    erank_after: float
    erank_change: float
    rose: bool
    verdict: str
    failed: tuple
    # --- proof-step diagnostics (App. A) and the proven sufficient condition
    proof_steps: tuple
    sufficient_condition: Check
    notes: tuple = field(default_factory=tuple)

    @property
    def assumptions_hold(self) -> bool:
        """True when Definition 1's set and all four assumptions hold."""
        return not self.failed

    def assumption(self, name: str) -> Check:
        """The :class:`Check` called ``name`` (e.g. ``"assumption-3"`` or ``"eq12"``)."""
        for c in self.assumptions + self.proof_steps + (self.sufficient_condition,):
            if c.name == name:
                return c
        raise KeyError(name)

    def format(self, source: str = "X, Y") -> str:
        """A readable, fixed-width table (what ``rankfusion theorem`` prints).

        ``source`` names the inputs in the first line (the command gives the file and keys).
        """
        return "\n".join(_format_head(self, source) + _format_checks(self) + _format_channels(self))

    def to_dict(self) -> dict:
        """A JSON-able dict: arrays become lists, non-finite floats become ``"inf"``/``"-inf"``/``"nan"``."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self, **kwargs) -> str:
        """``json.dumps(self.to_dict())`` (strict JSON: no bare Infinity/NaN)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


#: How many blended channels the per-channel table of :meth:`TheoremReport.format` lists.
MAX_CHANNEL_ROWS = 20


def _fmt(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "yes" if v else "NO"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not math.isfinite(v):
        return "inf" if v > 0 else ("-inf" if v < 0 else "nan")
    return f"{v:.6g}"


def _format_head(rep: TheoremReport, source: str) -> list:
    T, D = rep.shape
    low = rep.low.tolist()
    shown = ", ".join(map(str, low[:MAX_CHANNEL_ROWS])) + (" ..." if len(low) > MAX_CHANNEL_ROWS else "")
    src = rep.constant_sources
    L = [
        f"Theorem 3.1 on {source}  (T={T}, D={D})",
        f"rank r = {rep.rank}, k = {rep.k}, informativeness = {rep.informativeness_convention}, "
        f"residual = {rep.residual_convention}",
        f"sigma_k = {_fmt(rep.sigma_k)}, sigma_k+1 = {_fmt(rep.sigma_k1)}, delta_k = {_fmt(rep.delta_k)}",
        f"C_low ({src['low']}): |C_low| = {rep.n_low}: [{shown}]",
        "",
        "constants       value         source",
    ]
    for name in ("eta", "beta", "epsilon", "gamma"):
        L.append(f"  {name:<13} {_fmt(getattr(rep, name)):<13} {src[name]}")
    return L


def _format_checks(rep: TheoremReport) -> list:
    L = ["", f"{'check':<22} {'holds':<6} {'slack':>13} {'lhs':>13} {'rhs':>13}", "-" * 71]
    for c in rep.assumptions:
        L.append(f"{c.name:<22} {_fmt(c.holds):<6} {_fmt(c.slack):>13} {_fmt(c.lhs):>13} {_fmt(c.rhs):>13}")
    L.append("")
    L.append(f"ERank(X)  = {rep.erank_before:.6f}   ERank(X') = {rep.erank_after:.6f}   "
             f"change = {rep.erank_change:+.3e}")
    verdict = rep.verdict + (f" ({', '.join(rep.failed)})" if rep.failed else "")
    L.append(f"verdict: {verdict}")
    sc = rep.sufficient_condition
    L.append(f"sufficient condition (strict majorization): {_fmt(sc.holds)}, slack {_fmt(sc.slack)}, "
             f"largest gap {_fmt(sc.rhs)}")
    L += ["", "proof steps (App. A) on this data:"]
    for c in rep.proof_steps:
        if c.name == "eq48":
            L.append(f"  {c.name:<6} dominant energy {_fmt(c.lhs)} -> {_fmt(c.rhs)}")
        else:
            L.append(f"  {c.name:<6} {_fmt(c.holds):<4} slack {_fmt(c.slack):>12}   {c.detail}")
    return L


def _format_channels(rep: TheoremReport) -> list:
    L = []
    low = rep.low.tolist()
    if rep.n_low:
        L += ["", f"{'c':>5} {'alpha':>7} {'I_c':>11} {'||x_c||^2':>11} {'||y_c||':>11} "
                  f"{'|P_dom y|^2':>11} {'|P_res y|^2':>11} {'ratio':>9}"]
        for j, c in enumerate(low[:MAX_CHANNEL_ROWS]):
            L.append(f"{c:>5} {_fmt(rep.alpha[c]):>7} {_fmt(rep.informativeness[c]):>11} "
                     f"{_fmt(rep.column_energy[c]):>11} {_fmt(rep.y_norm[j]):>11} {_fmt(rep.y_dominant_sq[j]):>11} "
                     f"{_fmt(rep.y_residual_sq[j]):>11} {_fmt(rep.alignment_ratio[j]):>9}")
        if len(low) > MAX_CHANNEL_ROWS:
            L.append(f"  ... {len(low) - MAX_CHANNEL_ROWS} more (use --json)")
    for n in rep.notes:
        L.append(f"note: {n}")
    return L


def _jsonable(v):
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return [_jsonable(x) for x in v.tolist()]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, numbers.Integral):
        return int(v)
    if isinstance(v, numbers.Real):
        v = float(v)
        if math.isfinite(v):
            return v
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


# ----------------------------------------------------------------------------- helpers


def _to_numpy(x, name):
    if is_torch(x):
        x = x.detach().cpu().numpy()
    x = check_matrix(x, name)
    if x.ndim != 2:
        raise InputError(f"{name} must be a 2-D matrix (T, D), got array of shape {tuple(x.shape)}")
    return x


def _eps_of(a) -> float:
    """The rounding unit of an input's own dtype (float64's for integers), as the rank tolerance asks
    (:func:`rankfusion.spectral.rank_tolerance`). Each input has its own: with the common dtype's, a
    float64 ``Y`` made a float32 ``X``'s rounding directions count as rank (and the coarser one of
    the two, a float32 ``Y``, cut a float64 ``X``'s small singular values)."""
    return float(np.finfo(a.dtype).eps) if np.issubdtype(a.dtype, np.floating) else float(np.finfo(np.float64).eps)


def _erank(s: np.ndarray) -> float:
    """Eq. 1 on already-truncated singular values (the toolkit's one implementation)."""
    return float(effective_rank(s)) if s.size else 0.0


def majorization_check(sigma_before, sigma_after, *, strict_tol=None) -> Check:
    """Sufficient condition for ERank(after) > ERank(before): strict majorization (``docs/theory.md``).

    With ``p`` and ``p'`` the normalised spectra (Eq. 1) sorted in decreasing order and padded
    with zeros, ``p' `` is majorized by ``p`` when every partial sum ``P'_m <= P_m``. Shannon
    entropy is strictly Schur-concave, so strict majorization (``p'`` not a rearrangement of
    ``p``) implies ``H(p') > H(p)``, i.e. ``ERank(after) > ERank(before)``.

    Parameters
    ----------
    sigma_before, sigma_after : ndarray of shape (r,), (r',)
        Positive singular values (already truncated at the numerical rank).
    strict_tol : float, optional
        The largest partial-sum gap must exceed this for "strict" (rounding guard);
        default ``8 * n * eps64`` with ``n`` the padded length.

    Returns
    -------
    Check
        ``name="sufficient-condition"``; ``slack = min_m (P_m - P'_m)`` over ``m < r``
        (for ``m >= r``, ``P_m = 1 >= P'_m`` always), ``rhs`` = the largest gap.
    """
    s = np.sort(np.asarray(sigma_before, dtype=np.float64))[::-1]
    t = np.sort(np.asarray(sigma_after, dtype=np.float64))[::-1]
    n = max(s.size, t.size, 1)
    if strict_tol is None:
        strict_tol = 8.0 * n * float(np.finfo(np.float64).eps)
    r = s.size
    if r == 0 or t.size == 0:
        return Check(name="sufficient-condition", holds=False, slack=-math.inf, lhs=math.nan, rhs=math.nan,
                     detail="an empty spectrum cannot be compared")
    P = np.cumsum(s / s.sum())
    Pp = np.cumsum(np.concatenate([t / t.sum(), np.zeros(max(0, r - t.size))]))
    if r == 1:
        # P_1 = 1: every spectrum is majorized by a rank-1 one; strict unless p' is rank 1 too.
        gap = 1.0 - float(Pp[0])
        holds = t.size > 1 and gap > strict_tol
        return Check(name="sufficient-condition", holds=bool(holds), slack=gap, lhs=0.0, rhs=gap,
                     detail="p' majorized by p with largest partial-sum gap > rounding (rank(X) = 1)")
    diff = P[: r - 1] - Pp[: r - 1]
    slack = float(diff.min())
    gap = float(diff.max())
    holds = slack >= 0.0 and gap > strict_tol
    return Check(name="sufficient-condition", holds=bool(holds), slack=slack, lhs=0.0, rhs=gap,
                 detail="P'_m <= P_m for all m < rank(X) and max_m (P_m - P'_m) > rounding "
                 "(strict majorization of the normalised spectrum => ERank rises)")


def _alpha_vector(alpha, D, low):
    """Per-channel alpha of shape (D,) from a scalar, a (D,) or a (n_low,) array; range [0, 1]."""
    if is_torch(alpha):
        alpha = alpha.detach().cpu().numpy()
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        a = float(alpha)
        if not (0.0 <= a <= 1.0) or not math.isfinite(a):
            raise InputError(f"{option_name('alpha', '--alpha')} must be in [0, 1], got {alpha!r}")
        return np.full(D, a)
    arr = np.asarray(alpha)
    if arr.ndim == 0:
        return _alpha_vector(float(arr), D, low)
    if arr.dtype.kind not in "fiu" or arr.ndim != 1:
        raise InputError(f"{option_name('alpha', '--alpha')} must be a number or a 1-D array of numbers in [0, 1], got "
                         f"{arr.dtype} array of shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        raise InputError(f"{option_name('alpha', '--alpha')} must be in [0, 1], got {float(arr[np.argmax(bad)])!r} "
                         f"at position {int(np.argmax(bad))}")
    if arr.size == D:
        return arr
    if arr.size == low.size:
        out = np.ones(D)
        out[low] = arr
        return out
    raise InputError(f"{option_name('alpha', '--alpha')} must be a scalar or have one value per channel ({D}) or per "
                     f"blended channel ({low.size}), got {arr.size} values")


def _select_low(I, low, eta, k_prime, D):
    """Resolve C_low: explicit ``low``, Definition 1's ``{c : I_c <= eta}``, or Eq. 3's bottom-k'."""
    if low is not None and k_prime is not None:
        raise InputError("give either low or k_prime, not both")
    if eta is not None and k_prime is not None:
        raise InputError("give either eta or k_prime, not both (k_prime chooses C_low, eta is then max I_c over it)")
    if low is not None:
        arr = np.asarray(low.detach().cpu().numpy() if is_torch(low) else low)
        if arr.size and arr.dtype.kind not in "iu":
            raise InputError(f"low must be integer channel indices, got dtype {arr.dtype}")
        arr = arr.astype(np.int64).ravel()
        if arr.size and (arr.min() < 0 or arr.max() >= D):
            bad = arr[(arr < 0) | (arr >= D)][0]
            raise InputError(f"{option_name('low', '--low')} contains channel {int(bad)}, outside [0, {D - 1}]")
        values, counts = np.unique(arr, return_counts=True)
        if (counts > 1).any():
            raise InputError(f"{option_name('low', '--low')} names channel {int(values[counts > 1][0])} more than once")
        return np.sort(arr)
    if k_prime is not None:
        kp = check_int(k_prime, option_name("k_prime", "--k-prime"), low=1, high=D)
        # Eq. 3; among equal scores the lower channel index is taken (spectral's tie rule)
        return np.asarray(low_informative_channels(I, k_prime=kp), dtype=np.int64)
    if eta is not None:
        return np.asarray(low_informative_channels(I, eta=eta), dtype=np.int64)
    raise InputError("give one of low, eta or k_prime to choose the blended channels C_low")


# ----------------------------------------------------------------------------- steps


class _Options(NamedTuple):
    """The validated conventions and constants of one :func:`theorem_3_1` call."""

    informativeness: str
    residual: str
    zero_mean_tol: float
    center_y: bool
    tol: float | None
    rise_rtol: float
    eta: float | None
    epsilon: float | None
    beta: float | None
    gamma: float | None


def _options(*, informativeness, residual, zero_mean_tol, center_y, tol, rise_rtol, eta, epsilon, beta,
             gamma) -> _Options:
    check_choice(informativeness, "informativeness", {"topk", "full"})
    check_choice(residual, "residual", {"rank", "complement"})
    return _Options(
        informativeness=informativeness, residual=residual,
        zero_mean_tol=check_float(zero_mean_tol, option_name("zero_mean_tol", "--zero-mean-tol"), low=0.0),
        center_y=bool(center_y),
        tol=check_float(tol, "tol", low=0.0, allow_none=True),
        rise_rtol=check_float(rise_rtol, "rise_rtol", low=0.0),
        eta=check_float(eta, option_name("eta", "--eta"), low=0.0, low_open=True, allow_none=True),
        epsilon=check_float(epsilon, option_name("epsilon", "--epsilon"), low=0.0, low_open=True, allow_none=True),
        beta=check_float(beta, option_name("beta", "--beta"), low=0.0, low_open=True, allow_none=True),
        gamma=check_float(gamma, option_name("gamma", "--gamma"), low=0.0, allow_none=True),
    )


def _matrices(X, Y, center_y: bool):
    """Validated ``X``, ``Y`` as float64 (T, D) arrays, and each input's machine epsilon ``(eps_x, eps_y)``."""
    X = _to_numpy(X, "X")
    Y = _to_numpy(Y, "Y")
    if X.shape != Y.shape:
        raise InputError(f"X and Y must have the same shape (T, D) (y_c blends into x_c), got {X.shape} and {Y.shape}")
    eps = (_eps_of(X), _eps_of(Y))
    X64 = np.asarray(X, dtype=np.float64)
    Y64 = np.asarray(Y, dtype=np.float64)
    if center_y:
        Y64 = Y64 - Y64.mean(axis=0, keepdims=True)
    return X64, Y64, eps


class _Spectrum(NamedTuple):
    sigma: np.ndarray  # (r,) singular values above tol, descending
    vt: np.ndarray  # (r, D) the matching right singular vectors
    tol: float


def _spectrum(M: np.ndarray, tol: float | None, eps: float) -> _Spectrum:
    """The one spectrum routine of the checker, for ``X`` and ``X'`` alike.

    Same computation for both, so an unchanged ``X'`` has bit-for-bit the spectrum of ``X``.
    The singular values come from the R factor of a QR (same values, no (T x r) ``U`` formed).
    """
    _, s, vt = np.linalg.svd(np.linalg.qr(M, mode="r"), full_matrices=False)
    cut = tol if tol is not None else float(rank_tolerance(float(s[0]), max(M.shape), eps, tolerance_fro(NumpyOps, M, eps)))
    r = int(np.sum(s > cut))
    return _Spectrum(sigma=s[:r].copy(), vt=vt[:r].copy(), tol=float(cut))


class _Projections(NamedTuple):
    """Assumptions 1 and 4 for the blended ``y_c``: norms, means, projections (Eq. 18); shape (m,)."""

    y_norm: np.ndarray
    mean_cosine: np.ndarray
    dominant: np.ndarray
    residual: np.ndarray
    outside: np.ndarray
    ratio: np.ndarray
    x_dot_y: np.ndarray


def _left_coordinates(X, Yl, r: int) -> np.ndarray:
    """``<u_i, y_c>`` for ``i < r``, shape (r, m).

    One QR of ``[X, Y_low]`` puts X and the y_c in one orthonormal frame; the SVD of its X block
    gives the u_i in that frame (no (T x r) U is formed).
    """
    if Yl.shape[1] == 0:
        return np.zeros((r, 0))
    D = X.shape[1]
    Rz = np.linalg.qr(np.concatenate([X, Yl], axis=1), mode="r")
    Uz = np.linalg.svd(Rz[:, :D], full_matrices=False)[0]
    return Uz[:, :r].T @ Rz[:, D:]


def _projections(X, Y, low, r: int, k: int, residual: str, eps: float) -> _Projections:
    T, D = X.shape
    Yl, Xl = Y[:, low], X[:, low]
    y_sq = np.einsum("tc,tc->c", Yl, Yl)
    y_norm = np.sqrt(y_sq)
    coords = _left_coordinates(X, Yl, r)
    dom = np.sum(coords[:k] ** 2, axis=0)
    res_rank = np.sum(coords[k:r] ** 2, axis=0)
    # Projections at rounding level (below the rank tolerance relative to ||y_c||) are zero:
    # otherwise a y_c outside col(X) gets a ratio of two rounding errors in Assumption 4.
    ptol = rank_tolerance(y_norm, max(T, D), eps, y_norm) ** 2  # fro: a vector's norm
    dom = np.where(dom <= ptol, 0.0, dom)
    res_rank = np.where(res_rank <= ptol, 0.0, res_rank)
    outside = np.clip(y_sq - dom - res_rank, 0.0, None)
    res = res_rank if residual == "rank" else np.where(y_sq - dom <= ptol, 0.0, y_sq - dom)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dom == 0.0, 0.0, dom / np.where(res > 0.0, res, 1.0))
        ratio = np.where((dom > 0.0) & (res == 0.0), math.inf, ratio)
        safe_norm = np.where(y_norm > 0, y_norm, 1.0) * math.sqrt(T)
        mean_cos = np.where(y_norm > 0.0, np.abs(Yl.sum(axis=0)) / safe_norm, 0.0)
    return _Projections(y_norm=y_norm, mean_cosine=mean_cos, dominant=dom, residual=res, outside=outside,
                        ratio=ratio, x_dot_y=np.einsum("tc,tc->c", Xl, Yl))


class _Blend(NamedTuple):
    """Definition 2's ``X'`` and the modification ``Delta = X' - X`` (Step 1)."""

    after: _Spectrum
    delta_fro_sq: float
    delta_spectral: float
    x_dot_delta: float
    fro_sq_after: float


def _blend(X, Y, low, a, before: _Spectrum, tol, eps) -> _Blend:
    Xl = X[:, low]
    Xp = X.copy()
    Xp[:, low] = a[low] * Xl + (1.0 - a[low]) * Y[:, low]
    Dl = Xp[:, low] - Xl
    # X' = X bit for bit (alpha_c = 1, or y_c = x_c): its spectrum is X's, exactly (ERank change 0).
    after = before if np.array_equal(Xp, X) else _spectrum(Xp, tol, eps)
    return _Blend(after=after, delta_fro_sq=float(np.einsum("tc,tc->", Dl, Dl)),
                  delta_spectral=float(np.linalg.norm(Dl, 2)) if low.size else 0.0,
                  x_dot_delta=float(np.einsum("tc,tc->", Xl, Dl)),
                  fro_sq_after=float(np.einsum("tc,tc->", Xp, Xp)))


class _Constants(NamedTuple):
    eta: float
    beta: float
    epsilon: float
    gamma: float
    gamma_actual: float
    sources: dict


def _constants(opts: _Options, I, low, proj: _Projections, blend: _Blend, low_source: str) -> _Constants:
    """Each constant as given, or the value most favourable to the assumptions (module docstring)."""
    m = low.size
    given = {name: getattr(opts, name) is not None for name in ("eta", "beta", "epsilon", "gamma")}
    gamma_act = float(proj.ratio.max()) if m else 0.0
    tightest = {"eta": float(I[low].max()) if m else 0.0, "beta": float(proj.y_norm.max()) if m else 0.0,
                "epsilon": blend.delta_fro_sq, "gamma": gamma_act}
    values = {name: getattr(opts, name) if given[name] else tightest[name] for name in given}
    sources = {name: "given" if given[name] else "tightest" for name in given}
    sources["low"] = low_source
    return _Constants(**values, gamma_actual=gamma_act, sources=sources)


def _definition_1(I, low, c: _Constants, eta_given: bool, notes: list) -> Check:
    """C_low == {c : I_c <= eta} with eta > 0 (or eta -> 0+ when every blended I_c is 0)."""
    m = low.size
    inside = float((c.eta - I[low]).min()) if m else math.inf
    out_mask = np.ones(I.size, bool)
    out_mask[low] = False
    outside_gap = float((I[out_mask] - c.eta).min()) if out_mask.any() else math.inf
    holds = (inside >= 0.0) and (outside_gap > 0.0) and (c.eta > 0.0 or not eta_given)
    if not eta_given and c.eta == 0.0 and outside_gap > 0.0:
        notes.append("eta = 0 (every blended x_c has I_c = 0): stands for the limit eta -> 0+, "
                     "allowed since any small eta > 0 gives the same C_low")
    if outside_gap <= 0.0:
        j = int(np.flatnonzero(out_mask)[np.argmin(I[out_mask])])
        notes.append(f"channel {j} is not in C_low but has I_c = {float(I[j]):.6g} <= eta = {c.eta:.6g}: "
                     "Definition 1 would blend it too (e.g. a dead channel beside those blended)")
    # lhs and rhs of the side that binds, so that slack = rhs - lhs
    lhs, rhs = ((float(I[low].max()) if m else 0.0), c.eta) if inside <= outside_gap else \
        (c.eta, float(I[out_mask].min()))
    return Check(name="definition-1", holds=bool(holds), slack=min(inside, outside_gap), lhs=lhs, rhs=rhs,
                 detail="C_low == {c : I_c <= eta}: slack = min(min_{c in C_low}(eta - I_c), "
                        "min_{c not in C_low}(I_c - eta)), the second strictly")


def _assumption_1(proj: _Projections, c: _Constants, opts: _Options, notes: list) -> tuple:
    """||y_c|| <= beta with beta > 0, and y_c zero-mean (reported separately: real features are
    rarely centred and the proof never uses it)."""
    m = proj.y_norm.size
    ymax = float(proj.y_norm.max()) if m else 0.0
    cmax = float(proj.mean_cosine.max()) if m else 0.0
    if opts.beta is None and c.beta == 0.0:
        notes.append("beta = 0 (all blended y_c vanish): stands for the limit beta -> 0+, "
                     "allowed by 'for some beta > 0'; eps / (4 |C_low| beta) is then +inf")
    norm = Check(name="assumption-1", holds=bool(ymax <= c.beta), slack=c.beta - ymax, lhs=ymax, rhs=c.beta,
                 detail="max_{c in C_low} ||y_c|| <= beta, beta > 0")
    tol = opts.zero_mean_tol
    mean = Check(name="assumption-1-zero-mean", holds=bool(cmax <= tol), slack=tol - cmax, lhs=cmax, rhs=tol,
                 detail="y_c zero-mean: max_c |<y_c, 1>| / (||y_c|| sqrt T) <= zero_mean_tol")
    return norm, mean


def _assumption_2(c: _Constants, blend: _Blend) -> Check:
    d = blend.delta_fro_sq
    return Check(name="assumption-2", holds=bool(c.epsilon > 0.0 and d >= c.epsilon), slack=d - c.epsilon,
                 lhs=c.epsilon, rhs=d,
                 detail="epsilon <= ||Delta||_F^2 = sum_{c in C_low} ||x'_c - x_c||^2, epsilon > 0")


def _assumption_3(c: _Constants, m: int, delta_k: float) -> Check:
    """sqrt(eta) <= min(delta_k / (3 sqrt|C_low|), epsilon / (4 |C_low| beta))."""
    if m:
        t1 = delta_k / (3.0 * math.sqrt(m))
        t2 = math.inf if c.beta == 0.0 else c.epsilon / (4.0 * m * c.beta)
    else:
        t1 = t2 = math.inf
    rhs = min(t1, t2)
    lhs = math.sqrt(c.eta)
    return Check(name="assumption-3", holds=bool(lhs <= rhs and (c.eta > 0.0 or rhs > 0.0)), slack=rhs - lhs,
                 lhs=lhs, rhs=rhs,
                 detail=f"sqrt(eta) <= min(delta_k/(3 sqrt|C_low|) = {t1:.6g}, eps/(4 |C_low| beta) = {t2:.6g})")


def _assumption_4(c: _Constants, gamma_given: bool) -> Check:
    """||P_dom y_c||^2 <= gamma ||P_res y_c||^2 for all c, 0 <= gamma < 1."""
    slack = (1.0 - c.gamma) if not gamma_given else min(c.gamma - c.gamma_actual, 1.0 - c.gamma)
    return Check(name="assumption-4", holds=bool(c.gamma_actual <= c.gamma and c.gamma < 1.0), slack=slack,
                 lhs=c.gamma_actual, rhs=c.gamma, strict=not gamma_given,
                 detail="max_c ||P_dom y_c||^2 / ||P_res y_c||^2 <= gamma < 1 (slack: 1 - gamma when gamma "
                        "is the tightest value, else min(gamma - actual, 1 - gamma))")


def _assumption_checks(I, low, proj, blend, c: _Constants, opts: _Options, delta_k: float) -> tuple:
    """Definition 1 and Assumptions 1-4 as :class:`Check` s, and the notes they give rise to."""
    notes = ["Y centred column-wise before blending (center_y=True)"] if opts.center_y else []
    checks = (
        _definition_1(I, low, c, opts.eta is not None, notes),
        *_assumption_1(proj, c, opts, notes),
        _assumption_2(c, blend),
        _assumption_3(c, low.size, delta_k),
        _assumption_4(c, opts.gamma is not None),
    )
    return checks, notes


def _proof_steps(before: _Spectrum, blend: _Blend, c: _Constants, m: int, k: int, delta_k: float,
                 fro_before: float) -> tuple:
    """The intermediate claims of App. A (Eqs. 11, 12, 39, 47, 48, 49), evaluated on the data."""
    half = delta_k / 2
    b11 = math.sqrt(m) * (c.beta + math.sqrt(c.eta))
    b39 = m * (c.beta * (math.sqrt(c.gamma) + 1.0) * math.sqrt(c.eta) + c.eta) if math.isfinite(c.gamma) else math.inf
    xd = abs(blend.x_dot_delta)
    gain = blend.fro_sq_after - fro_before
    s, t = before.sigma, blend.after.sigma
    dom_b, dom_a = float(np.sum(s[:k] ** 2)), float(np.sum(t[:k] ** 2))
    tail_b, tail_a = float(np.sum(s[k:] ** 2)), float(np.sum(t[k:] ** 2))
    rel48 = (dom_a - dom_b) / dom_b if dom_b > 0.0 else math.nan
    eps2 = c.epsilon / 2
    return (
        Check(name="eq11", holds=b11 < half, slack=half - b11, lhs=b11, rhs=half, strict=True,
              detail="Step 1 bound sqrt|C_low| (beta + sqrt eta) < delta_k / 2 (not implied by Assumption 3)"),
        Check(name="eq12", holds=blend.delta_spectral < half, slack=half - blend.delta_spectral,
              lhs=blend.delta_spectral, rhs=half, strict=True, detail="||Delta||_2 < delta_k / 2 (needed by Step 2)"),
        Check(name="eq39", holds=xd <= b39, slack=b39 - xd, lhs=xd, rhs=b39,
              detail="|<X, Delta>| <= |C_low| (beta (sqrt gamma + 1) sqrt eta + eta) (Step 3)"),
        Check(name="eq47", holds=gain > eps2, slack=gain - eps2, lhs=eps2, rhs=gain, strict=True,
              detail="||X'||_F^2 - ||X||_F^2 > epsilon / 2 (Step 4)"),
        Check(name="eq48", holds=True, slack=dom_a - dom_b, lhs=dom_b, rhs=dom_a,
              detail=f"sum_(j<=k) sigma'_j^2 vs sigma_j^2 ('approximately equal', relative change "
                     f"{rel48:.3g}); informational, no truth value"),
        Check(name="eq49", holds=tail_a > tail_b + eps2, slack=tail_a - tail_b - eps2, lhs=tail_b + eps2,
              rhs=tail_a, strict=True, detail="sum_(j>k) sigma'_j^2 > sum_(j>k) sigma_j^2 + epsilon / 2 (Step 5)"),
    )


def _verdict(erank_before: float, erank_after: float, failed: tuple, rise_rtol: float, certified: bool) -> tuple:
    """(change, rose, verdict): ERank counts as risen above ``rise_rtol * ERank(X)``, or when the
    majorization certificate (``certified``) proves a rise the computed change shows (a rise far
    above rounding can be below ``rise_rtol``: the verdict must not call a proven rise none)."""
    change = erank_after - erank_before
    rose = change > rise_rtol * erank_before or (certified and change > 0)
    if failed:
        return change, bool(rose), VERDICT_FAILS
    return change, bool(rose), VERDICT_ROSE if rose else VERDICT_NOT_RISEN


def _dominant_spectrum(X, opts: _Options, eps: float, k) -> tuple:
    """Spectrum of X, the validated k, sigma_k, sigma_{k+1} and the gap delta_k (Notation)."""
    before = _spectrum(X, opts.tol, eps)
    r = before.sigma.size
    if r == 0:
        raise InputError("X has numerical rank 0 (all singular values <= tol); Theorem 3.1 needs rank >= 1")
    k = check_int(k, f"{option_name('k', '--k')} (numerical rank of X is {r})", low=1, high=r)
    sigma_k = float(before.sigma[k - 1])
    # sigma_{k+1} below the numerical rank is zero by the rank convention
    sigma_k1 = float(before.sigma[k]) if k < r else 0.0
    return before, k, sigma_k, sigma_k1


def _evaluate(X, Y, eps, *, k, alpha, low, k_prime, opts: _Options) -> TheoremReport:
    """All steps on validated float64 inputs (see :func:`theorem_3_1`); ``eps``: ``(eps_x, eps_y)``,
    X's for the spectra of X and X' (measured alike), Y's for what of Y counts as rounding."""
    eps_x, eps_y = eps
    T, D = X.shape
    before, k, sigma_k, sigma_k1 = _dominant_spectrum(X, opts, eps_x, k)
    # a gap within the rank tolerance is a tie: the top-k subspace is then not determined (Lemma A.1
    # needs delta_k > 0), and Assumption 4 would depend on a basis rounding picked inside it
    delta_k = sigma_k - sigma_k1 if sigma_k - sigma_k1 > before.tol else 0.0
    # Definition 1 (top-k) and the column energies of Eq. 15 / Sec. 4.2.
    energy = np.einsum("tc,tc->c", X, X)
    I_topk = topk_informativeness(before.sigma**2, before.vt.T, k, energy=energy)
    I = I_topk if opts.informativeness == "topk" else energy
    low_source = "given" if low is not None else ("k_prime" if k_prime is not None else "eta")
    low = _select_low(I, low, opts.eta, k_prime, D)
    a = _alpha_vector(alpha, D, low)
    proj = _projections(X, Y, low, before.sigma.size, k, opts.residual, eps_y)
    blend = _blend(X, Y, low, a, before, opts.tol, eps_x)
    c = _constants(opts, I, low, proj, blend, low_source)
    checks, notes = _assumption_checks(I, low, proj, blend, c, opts, delta_k)
    if delta_k == 0.0:
        notes.append(f"sigma_k and sigma_(k+1) differ by {sigma_k - sigma_k1:.3g}, within the rank tolerance "
                     f"{before.tol:.3g}: delta_k is taken as 0 (the top-k subspace is not determined)")
    failed = tuple(ch.name for ch in checks if not ch.holds)
    erank_before, erank_after = _erank(before.sigma), _erank(blend.after.sigma)
    sufficient = majorization_check(before.sigma, blend.after.sigma)
    change, rose, verdict = _verdict(erank_before, erank_after, failed, opts.rise_rtol, sufficient.holds)
    fro_before = float(energy.sum())
    return TheoremReport(
        shape=(T, D), k=k, rank=before.sigma.size, rank_after=int(blend.after.sigma.size), tol=before.tol,
        informativeness_convention=opts.informativeness, residual_convention=opts.residual,
        sigma=before.sigma, sigma_after=blend.after.sigma, sigma_k=sigma_k, sigma_k1=sigma_k1,
        delta_k=delta_k, informativeness=I, informativeness_topk=I_topk, column_energy=energy,
        low=low, n_low=int(low.size), k_prime=None if k_prime is None else int(k_prime), alpha=a,
        eta=float(c.eta), beta=float(c.beta), epsilon=float(c.epsilon), gamma=float(c.gamma),
        constant_sources=c.sources, y_norm=proj.y_norm, y_mean_cosine=proj.mean_cosine,
        y_dominant_sq=proj.dominant, y_residual_sq=proj.residual, y_outside_sq=proj.outside,
        alignment_ratio=proj.ratio, x_dot_y=proj.x_dot_y, delta_fro_sq=blend.delta_fro_sq,
        delta_spectral=blend.delta_spectral, x_dot_delta=blend.x_dot_delta, fro_sq_before=fro_before,
        fro_sq_after=blend.fro_sq_after, assumptions=checks, erank_before=erank_before, erank_after=erank_after,
        erank_change=change, rose=rose, verdict=verdict, failed=failed,
        proof_steps=_proof_steps(before, blend, c, int(low.size), k, delta_k, fro_before),
        sufficient_condition=sufficient, notes=tuple(notes),
    )


# ----------------------------------------------------------------------------- scale safety

#: Inputs whose largest |entry| lies in [2**-SAFE_EXP, 2**SAFE_EXP] are used as they are; others
#: are rescaled by a power of two first. Squares of such values (I_c, ||Delta||_F^2, sigma_j^2)
#: neither overflow nor underflow in float64; power-of-two scaling is exact.
SAFE_EXP = 64
#: Largest ratio of max|X| to max|Y| (either way) that squared quantities can hold together.
MAX_SCALE_RATIO = 2.0**450

# Units of the report's quantities as powers of the input scale s (X -> s X, Y -> s Y):
# 1 for singular values and norms, 2 for energies; everything else is dimensionless.
_FIELD_POWER = {
    "tol": 1, "sigma": 1, "sigma_after": 1, "sigma_k": 1, "sigma_k1": 1, "delta_k": 1, "beta": 1, "y_norm": 1,
    "delta_spectral": 1, "informativeness": 2, "informativeness_topk": 2, "column_energy": 2, "eta": 2,
    "epsilon": 2, "y_dominant_sq": 2, "y_residual_sq": 2, "y_outside_sq": 2, "x_dot_y": 2, "delta_fro_sq": 2,
    "x_dot_delta": 2, "fro_sq_before": 2, "fro_sq_after": 2,
}
_CHECK_POWER = {"definition-1": 2, "assumption-1": 1, "assumption-2": 2, "assumption-3": 1, "eq11": 1,
                "eq12": 1, "eq39": 2, "eq47": 2, "eq48": 2, "eq49": 2}


def _scale_exponent(X, Y) -> int:
    """Exponent e with max(|X|, |Y|) * 2**e in [0.5, 1), or 0 when no rescaling is needed."""
    mx, my = float(np.abs(X).max()), float(np.abs(Y).max())
    if mx > 0.0 and my > 0.0 and max(mx / my, my / mx) > MAX_SCALE_RATIO:
        raise InputError(
            f"X and Y differ in scale too much for float64 (max |X| = {mx:.3g}, max |Y| = {my:.3g}): their squares "
            "cannot be represented together; rescale one of them"
        )
    top = max(mx, my)
    if top == 0.0 or 2.0**-SAFE_EXP <= top <= 2.0**SAFE_EXP:
        return 0
    return -math.frexp(top)[1]


def _unscale_check(c: Check, p: int) -> Check:
    if c.name == "assumption-3":
        # the detail quotes the two bounds; they are in the units of sqrt(eta)
        detail = re.sub(r"= (\S+?)([,)])", lambda m: f"= {np.ldexp(float(m.group(1)), p):.6g}{m.group(2)}", c.detail)
    else:
        detail = c.detail
    return dataclasses.replace(c, slack=float(np.ldexp(c.slack, p)), lhs=float(np.ldexp(c.lhs, p)),
                               rhs=float(np.ldexp(c.rhs, p)), detail=detail)


def _scaled_options(opts: _Options, e: int) -> _Options:
    """The constants given in the original units, for inputs scaled by 2**e."""
    def scale(v, p):
        return None if v is None else float(np.ldexp(v, p * e))

    return opts._replace(eta=scale(opts.eta, 2), epsilon=scale(opts.epsilon, 2), beta=scale(opts.beta, 1),
                         tol=scale(opts.tol, 1))


def _unscale_report(rep: "TheoremReport", e: int) -> "TheoremReport":
    """The report of inputs scaled by 2**e, in the units of the original inputs.

    Multiplying by a power of two is exact; a quantity the original units cannot hold in float64
    (an energy of entries >= 1e155, say) becomes inf or 0 there, while every truth value, the
    ERanks and the verdict come from the safely scaled computation.
    """
    def fix(c):
        return _unscale_check(c, -_CHECK_POWER[c.name] * e) if c.name in _CHECK_POWER else c

    with np.errstate(over="ignore", under="ignore"):  # inf / 0 in the original units is the answer
        fields = {name: np.ldexp(getattr(rep, name), -p * e) for name, p in _FIELD_POWER.items()}
        fields = {k: (float(v) if np.ndim(v) == 0 else v) for k, v in fields.items()}
        checks = tuple(fix(c) for c in rep.assumptions), tuple(fix(c) for c in rep.proof_steps)
    note = (f"computed on X, Y scaled by 2**{e} (exact; the assertions are scale-invariant), "
            "reported in the original units")
    return dataclasses.replace(rep, **fields, assumptions=checks[0], proof_steps=checks[1], notes=rep.notes + (note,))


# ----------------------------------------------------------------------------- main entry


def theorem_3_1(X, Y, *, k, alpha, low=None, eta=None, k_prime=None, epsilon=None, beta=None, gamma=None,
                informativeness="topk", residual="rank", zero_mean_tol=DEFAULT_ZERO_MEAN_TOL, center_y=False,
                tol=None, rise_rtol=DEFAULT_RISE_RTOL) -> TheoremReport:
    """Check Theorem 3.1 (Sec. 3.1) on ``X``, ``Y``: build ``X'`` by Definition 2 and report.

    Parameters
    ----------
    X, Y : ndarray of shape (T, D)
        ``X``: the modality fused into (rows = time steps / tokens); ``Y``: the other modality,
        ``y_c`` its column ``c`` (Definition 2 blends ``x_c`` with ``y_c``: shapes must match).
    k : int
        Size of the dominant subspace, ``1 <= k <= r`` (numerical rank of ``X``).
    alpha : float or ndarray of shape (D,) or (n_low,)
        Blending coefficients ``alpha_c`` in [0, 1] of Definition 2 (``alpha_c = 1`` keeps ``x_c``,
        ``alpha_c = 0`` replaces it by ``y_c``).
    low, eta, k_prime : sequence of int, float, int, optional
        ``C_low`` given explicitly; or ``{c : I_c <= eta}`` (Definition 1; with ``low``, ``eta`` is
        the constant of Assumption 3, default ``max_{c in C_low} I_c``); or the ``k'`` channels
        of lowest ``I_c`` (Eq. 3; ties -> lower index).
    epsilon, beta, gamma : float, optional
        Constants of Assumption 2 (``sum_c ||x'_c - x_c||^2 >= epsilon``, squared norm as in the
        paper), 1 (``||y_c|| <= beta``) and 4. Defaults, the values most favourable to the
        assumptions: ``||Delta||_F^2``, ``max_c ||y_c||``, ``max_c ||P_dom y_c||^2 / ||P_res y_c||^2``.
    informativeness : {"topk", "full"}
        Definition 1 over the top-``k`` singular vectors (the statement) or over all ``r``
        (= ``||x_c||^2``, Eq. 15 and Sec. 4.2).
    residual : {"rank", "complement"}
        Assumption 4's residual space: ``span{u_{k+1..r}}`` (the statement) or the whole
        orthogonal complement of the dominant subspace.
    zero_mean_tol : float
        Largest ``|mean(y_c)| sqrt(T) / ||y_c||`` counted as zero-mean (Assumption 1).
    center_y : bool, default False
        Centre ``Y``'s columns before blending: Assumption 1's zero-mean holds by construction
        (this changes ``X'``; the report says so in ``notes``).
    tol : float, optional
        Absolute singular-value cut for the numerical rank (of ``X`` and of ``X'``).
        Default :func:`rankfusion.spectral.rank_tolerance` of each matrix.
    rise_rtol : float
        ERank counts as risen when ``ERank(X') - ERank(X) > rise_rtol * ERank(X)``.

    Returns
    -------
    TheoremReport
        Quantities, :class:`Check` per assumption (``"definition-1"``: ``C_low`` is exactly
        ``{c : I_c <= eta}`` with ``eta > 0``; Assumption 1 is split into ``"assumption-1"``,
        the norm bound, and ``"assumption-1-zero-mean"``), proof-step diagnostics (Eqs. 11, 12,
        39, 47, 49), ERank before/after, verdict and the proven ``sufficient_condition``. The
        spectra of ``X`` and ``X'`` come from one routine: ``X' = X`` gives a change of exactly 0.

    Raises
    ------
    ValueError
        (``InputError``) on bad shapes, NaN/Inf, ``k`` outside ``[1, r]``, ``alpha`` outside
        [0, 1], or an inconsistent choice of ``low`` / ``eta`` / ``k_prime``.
    """
    X64, Y64, eps = _matrices(X, Y, bool(center_y))
    opts = _options(informativeness=informativeness, residual=residual, zero_mean_tol=zero_mean_tol,
                    center_y=center_y, tol=tol, rise_rtol=rise_rtol, eta=eta, epsilon=epsilon, beta=beta,
                    gamma=gamma)
    e = _scale_exponent(X64, Y64)
    if e:
        # every assertion is invariant under X, Y -> s X, s Y with the constants scaled alike
        # (eta, epsilon ~ s^2; beta, tol ~ s): compute at a safe scale, report in the original units
        rep = _evaluate(np.ldexp(X64, e), np.ldexp(Y64, e), eps, k=k, alpha=alpha, low=low, k_prime=k_prime,
                        opts=_scaled_options(opts, e))
        return _unscale_report(rep, e)
    return _evaluate(X64, Y64, eps, k=k, alpha=alpha, low=low, k_prime=k_prime, opts=opts)


def default_k(X, name: str = "X") -> int:
    """The ``theorem`` command's default ``k``: ``floor(ERank(X))``, clipped to ``[1, rank(X)]``.

    Parameters
    ----------
    X : ndarray of shape (T, D)
    name : str
        How errors name ``X``.

    Raises
    ------
    ValueError
        (``InputError``) if ``X`` has numerical rank 0.
    """
    info = spectrum_info(X)
    r = int(info.rank)
    if r == 0:
        raise InputError(f"{name} has numerical rank 0 (all zero)")
    return max(1, min(r, int(math.floor(float(effective_rank(info.sigma))))))


def default_k_prime(n_channels: int, exchange_ratio: float | None = None) -> int:
    """The ``theorem`` command's default ``k'``: as many channels as R3D blends at ``exchange_ratio``
    (:func:`rankfusion.spectral.blended_channel_count`; None: ``R3DConfig.exchange_ratio``), at least 1."""
    ratio = R3DConfig.exchange_ratio if exchange_ratio is None else exchange_ratio
    return max(1, blended_channel_count(ratio, n_channels))
