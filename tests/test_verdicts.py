"""The report's judgements (rankfusion.verdicts): each rule on both sides of its test."""

import math

import numpy as np
import pytest

from rankfusion import stats
from rankfusion import verdicts as V

NAN = float("nan")

# two arms of 5 seeds whose Welch test resolves (p ~ 1e-5) and two that do not (p ~ 0.5)
FAR = ([10.0, 10.5, 9.5, 10.2, 9.8], [7.0, 7.4, 6.6, 7.1, 6.9])
NEAR = ([10.0, 10.5, 9.5, 10.2, 9.8], [9.9, 10.6, 9.4, 9.7, 9.6])


def test_fmt_and_pm():
    assert V.fmt(1.234) == "1.23" and V.fmt(None) == "NaN" and V.fmt(NAN) == "NaN" and V.fmt(math.inf) == "NaN"
    assert V.fmt(3, "d") == "3"
    assert V.pm(1.0, 0.5) == "1.00 ± 0.50"
    assert V.pm(1.0, NAN) == "1.00" and V.pm(1.0, None) == "1.00"
    assert V.pm(0.5, 0.25, "+.2f") == "+0.50 ± 0.25"  # the sign belongs to the mean only
    assert V.p_text(0.0123) == "p = 0.012" and V.p_text(1e-5) == "p < 0.001" and V.p_text(NAN) == "p = NaN"


def test_comparison_verdict_follows_the_test():
    far, near = stats.compare(*FAR), stats.compare(*NEAR)
    assert far.p < 0.05 < near.p
    assert V.comparison_verdict(far) == "resolved (Welch t, p < 0.001)"
    text = V.comparison_verdict(near)
    assert text.startswith(f"unresolved (Welch t, {V.p_text(near.p)}; detectable from ")
    assert text.endswith(f"{V.fmt(near.mde)})")
    # an adjusted p-value decides when given, and the text says it is adjusted
    assert V.comparison_verdict(far, 0.2).startswith("unresolved (Welch t, p = 0.200 adjusted")
    # a single test from a table whose family is adjusted elsewhere says so
    assert V.comparison_verdict(far, unadjusted=True) == "resolved (Welch t, p < 0.001 unadjusted)"
    assert V.comparison_verdict(near, unadjusted=True).startswith(f"unresolved (Welch t, {V.p_text(near.p)} "
                                                                  "unadjusted; detectable from ")
    # in a family, what the design detects is stated for the family (upper bound) and unadjusted
    assert V.comparison_verdict(near, 0.9, 6) == (f"unresolved (Welch t, p = 0.900 adjusted; detectable from "
                                                  f"{V.fmt(near.mde_in_family(6))} under Holm over 6; "
                                                  f"{V.fmt(near.mde)} unadjusted)")
    assert V.detectable(near, 1) == V.detectable(near) == f"detectable from {V.fmt(near.mde)}"
    assert V.comparison_verdict(stats.compare([1.0], [2.0, 3.0])) == "unresolved (one seed)"
    lo, hi = far.ci
    assert V.diff_ci(far) == f"{far.diff:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    assert V.diff_ci(stats.compare([1.0], [2.0, 3.0])) == "-1.50"


def test_claim_verdict():
    far = stats.compare(*FAR)
    near = stats.compare(*NEAR)
    assert V.claim_verdict(near) == "unresolved"
    assert V.claim_verdict(far) == "holds"
    assert V.claim_verdict(far, sign=-1) == "contradicted"
    assert V.claim_verdict(stats.compare(FAR[1], FAR[0]), sign=-1) == "holds"
    assert V.claim_verdict(far, p_adj=0.06) == "unresolved"  # Holm can take a finding back
    assert V.claim_verdict(stats.compare([1.0], [2.0, 3.0])) == "unresolved (one seed)"  # no test, and it says so


def test_holm_of_a_family_of_comparisons():
    fam = [stats.compare(*FAR), stats.compare(*NEAR), stats.compare([1.0], [2.0])]
    adj = V.holm(fam)
    assert adj[0] == pytest.approx(2 * fam[0].p) and adj[1] == pytest.approx(max(fam[1].p, 2 * fam[0].p))
    assert math.isnan(adj[2])  # untestable: not counted in the family


def test_change_verdict():
    init = np.array([10.0, 11.0, 12.0, 10.5])
    assert V.change_verdict(stats.compare(init - 2.0 + [0.1, -0.1, 0.05, 0.0], init, paired=True)) == "falls"
    assert V.change_verdict(stats.compare(init + 2.0 + [0.1, -0.1, 0.05, 0.0], init, paired=True)) == "rises"
    flat = stats.compare(init + [0.5, -0.6, 0.4, -0.3], init, paired=True)
    assert V.change_verdict(flat) == f"unresolved (detectable from {V.fmt(flat.mde)})"
    assert V.change_verdict(flat, 0.9, 3) == (f"unresolved (detectable from {V.fmt(flat.mde_in_family(3))} under Holm "
                                              f"over 3; {V.fmt(flat.mde)} unadjusted)")
    assert V.change_verdict(stats.compare([8.0], [10.0], paired=True)) == "unresolved (one seed)"
    assert V.change_verdict(stats.compare([8.0, 9.0], [10.0, 11.0], paired=True)) == "unresolved (no spread)"


