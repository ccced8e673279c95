"""The one inference layer: every verdict rankfusion prints is a test from this module.

A verdict compares arms over seeds (or folds, or replicates), so it is a statistical test with a
stated interval, p-value and family. This module holds the few tests the toolkit uses, all on
top of :mod:`scipy.stats`:

- :func:`compare`: Welch's t-test of two arms (the paired t-test when the arms share their seeds
  *and* the pairing is real, see its docstring), with the (1 - alpha) interval of the difference
  and the smallest difference the design could have detected (:attr:`Comparison.mde`), so that
  "unresolved" says what it could have seen;
- :func:`adjust`: Holm's or Benjamini-Hochberg's adjustment of a family of p-values;
- :func:`empirical_p`: the p-value of a score against control draws (the noise controls);
- :func:`agreement`: Spearman's rho with an exact permutation p-value over the candidates;
- :func:`corrected_ci`: the corrected resampled t interval of repeated cross-validation
  differences (the probe's task gain).

:data:`ALPHA` is the level of every verdict in the toolkit; change it here and only here.
"""

from __future__ import annotations

import functools
import itertools
import math
import numbers
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special, stats

#: The significance level of every verdict rankfusion states.
ALPHA = 0.05

#: The power at which :attr:`Comparison.mde` is the smallest detectable difference.
POWER = 0.8

#: Up to this many candidates, :func:`agreement` enumerates every ordering (8! = 40,320).
EXACT_PERMUTATIONS_UP_TO = 8


@dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare`: the difference of two arms' means, tested.

    Attributes
    ----------
    diff : float
        ``mean(a) - mean(b)`` (for a paired test, the mean of the pairwise differences, which is
        the same number).
    ci : tuple of float
        The (1 - alpha) confidence interval of ``diff``; ``(nan, nan)`` when untestable.
    p : float
        The two-sided p-value; ``nan`` when untestable (fewer than two values in an arm, or no
        spread: every value of each arm the same, whether the arms differ or not).
    resolved : bool
        ``p <= alpha`` (:func:`rejects`).
    n_a, n_b : int
        The number of values in each arm.
    test : str
        The test used: ``"Welch t"``, ``"paired t"``, ``"none (no spread)"`` (each arm's values
        identical to within rounding, :func:`_has_spread`; for the paired test the differences;
        the arms equal or not: no spread to test the difference against, p = nan) or
        ``"none (n < 2)"``.
    alpha : float
        The level the verdict was taken at.
    se, df : float
        The standard error of ``diff`` and the test's degrees of freedom (``nan`` when untestable).
    se_shares : tuple of float
        Welch's test only: each arm's share of ``se**2``, i.e. ``var(a) / n_a`` and ``var(b) / n_b``
        divided by their sum (the two add up to 1), from which :attr:`mde` is computed; ``(nan, nan)``
        otherwise. Shares, not the two terms themselves: those overflow or underflow for values beyond
        about 1e+-150, where ``se`` itself is still a float.
    """

    diff: float
    ci: tuple
    p: float
    resolved: bool
    n_a: int
    n_b: int
    test: str
    alpha: float
    se: float
    df: float
    se_shares: tuple = (float("nan"), float("nan"))

    @property
    def mde(self) -> float:
        """The smallest |difference| this design detects with :data:`POWER` power at level alpha.

        Same test, same n, the observed spread taken as the true one; ``nan`` when untestable
        (fewer than two values in an arm, or no spread). For Welch's test the power is exact under normal values: it
        averages over the two sample variances, and so over the degrees of freedom the test
        estimates from them (:func:`_welch_power`; an arm of more than 301 values is taken to know
        its variance); for the paired test it is the noncentral t, which is exact there.
        """
        return self.mde_at(self.alpha)

    def mde_at(self, alpha: float) -> float:
        """:attr:`mde` at another level, e.g. ``alpha / m`` for a test in a family of ``m``.

        In a Holm-adjusted family of ``m`` tests every p-value below ``alpha / m`` is rejected
        (Holm's first, strictest threshold), so ``mde_at(alpha / m)`` bounds the difference the
        family detects with :data:`POWER` power from above, and :attr:`mde` from below.
        """
        alpha = check_alpha(alpha)
        if not math.isfinite(self.se):
            return float("nan")
        if self.se == 0.0:
            return 0.0
        if self.test == "Welch t" and min(self.n_a, self.n_b) <= _WELCH_EXACT_UP_TO:
            # the detectable difference scales with se: found at se = 1, then scaled (exact up to brentq's tolerance)
            return self.se * _welch_mde(*self.se_shares, self.n_a, self.n_b, alpha)
        return _mde(self.se, self.df, alpha)

    def mde_in_family(self, m: int) -> float:
        """The upper bound :meth:`mde_at` ``(alpha / m)`` on what a Holm-adjusted family of ``m`` tests
        detects; :attr:`mde` for ``m`` = 1."""
        if not (isinstance(m, (int, np.integer)) and m >= 1):
            raise ValueError(f"m must be a family size of at least 1, got {m!r}")
        return self.mde_at(self.alpha / int(m))


def _values(x, name: str) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.ndim > 1:
        raise ValueError(f"{name} must be 1-D (one value each), got shape {a.shape}")
    a = a.ravel()
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} has non-finite values ({int(np.sum(~np.isfinite(a)))} of {a.size}); "
                         "drop failed runs explicitly before comparing")
    return a


#: Values that differ by at most this many units in the last place of the arm's largest magnitude
#: differ by the rounding of their own computation, not from seed to seed: no spread.
_ROUNDING_ULPS = 64


def _has_spread(x: np.ndarray, scale: float | None = None) -> bool:
    """Whether the values ``x`` spread by more than rounding: ``ptp(x)`` above :data:`_ROUNDING_ULPS`
    units in the last place of ``scale`` (default: the largest |x|). For a paired difference the
    scale is the arms' largest |value|: ``0.8 - 0.7`` and ``0.9 - 0.8`` differ by rounding alone."""
    scale = float(np.max(np.abs(x))) if scale is None else float(scale)
    return bool(np.ptp(x) > _ROUNDING_ULPS * np.spacing(scale))


def _rounding_ties(x: np.ndarray) -> np.ndarray:
    """``x`` with neighbours (in sorted order) that differ by rounding alone (:func:`_has_spread`'s
    rule) set to one value, so a rank statistic sees them tied: ``0.3`` and ``0.1 + 0.2`` tie."""
    order = np.argsort(x, kind="stable")
    s = x[order]
    group = np.concatenate([[0], np.cumsum(np.diff(s) > _ROUNDING_ULPS * np.spacing(np.max(np.abs(x))))])
    out = np.empty_like(x)
    out[order] = s[np.searchsorted(group, group)]  # each group's first value
    return out


def check_alpha(alpha: float) -> float:
    """``alpha`` as a float in (0, 1), or a ValueError naming it."""
    if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    return float(alpha)


def _power(delta: float, se: float, df: float, alpha: float) -> float:
    """Power of the two-sided t-test (``df`` degrees of freedom) at a true difference ``delta``."""
    t_crit = stats.t.ppf(1 - alpha / 2, df)
    nc = delta / se
    # the far tail (a rejection with the wrong sign) is negligible where scipy's series returns NaN
    wrong_sign = float(np.nan_to_num(stats.nct.cdf(-t_crit, df, nc), nan=0.0))
    return float(stats.nct.sf(t_crit, df, nc)) + wrong_sign


def _mde(se: float, df: float, alpha: float) -> float:
    """The |difference| at which :func:`_power` reaches :data:`POWER` (bracketed root)."""
    hi = se * (stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(POWER, df)) * 4 + se
    return float(optimize.brentq(lambda d: _power(d, se, df, alpha) - POWER, 0.0, hi, xtol=1e-12 * hi))


#: Arms above this size take Welch's power from the noncentral t at the Welch degrees of freedom:
#: the estimated degrees of freedom hardly vary there (power within 3e-5 of the exact value at 100
#: a side), and the quadrature of :func:`_chi2_nodes` would overflow.
_WELCH_EXACT_UP_TO = 100
#: The largest chi-square degrees of freedom :func:`_chi2_nodes` integrates over (one arm's n - 1).
_QUADRATURE_UP_TO = 300


@functools.lru_cache(maxsize=None)
def _chi2_nodes(k: int) -> tuple:
    """Nodes and weights for ``E f(X / k)``, ``X ~ chi2(k)``: generalized Gauss-Laguerre (``X = 2U``,
    ``U ~ Gamma(k/2)``), 48 nodes, from ``k = 3``; for ``k <= 2`` (an arm of 2 or 3 values) 192
    Gauss-Legendre nodes in probability space (``X = F^-1(u)``). There the density is unbounded at
    0 (k = 1) and at a strict level the critical value varies too fast for Laguerre's nodes: with
    192 of them Welch's power at the reported difference was 0.7948 for two arms of 2 at 0.05/36
    (difference 2 % too small), 0.7976 for arms of 2 and 3; in probability space 0.79486 and
    0.79756, against 0.79483 and 0.79756 on a 4,000-point midpoint grid. With 48 Laguerre nodes two
    arms of 3 at 0.05/36 came out 2 % too large (13.46 against 13.20 sd-units of the mean); from
    4 values an arm, 48 agree with 192 to 0.1 % down to 0.05/100. Above :data:`_QUADRATURE_UP_TO`
    (an arm of more than 301 values beside a small one) one node at 1: such an arm knows its
    variance (``chi2(k) / k`` has sd ``sqrt(2 / k)``, 8 % at k = 300), and the quadrature's weights
    overflow from k of about 350."""
    if k > _QUADRATURE_UP_TO:
        return np.ones(1), np.ones(1)
    if k <= 2:
        x, w = special.roots_legendre(192)
        return stats.chi2.ppf((x + 1) / 2, k) / k, w / w.sum()
    u, w = special.roots_genlaguerre(48, k / 2 - 1)
    return 2 * u / k, w / w.sum()


def _welch_power(delta: float, va: float, vb: float, n_a: int, n_b: int, alpha: float) -> float:
    """Power of Welch's two-sided test at a true difference ``delta`` when each arm's squared
    standard error (``sigma**2 / n``) is ``va`` and ``vb``, for normal values.

    The difference of means is ``N(delta, va + vb)``, independent of the sample variances, which
    are ``va * X_a`` and ``vb * X_b`` with ``X ~ chi2(n - 1) / (n - 1)``; the test rejects when
    ``|difference| > t_{1 - alpha/2}(nu) * se`` with ``se`` and the Welch-Satterthwaite ``nu``
    computed from those variances. The power is the normal tail probability averaged over both
    variances (:func:`_chi2_nodes`)."""
    xa, wa = _chi2_nodes(n_a - 1)
    xb, wb = _chi2_nodes(n_b - 1)
    A, B = va * xa[:, None], vb * xb[None, :]
    se = np.sqrt(A + B)
    nu = (A + B) ** 2 / (A ** 2 / (n_a - 1) + B ** 2 / (n_b - 1))
    crit = stats.t.ppf(1 - alpha / 2, nu) * se
    s = math.sqrt(va + vb)
    return float(wa @ (stats.norm.sf((crit - delta) / s) + stats.norm.cdf((-crit - delta) / s)) @ wb)


@functools.lru_cache(maxsize=4096)
def _welch_mde(va: float, vb: float, n_a: int, n_b: int, alpha: float) -> float:
    """The |difference| at which :func:`_welch_power` reaches :data:`POWER` (bracketed root)."""
    se = math.sqrt(va + vb)
    hi = _mde(se, 1.0, alpha)  # one degree of freedom, the fewest Welch's test can estimate
    while _welch_power(hi, va, vb, n_a, n_b, alpha) < POWER:
        hi *= 2
    return float(optimize.brentq(lambda d: _welch_power(d, va, vb, n_a, n_b, alpha) - POWER, 0.0, hi,
                                 xtol=1e-10 * hi))


def compare(a, b, *, paired: bool = False, alpha: float = ALPHA) -> Comparison:
    """Test the difference of the means of two arms (seeds, folds or replicates).

    Parameters
    ----------
    a, b : array_like of shape (n_a,) and (n_b,)
        The per-seed values of each arm; every value must be finite (drop failed runs first, so
        that a dropped run is a decision, not an accident).
    paired : bool, default False
        Use the paired t-test (``scipy.stats.ttest_rel``) on ``a[i] - b[i]``. Only when the arms
        share their seeds *and* a seed means the same thing in both: the same data order and the
        same initialisation of every shared parameter, so that the seed's luck is common to both
        arms. Two models of different shapes trained with the same seed number share nothing but
        the number: use Welch's test (the default, ``scipy.stats.ttest_ind(equal_var=False)``).
    alpha : float, default :data:`ALPHA`
        The level: ``resolved`` is ``p <= alpha`` (:func:`rejects`) and ``ci`` the (1 - alpha) interval.

    Returns
    -------
    Comparison
    """
    alpha = check_alpha(alpha)
    a, b = _values(a, "a"), _values(b, "b")
    if paired and a.size != b.size:
        raise ValueError(f"a paired comparison needs arms of equal length, got {a.size} and {b.size}")
    n_a, n_b = int(a.size), int(b.size)
    diff = float(np.mean(a) - np.mean(b)) if n_a and n_b else float("nan")
    nan = float("nan")
    if min(n_a, n_b) < 2:
        return Comparison(diff, (nan, nan), nan, False, n_a, n_b, "none (n < 2)", alpha, nan, nan)
    # one exact power of two brings the largest |value| into [0.5, 1): the variances can neither
    # underflow to 0 (values near 1e-170 read as "no spread") nor overflow (near 1e200, an infinite
    # interval); every result below is the unscaled one times 2**e, exactly
    e = int(np.frexp(max(np.max(np.abs(a)), np.max(np.abs(b))))[1])
    a, b, unit = np.ldexp(a, -e), np.ldexp(b, -e), math.ldexp(1.0, e)
    # No spread is decided on the values, not on a computed variance: the mean of n equal floats
    # can be off by a rounding error, and that error would then be "tested" against itself.
    if paired:
        d = a - b
        spread = _has_spread(d, max(np.max(np.abs(a)), np.max(np.abs(b))))
        se = float(np.std(d, ddof=1) / math.sqrt(d.size)) if spread else 0.0
        df = d.size - 1.0
        exact = float(d[0])
    else:
        spread = _has_spread(a) or _has_spread(b)
        va, vb = (float(np.var(a, ddof=1)) / n_a, float(np.var(b, ddof=1)) / n_b) if spread else (0.0, 0.0)
        se = math.sqrt(va + vb)
        # Welch-Satterthwaite degrees of freedom (what ttest_ind(equal_var=False) uses)
        df = (va + vb) ** 2 / (va ** 2 / (n_a - 1) + vb ** 2 / (n_b - 1)) if se > 0 else nan
        exact = float(a[0] - b[0])
    if not spread or se == 0.0:
        # every seed of each arm gave the same value. A sample without spread does not show that the
        # seeds have no sampling error (a discrete score can repeat by chance): no p-value, no interval
        # and no detectable difference, whether the arms' values are equal or not. The difference is
        # taken from the values themselves (the mean of n equal floats can be off by a rounding error).
        diff = exact * unit if not spread else diff
        return Comparison(diff, (nan, nan), nan, False, n_a, n_b, "none (no spread)", alpha, nan, nan)
    with warnings.catch_warnings():
        # an arm of equal values (its variance 0, a valid Welch arm) makes scipy warn of precision loss
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        if paired:
            res = stats.ttest_rel(a, b)
            name = "paired t"
        else:
            res = stats.ttest_ind(a, b, equal_var=False)
            name = "Welch t"
    ci = res.confidence_interval(confidence_level=1 - alpha)
    p = float(res.pvalue)
    shares = (nan, nan) if paired else (va / (va + vb), vb / (va + vb))
    return Comparison(diff, (float(ci.low) * unit, float(ci.high) * unit), p, rejects(p, alpha), n_a, n_b, name,
                      alpha, se * unit, float(df), shares)


def corrected_ci(diffs, test_over_train: float, level: float | None = None, *,
                 scale: float | None = None) -> tuple[float, float]:
    """Confidence interval of the mean of repeated cross-validation differences.

    The ``n`` differences share training rows, so their naive variance understates the spread;
    the corrected resampled t interval (Nadeau & Bengio, 2003) inflates ``s^2 / n`` to
    ``(1/n + n_test/n_train) s^2`` with ``n - 1`` degrees of freedom; ``level`` defaults to
    ``1 - ALPHA``. ``(nan, nan)`` with fewer than two differences, or when they are all equal (no
    spread: replicates that all agree do not show that there is no sampling error, as in :func:`compare`).
    ``scale``: the largest magnitude of the values the differences were taken from (e.g. the two
    accuracies), against which a rounding-level spread is judged, as :func:`compare` judges a paired
    difference; default the differences' own.
    """
    level = 1.0 - ALPHA if level is None else level
    d = np.asarray(diffs, dtype=np.float64).ravel()
    n = d.size
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), e.g. 0.95, got {level!r}")
    if not np.all(np.isfinite(d)):
        raise ValueError(f"diffs has non-finite values ({int(np.sum(~np.isfinite(d)))} of {n})")
    if not (math.isfinite(test_over_train) and test_over_train >= 0):
        raise ValueError(f"test_over_train must be a finite ratio >= 0, got {test_over_train!r}")
    if n < 2 or not _has_spread(d, scale):
        return (math.nan, math.nan)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * math.sqrt((1.0 / n + test_over_train) * d.var(ddof=1))
    return (float(d.mean() - half), float(d.mean() + half))


def adjust(p_values, method: str = "holm") -> np.ndarray:
    """Adjust a family of p-values for multiplicity, in their given order.

    Parameters
    ----------
    p_values : array_like of shape (m,)
        The family's p-values. NaN (an untestable comparison) stays NaN and is not counted in
        the family.
    method : {"holm", "bh"}
        ``"holm"``: Holm's step-down adjustment, which controls the family-wise error rate;
        ``"bh"``: Benjamini-Hochberg (``scipy.stats.false_discovery_control``), which controls
        the false discovery rate.

    Returns
    -------
    ndarray of shape (m,)
        Adjusted p-values, each in [0, 1]; reject where :func:`rejects` (``adjusted <= alpha``).
    """
    p = np.asarray(p_values, dtype=np.float64)
    if p.ndim > 1:
        raise ValueError(f"p_values must be 1-D (one family), got shape {p.shape}")
    p = p.ravel()
    if method not in ("holm", "bh"):
        raise ValueError(f"method must be 'holm' or 'bh', got {method!r}")
    if np.any(np.isinf(p)):
        raise ValueError("p-values must lie in [0, 1] (NaN for an untested comparison), got an infinite value")
    ok = np.isfinite(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError(f"p-values must lie in [0, 1], got {p[ok][(p[ok] < 0) | (p[ok] > 1)][:3].tolist()}")
    out = np.full_like(p, np.nan)
    q = p[ok]
    if q.size == 0:
        return out
    if method == "bh":
        out[ok] = stats.false_discovery_control(q, method="bh")
        return out
    m = q.size
    order = np.argsort(q, kind="stable")
    # Holm: the i-th smallest p (0-based) is multiplied by (m - i); monotone from the smallest up
    stepped = np.maximum.accumulate(np.minimum(1.0, (m - np.arange(m)) * q[order]))
    adj = np.empty(m)
    adj[order] = stepped
    out[ok] = adj
    return out


def rejects(p: float, alpha: float = ALPHA) -> bool:
    """The one rejection rule of every test here: ``p <= alpha`` (a NaN p never rejects).

    Valid for all of them: the t tests are continuous (``p == alpha`` has probability 0), and the
    permutation and empirical p-values are valid discrete p-values, ``P(p <= alpha) <= alpha``
    (they can equal ``alpha`` exactly: an exact permutation p of 6/120, the empirical p of 19
    controls, 1/20).
    """
    return bool(math.isfinite(p) and p <= check_alpha(alpha))


def empirical_p(score: float, controls) -> float:
    """``(1 + #{control >= score}) / (1 + n)``: the p-value of ``score`` against control draws.

    Under the null (the score is one more draw from the controls' distribution) this p-value is
    valid at every level: P(p <= alpha) <= alpha. It can reach ``alpha`` = 0.05 only with
    n >= 19 controls. NaN controls are refused (decide explicitly what a failed control means).
    """
    c = _values(controls, "controls")
    if not np.isfinite(score):
        raise ValueError(f"score must be finite, got {score!r}")
    return float((1 + np.sum(c >= score)) / (1 + c.size))


def min_draws(alpha: float = ALPHA) -> int:
    """The fewest control draws whose :func:`empirical_p` can reach ``alpha`` (:func:`rejects`:
    ``p <= alpha``): ``ceil(1/alpha) - 1``, 19 at 0.05, where the smallest p is 1/20."""
    return int(math.ceil(1.0 / check_alpha(alpha) - 1e-9)) - 1


@dataclass(frozen=True)
class Agreement:
    """The outcome of :func:`agreement`: Spearman's rho and its exact permutation p-value
    (``exact`` None, and rho and p NaN, when there is no test). ``min_p`` is the smallest p-value
    any pairing of these values could give (the share of orderings that reach the most extreme
    rho; a lower bound, ``1 / (resamples + 1)``, for a Monte Carlo p): where it is above ``alpha``
    no outcome could have been backed."""

    rho: float
    p: float
    n: int
    exact: bool | None
    backed: bool
    alpha: float
    alternative: str = "greater"  # "greater" (one-sided: a positive agreement) or "two-sided"
    min_p: float = float("nan")


def agreement(x, y, *, alpha: float = ALPHA, alternative: str = "greater", n_resamples: int = 20_000,
              seed: int = 0) -> Agreement:
    """Spearman's rho between two scorings of the same candidates, tested by permutation.

    The null is "no relation between the two scorings": every pairing of ``x``'s values with
    ``y``'s is equally likely. The p-value is exact over all orderings for up to
    :data:`EXACT_PERMUTATIONS_UP_TO` candidates and a seeded Monte Carlo estimate above;
    ``alternative="greater"`` (default) asks whether the agreement is *positive*,
    ``"two-sided"`` whether there is a relation of either sign (``|rho|``). ``backed`` is
    ``p <= alpha`` (:func:`rejects`). Fewer than three candidates cannot be tested, nor can scorings where every
    candidate scores the same on one side (Spearman's rho is undefined; values equal to within
    rounding count as the same): rho and p are NaN.
    """
    alpha = check_alpha(alpha)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, numbers.Integral) or n_resamples < 1:
        raise ValueError(f"n_resamples must be a positive integer, got {n_resamples!r}")
    if alternative not in ("greater", "two-sided"):
        raise ValueError(f"alternative must be 'greater' or 'two-sided', got {alternative!r}")
    x, y = _values(x, "x"), _values(y, "y")
    if x.size != y.size:
        raise ValueError(f"x and y must score the same candidates, got {x.size} and {y.size} values")
    n = int(x.size)
    if n < 3 or not _has_spread(x) or not _has_spread(y):  # no test, so no p-value, exact or not
        return Agreement(float("nan"), float("nan"), n, None, False, alpha, alternative)
    x, y = _rounding_ties(x), _rounding_ties(y)
    rx, ry = stats.rankdata(x), stats.rankdata(y)
    rho = float(stats.spearmanr(x, y).statistic)
    # Spearman's rho is Pearson's r of the ranks: with centred ranks it is one dot product per ordering
    rx, ry = rx - rx.mean(), ry - ry.mean()
    scale = float(np.sqrt(np.dot(rx, rx) * np.dot(ry, ry)))
    if n <= EXACT_PERMUTATIONS_UP_TO:
        orderings = np.array(list(itertools.permutations(range(n))), dtype=np.intp)
        exact = True
    else:
        rng = np.random.default_rng(seed)
        orderings = np.array([rng.permutation(n) for _ in range(n_resamples)] + [np.arange(n)])
        exact = False
    null = ry[orderings] @ rx / scale
    observed = rho
    if alternative == "two-sided":
        null, observed = np.abs(null), abs(rho)
    # a small relative tolerance so ties with the observed value count as "at least as large"
    p = float(np.mean(null >= observed - 1e-12 * max(1.0, abs(rho))))
    top = float(null.max()) if exact else None
    min_p = float(np.mean(null >= top - 1e-12)) if exact else 1.0 / (n_resamples + 1)
    return Agreement(rho, p, n, exact, rejects(p, alpha), alpha, alternative, min_p)
