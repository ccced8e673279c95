"""The inference layer: error rates by simulation, adjustments on hand-worked cases."""

import math
import warnings

import numpy as np
import pytest
from scipy import stats as sps

from rankfusion import stats


def _draws(rng, n_draws, n, shift):
    return rng.standard_normal((n_draws, n)) + shift, rng.standard_normal((n_draws, n))


def test_compare_keeps_its_false_positive_rate_and_covers():
    rng = np.random.default_rng(20261206)
    a, b = _draws(rng, 4000, 5, 0.0)
    null = [stats.compare(x, y) for x, y in zip(a, b)]
    fpr = np.mean([c.resolved for c in null])
    assert fpr <= stats.ALPHA + 0.01
    # the interval covers the true difference (1.0 here) in >= 94 % of draws
    a, b = _draws(rng, 4000, 5, 1.0)
    cover = np.mean([c.ci[0] <= 1.0 <= c.ci[1] for c in (stats.compare(x, y) for x, y in zip(a, b))])
    assert cover >= 0.94


def test_compare_has_power_at_two_sd_with_five_seeds():
    rng = np.random.default_rng(7)
    a, b = _draws(rng, 2000, 5, 2.0)
    power = np.mean([stats.compare(x, y).resolved for x, y in zip(a, b)])
    assert power >= 0.7


def test_compare_matches_scipy_and_its_fields():
    a, b = [3.1, 2.9, 3.4, 3.0, 3.3], [2.0, 2.6, 2.2, 2.5]
    c = stats.compare(a, b)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert c.test == "Welch t" and (c.n_a, c.n_b) == (5, 4)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-12)
    assert c.diff == pytest.approx(np.mean(a) - np.mean(b), rel=1e-12)
    assert c.ci[0] < c.diff < c.ci[1] and c.resolved == (c.p < 0.05)
    # the interval is mean difference +- t_{0.975, df} * se
    half = sps.t.ppf(0.975, c.df) * c.se
    assert c.ci == pytest.approx((c.diff - half, c.diff + half), rel=1e-9)


def test_paired_uses_the_pairwise_differences():
    a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([0.9, 1.8, 2.95, 3.7])
    c = stats.compare(a, b, paired=True)
    assert c.test == "paired t"
    assert c.p == pytest.approx(sps.ttest_1samp(a - b, 0.0).pvalue, rel=1e-12)
    with pytest.raises(ValueError, match="equal length"):
        stats.compare([1, 2, 3], [1, 2], paired=True)


def _simulated_welch_power(delta, c, alpha, draws=40_000, seed=0):
    """Welch's power at a true difference ``delta`` for normal arms whose true sds are the observed
    ones of ``c``, by simulation (Monte Carlo se <= 0.0025 at power 0.8)."""
    rng = np.random.default_rng(seed)
    sa, sb = (math.sqrt(c.se ** 2 * share * n) for share, n in zip(c.se_shares, (c.n_a, c.n_b)))
    a = rng.standard_normal((draws, c.n_a)) * sa + delta
    b = rng.standard_normal((draws, c.n_b)) * sb
    return float(np.mean(sps.ttest_ind(a, b, axis=1, equal_var=False).pvalue < alpha))