def test_top_lead():
    ranking = ["depth", "noise", "imu"]
    scores = {"depth": 0.85, "noise": 0.83, "imu": 0.75}
    per_seed = {"depth": [0.5, 0.9, 1.15], "noise": [0.6, 0.8, 1.09], "imu": [0.7, 0.75, 0.8]}
    second, lead, verdict, c = V.top_lead(ranking, scores, per_seed)
    assert second == "noise" and lead == pytest.approx(0.02) and verdict.startswith("unresolved (Welch t")
    assert c.p == pytest.approx(stats.compare(per_seed["depth"], per_seed["noise"]).p)
    far = {**per_seed, "depth": [1.5, 1.52, 1.48]}
    second, lead, verdict, _ = V.top_lead(ranking, {**scores, "depth": 1.5}, far)
    assert verdict.startswith("resolved (Welch t") and lead == pytest.approx(0.67)
    # a NaN score (no mutual gain) is not a runner-up; one seed gives no test
    second, _, verdict, _ = V.top_lead(ranking, {**scores, "noise": NAN}, {"depth": [0.85], "imu": [0.75]})
    assert second == "imu" and verdict == "unresolved (one seed)"
    # ranked first (e.g. fewer NaN scores) with a lower mean: never a resolved lead
    second, lead, verdict, c = V.top_lead(["a", "b"], {"a": 0.3, "b": 0.5}, {"a": [0.3] * 3, "b": [0.5] * 3})
    assert second == "b" and lead == pytest.approx(-0.2) and verdict.startswith("no lead to test: ")
    assert c is None
    # first by the point scores, resolved below the second over the seeds' scores: contradicted, never resolved
    second, lead, verdict, c = V.top_lead(["a", "b"], {"a": 0.9, "b": 0.8}, {"a": [0.30, 0.31, 0.29], "b": [0.8, 0.82, 0.81]})
    assert lead == pytest.approx(0.1) and c.resolved and c.diff < 0
    assert verdict.startswith("contradicted by the seeds' scores (Welch t, p")
    second, lead, verdict, c = V.top_lead(["depth"], {"depth": 0.8}, per_seed)
    assert second == "" and math.isnan(lead) and verdict == "" and c is None


def test_score_gap_clause():
    c = stats.compare(*NEAR)
    text = V.score_gap_clause(c, "noise", "depth")
    assert text.startswith(f"the score gap of noise over depth ({V.diff_ci(c)}, 5 and 5 seeds) is not resolved")
    assert "Welch t" in text
    assert " is resolved (unadjusted; Welch t" in V.score_gap_clause(stats.compare(*FAR), "noise", "depth")
    assert V.score_gap_clause(stats.compare([1.6], [1.0]), "noise", "depth") == (
        "with 1 seed there is no spread to tell the score gap (0.60) from noise")


def test_gain_size_and_partner_reading():
    assert V.gain_size_clause(9.99) == "a few percent" and V.gain_size_clause(12.4) == "up to 12%"
    x = np.arange(6.0)
    up = stats.agreement(x, x ** 2, alternative="two-sided")
    down = stats.agreement(x, -x, alternative="two-sided")
    assert up.backed and "more it flattens rgb's" in V.partner_erank_reading(up, "rgb")
    assert down.backed and "less it flattens rgb's" in V.partner_erank_reading(down, "rgb")
    # four candidates: the smallest two-sided permutation p is 2/24, never below 0.05
    four = stats.agreement(x[:4], x[:4], alternative="two-sided")
    assert not four.backed and "explains the anchor's gains is unresolved here" in V.partner_erank_reading(four, "rgb")
    # each p-value's side is stated where it is printed, and kept in the result
    assert up.alternative == "two-sided" and "two-sided permutation p" in V.partner_erank_reading(up, "rgb")
    one = stats.agreement(x, x ** 2)
    assert one.alternative == "greater" and ", one-sided exact permutation p" in V.agreement_clause(one)


def test_agreement_clause_says_backed_only_when_the_test_rejects():
    x = np.arange(5.0)
    assert V.agreement_clause(stats.agreement(x, x)).endswith("; the ranking is backed by the task")
    # p = 1/6, the smallest 3 candidates allow: no outcome could be backed, and the clause says so
    assert V.agreement_clause(stats.agreement(x[:3], x[:3])).endswith(
        "not backed by the task (no outcome could reject: the smallest p 3 candidates allow is 0.167, above 0.05)")
    assert V.agreement_clause(stats.agreement([1.0, 2.0], [1.0, 2.0])) == "not testable with 2 candidates (it needs 3)"
    # six candidates whose task gains are all 0 (every replicate scored 1.000): no rho, and the words say why
    flat = stats.agreement([0.1, 0.5, 0.2, 0.9, 0.4, 0.3], [0.0] * 6)
    assert flat.exact is None and math.isnan(flat.p)
    assert V.agreement_clause(flat) == ("not testable over the 6 candidates: Spearman's rho is undefined "
                                        "(every candidate scores the same on one of the two)")


