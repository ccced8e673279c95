"""The verdict words of every finding rankfusion states (report, commands, figure families), as small pure functions.

Each function turns a test of :mod:`rankfusion.stats` (a :class:`~rankfusion.stats.Comparison`
or an :class:`~rankfusion.stats.Agreement`) into the verdict or clause the report prints, so the
rule behind every sentence is written once and tested (tests/test_verdicts.py) instead of living
inside the report's string building. The rule of the whole toolkit: a difference is resolved only
when its test rejects "no difference" at :data:`rankfusion.stats.ALPHA` (after the family's
multiplicity adjustment where the sentence belongs to a family); otherwise it is unresolved, never
a finding, and the verdict says how large a difference the design could have detected.
"""

from __future__ import annotations

import math

import numpy as np

from .stats import ALPHA, Agreement, Comparison, adjust, compare, min_draws, rejects


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


def p_text(p: float, alpha: float = ALPHA) -> str:
    """``"p = 0.012"``, ``"p < 0.001"`` or ``"p = NaN"``; more digits where three would put the
    printed value on the other side of ``alpha`` than ``p`` (``0.0502``, not ``0.050``)."""
    if p is None or not math.isfinite(p):
        return "p = NaN"
    if p < 0.001:
        return "p < 0.001"
    for digits in range(3, 9):
        if rejects(float(f"{p:.{digits}f}"), alpha) == rejects(p, alpha):
            return f"p = {p:.{digits}f}"
    return f"p {'≤' if rejects(p, alpha) else '>'} {alpha:g}"  # closer to alpha than 8 digits show


def p_cell(p: float, alpha: float = ALPHA) -> str:
    """:func:`p_text` for a table cell: ``"0.012"``, ``"< 0.001"`` or ``"NaN"``."""
    return p_text(p, alpha).removeprefix("p = ").removeprefix("p ")


def testable(c: Comparison) -> bool:
    """Whether ``c`` has a p-value (at least two values in each arm, and some spread)."""
    return math.isfinite(c.p)


def is_resolved(c: Comparison, p_adj: float | None = None) -> bool:
    """:func:`rankfusion.stats.rejects` at ``c.alpha``, with ``p_adj`` (the family's adjusted
    p-value) in place of ``c.p`` when given."""
    return rejects(c.p if p_adj is None else p_adj, c.alpha)


def diff_ci(c: Comparison, spec: str = "+.2f") -> str:
    """``"+1.23 [+0.40, +2.06]"``: the difference and its (1 - alpha) interval (just the difference
    when untestable)."""
    if not testable(c):
        return fmt(c.diff, spec)
    return f"{fmt(c.diff, spec)} [{fmt(c.ci[0], spec)}, {fmt(c.ci[1], spec)}]"


def detectable(c: Comparison, family: int | None = None) -> str:
    """What an unresolved test could have seen: ``"detectable from 1.20"`` (:attr:`Comparison.mde`,
    80 % power at the unadjusted level), or in a Holm-adjusted family of ``family`` tests
    ``"detectable from 1.85 under Holm over 36; 1.20 unadjusted"``: the first number is
    :meth:`Comparison.mde_in_family`, above which the family detects the difference with 80 % power
    whatever the other tests give; between the two it depends on them."""
    if family is None or family <= 1:
        return f"detectable from {fmt(c.mde)}"
    return f"detectable from {fmt(c.mde_in_family(family))} under Holm over {family}; {fmt(c.mde)} unadjusted"


def untested(c: Comparison) -> str:
    """Why an untestable comparison has no test: ``"no seed with a value"`` (an arm whose every value
    was undefined), ``"one seed"`` (an arm with one value) or ``"no spread"`` (each arm's values
    identical)."""
    n = min(c.n_a, c.n_b)
    return "no seed with a value" if n == 0 else "one seed" if n == 1 else "no spread"


def comparison_verdict(c: Comparison, p_adj: float | None = None, family: int | None = None, *,
                       unadjusted: bool = False) -> str:
    """The verdict on one difference: resolved or not, with the test and what it could have seen.

    ``"unresolved (one seed)"`` when an arm has fewer than two values (``"unresolved (no spread)"``
    when the arms' values are each constant and differ: :func:`untested`); ``"resolved (Welch t,
    p = 0.012)"``; ``"unresolved (Welch t, p = 0.31; detectable from 1.20)"``, the last number being
    :attr:`Comparison.mde`, the difference this design detects with 80 % power. With ``p_adj`` the
    verdict is taken on the adjusted p-value (which the text then states) of a family of
    ``family`` tests, and the detectable difference is given for the family too (:func:`detectable`).
    ``unadjusted=True`` says so after the p-value (``"resolved (Welch t, p = 0.048 unadjusted)"``),
    for a table of single tests whose family is adjusted elsewhere.
    """
    if not testable(c):
        return f"unresolved ({untested(c)})"
    p = c.p if p_adj is None else p_adj
    label = f"{c.test}, {p_text(p, c.alpha)}" + (" adjusted" if p_adj is not None else " unadjusted" if unadjusted else "")
    if is_resolved(c, p_adj):
        return f"resolved ({label})"
    return f"unresolved ({label}; {detectable(c, family)})"


