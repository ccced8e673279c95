"""The judgements the demo report states in words, as small pure functions.

Each function turns measured numbers (means, seed standard deviations, correlations) into the
verdict or clause the report prints, so the rule behind every sentence is written once and tested
(tests/test_verdicts.py) instead of living inside the report's string building. The rule of the
whole toolkit: a difference smaller than its seed
spread is unresolved, never a finding.
"""

from __future__ import annotations

import math

import numpy as np

#: A difference is resolved when it is at least this many times the reference seed sd.
RESOLVE_SD = 2.0


def fmt(v, spec: str = ".2f") -> str:
    """``format(v, spec)``, or ``"NaN"`` for None and non-finite floats."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "NaN"
    return format(v, spec)


def pm(mean, sd, spec: str = ".2f") -> str:
    """``mean ± sd`` (just the mean when the sd is missing: one seed)."""
    if sd is None or not isinstance(sd, (int, float)) or not math.isfinite(sd):
        return fmt(mean, spec)
    return f"{fmt(mean, spec)} ± {fmt(sd, spec.lstrip('+'))}"


def spread_verdict(diff: float, sd_a: float, sd_b: float) -> str:
    """Verdict on a difference of two seed means against the larger of their seed sds.

    ``"unresolved (one seed)"`` without a spread, ``"resolved, 2.4 sd"`` / ``"unresolved, 0.7 sd"``
    against a positive spread (resolved from :data:`RESOLVE_SD` sd on), and for a zero spread
    (identical runs in every seed) ``"resolved"`` exactly when the difference is non-zero.
    """
    ref = max(sd_a, sd_b)
    if not np.isfinite(ref):
        return "unresolved (one seed)"
    if ref > 0:
        return f"{'resolved' if abs(diff) >= RESOLVE_SD * ref else 'unresolved'}, {abs(diff) / ref:.1f} sd"
    return "resolved" if diff else "unresolved"


def claim_verdict(resolved: bool, diff: float, sign: int = +1) -> str:
    """``"holds"`` (resolved in the claimed direction ``sign``), ``"contradicted"`` or ``"unresolved"``."""
    if not resolved:
        return "unresolved"
    return "holds" if sign * diff > 0 else "contradicted"


def change_verdict(change: float, change_sd: float, n_seeds: int) -> str:
    """``"falls"`` / ``"rises"`` when a change over training exceeds its sd over seeds, else ``"unresolved"``."""
    if n_seeds > 1 and np.isfinite(change_sd) and abs(change) > change_sd:
        return "falls" if change < 0 else "rises"
    return "unresolved"


def score_gap_clause(gap: float, found: str, expected: str, seed_sd: dict, n_seeds: int) -> str:
    """Whether the score gap between the top candidate and the expected one is within the seed spread."""
    if n_seeds > 1 and all(np.isfinite(seed_sd.get(c, np.nan)) for c in (expected, found)):
        where = "within" if gap <= max(seed_sd[expected], seed_sd[found]) else "beyond"
        return (f"the score gap ({fmt(gap)}) is {where} the spread over the {n_seeds} seeds (std "
                f"{fmt(seed_sd[found])} for {found}, {fmt(seed_sd[expected])} for {expected})")
    return f"with {n_seeds} seed there is no spread to tell the score gap ({fmt(gap)}) from noise"


def top_lead(ranking, scores: dict, seed_sd: dict) -> tuple[str, float, str]:
    """``(runner_up, lead, verdict)``: how far the first candidate's score leads the second's.

    ``verdict`` is :func:`spread_verdict` of the lead against the two candidates' seed sds; a lead
    that is not resolved, or not positive (the ranking can put first a candidate with fewer NaN
    scores but a lower mean), means the ranking's first place is not a finding. ``("", nan, "")`` with
    fewer than two scored candidates.
    """
    def num(d, c):
        v = d.get(c)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else float("nan")

    ranked = [c for c in ranking if np.isfinite(num(scores, c))]
    if len(ranked) < 2:
        return "", float("nan"), ""
    top, second = ranked[0], ranked[1]
    lead = num(scores, top) - num(scores, second)
    if not lead > 0:
        # first by the ranking's other keys (e.g. fewer NaN scores), not by a higher score
        return second, lead, "unresolved, no positive lead"
    return second, lead, spread_verdict(lead, num(seed_sd, top), num(seed_sd, second))


def gain_size_clause(largest_pct: float) -> str:
    """How large relative ERank gains are, in words (``largest_pct``: the largest |gain| in %)."""
    return "a few percent" if largest_pct < 10 else f"up to {largest_pct:.0f}%"


def partner_erank_reading(rho: float, anchor: str) -> str:
    """What a Spearman correlation between a partner's own ERank and the anchor's gain says.

    |rho| >= 0.8 is read as a relation (positive: a flatter partner flattens the anchor more);
    anything weaker, or NaN (too few candidates), as no explanation.
    """
    if rho >= 0.8:
        return f": the flatter the partner's own spectrum, the more it flattens {anchor}'s."
    if not rho <= -0.8:
        return "; the partner's own ERank does not explain the anchor's gains here."
    return f": the flatter the partner's own spectrum, the less it flattens {anchor}'s."


def within_base_spread(moc: dict, seed_sd: dict, base: str, n_seeds: int) -> list[str]:
    """Variants whose MoC differs from ``base``'s by no more than ``base``'s seed sd (unresolved)."""
    ref = moc.get(base)
    if ref is None or n_seeds <= 1 or not np.isfinite(seed_sd.get(base, np.nan)):
        return []
    return [v for v, m in moc.items() if v != base and abs(m - ref) <= seed_sd[base]]