def test_unresolved_against_base():
    tests = {"a": stats.compare(*FAR), "b": stats.compare(*NEAR), "c": stats.compare([1.0], [2.0, 3.0])}
    assert V.unresolved_against_base(tests) == ["b"]  # c is untestable, not "unresolved by the runs"
    assert V.unresolved_against_base(tests, {"a": 0.5}) == ["a", "b"]


def test_p_cell_keeps_the_inequality():
    from rankfusion.verdicts import p_cell

    assert p_cell(0.0123) == "0.012" and p_cell(1e-5) == "< 0.001" and p_cell(float("nan")) == "NaN"


def test_per_candidate_note_states_no_adjustment_and_the_surrogates_holm_needs():
    from rankfusion import stats

    for k, need in ((3, 59), (4, 79), (5, 99)):
        assert f"not adjusted over the {k} candidates" in V.per_candidate_note(k)
        assert f"at least {need} surrogates" in V.per_candidate_note(k)
        # with that many controls the smallest p, 1 / (1 + n), survives Holm over k (adjusted p at
        # most alpha, as family verdicts are taken); with one control fewer it cannot
        family = [stats.empirical_p(1.0, np.zeros(need))] + [1.0] * (k - 1)
        assert V.is_resolved(stats.compare([1.0, 2.0], [3.0, 5.0]), stats.adjust(family)[0])
        fewer = [stats.empirical_p(1.0, np.zeros(need - 1))] + [1.0] * (k - 1)
        assert not V.is_resolved(stats.compare([1.0, 2.0], [3.0, 5.0]), stats.adjust(fewer)[0])
    assert "not adjusted" not in V.per_candidate_note(1) and V.per_candidate_note(0)  # no family, no division


def test_undefined_criterion_note_names_each_candidate_and_its_task_gain():
    import pandas as pd

    table = pd.DataFrame({"candidate": ["pix", "kar", "fac"], "criterion": [np.nan, 0.41, np.nan],
                          "task_gain": [0.177, 0.167, 0.173], "task_gain_lo": [0.151, 0.133, 0.1396],
                          "task_gain_hi": [0.203, 0.201, 0.2066]})
    note = V.undefined_criterion_note(table)
    assert note.startswith("no criterion for fac, pix (a gain through RTF <= 0")
    assert "noise_like is True whatever they carry" in note
    assert note.endswith("(fac +0.173 [+0.140, +0.207], pix +0.177 [+0.151, +0.203])")
    assert V.undefined_criterion_note(table[table["candidate"] == "kar"]) is None


def test_one_rejection_rule_p_at_most_alpha_everywhere():
    from rankfusion import stats
    from rankfusion.selection.surrogates import noise_test

    assert stats.rejects(0.05) and not stats.rejects(0.05 + 1e-9) and not stats.rejects(float("nan"))
    # an exact permutation p of exactly 0.05 (6 of the 120 orderings of 5) rejects, as the empirical
    # p of 19 controls (1/20) does
    ag = stats.agreement(np.arange(5.0), [0.0, 0.0, 0.0, 1.0, 2.0])
    assert ag.exact and ag.p == pytest.approx(0.05) and ag.backed
    assert noise_test(1.0, np.linspace(0.0, 0.9, 19)) == (pytest.approx(0.05), False)
    with pytest.raises(ValueError, match="alpha must be in"):
        noise_test(1.0, np.zeros(19), alpha=2.0)
    assert stats.compare([1.0, 2.0, 3.0], [0.0, 0.5, 1.0], alpha=np.float32(0.05)).alpha == pytest.approx(0.05)


def test_p_text_never_rounds_across_alpha():
    assert V.p_text(0.049798) == "p = 0.050"  # rejects, and 0.050 <= alpha reads the same way
    assert V.p_text(0.050204) == "p = 0.0502"  # does not: three digits would read as 0.050
    assert V.p_text(0.0500004) == "p = 0.0500004"
    assert V.p_text(0.0123) == "p = 0.012" and V.p_text(0.0004) == "p < 0.001"
    assert V.p_cell(0.050204) == "0.0502"
    for p in np.linspace(0.0495, 0.0505, 101):
        shown = float(V.p_text(p).removeprefix("p = "))
        assert (shown <= 0.05) == (p <= 0.05), p


def test_p_text_takes_the_test_s_own_level_and_says_the_side_when_digits_cannot():
    assert V.p_text(0.01004, alpha=0.01) == "p = 0.01004"  # 0.010 would read as a rejection at 0.01
    assert V.p_text(0.05000000001) == "p > 0.05" and V.p_cell(0.05000000001) == "> 0.05"
    a = [1.0, 1.5, 2.0, 2.5, 3.0]
    c = stats.compare([x + 1.6767 for x in a], a, alpha=0.01)  # p = 0.01003, just above its level
    assert 0.01 < c.p < 0.0101 and not c.resolved
    assert "p = 0.01003" in V.comparison_verdict(c)