def test_mde_is_the_difference_detected_with_80_percent_power():
    c = stats.compare([0.1, -0.4, 0.3, 0.9, -0.2], [0.0, 0.5, -0.6, 0.2, 0.4])
    # Welch's test at the observed spread: the exact power at the mde is 0.8 (the root's check) ...
    parts = (c.se ** 2 * share for share in c.se_shares)
    assert stats._welch_power(c.mde, *parts, c.n_a, c.n_b, 0.05) == pytest.approx(0.8, abs=1e-8)
    # ... and so is the simulated power of the test itself (4 Monte Carlo se)
    assert _simulated_welch_power(c.mde, c, 0.05) == pytest.approx(0.8, abs=0.01)
    # the noncentral t at Welch's df (the former formula) understates the difference a little
    assert stats._mde(c.se, c.df, 0.05) < c.mde < 1.1 * stats._mde(c.se, c.df, 0.05)
    # unequal arms and spreads, and arms of 2 (the quadrature's hard case)
    for a, b in (([0.0, 1.0, 2.5], [0.0, 3.0, -2.0, 1.0, 4.0, -3.5, 2.0, 0.5]), ([0.0, 1.0], [0.5, -0.5])):
        u = stats.compare(a, b)
        assert _simulated_welch_power(u.mde, u, 0.05, seed=1) == pytest.approx(0.8, abs=0.01)
    # the paired test: the noncentral t is exact (closed form check)
    d = stats.compare([0.1, -0.4, 0.3, 0.9, -0.2], [0.0, 0.5, -0.6, 0.2, 0.4], paired=True)
    t_crit = sps.t.ppf(1 - 0.05 / 2, d.df)
    power = sps.nct.sf(t_crit, d.df, d.mde / d.se) + sps.nct.cdf(-t_crit, d.df, d.mde / d.se)
    assert power == pytest.approx(0.8, abs=1e-6)
    # two arms of 10 with sample sd exactly 1: se = sqrt(2 / 10), df = 18; the textbook
    # approximation (t_{0.975,18} + t_{0.8,18}) * se = (2.101 + 0.862) * 0.447 = 1.325, and Welch's
    # exact difference is a little larger (1.332)
    z = np.random.default_rng(1).standard_normal(10)
    z = (z - z.mean()) / z.std(ddof=1)
    c10 = stats.compare(z, z[::-1] * 1.0 + 0.0)
    assert c10.se == pytest.approx(math.sqrt(0.2)) and c10.df == pytest.approx(18.0)
    assert c10.mde == pytest.approx(1.325, abs=0.01)


def test_mde_in_a_holm_family_is_bounded_by_the_bonferroni_level():
    c = stats.compare([0.1, -0.4, 0.3, 0.9, -0.2], [0.0, 0.5, -0.6, 0.2, 0.4])
    assert c.mde_in_family(1) == c.mde == c.mde_at(0.05)
    m = 12
    upper = c.mde_in_family(m)
    assert upper == c.mde_at(0.05 / m) and upper > c.mde
    # at that difference the same test at level alpha / m has 80 % power (exact, and simulated)
    parts = (c.se ** 2 * share for share in c.se_shares)
    assert stats._welch_power(upper, *parts, c.n_a, c.n_b, 0.05 / m) == pytest.approx(0.8, abs=1e-8)
    assert _simulated_welch_power(upper, c, 0.05 / m, seed=2) == pytest.approx(0.8, abs=0.01)
    # why it bounds Holm: any p at or below alpha / m is rejected whatever the other p-values are
    rng = np.random.default_rng(0)
    for _ in range(200):
        p = rng.uniform(0, 1, m)
        p[0] = 0.05 / m * rng.uniform(0, 1)
        assert stats.adjust(p, "holm")[0] < 0.05 or p[0] == 0.05 / m
    with pytest.raises(ValueError, match="family size"):
        c.mde_in_family(0)
    assert math.isnan(stats.compare([1.0], [0.0, 0.5]).mde_in_family(3))
    assert math.isnan(stats.compare([2.0, 2.0], [1.0, 1.0]).mde_in_family(3))  # untestable: no spread


