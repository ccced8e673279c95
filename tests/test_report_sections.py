"""The report's sections that state verdicts, on hand-made family results (no training)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from rankfusion import stats, verdicts
from rankfusion.figures.ablation import AblationResult
from rankfusion.figures.modality import ModalityResult
from rankfusion.figures.noise import NoiseResult
from rankfusion.figures.spectra import SpectraResult
from rankfusion.report import ReportInputs, ablation_section, claims_section, modality_section, spectra_section
from rankfusion.selection.criterion import compare_with_expected, nan_last

SEEDS = (1, 10, 13452)


def _inputs(results, partner="depth"):
    ctx = SimpleNamespace(anchor="rgb", partner=partner, seeds=SEEDS,
                          profile=SimpleNamespace(seeds=SEEDS, noise_targets=(0.1, 0.5)))
    return ReportInputs(ctx, results, None, None, 1.0, "full", {})


def _modality(seed_scores, expected="depth"):
    scores = {c: float(np.mean(v)) for c, v in seed_scores.items()}
    ranking = tuple(sorted(scores, key=lambda c: -scores[c]))
    summary = pd.DataFrame([{"candidate": c, "obs_ratio": 0.3, "erank_anchor_before": 10.0, "erank_anchor_after": 11.0,
                             "erank_candidate_before": 5.0 + i, "erank_candidate_after": 6.0 + i,
                             "gain_anchor": 1.0 + 0.1 * i, "gain_candidate": 1.0, "harmonic_mean": scores[c]}
                            for i, c in enumerate(ranking)])
    cmp = compare_with_expected(pd.DataFrame({"candidate": ranking, "rank": range(1, len(ranking) + 1),
                                              "score": [scores[c] for c in ranking]}), expected)
    gains = {(c, 0.3): {"anchor": 1.0, "candidate": 1.0, "harmonic_mean": scores[c]} for c in ranking}
    task = {c: (g, (g - 1.0, g + 1.0)) for c, g in zip(ranking, (10.0, 0.0, -1.0))}
    ag = stats.agreement(nan_last([scores[c] for c in ranking]), [task[c][0] for c in ranking])
    data = ModalityResult(ranking=ranking, scores=scores, reasons={}, comparison=cmp, moc={c: 40.0 for c in ranking},
                          seed_scores={c: tuple(v) for c, v in seed_scores.items()},
                          relative_gain_pct={c: {"anchor": 5.0, "candidate": 5.0} for c in ranking}, gains=gains,
                          task_gain=task, agreement=ag)
    return SimpleNamespace(data=data, tables={"summary": summary})


def test_modality_section_tests_the_lead_and_the_agreement():
    close = {"depth": [0.5, 0.9, 1.15], "noise": [0.6, 0.8, 1.09], "imu": [0.2, 0.25, 0.3]}
    text = "\n".join(modality_section(_inputs({"modality": _modality(close)})))
    lead = stats.compare(close["depth"], close["noise"])
    assert "This **matches** the construction" in text
    # the verdict comes with the lead's 95 % interval and says it is a single, unadjusted test
    ci = f"{lead.diff:+.2f} [{lead.ci[0]:+.2f}, {lead.ci[1]:+.2f}]"
    assert (f"The first's lead over the second, noise, is 0.02 by the point scores, {ci} over the seeds' scores "
            f"(unresolved (Welch t, p = {lead.p:.3f}; detectable from") in text
    # the expected partner ranks first: the same test is a claim, adjusted in the claims table's family
    assert "; unadjusted here; the claims table adjusts it over its family)" in text
    assert "its first place is not a finding" in text and "the order of the first two is not a finding" in text
    # three candidates: the exact permutation p is at least 1/6, never "backed"
    assert "permutation p = 0.167 over 3 candidates; the ranking is not backed by the task" in text
    far = {**close, "depth": [1.5, 1.52, 1.48]}
    text = "\n".join(modality_section(_inputs({"modality": _modality(far)})))
    assert "resolved (Welch t, p = " in text and "not a finding" not in text


def test_mismatch_explains_with_tests():
    # the ranking's first place is tested whether or not it is the expected candidate
    tie = _modality({"imu": [0.6, 0.95, 1.2], "noise": [0.5, 0.9, 1.15], "depth": [0.2, 0.25, 0.3]})
    text = "\n".join(modality_section(_inputs({"modality": tie})))
    assert "The first's lead over the second, noise, is" in text and "the order of the first two is not a finding" in text
    # imu is not the expected partner: this lead is a single test, in no family, and a screen (the
    # pair was picked by the ranking)
    assert "over the seeds' scores (unresolved (Welch t, p = " in text
    assert "; unadjusted, and the pair is the ranking's top two, picked on the same seeds: a screen)" in text
    mod = _modality({"noise": [0.9, 1.0, 1.1], "depth": [0.5, 0.6, 0.7], "imu": [0.2, 0.25, 0.3]})
    gain_values = {("depth", "clean", "rgb"): {1: 0.10, 10: 0.12, 13452: 0.11},
                   ("depth", "large", "rgb"): {1: 0.30, 10: 0.33, 13452: 0.31}}
    noise = NoiseResult(sigmas={}, sigma_std={}, achieved={},
                        gain={("depth", "clean", "rgb"): 0.11, ("depth", "large", "rgb"): 0.313}, gain_std={},
                        moc={}, moc_std={}, gain_values=gain_values)
    text = "\n".join(modality_section(_inputs({"modality": mod, "noise": SimpleNamespace(data=noise)})))
    gap = stats.compare([0.9, 1.0, 1.1], [0.5, 0.6, 0.7])
    assert "does **not match**" in text
    assert f"the score gap of noise over depth (+0.40 [{gap.ci[0]:+.2f}, {gap.ci[1]:+.2f}], 3 and 3 seeds) is" in text
    # the rise under noise is a paired test (the same runs fed clean or noisy input)
    rise = stats.compare([0.30, 0.33, 0.31], [0.10, 0.12, 0.11], paired=True)
    assert rise.resolved and "*raises*" in text and "paired by seed" in text
    # partner ERank against the anchor's gain: 3 candidates cannot resolve a relation
    assert "explains the anchor's gains is unresolved here" in text
    flat = NoiseResult(sigmas={}, sigma_std={}, achieved={}, gain={("depth", "clean", "rgb"): 0.11,
                                                                      ("depth", "large", "rgb"): 0.12},
                       gain_std={}, moc={}, moc_std={},
                       gain_values={("depth", "clean", "rgb"): {1: 0.10, 10: 0.12, 13452: 0.11},
                                    ("depth", "large", "rgb"): {1: 0.14, 10: 0.09, 13452: 0.13}})
    text = "\n".join(modality_section(_inputs({"modality": mod, "noise": SimpleNamespace(data=flat)})))
    assert "*raises*" not in text  # a higher mean that the paired test does not resolve says nothing


def test_spectra_section_tests_the_stacked_erank():
    d = SpectraResult(erank={(m, s): 10.0 for m in ("rgb", "depth") for s in ("before", "after")},
                      erank_sd={}, gain={"rgb": 0.0, "depth": 0.0}, gain_sd={}, stacked_rtf=21.0, stacked_plain=20.0,
                      stacked_rtf_sd=1.0, stacked_plain_sd=1.0, stacked_diff_sd=1.0, n_seeds=3,
                      stacked_rtf_values=(20.0, 21.0, 22.0), stacked_plain_values=(19.0, 20.0, 21.0))
    text = "\n".join(spectra_section(_inputs({"spectra": SimpleNamespace(data=d)})))
    assert "not resolved with RTF; unresolved (Welch t" in text
    d2 = SpectraResult(**{**d.__dict__, "stacked_rtf": 30.0, "stacked_rtf_values": (29.9, 30.0, 30.1)})
    assert "higher with RTF; resolved (Welch t" in "\n".join(spectra_section(_inputs({"spectra": SimpleNamespace(data=d2)})))


def test_ablation_section_is_a_holm_family_against_r3d():
    values = {"R3D (RTF)": (30.0, 31.0, 29.0), "W/O RTF": (30.5, 31.5, 29.0), "Uni": (20.0, 20.5, 19.5)}
    d = AblationResult(moc={k: float(np.mean(v)) for k, v in values.items()},
                       std={k: float(np.std(v, ddof=1)) for k, v in values.items()}, values=values)
    text = "\n".join(ablation_section(_inputs({"ablation": SimpleNamespace(data=d)})))
    tests = d.against()
    adj = stats.adjust([tests["W/O RTF"].p, tests["Uni"].p], "holm")
    assert "Holm over the 2 variants" in text
    assert f"Uni {tests['Uni'].diff:+.2f} [" in text and f"p = {adj[1]:.3f} adjusted)" in text
    assert "Not resolved from R3D by this many runs: W/O RTF." in text
    w = tests["W/O RTF"]
    assert f"detectable from {w.mde_in_family(2):.2f} under Holm over 2; {w.mde:.2f} unadjusted)" in text
    # without the dose sweeps nothing is said about them; with them, that W/O RTF may be their test too
    assert "same runs" not in text
    both = "\n".join(ablation_section(_inputs({"ablation": SimpleNamespace(data=d), "dose": None})))
    assert ("W/O RTF and R3D are the same runs as the claims table's \"RTF helps accuracy\" there: the same test, "
            "adjusted in each table's own family; the larger adjusted p is the conservative reading.") in both


def test_claims_section_tests_the_expected_partner_against_every_other_candidate():
    # planned comparisons: depth (expected) against each other candidate, none chosen by the scores
    # it tests; the claim holds when every one is resolved in the claimed direction after Holm
    seeds = {"depth": [1.5, 1.52, 1.48], "noise": [0.6, 0.8, 1.09], "imu": [0.2, 0.25, 0.3]}
    text = "\n".join(claims_section({"modality": _modality(seeds)}, anchor="rgb", partner="depth"))
    assert "family of the 2 tests of the dose sweeps and the modality selection below" in text
    for c in ("noise", "imu"):
        t = stats.compare(seeds["depth"], seeds[c])
        assert (f"| the criterion scores the complementary partner above {c} (depth minus {c}) | demo dataset | "
                f"{verdicts.diff_ci(t)} | 3, 3 |") in text
    # a seed without a score is left out of its test, and the n column says so
    short = {**seeds, "imu": [0.2, 0.25]}
    text = "\n".join(claims_section({"modality": _modality(short)}, anchor="rgb", partner="depth"))
    assert "(depth minus imu) | demo dataset | " in text and " | 3, 2 | " in text
    assert "(each test is adjusted in one family)" in text and "ablation section names" not in text
    assert "top candidate by point score depth, expected depth -> holds: depth scores resolvedly above every" in text


def test_header_counts_the_runs_of_every_cache_once():
    from pathlib import Path

    from rankfusion.report import header_section

    def rec(d, reused):
        return SimpleNamespace(run_dir=Path(d), reused=reused)

    own = SimpleNamespace(used={("a", "x"): rec("a", False), ("a", "y"): rec("a", False), ("b", "x"): rec("b", True)})
    dose = SimpleNamespace(used={("c", "x"): rec("c", False)})
    collapse = SimpleNamespace(used={("d", "x"): rec("d", True), ("b", "z"): rec("b", True)})
    ctx = SimpleNamespace(cache=own, profile=SimpleNamespace(model={"d_model": 32}, train={"epochs": 2}, seeds=(1,),
                                                             obs_ratios=(0.3,)))
    results = {"dose": SimpleNamespace(caches=[own, dose]), "collapse": SimpleNamespace(caches=[collapse])}
    r = ReportInputs(ctx, results, None, None, 12.0, "full",
                     {"videos": 4, "frames": 100, "classes": 3, "modalities": ["rgb", "depth"]})
    text = "\n".join(header_section(r))
    # folders a, b, c, d: a (two labels) and c trained now, b and d reused
    assert "4 runs (2 trained now, the rest reused from the cache)" in text


def test_claims_section_tests_a_top_candidate_that_is_not_the_expected_one():
    # depth (expected) ranks below noise: the claim is judged by depth's planned comparisons in the
    # family, not by the ranking alone (nor by a test of whichever candidate came first)
    close = _modality({"noise": [0.6, 0.95, 1.2], "depth": [0.5, 0.9, 1.15], "imu": [0.2, 0.25, 0.3]})
    text = "\n".join(claims_section({"modality": close}, anchor="rgb", partner="depth"))
    assert "family of the 2 tests of the dose sweeps and the modality selection below" in text
    assert "| the criterion scores the complementary partner above noise (depth minus noise) | demo dataset |" in text
    assert ("top candidate by point score noise, expected depth -> unresolved: depth is not resolvedly above "
            "noise, imu (Holm over the claims family's 2 tests") in text
    far = _modality({"noise": [1.5, 1.52, 1.48], "depth": [0.5, 0.6, 0.7], "imu": [0.2, 0.25, 0.3]})
    text = "\n".join(claims_section({"modality": far}, anchor="rgb", partner="depth"))
    assert stats.adjust([stats.compare([0.5, 0.6, 0.7], [1.5, 1.52, 1.48]).p,
                         stats.compare([0.5, 0.6, 0.7], [0.2, 0.25, 0.3]).p])[0] < stats.ALPHA
    assert "top candidate by point score noise, expected depth -> does not hold: noise scores resolvedly above depth" \
        in text


def test_a_point_score_lead_that_the_seeds_reverse_is_contradicted():
    # depth ranks first by its point score (the criterion of the gains averaged over seeds) while
    # its seeds' own scores are resolved below noise's: the lead is contradicted, not resolved
    seeds = {"depth": [0.30, 0.31, 0.29], "noise": [0.80, 0.82, 0.81], "imu": [0.2, 0.25, 0.3]}
    mod = _modality(seeds)
    ranking = ("depth", "noise", "imu")
    scores = {"depth": 0.9, "noise": 0.8, "imu": 0.25}
    mod.data = ModalityResult(**{**mod.data.__dict__, "ranking": ranking, "scores": scores,
                                 "comparison": {**mod.data.comparison, "found": "depth", "matches": True,
                                                "expected_rank": 1}})
    gap = stats.compare(seeds["depth"], seeds["noise"])
    assert gap.resolved and gap.diff < 0
    text = "\n".join(modality_section(_inputs({"modality": mod})))
    assert (f"is 0.10 by the point scores, {verdicts.diff_ci(gap)} over the seeds' scores (contradicted by the "
            "seeds' scores (Welch t") in text
    assert "the order of the first two is not a finding" in text and "(its lead above is contradicted)" in text
    text = "\n".join(claims_section({"modality": mod}, anchor="rgb", partner="depth"))
    assert ("top candidate by point score depth, expected depth -> does not hold: noise scores resolvedly above "
            "depth") in text


def test_ablation_section_states_the_family_it_adjusts_over():
    # a variant with one seed has no test: it is not in the Holm family, and the text says so
    values = {"R3D (RTF)": (30.0, 31.0, 29.0), "W/O RTF": (30.5, 31.5, 29.0), "Uni": (20.0, 20.5, 19.5),
              "static": (29.0,)}
    d = AblationResult(moc={k: float(np.mean(v)) for k, v in values.items()}, std={}, values=values)
    text = "\n".join(ablation_section(_inputs({"ablation": SimpleNamespace(data=d)})))
    tests = d.against()
    adj = stats.adjust([t.p for t in tests.values()], "holm")
    assert "Holm over the 2 of the 3 variants with two seeds or more an arm and some spread)" in text
    assert f"Uni {tests['Uni'].diff:+.2f} [" in text and f"p = {adj[1]:.3f} adjusted;" not in text
    assert f"(resolved (Welch t, {verdicts.p_text(adj[1])} adjusted))" in text


def test_collapse_section_states_the_family_it_adjusts_over():
    from rankfusion.figures.collapse import CollapseComparison, CollapseResult
    from rankfusion.report import collapse_section

    tests = [stats.compare([0.0, 1.0, -1.0], [10.0, 12.0, 8.0]), stats.compare([1.0, 2.0, 1.5], [1.2, 1.9, 1.4]),
             stats.compare([3.0], [1.0, 2.0])]  # the last has one seed: no test
    comps = tuple(CollapseComparison(1.0, f"claim {i}", "moc", "a", "b", +1, t) for i, t in enumerate(tests))
    res = CollapseResult((), (), comps, tuple(stats.adjust([t.p for t in tests], "holm")), (0.0, 1.0), "depth")
    text = "\n".join(collapse_section(SimpleNamespace(data=res, params={"data_seed": 0})))
    assert "Holm-adjusted over the 2 of the 3 comparisons, those with two seeds or more an arm and some spread;" in text
    assert f"detectable from {tests[1].mde_in_family(2):.2f} under Holm over 2;" in text


def test_claims_section_with_the_expected_partner_alone_says_it_is_not_tested():
    text = "\n".join(claims_section({"modality": _modality({"depth": [1.5, 1.52, 1.48]})}, anchor="rgb",
                                     partner="depth"))
    assert "top candidate by point score depth, expected depth -> not tested: depth is the only candidate." in text
    assert "family of the 0 tests" not in text and "no test of the dose sweeps or the modality selection" in text


def test_selection_claim_keeps_its_error_rate_when_every_candidate_is_alike():
    # 5 candidates of 5 seeds from one law: the claim must come out "contradicted" (some candidate
    # resolvedly above the expected one) in at most alpha of the draws. Testing whichever candidate
    # ranked first against the expected one did so in 7.8 % of mismatches (it picks the comparison
    # from the scores it tests)
    from rankfusion.report import selection_claim_rows

    rng = np.random.default_rng(0)
    names = ("depth", "noise", "imu", "text", "mvrgb")
    wrong = 0
    for _ in range(2000):
        per = {c: tuple(rng.standard_normal(5)) for c in names}
        d = SimpleNamespace(comparison={"expected": "depth", "matches": False}, ranking=names, seed_scores=per)
        rows = selection_claim_rows(d)
        adj = stats.adjust([t.p for _, _, t, _ in rows], "holm")
        wrong += any(verdicts.claim_verdict(t, sign, pa) == "contradicted" for (_, _, t, sign), pa in zip(rows, adj))
    assert wrong / 2000 <= stats.ALPHA + 0.01


def test_claims_section_with_one_seed_or_no_defined_criterion_says_why_nothing_is_tested():
    # one seed an arm: it said "unresolved ... (Holm over the claims family's 0 tests; ...)"
    one = {"depth": [1.5], "noise": [1.2], "imu": [0.3]}
    text = "\n".join(claims_section({"modality": _modality(one)}, anchor="rgb", partner="depth"))
    assert ("expected depth -> unresolved: no comparison is tested (none has two seeds or more an arm and some "
            "spread: one seed)." in text)
    assert "0 tests" not in text
    flat = {"depth": [1.5] * 3, "noise": [1.2] * 3}  # three seeds, no spread: not "one seed"
    text = "\n".join(claims_section({"modality": _modality(flat)}, anchor="rgb", partner="depth"))
    assert "no comparison is tested (none has two seeds or more an arm and some spread: no spread)." in text
    # the claims family holds other tests (here 12, e.g. the dose sweeps'), none of these: it said
    # "(Holm over the claims family's 12 tests; the detectable differences are in the table)"
    from rankfusion.report import _selection_outcome, selection_claim_rows

    d = _modality(one).data
    rows = selection_claim_rows(d)
    text = _selection_outcome(d, rows, [math.nan] * len(rows), 12)
    assert "unresolved: no comparison is tested (none has two seeds or more an arm and some spread: one seed)." in text
    assert "detectable differences" not in text
    # some tested, some not: the untested ones are named
    mixed = {"depth": [1.5, 1.6, 1.4], "noise": [1.45, 1.55, 1.5], "imu": [0.3]}
    d = _modality(mixed).data
    rows = selection_claim_rows(d)
    text = _selection_outcome(d, rows, stats.adjust([t.p for _, _, t, _ in rows], "holm").tolist(), 12)
    assert "the detectable differences are in the table; untested: imu)." in text
    # every criterion NaN: no top candidate (it said "depth is the only candidate")
    mod = _modality({"depth": [math.nan, math.nan], "noise": [math.nan, math.nan]})
    text = "\n".join(claims_section({"modality": mod}, anchor="rgb", partner="depth"))
    assert ("top candidate by point score none, expected depth -> not tested: no candidate has a defined criterion "
            "(every harmonic mean is NaN).") in text


def test_angles_section_says_why_an_angle_is_nan():
    from rankfusion.figures.angles import AnglesResult
    from rankfusion.report import angles_section

    data = AnglesResult(angle={"rgb <- depth": 71.25, "depth <- rgb": float("nan")},
                        why_nan={"depth <- rgb": "rgb's 2 injected channels are zero on every row"})
    text = "\n".join(angles_section(SimpleNamespace(results={"angles": SimpleNamespace(data=data)})))
    assert ("rgb <- depth: 71.2 deg, depth <- rgb: NaN deg (rgb's 2 injected channels are zero on every row)."
            in text)


def test_collapse_section_with_nothing_testable_says_so():
    from rankfusion.figures.collapse import CollapseComparison, CollapseResult
    from rankfusion.report import collapse_section

    tests = [stats.compare([3.0], [1.0, 2.0]), stats.compare([2.0, 2.0], [1.0, 1.0])]
    comps = tuple(CollapseComparison(1.0, f"claim {i}", "moc", "a", "b", +1, t) for i, t in enumerate(tests))
    res = CollapseResult((), (), comps, (float("nan"),) * 2, (0.0, 1.0), "depth")
    text = "\n".join(collapse_section(SimpleNamespace(data=res, params={"data_seed": 0})))
    assert "None of the 2 comparisons is tested" in text and "Holm-adjusted over the 0" not in text


def test_a_seed_with_a_nan_ratio_has_no_score_as_the_ranking_puts_such_a_candidate_last():
    # imu's fusion is not mutual at obs 0.3 in every seed: the ranking puts it after depth, which is
    # finite everywhere. Its seeds' scores over the ratios they happen to be finite at (obs 0.2 alone)
    # made the claims say "does not hold: imu scores resolvedly above depth" beside that ranking.
    from rankfusion.figures.modality import per_seed_scores, seed_scores
    from rankfusion.report import _selection_outcome, selection_claim_rows
    from rankfusion.selection import rank_candidates, summarize_selection

    rows = []
    for seed, wiggle in zip(SEEDS, (0.0, 0.01, -0.01)):
        for o, (ga, gc) in {0.2: (2.0, 3.0), 0.3: (2.0, -0.5)}.items():
            rows.append(("imu", seed, o, ga + wiggle, gc))
        for o in (0.2, 0.3):
            rows.append(("depth", seed, o, 1.0 + wiggle, 1.0))
    table = pd.DataFrame(rows, columns=["candidate", "seed", "obs_ratio", "gain_anchor", "gain_candidate"])
    table = table.assign(anchor="rgb", erank_anchor_before=10.0, erank_anchor_after=12.0,
                         erank_candidate_before=5.0, erank_candidate_after=6.0,
                         harmonic_mean=[2 * a * c / (a + c) if min(a, c) > 0 else math.nan
                                        for a, c in zip(table["gain_anchor"], table["gain_candidate"])])
    ranking = rank_candidates(summarize_selection(table))
    assert list(ranking["candidate"]) == ["depth", "imu"]
    per = per_seed_scores(table).set_index(["candidate", "seed"])["score"]
    assert per.loc["imu"].isna().all()
    np.testing.assert_allclose(per.loc["depth"].to_numpy(), [2 * (1 + w) / (2 + w) for w in (0.0, 0.01, -0.01)],
                               rtol=1e-12)
    scores = seed_scores(table)
    assert scores["imu"] == () and len(scores["depth"]) == 3
    d = SimpleNamespace(comparison={"expected": "depth", "matches": True, "found": "depth"},
                        ranking=("depth", "imu"), seed_scores=scores)
    (row,) = selection_claim_rows(d)
    assert not verdicts.testable(row[2]) and verdicts.untested(row[2]) == "no seed with a value"
    text = _selection_outcome(d, [row], [math.nan], 1)
    assert "does not hold" not in text and "expected depth -> unresolved: no comparison is tested" in text, text
