"""The report's judgements (rankfusion.verdicts): each rule on both sides of its threshold."""

import math

import pytest

from rankfusion import verdicts as V

NAN = float("nan")


def test_fmt_and_pm():
    assert V.fmt(1.234) == "1.23" and V.fmt(None) == "NaN" and V.fmt(NAN) == "NaN" and V.fmt(math.inf) == "NaN"
    assert V.fmt(3, "d") == "3"
    assert V.pm(1.0, 0.5) == "1.00 ± 0.50"
    assert V.pm(1.0, NAN) == "1.00" and V.pm(1.0, None) == "1.00"
    assert V.pm(0.5, 0.25, "+.2f") == "+0.50 ± 0.25"  # the sign belongs to the mean only


@pytest.mark.parametrize("diff, a, b, want", [
    (1.0, NAN, NAN, "unresolved (one seed)"),
    (2.0, 1.0, 0.5, "resolved, 2.0 sd"),  # exactly 2 sd of the larger spread
    (1.9, 0.5, 1.0, "unresolved, 1.9 sd"),
    (-3.0, 1.0, 1.0, "resolved, 3.0 sd"),  # either direction
    (0.1, 0.0, 0.0, "resolved"),  # identical runs per seed: any non-zero difference
    (0.0, 0.0, 0.0, "unresolved"),
])
def test_spread_verdict(diff, a, b, want):
    assert V.spread_verdict(diff, a, b) == want


def test_claim_verdict():
    assert V.claim_verdict(False, 5.0) == "unresolved"
    assert V.claim_verdict(True, 5.0) == "holds"
    assert V.claim_verdict(True, -5.0) == "contradicted"
    assert V.claim_verdict(True, -5.0, sign=-1) == "holds"


@pytest.mark.parametrize("change, sd, n, want", [
    (-2.0, 1.0, 3, "falls"), (2.0, 1.0, 3, "rises"), (1.0, 1.0, 3, "unresolved"),
    (-2.0, NAN, 3, "unresolved"), (-2.0, 0.1, 1, "unresolved"),
])
def test_change_verdict(change, sd, n, want):
    assert V.change_verdict(change, sd, n) == want


def test_top_lead():
    ranking = ["depth", "noise", "imu"]
    scores, sd = {"depth": 0.85, "noise": 0.83, "imu": 0.75}, {"depth": 0.31, "noise": 0.27, "imu": 0.4}
    second, lead, verdict = V.top_lead(ranking, scores, sd)
    assert second == "noise" and lead == pytest.approx(0.02) and verdict == "unresolved, 0.1 sd"
    second, lead, verdict = V.top_lead(ranking, {**scores, "depth": 1.5}, sd)
    assert verdict == "resolved, 2.2 sd" and lead == pytest.approx(0.67)
    # a NaN score (no mutual gain) is not a runner-up; one seed gives no spread
    second, _, verdict = V.top_lead(ranking, {**scores, "noise": float("nan")}, {})
    assert second == "imu" and verdict == "unresolved (one seed)"
    # ranked first (e.g. fewer NaN scores) with a lower mean: never a resolved lead
    second, lead, verdict = V.top_lead(["a", "b"], {"a": 0.3, "b": 0.5}, {"a": 0.02, "b": 0.03})
    assert second == "b" and lead == pytest.approx(-0.2) and verdict == "unresolved, no positive lead"
    second, lead, verdict = V.top_lead(["depth"], {"depth": 0.8}, sd)
    assert second == "" and math.isnan(lead) and verdict == ""


def test_score_gap_clause():
    sd = {"depth": 0.5, "noise": 0.2}
    assert V.score_gap_clause(0.4, "noise", "depth", sd, 3) == (
        "the score gap (0.40) is within the spread over the 3 seeds (std 0.20 for noise, 0.50 for depth)")
    assert V.score_gap_clause(0.6, "noise", "depth", sd, 3).startswith("the score gap (0.60) is beyond")
    assert V.score_gap_clause(0.6, "noise", "depth", sd, 1) == (
        "with 1 seed there is no spread to tell the score gap (0.60) from noise")
    assert V.score_gap_clause(0.6, "noise", "depth", {"noise": 0.2}, 3).startswith("with 3 seed")


def test_gain_size_and_partner_reading():
    assert V.gain_size_clause(9.99) == "a few percent" and V.gain_size_clause(12.4) == "up to 12%"
    assert "more it flattens rgb's" in V.partner_erank_reading(0.8, "rgb")
    assert "less it flattens rgb's" in V.partner_erank_reading(-0.8, "rgb")
    assert "does not explain" in V.partner_erank_reading(0.5, "rgb")
    assert "does not explain" in V.partner_erank_reading(NAN, "rgb")


def test_within_base_spread():
    moc = {"R3D": 30.0, "a": 30.9, "b": 28.0, "c": 31.0}
    assert V.within_base_spread(moc, {"R3D": 1.0}, "R3D", 3) == ["a", "c"]
    assert V.within_base_spread(moc, {"R3D": 1.0}, "R3D", 1) == []
    assert V.within_base_spread(moc, {"R3D": NAN}, "R3D", 3) == []
    assert V.within_base_spread({"a": 1.0}, {}, "R3D", 3) == []
