"""Theorem 3.1 on trial: its quantities, assumptions with slack, conclusion and verdict.

The paper (Sec. 3.1, App. A) claims that blending the low-informativeness channels of a
representation ``X`` with channels of another modality ``Y`` (Definition 2) raises the
effective rank (Eq. 1) under four assumptions. :func:`theorem_3_1` builds ``X'`` for *your*
``X``, ``Y``, channel set and blending coefficients, and reports every quantity the statement
and the proof use, each assumption's truth and slack, ERank before and after, a verdict, and a
sufficient condition that *is* proven (strict majorization of the normalised spectrum,
``docs/theory.md``).

The theorem as stated is false: ``docs/theory.md`` gives counterexamples in which all four
assumptions hold and the effective rank falls, and names the proof steps that fail. The
checker therefore never assumes the conclusion; it measures it.

Conventions (decided once, see ``docs/theory.md``; selectable where that is meaningful):

* ``r`` is the numerical rank of ``X``: singular values ``<= tol`` are dropped, with
  ``tol = sqrt(max(T, D)) * eps * sigma_1`` and ``eps`` of the inputs' dtype (DESIGN.md).
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
from dataclasses import dataclass, field

import numpy as np

from ._validation import InputError, check_choice, check_float, check_int, check_matrix, is_torch
from .spectral import effective_rank, low_informative_channels

__all__ = [
    "Check",
    "TheoremReport",
    "theorem_3_1",
    "majorization_check",
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


@dataclass(frozen=True)
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

    def to_dict(self) -> dict:
        """A JSON-able dict: arrays become lists, non-finite floats become ``"inf"``/``"-inf"``/``"nan"``."""
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self, **kwargs) -> str:
        """``json.dumps(self.to_dict())`` (strict JSON: no bare Infinity/NaN)."""
        return json.dumps(self.to_dict(), allow_nan=False, **kwargs)


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


def _eps_of(*arrays) -> float:
    """Machine epsilon of the inputs' dtype (float64 for integers), as DESIGN.md's tolerance asks."""
    dt = np.result_type(*[a.dtype for a in arrays])
    return float(np.finfo(dt).eps) if np.issubdtype(dt, np.floating) else float(np.finfo(np.float64).eps)


def _keep(s: np.ndarray, tol: float) -> np.ndarray:
    return s[s > tol]


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
        return Check("sufficient-condition", False, -math.inf, math.nan, math.nan, False,
                     "an empty spectrum cannot be compared")
    P = np.cumsum(s / s.sum())
    Pp = np.cumsum(np.concatenate([t / t.sum(), np.zeros(max(0, r - t.size))]))
    if r == 1:
        # P_1 = 1: every spectrum is majorized by a rank-1 one; strict unless p' is rank 1 too.
        gap = 1.0 - float(Pp[0])
        holds = t.size > 1 and gap > strict_tol
        return Check("sufficient-condition", bool(holds), gap, 0.0, gap, False,
                     "p' majorized by p with largest partial-sum gap > rounding (rank(X) = 1)")
    diff = P[: r - 1] - Pp[: r - 1]
    slack = float(diff.min())
    gap = float(diff.max())
    holds = slack >= 0.0 and gap > strict_tol
    return Check("sufficient-condition", bool(holds), slack, 0.0, gap, False,
                 "P'_m <= P_m for all m < rank(X) and max_m (P_m - P'_m) > rounding "
                 "(strict majorization of the normalised spectrum => ERank rises)")


def _alpha_vector(alpha, D, low):
    """Per-channel alpha of shape (D,) from a scalar, a (D,) or a (n_low,) array; range [0, 1]."""
    if is_torch(alpha):
        alpha = alpha.detach().cpu().numpy()
    if isinstance(alpha, numbers.Real) and not isinstance(alpha, bool):
        a = float(alpha)
        if not (0.0 <= a <= 1.0) or not math.isfinite(a):
            raise InputError(f"alpha must be in [0, 1], got {alpha!r}")
        return np.full(D, a)
    arr = np.asarray(alpha)
    if arr.ndim == 0:
        return _alpha_vector(float(arr), D, low)
    if arr.dtype.kind not in "fiu" or arr.ndim != 1:
        raise InputError(f"alpha must be a number or a 1-D array of numbers in [0, 1], got {arr.dtype} array of shape {arr.shape}")
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if bad.any():
        raise InputError(f"alpha must be in [0, 1], got {float(arr[np.argmax(bad)])!r} at position {int(np.argmax(bad))}")
    if arr.size == D:
        return arr
    if arr.size == low.size:
        out = np.ones(D)
        out[low] = arr
        return out
    raise InputError(f"alpha must be a scalar or have one value per channel ({D}) or per blended channel ({low.size}), got {arr.size} values")


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
            raise InputError(f"low contains channel {int(bad)}, outside [0, {D - 1}]")
        if np.unique(arr).size != arr.size:
            raise InputError("low contains repeated channel indices")
        return np.sort(arr)
    if k_prime is not None:
        kp = check_int(k_prime, "k_prime", low=1, high=D)
        # Eq. 3; among equal scores the lower channel index is taken (spectral's tie rule)
        return np.asarray(low_informative_channels(I, k_prime=kp), dtype=np.int64)
    if eta is not None:
        return np.asarray(low_informative_channels(I, eta=eta), dtype=np.int64)
    raise InputError("give one of low, eta or k_prime to choose the blended channels C_low")


# ----------------------------------------------------------------------------- main entry


def theorem_3_1(
    X,
    Y,
    *,
    k,
    alpha,
    low=None,
    eta=None,
    k_prime=None,
    epsilon=None,
    beta=None,
    gamma=None,
    informativeness="topk",
    residual="rank",
    zero_mean_tol=DEFAULT_ZERO_MEAN_TOL,
    center_y=False,
    tol=None,
    rise_rtol=DEFAULT_RISE_RTOL,
) -> TheoremReport:
    """Check Theorem 3.1 (Sec. 3.1) on ``X``, ``Y``: build ``X'`` by Definition 2 and report.

    Parameters
    ----------
    X : ndarray of shape (T, D)
        Representation of the modality being fused into (rows = time steps / tokens).
    Y : ndarray of shape (T, D)
        The other modality; ``y_c`` is column ``c`` of ``Y`` (Definition 2 blends ``x_c`` with
        ``y_c``, so the shapes must match).
    k : int
        Size of the dominant subspace, ``1 <= k <= r`` (numerical rank of ``X``).
    alpha : float or ndarray of shape (D,) or (n_low,)
        Blending coefficients ``alpha_c`` in [0, 1] of Definition 2 (``alpha_c = 1`` keeps ``x_c``,
        ``alpha_c = 0`` replaces it by ``y_c``).
    low : sequence of int, optional
        The channel set ``C_low`` given explicitly.
    eta : float, optional
        Threshold of Definition 1. Alone, it defines ``C_low = {c : I_c <= eta}``; with ``low``
        it is the constant checked in Assumption 3. Default: ``max_{c in C_low} I_c``.
    k_prime : int, optional
        Choose ``C_low`` as the ``k'`` channels of lowest ``I_c`` (Eq. 3; ties -> lower index).
    epsilon : float, optional
        Constant of Assumption 2 (``sum_c ||x'_c - x_c||^2 >= epsilon``, squared norm as in the
        paper). Default: the actual ``||Delta||_F^2``, the largest value Assumption 2 allows.
    beta : float, optional
        Constant of Assumption 1 (``||y_c|| <= beta``). Default: ``max_c ||y_c||``.
    gamma : float, optional
        Constant of Assumption 4. Default: the actual ``max_c ||P_dom y_c||^2 / ||P_res y_c||^2``.
    informativeness : {"topk", "full"}
        Definition 1 over the top-``k`` singular vectors (the statement) or over all ``r``
        (= ``||x_c||^2``, Eq. 15 and Sec. 4.2).
    residual : {"rank", "complement"}
        Assumption 4's residual space: ``span{u_{k+1..r}}`` (the statement) or the whole
        orthogonal complement of the dominant subspace.
    zero_mean_tol : float
        Largest ``|mean(y_c)| sqrt(T) / ||y_c||`` counted as zero-mean (Assumption 1).
    center_y : bool, default False
        Subtract each column mean of ``Y`` before blending, so that Assumption 1's zero-mean
        requirement holds by construction (this changes ``X'``; the report says so in ``notes``).
    tol : float, optional
        Absolute singular-value cut for the numerical rank (of ``X`` and of ``X'``).
        Default ``sqrt(max(T, D)) * eps * sigma_1`` of each matrix (DESIGN.md).
    rise_rtol : float
        ERank counts as risen when ``ERank(X') - ERank(X) > rise_rtol * ERank(X)``.

    Returns
    -------
    TheoremReport
        Quantities, :class:`Check` per assumption (``"definition-1"``: ``C_low`` is exactly
        ``{c : I_c <= eta}`` with ``eta > 0``; Assumption 1 is split into ``"assumption-1"``,
        the norm bound, and ``"assumption-1-zero-mean"``), proof-step diagnostics (Eqs. 11, 12, 39, 47, 49),
        ERank before/after, verdict and the proven ``sufficient_condition``.

    Raises
    ------
    ValueError
        (``InputError``) on bad shapes, NaN/Inf, ``k`` outside ``[1, r]``, ``alpha`` outside
        [0, 1], or an inconsistent choice of ``low`` / ``eta`` / ``k_prime``.
    """
    X = _to_numpy(X, "X")
    Y = _to_numpy(Y, "Y")
    if X.shape != Y.shape:
        raise InputError(f"X and Y must have the same shape (T, D) (y_c blends into x_c), got {X.shape} and {Y.shape}")
    check_choice(informativeness, "informativeness", {"topk", "full"})
    check_choice(residual, "residual", {"rank", "complement"})
    zero_mean_tol = check_float(zero_mean_tol, "zero_mean_tol", low=0.0)
    rise_rtol = check_float(rise_rtol, "rise_rtol", low=0.0)
    tol = check_float(tol, "tol", low=0.0, allow_none=True)
    eta = check_float(eta, "eta", low=0.0, low_open=True, allow_none=True)
    epsilon = check_float(epsilon, "epsilon", low=0.0, low_open=True, allow_none=True)
    beta = check_float(beta, "beta", low=0.0, low_open=True, allow_none=True)
    gamma = check_float(gamma, "gamma", low=0.0, allow_none=True)
    eps_in = _eps_of(X, Y)
    T, D = X.shape
    X64 = np.asarray(X, dtype=np.float64)
    Y64 = np.asarray(Y, dtype=np.float64)
    if center_y:
        Y64 = Y64 - Y64.mean(axis=0, keepdims=True)

    # Definition 1 needs the spectrum of X before C_low is known; the spectrum comes from the
    # R factor of a QR (same singular values, no (T x r) U is formed).
    _, s_all, Vt = np.linalg.svd(np.linalg.qr(X64, mode="r"), full_matrices=False)
    tol_x = tol if tol is not None else math.sqrt(max(T, D)) * eps_in * float(s_all[0])
    r = int(np.sum(s_all > tol_x))
    if r == 0:
        raise InputError("X has numerical rank 0 (all singular values <= tol); Theorem 3.1 needs rank >= 1")
    k = check_int(k, f"k (numerical rank of X is {r})", low=1, high=r)
    sigma = s_all[:r].copy()
    sigma_k = float(sigma[k - 1])
    # sigma_{k+1} below the numerical rank is zero by the rank convention
    sigma_k1 = float(sigma[k]) if k < r else 0.0
    delta_k = sigma_k - sigma_k1

    # Definition 1 (top-k) and the column energies of Eq. 15 / Sec. 4.2.
    I_topk = np.einsum("i,ic->c", sigma[:k] ** 2, Vt[:k] ** 2)
    energy = np.einsum("tc,tc->c", X64, X64)
    I = I_topk if informativeness == "topk" else energy

    low_given = low is not None
    eta_given = eta is not None
    low = _select_low(I, low, eta, k_prime, D)
    m = int(low.size)
    a = _alpha_vector(alpha, D, low)
    a_low = a[low]

    # Left-singular coordinates <u_i, y_c>: one QR of [X, Y_low] puts X and the y_c in one
    # orthonormal frame; the SVD of its X block gives the u_i in that frame. Used only for
    # the projections (the spectrum above is the same matrix's).
    Yl = Y64[:, low]
    Xl = X64[:, low]
    y_sq = np.einsum("tc,tc->c", Yl, Yl)
    y_norm = np.sqrt(y_sq)
    if m:
        Rz = np.linalg.qr(np.concatenate([X64, Yl], axis=1), mode="r")
        Uz = np.linalg.svd(Rz[:, :D], full_matrices=False)[0]
        coords = Uz[:, :r].T @ Rz[:, D:]  # shape (r, m)
    else:
        coords = np.zeros((r, 0))
    dom = np.sum(coords[:k] ** 2, axis=0)
    res_rank = np.sum(coords[k:r] ** 2, axis=0)
    # Projections at rounding level (below the rank tolerance relative to ||y_c||) are zero:
    # otherwise a y_c outside col(X) gets a ratio of two rounding errors in Assumption 4.
    ptol = (math.sqrt(max(T, D)) * eps_in) ** 2 * y_sq
    dom = np.where(dom <= ptol, 0.0, dom)
    res_rank = np.where(res_rank <= ptol, 0.0, res_rank)
    outside = np.clip(y_sq - dom - res_rank, 0.0, None)
    res = res_rank if residual == "rank" else np.where(y_sq - dom <= ptol, 0.0, y_sq - dom)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(dom == 0.0, 0.0, dom / np.where(res > 0.0, res, 1.0))
    ratio = np.where((dom > 0.0) & (res == 0.0), math.inf, ratio)
    ysum = Yl.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_cos = np.where(y_norm > 0.0, np.abs(ysum) / (np.where(y_norm > 0, y_norm, 1.0) * math.sqrt(T)), 0.0)
    x_dot_y = np.einsum("tc,tc->c", Xl, Yl)

    # Definition 2: X' and Delta = X' - X (nonzero only on C_low).
    Xp = X64.copy()
    Xp[:, low] = a_low * Xl + (1.0 - a_low) * Yl
    Dl = Xp[:, low] - Xl
    delta_fro_sq = float(np.einsum("tc,tc->", Dl, Dl))
    delta_spec = float(np.linalg.norm(Dl, 2)) if m else 0.0
    x_dot_delta = float(np.einsum("tc,tc->", Xl, Dl))
    fro_before = float(energy.sum())
    fro_after = float(np.einsum("tc,tc->", Xp, Xp))
    s_after_all = np.linalg.svd(np.linalg.qr(Xp, mode="r"), compute_uv=False)
    tol_xp = tol if tol is not None else math.sqrt(max(T, D)) * eps_in * float(s_after_all[0])
    sigma_after = _keep(s_after_all, tol_xp)

    # Constants: given, or the value most favourable to the assumptions.
    src = {}
    eta_v = eta if eta_given else (float(I[low].max()) if m else 0.0)
    src["eta"] = "given" if eta_given else "tightest"
    beta_v = beta if beta is not None else (float(y_norm.max()) if m else 0.0)
    src["beta"] = "given" if beta is not None else "tightest"
    eps_v = epsilon if epsilon is not None else delta_fro_sq
    src["epsilon"] = "given" if epsilon is not None else "tightest"
    gamma_act = float(ratio.max()) if m else 0.0
    gamma_v = gamma if gamma is not None else gamma_act
    src["gamma"] = "given" if gamma is not None else "tightest"
    src["low"] = "given" if low_given else ("k_prime" if k_prime is not None else "eta")
    notes = ["Y centred column-wise before blending (center_y=True)"] if center_y else []

    checks = []
    # Definition 1: C_low = {c : I_c <= eta}, eta > 0.
    inside = float((eta_v - I[low]).min()) if m else math.inf
    out_mask = np.ones(D, bool)
    out_mask[low] = False
    outside_gap = float((I[out_mask] - eta_v).min()) if out_mask.any() else math.inf
    def1 = (inside >= 0.0) and (outside_gap > 0.0) and (eta_v > 0.0 or not eta_given)
    if not eta_given and eta_v == 0.0:
        notes.append("eta = 0 (every blended x_c has I_c = 0): stands for the limit eta -> 0+, "
                     "allowed since any small eta > 0 gives the same C_low")
        def1 = def1 and (outside_gap > 0.0)
    checks.append(Check("definition-1", bool(def1), min(inside, outside_gap), float(I[low].max()) if m else 0.0,
                        eta_v, False, "C_low == {c : I_c <= eta}: slack = min(min_{c in C_low}(eta - I_c), "
                        "min_{c not in C_low}(I_c - eta)), the second strictly"))
    # Assumption 1: ||y_c|| <= beta with beta > 0, and y_c zero-mean (reported separately, since
    # real features are rarely centred and the proof never uses it).
    ymax = float(y_norm.max()) if m else 0.0
    cmax = float(mean_cos.max()) if m else 0.0
    zero_mean = cmax <= zero_mean_tol
    if beta is None and beta_v == 0.0:
        notes.append("beta = 0 (all blended y_c vanish): stands for the limit beta -> 0+, "
                     "allowed by 'for some beta > 0'; eps / (4 |C_low| beta) is then +inf")
    checks.append(Check("assumption-1", bool(ymax <= beta_v), beta_v - ymax, ymax, beta_v, False,
                        "max_{c in C_low} ||y_c|| <= beta, beta > 0"))
    checks.append(Check("assumption-1-zero-mean", bool(zero_mean), zero_mean_tol - cmax, cmax, zero_mean_tol, False,
                        "y_c zero-mean: max_c |<y_c, 1>| / (||y_c|| sqrt T) <= zero_mean_tol"))
    # Assumption 2: sum ||x'_c - x_c||^2 >= epsilon > 0.
    a2 = eps_v > 0.0 and delta_fro_sq >= eps_v
    checks.append(Check("assumption-2", bool(a2), delta_fro_sq - eps_v, eps_v, delta_fro_sq, False,
                        "epsilon <= ||Delta||_F^2 = sum_{c in C_low} ||x'_c - x_c||^2, epsilon > 0"))
    # Assumption 3: sqrt(eta) <= min(delta_k / (3 sqrt|C|), eps / (4 |C| beta)).
    if m:
        t1 = delta_k / (3.0 * math.sqrt(m))
        t2 = math.inf if beta_v == 0.0 else eps_v / (4.0 * m * beta_v)
    else:
        t1 = t2 = math.inf
    rhs3 = min(t1, t2)
    lhs3 = math.sqrt(eta_v)
    a3 = lhs3 <= rhs3 and (eta_v > 0.0 or rhs3 > 0.0)
    checks.append(Check("assumption-3", bool(a3), rhs3 - lhs3, lhs3, rhs3, False,
                        f"sqrt(eta) <= min(delta_k/(3 sqrt|C_low|) = {t1:.6g}, eps/(4 |C_low| beta) = {t2:.6g})"))
    # Assumption 4: ||P_dom y_c||^2 <= gamma ||P_res y_c||^2 for all c, 0 <= gamma < 1.
    a4 = gamma_act <= gamma_v and gamma_v < 1.0
    slack4 = (1.0 - gamma_v) if gamma is None else min(gamma_v - gamma_act, 1.0 - gamma_v)
    checks.append(Check("assumption-4", bool(a4), slack4, gamma_act, gamma_v, gamma is None,
                        "max_c ||P_dom y_c||^2 / ||P_res y_c||^2 <= gamma < 1 (slack: 1 - gamma when gamma "
                        "is the tightest value, else min(gamma - actual, 1 - gamma))"))
    failed = tuple(c.name for c in checks if not c.holds)

    erank_before = _erank(sigma)
    erank_after = _erank(sigma_after)
    change = erank_after - erank_before
    rose = change > rise_rtol * erank_before
    if failed:
        verdict = VERDICT_FAILS
    else:
        verdict = VERDICT_ROSE if rose else VERDICT_NOT_RISEN

    # Proof diagnostics: the intermediate claims of App. A, evaluated on the data.
    steps = []
    b11 = math.sqrt(m) * (beta_v + math.sqrt(eta_v))
    steps.append(Check("eq11", b11 < delta_k / 2, delta_k / 2 - b11, b11, delta_k / 2, True,
                       "Step 1 bound sqrt|C_low| (beta + sqrt eta) < delta_k / 2 (not implied by Assumption 3)"))
    steps.append(Check("eq12", delta_spec < delta_k / 2, delta_k / 2 - delta_spec, delta_spec, delta_k / 2, True,
                       "||Delta||_2 < delta_k / 2 (needed by Step 2)"))
    b39 = m * (beta_v * (math.sqrt(gamma_v) + 1.0) * math.sqrt(eta_v) + eta_v) if math.isfinite(gamma_v) else math.inf
    steps.append(Check("eq39", abs(x_dot_delta) <= b39, b39 - abs(x_dot_delta), abs(x_dot_delta), b39, False,
                       "|<X, Delta>| <= |C_low| (beta (sqrt gamma + 1) sqrt eta + eta) (Step 3)"))
    gain = fro_after - fro_before
    steps.append(Check("eq47", gain > eps_v / 2, gain - eps_v / 2, eps_v / 2, gain, True,
                       "||X'||_F^2 - ||X||_F^2 > epsilon / 2 (Step 4)"))
    dom_b = float(np.sum(sigma[:k] ** 2))
    dom_a = float(np.sum(sigma_after[:k] ** 2))
    tail_b = float(np.sum(sigma[k:] ** 2))
    tail_a = float(np.sum(sigma_after[k:] ** 2))
    steps.append(Check("eq48", True, dom_a - dom_b, dom_b, dom_a, False,
                       f"sum_(j<=k) sigma'_j^2 vs sigma_j^2 ('approximately equal', relative change "
                       f"{(dom_a - dom_b) / dom_b:.3g}); informational, no truth value"))
    steps.append(Check("eq49", tail_a > tail_b + eps_v / 2, tail_a - tail_b - eps_v / 2, tail_b + eps_v / 2, tail_a, True,
                       "sum_(j>k) sigma'_j^2 > sum_(j>k) sigma_j^2 + epsilon / 2 (Step 5)"))

    return TheoremReport(
        shape=(T, D), k=k, rank=r, rank_after=int(sigma_after.size), tol=float(tol_x),
        informativeness_convention=informativeness, residual_convention=residual,
        sigma=sigma, sigma_after=sigma_after, sigma_k=sigma_k, sigma_k1=sigma_k1, delta_k=delta_k,
        informativeness=I, informativeness_topk=I_topk, column_energy=energy, low=low, n_low=m,
        k_prime=None if k_prime is None else int(k_prime), alpha=a,
        eta=float(eta_v), beta=float(beta_v), epsilon=float(eps_v), gamma=float(gamma_v), constant_sources=src,
        y_norm=y_norm, y_mean_cosine=mean_cos, y_dominant_sq=dom, y_residual_sq=res, y_outside_sq=outside,
        alignment_ratio=ratio, x_dot_y=x_dot_y,
        delta_fro_sq=delta_fro_sq, delta_spectral=delta_spec, x_dot_delta=x_dot_delta,
        fro_sq_before=fro_before, fro_sq_after=fro_after,
        assumptions=tuple(checks), erank_before=erank_before, erank_after=erank_after, erank_change=change,
        rose=bool(rose), verdict=verdict, failed=failed, proof_steps=tuple(steps),
        sufficient_condition=majorization_check(sigma, sigma_after), notes=tuple(notes),
    )