def test_untestable_and_exact_cases_say_so():
    one = stats.compare([1.0], [0.0, 0.5])
    assert one.test == "none (n < 2)" and not one.resolved and math.isnan(one.p) and math.isnan(one.mde)
    # constant arms that differ: no spread to test against (a discrete score can repeat by chance),
    # so no p-value and no verdict, not "resolved"
    flat = stats.compare([2.0, 2.0, 2.0], [1.0, 1.0, 1.0])
    assert flat.test == "none (no spread)" and not flat.resolved and flat.diff == 1.0
    assert math.isnan(flat.p) and math.isnan(flat.mde) and all(math.isnan(v) for v in flat.ci)
    # equal arms without spread are no test either: an interval of width 0 and p = 1 claimed a
    # certainty the values cannot show (and a detectable difference of 0)
    same = stats.compare([1.0, 1.0], [1.0, 1.0])
    assert same.test == "none (no spread)" and not same.resolved and same.diff == 0.0
    assert math.isnan(same.p) and math.isnan(same.mde) and all(math.isnan(v) for v in same.ci)
    assert all(math.isnan(v) for v in stats.compare([0.0] * 3, [0.0] * 3, paired=True).ci)
    with pytest.raises(ValueError, match="non-finite"):
        stats.compare([1.0, float("nan")], [1.0, 2.0])
    with pytest.raises(ValueError, match="alpha"):
        stats.compare([1.0, 2.0], [1.0, 2.0], alpha=1.5)


def test_equal_constant_arms_are_exact_not_tested_rounding():
    # mean([0.1] * 2) and mean([0.1] * 7) differ by one rounding error (1.4e-17); a test of that
    # error against the rounding error of the variances gave p = 0.0498, "resolved"
    for n_a, n_b in ((2, 7), (3, 5), (4, 7)):
        c = stats.compare([0.1] * n_a, [0.1] * n_b)
        assert c.test == "none (no spread)" and c.diff == 0.0 and not c.resolved and math.isnan(c.p)
    shifted = stats.compare([0.3] * 3, [0.1] * 7)
    assert shifted.test == "none (no spread)" and shifted.diff == 0.3 - 0.1 and not shifted.resolved
    # paired: a constant pairwise difference is exact too
    same = stats.compare([0.1, 0.1, 0.1], [0.1, 0.1, 0.1], paired=True)
    assert same.test == "none (no spread)" and same.diff == 0.0 and not same.resolved


def test_a_spread_of_rounding_errors_is_no_spread():
    # 0.8 - 0.7, 0.9 - 0.8 and 1.0 - 0.9 differ only by rounding (1e-16): a paired t against that gave
    # p = 4e-31, "resolved" and "rises"
    a, b = np.array([0.1, 0.2, 0.3]) + 0.7, np.array([0.1, 0.2, 0.3]) + 0.6
    assert np.ptp(a - b) > 0  # the rounding spread the test must not see
    paired = stats.compare(a, b, paired=True)
    assert paired.test == "none (no spread)" and not paired.resolved and math.isnan(paired.p)
    welch = stats.compare([0.1 + 0.2, 0.3, 0.3], [0.6, 0.6, 0.6])  # 0.1 + 0.2 is 0.30000000000000004
    assert welch.test == "none (no spread)" and not welch.resolved
    # a real spread, however small against the values, is still tested
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an arm of equal values is a valid Welch arm: no scipy warning
        assert stats.compare([1.0, 1.0 + 1e-3, 1.0 - 1e-3], [2.0, 2.0, 2.0]).test == "Welch t"
    # corrected_ci judges the differences against the values they came from, as compare does
    acc, acc_a = np.array([183, 162, 150, 126, 130]) / 200, np.array([184, 163, 151, 127, 131]) / 200
    assert np.ptp(acc_a - acc) > 0 and stats.compare(acc_a, acc, paired=True).test == "none (no spread)"
    assert all(math.isnan(v) for v in stats.corrected_ci(acc_a - acc, 0.25, scale=1.0))


def test_mde_beside_a_large_arm():
    # one arm of 3 beside one of 346: the quadrature over the large arm's variance overflowed (NaN in
    # the root search); from 302 values (301 degrees of freedom) such an arm is taken to know its
    # variance, and the result is continuous across that switch, at both levels
    rng = np.random.default_rng(0)
    big = rng.standard_normal(400)
    assert math.isfinite(stats.compare([0.0, 1.0, 2.0], big[:346]).mde)
    for level in (0.05, 0.05 / 36):
        below, above = (stats.compare([0.0, 1.0, 2.0], big[:n]).mde_at(level) for n in (301, 302))
        assert above == pytest.approx(below, rel=1e-3)