def claim_verdict(c: Comparison, sign: int = +1, p_adj: float | None = None) -> str:
    """``"holds"`` (resolved in the claimed direction ``sign``), ``"contradicted"`` or ``"unresolved"``
    (``"unresolved (one seed)"`` / ``"unresolved (no spread)"`` when there is no test: :func:`untested`)."""
    if not testable(c):
        return f"unresolved ({untested(c)})"
    if not is_resolved(c, p_adj):
        return "unresolved"
    return "holds" if sign * c.diff > 0 else "contradicted"


def holm(comparisons) -> list[float]:
    """Holm-adjusted p-values of a family of comparisons, in order (NaN for the untestable)."""
    return [float(v) for v in adjust([c.p for c in comparisons], "holm")]


def change_verdict(c: Comparison, p_adj: float | None = None, family: int | None = None) -> str:
    """``"falls"`` / ``"rises"`` for a resolved change (``c``: final vs initial, paired by run),
    else ``"unresolved (detectable from ...)"`` (:func:`detectable`, in a Holm family of
    ``family`` tests), or ``"unresolved (one seed)"`` / ``"unresolved (no spread)"`` when there is
    no test (:func:`untested`)."""
    if not testable(c):
        return f"unresolved ({untested(c)})"
    if not is_resolved(c, p_adj):
        return f"unresolved ({detectable(c, family)})"
    return "falls" if c.diff < 0 else "rises"


def score_gap_clause(c: Comparison, found: str, expected: str) -> str:
    """Whether the score gap ``c`` (the criterion's top candidate ``found`` minus ``expected``, per
    seed) is resolved over the seeds."""
    if not testable(c):
        n = min(c.n_a, c.n_b)
        return f"with {n} seed{'s' if n != 1 else ''} there is no spread to tell the score gap ({fmt(c.diff)}) from noise"
    word = "resolved" if is_resolved(c) else "not resolved"
    return (f"the score gap of {found} over {expected} ({diff_ci(c)}, {c.n_a} and {c.n_b} seeds) is {word} "
            f"(unadjusted; {comparison_verdict(c).split(' (', 1)[1]}")


def top_lead(ranking, scores: dict, per_seed: dict) -> tuple[str, float, str, Comparison | None]:
    """``(runner_up, lead, verdict, comparison)``: how far the first candidate's score leads the second's.

    ``per_seed``: ``{candidate: per-seed scores}`` (seeds where the score is undefined already
    dropped). The lead is tested with Welch's t (:func:`rankfusion.stats.compare`): the two
    pairings are different models (Welch's test ignores what a seed ties between them; docs/analysis.md). A lead that is not resolved, or not positive (the ranking can
    put first a candidate with fewer NaN scores but a lower mean), means the ranking's first place
    is not a finding. The point scores and the seeds' scores are different statistics (the criterion
    of the gains averaged over seeds, and each seed's own criterion averaged), so the tested
    difference can have the other sign: a resolved one is then ``"contradicted by the seeds'
    scores (...)"``, never "resolved". ``("", nan, "", None)`` with fewer than two scored candidates.
    The pair is the ranking's top two, picked on the same data, so the p-value is unadjusted for that
    choice and optimistic: callers present it as a screen.
    """
    def num(d, c):
        v = d.get(c)
        return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else float("nan")

    ranked = [c for c in ranking if np.isfinite(num(scores, c))]
    if len(ranked) < 2:
        return "", float("nan"), "", None
    top, second = ranked[0], ranked[1]
    lead = num(scores, top) - num(scores, second)
    if not lead > 0:
        # first by the ranking's other keys (e.g. fewer NaN scores), not by a higher score
        return second, lead, ("no lead to test: first by the ranking's other keys, fewer undefined scores or "
                                   "the name on a tie, not by a higher score"), None
    c = compare(per_seed.get(top, ()), per_seed.get(second, ()))
    if is_resolved(c) and not c.diff > 0:
        # the point scores (from the gains averaged over seeds) put ``top`` first, the seeds' own scores
        # put ``second`` above it, resolved: the first place is contradicted, not led
        return second, lead, "contradicted by the seeds' scores (" + comparison_verdict(c).split(" (", 1)[1], c
    return second, lead, comparison_verdict(c), c


def gain_size_clause(largest_pct: float) -> str:
    """How large relative ERank gains are, in words (``largest_pct``: the largest |gain| in %)."""
    return "a few percent" if largest_pct < 10 else f"up to {largest_pct:.0f}%"