def test_compare_refuses_arms_of_several_dimensions():
    # a (seeds, cells) table was flattened into one arm of seeds x cells values
    with pytest.raises(ValueError, match=r"a must be 1-D \(one value each\), got shape \(3, 2\)"):
        stats.compare(np.ones((3, 2)), [1.0, 2.0])


def test_corrected_ci_refuses_what_it_cannot_read():
    with pytest.raises(ValueError, match="non-finite"):
        stats.corrected_ci([0.1, float("nan"), 0.2], 0.25)
    with pytest.raises(ValueError, match="test_over_train"):
        stats.corrected_ci([0.1, 0.3, 0.2], -0.5)
    with pytest.raises(ValueError, match=r"level must be in \(0, 1\)"):
        stats.corrected_ci([0.1, 0.3, 0.2], 0.25, level=95)


def test_adjust_holm_and_bh_by_hand():
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> running max 0.06
    assert stats.adjust(p, "holm") == pytest.approx([0.03, 0.06, 0.06, 0.02], abs=1e-15)
    # BH: sorted 0.005 x4/1 = 0.02, 0.01 x4/2 = 0.02, 0.03 x4/3 = 0.04, 0.04 x4/4 = 0.04 (running min from the top)
    assert stats.adjust(p, "bh") == pytest.approx([0.02, 0.04, 0.04, 0.02], abs=1e-15)
    # capped at 1, NaN kept out of the family
    out = stats.adjust([0.5, float("nan"), 0.6], "holm")
    assert out[0] == pytest.approx(1.0) and math.isnan(out[1]) and out[2] == pytest.approx(1.0)
    assert stats.adjust([0.02, float("nan")], "holm")[0] == pytest.approx(0.02)
    with pytest.raises(ValueError, match="method"):
        stats.adjust([0.1], "bonferroni")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.adjust([1.2])
    with pytest.raises(ValueError, match=r"\[0, 1\] \(NaN for an untested comparison\), got an infinite value"):
        stats.adjust([0.01, float("inf")])  # it was read as untested


@pytest.mark.parametrize("method", ["holm", "bh"])
def test_adjust_refuses_more_than_one_family_at_once(method):
    # a 2-D array is not one family: flattening it would adjust over every cell and return another shape
    with pytest.raises(ValueError, match=r"1-D \(one family\), got shape \(2, 2\)"):
        stats.adjust([[0.01, 0.02], [0.03, 0.04]], method)
    # a single p-value (0-D) is a family of one
    assert stats.adjust(0.03, method).tolist() == [0.03]


def test_empirical_p_is_valid_under_the_null():
    assert stats.empirical_p(5.0, [1.0, 2.0, 6.0]) == pytest.approx(2 / 4)
    assert stats.empirical_p(9.0, np.arange(19.0)) == pytest.approx(11 / 20)
    assert stats.empirical_p(99.0, np.arange(19.0)) == pytest.approx(1 / 20)
    rng = np.random.default_rng(3)
    draws = rng.standard_normal((4000, 20))
    rate = np.mean([stats.empirical_p(d[0], d[1:]) <= 0.05 for d in draws])
    assert rate <= 0.05 + 0.01
    with pytest.raises(ValueError, match="non-finite"):
        stats.empirical_p(1.0, [0.0, float("nan")])


@pytest.mark.parametrize("alpha", [0.05, 0.05 / 4, 0.05 / 6, 0.01])
def test_min_draws_is_the_fewest_controls_whose_p_reaches_alpha(alpha):
    # a score above every control has the smallest p, 1 / (1 + n): at n = min_draws it reaches
    # alpha, at one control fewer it cannot
    n = stats.min_draws(alpha)
    assert stats.empirical_p(1.0, np.zeros(n)) <= alpha < stats.empirical_p(1.0, np.zeros(n - 1))