def _sides(ag: Agreement) -> str:
    return "one-sided" if ag.alternative == "greater" else "two-sided"


def partner_erank_reading(ag: Agreement, anchor: str) -> str:
    """What the rank relation between a partner's own ERank and the anchor's gain says.

    ``ag``: :func:`rankfusion.stats.agreement` with ``alternative="two-sided"``. Only a relation
    the permutation test resolves (``ag.backed``) is read, in the direction of its rho; anything
    else, or too few candidates to test, as unresolved (not as the absence of a relation).
    """
    where = f" (Spearman {fmt(ag.rho, '+.2f')}, {_sides(ag)} permutation {p_text(ag.p, ag.alpha)}, {ag.n} candidates)"
    if ag.backed and ag.rho > 0:
        return f"{where}: the flatter the partner's own spectrum, the more it flattens {anchor}'s."
    if ag.backed and ag.rho < 0:
        return f"{where}: the flatter the partner's own spectrum, the less it flattens {anchor}'s."
    return (f"{where}; whether the partner's own ERank explains the anchor's gains is unresolved here "
            "(the permutation test does not reject no relation" + (f"; {_cannot_reject(ag)}" if _cannot_reject(ag) else "")
            + ").")


def per_candidate_note(n_candidates: int) -> str:
    """What multiplicity the selection table's ``control_p`` / ``noise_like`` and task intervals carry:
    none (each candidate is tested on its own), and how many surrogates a family-wise reading needs:
    the smallest empirical p, 1 / (1 + n), must reach alpha after Holm's factor of k
    (:func:`rankfusion.stats.rejects`), so n >= k / alpha - 1 (:func:`rankfusion.stats.min_draws` at alpha / k)."""
    text = f"control_p, noise_like and the task-gain intervals test each candidate on its own at alpha {ALPHA:g}"
    if n_candidates < 2:
        return text
    need = min_draws(ALPHA / n_candidates)
    return (f"{text}, not adjusted over the {n_candidates} candidates; read together, Holm over them needs at "
            f"least {need} surrogates (--surrogates) to be able to reject")


def undefined_criterion_note(table) -> str | None:
    """What ``noise_like`` means for the candidates of a ``--paired`` table whose criterion is NaN
    (a gain <= 0, so no harmonic mean: Sec. 3.2's "no mutual enhancement"), or None when every
    criterion is defined. Such a criterion is never above its control (:func:`rankfusion.selection.
    noise_test`), so the flag says that the criterion cannot tell the candidate from noise, not that
    the candidate carries no information: the note names their task gains beside it."""
    undefined = table[table["criterion"].isna()].sort_values("candidate")
    if not len(undefined):
        return None
    gains = ", ".join(f"{r.candidate} {r.task_gain:+.3f} " + (
        f"[{r.task_gain_lo:+.3f}, {r.task_gain_hi:+.3f}]" if math.isfinite(r.task_gain_lo)
        else "(no interval: no spread over the replicates)") for r in undefined.itertuples())
    return (f"no criterion for {', '.join(undefined['candidate'])} (a gain through RTF <= 0: no mutual "
            "enhancement, Sec. 3.2); an undefined criterion is never above its control, so noise_like is True "
            f"whatever they carry: judge that by the task gains ({gains})")


def agreement_clause(ag: Agreement) -> str:
    """The words on a criterion-task agreement: "backed by the task" only when the permutation test
    rejects "no relation" (``ag.backed``)."""
    if not math.isfinite(ag.p):
        if ag.n < 3:
            return f"not testable with {ag.n} candidates (it needs 3)"
        return (f"not testable over the {ag.n} candidates: Spearman's rho is undefined (every candidate "
                "scores the same on one of the two)")
    how = "exact" if ag.exact else "Monte Carlo"
    txt = f"Spearman {fmt(ag.rho, '+.2f')}, {_sides(ag)} {how} permutation {p_text(ag.p, ag.alpha)} over {ag.n} candidates"
    if ag.backed:
        return txt + "; the ranking is backed by the task"
    cannot = _cannot_reject(ag)
    return txt + "; the ranking is not backed by the task" + (f" ({cannot})" if cannot else "")


def _cannot_reject(ag: Agreement) -> str:
    """``"no outcome could reject: ..."`` where the smallest attainable p is above alpha, else ``""``."""
    if not ag.min_p > ag.alpha:
        return ""
    return f"no outcome could reject: the smallest p {ag.n} candidates allow is {ag.min_p:.3g}, above {ag.alpha:g}"


def unresolved_against_base(comparisons: dict, p_adj: dict | None = None) -> list[str]:
    """The names whose comparison with the base (``{name: Comparison}``) is not resolved."""
    p_adj = p_adj or {}
    return [v for v, c in comparisons.items() if testable(c) and not is_resolved(c, p_adj.get(v))]