def test_agreement_enumerates_every_ordering():
    # n = 3: the identity ordering is one of 3! = 6, so a perfect agreement has p = 1/6
    ag = stats.agreement([1.0, 2.0, 3.0], [10.0, 20.0, 30.0])
    assert ag.rho == pytest.approx(1.0) and ag.p == pytest.approx(1 / 6) and ag.exact and not ag.backed
    # n = 5, perfect agreement: p = 1/120 < 0.05
    ag5 = stats.agreement(np.arange(5.0), np.arange(5.0) ** 2)
    assert ag5.p == pytest.approx(1 / 120) and ag5.backed
    # against a direct enumeration of Spearman's rho on n = 6 with a tie
    import itertools
    x, y = np.array([0.3, 0.1, 0.4, 0.4, 0.9, 0.2]), np.array([1.0, 0.0, 3.0, 2.0, 5.0, 1.5])
    rho = sps.spearmanr(x, y).statistic
    null = [sps.spearmanr(x, y[list(pi)]).statistic for pi in itertools.permutations(range(6))]
    ag6 = stats.agreement(x, y)
    assert ag6.rho == pytest.approx(rho, abs=1e-12)
    assert ag6.p == pytest.approx(np.mean(np.array(null) >= rho - 1e-12), abs=1e-12)
    assert math.isnan(stats.agreement([1.0, 2.0], [2.0, 1.0]).p)
    # two-sided: |rho| against the enumeration; a perfect disagreement is as extreme as agreement
    two = stats.agreement(x, y, alternative="two-sided")
    assert two.p == pytest.approx(np.mean(np.abs(null) >= abs(rho) - 1e-12), abs=1e-12)
    assert stats.agreement(np.arange(5.0), -np.arange(5.0), alternative="two-sided").p == pytest.approx(2 / 120)
    with pytest.raises(ValueError, match="alternative"):
        stats.agreement(x, y, alternative="less")


def test_agreement_false_positive_rate_without_relation():
    rng = np.random.default_rng(11)
    rate = np.mean([stats.agreement(rng.standard_normal(6), rng.standard_normal(6)).backed for _ in range(400)])
    assert rate <= 0.05 + 0.03   # binomial sd at 400 draws is 0.011


@pytest.mark.parametrize("n_a, n_b, ratio, alpha", [(3, 3, 1.0, 0.05 / 36), (3, 3, 1.0, 0.05), (3, 5, 4.0, 0.05 / 36),
                                                   (5, 5, 1.0, 0.05 / 36), (2, 4, 2.0, 0.05), (2, 2, 1.0, 0.05 / 36),
                                                   (2, 3, 1.0, 0.05 / 36), (2, 2, 1.0, 0.05 / 12)])
def test_welch_mde_has_80_percent_power_by_an_independent_quadrature(n_a, n_b, ratio, alpha):
    # the power at the reported detectable difference, integrated over both sample variances on a
    # 400 x 400 midpoint grid in probability space (not the Gauss-Laguerre nodes the module uses);
    # with 48 nodes, two arms of 3 at 0.05/36 came out at power 0.809 (difference 2 % too large); two
    # arms of 2 at 0.05/36 at 0.795 with 192 Laguerre nodes (2 % too small)
    from scipy import stats as sps

    va, vb = 1.0 / n_a, ratio / n_b
    mde = stats._welch_mde(va, vb, n_a, n_b, alpha)
    u = (np.arange(400) + 0.5) / 400
    xa, xb = (sps.chi2.ppf(u, n - 1) / (n - 1) for n in (n_a, n_b))
    A, B = va * xa[:, None], vb * xb[None, :]
    nu = (A + B) ** 2 / (A ** 2 / (n_a - 1) + B ** 2 / (n_b - 1))
    crit, s = sps.t.ppf(1 - alpha / 2, nu) * np.sqrt(A + B), math.sqrt(va + vb)
    power = np.mean(sps.norm.sf((crit - mde) / s) + sps.norm.cdf((-crit - mde) / s))
    assert power == pytest.approx(stats.POWER, abs=0.002)


def test_agreement_states_the_smallest_p_its_candidates_allow():
    # untied: 1/n! one-sided, 2/n! two-sided; ties among the values make it larger
    assert stats.agreement([1.0, 2.0, 3.0], [3.0, 1.0, 2.0]).min_p == pytest.approx(1 / 6)
    assert stats.agreement([1.0, 2.0, 3.0, 4.0], [4.0, 1.0, 2.0, 3.0], alternative="two-sided").min_p == pytest.approx(2 / 24)
    assert stats.agreement([1.0, 1.0, 2.0, 3.0], [4.0, 1.0, 2.0, 3.0]).min_p == pytest.approx(2 / 24)
    assert stats.agreement(np.arange(9.0), np.arange(9.0), n_resamples=99).min_p == pytest.approx(1 / 100)
    with pytest.raises(ValueError, match="n_resamples must be a positive integer, got 0"):
        stats.agreement(np.arange(9.0), np.arange(9.0), n_resamples=0)


def test_agreement_counts_values_equal_to_within_rounding_as_one():
    # 0.3 and 0.1 + 0.2 differ by one ulp: compare() sees no spread; the agreement has no test either
    x = [0.3] * 4 + [0.1 + 0.2] * 4
    assert stats.compare(x[:4], x[4:]).test == "none (no spread)"
    ag = stats.agreement(x, np.arange(8.0))
    assert np.isnan(ag.p) and not ag.backed


def test_compare_scales_extreme_values_exactly():
    # the variances of values near 1e-170 underflowed ("no spread"); near 1e200 they overflowed (an
    # infinite interval and p = 1). Scaled by one exact power of two, the test is the unit one's.
    unit = stats.compare([1.0, 3.0, 2.0], [0.0, 0.0, 0.0])
    for s in (2.0 ** -565, 2.0 ** 664):
        c = stats.compare(np.array([1.0, 3.0, 2.0]) * s, [0.0, 0.0, 0.0])
        assert c.test == "Welch t" and c.p == unit.p and c.diff == unit.diff * s
        assert c.ci == (unit.ci[0] * s, unit.ci[1] * s) and c.se == unit.se * s
        # its detectable difference too (it was nan: the arms' variance terms are not floats there)
        assert c.mde == unit.mde * s and c.mde_in_family(12) == unit.mde_in_family(12) * s
    assert stats.compare([1e200, 3e200, 2e200], [0.0, 1.0, 2.0]).p < 0.1
    c = stats.compare(np.array([1.0, 3.0, 2.0]) * 2.0 ** 40, np.array([0.5, 0.25, 0.0]) * 2.0 ** 40)
    ref = stats.compare([1.0, 3.0, 2.0], [0.5, 0.25, 0.0])
    assert c.p == ref.p and c.mde == pytest.approx(ref.mde * 2.0 ** 40, rel=1e-9)


def test_agreement_ties_values_that_differ_by_rounding_alone():
    # 0.3 and 0.1 + 0.2 (one ulp apart) ranked apart gave rho 1 and "backed"; tied, as 0.3 and 0.3
    a = stats.agreement([0.3, 0.1 + 0.2, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0])
    b = stats.agreement([0.3, 0.3, 1.0, 2.0], [1.0, 2.0, 3.0, 4.0])
    assert (a.rho, a.p, a.min_p, a.backed) == (b.rho, b.p, b.min_p, b.backed) and not a.backed
    assert stats.agreement([1.0, 1.0 + 1e-9, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]).rho == pytest.approx(1.0)  # a real gap
