"""The demo's one-page Markdown report (``OUT/report.md`` of ``rankfusion demo``).

:func:`build_report` writes one section per analysis (:data:`REPORT_SECTIONS`), each embedding its
figure and stating the findings in numbers; the judgements behind the words are the tested rules of
:mod:`rankfusion.verdicts`. Every number in the report is computed from the run's outputs
(:func:`rankfusion.demo.run_demo`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import stats, verdicts
from .selection import SUMMARY_COLUMNS
from .files import to_markdown
from .figures.collapse import remedies_table
from .verdicts import fmt as _fmt
from .verdicts import pm as _pmf


def _img(name: str, alt: str) -> str:
    return f"![{alt}](figures/{name}.png)"


@dataclass(frozen=True)
class ReportInputs:
    """What the report's sections draw on: the figure context, every family's result, the tables of
    the ``theorem`` and ``spectrum`` families (Theorem 3.1, effective rank of every array; None when
    not made) and timings."""

    ctx: object
    results: dict
    theorem: pd.DataFrame | None
    spectrum: pd.DataFrame | None
    seconds: float
    profile_name: str
    dataset_summary: dict
    cpu_seconds: float | None = None
    workers: int = 1

    @property
    def seeds(self) -> tuple:
        return tuple(self.ctx.seeds)


def build_report(ctx, results: dict, *, seconds: float, profile_name: str, dataset_summary: dict,
                 cpu_seconds: float | None = None, workers: int = 1) -> str:
    """The Markdown report: one section per analysis (:data:`REPORT_SECTIONS`, in order), each with
    its figure and computed numbers; a section whose family did not run is left out."""
    theorem, spectrum = (results[n].tables[n] if n in results else None for n in ("theorem", "spectrum"))
    r = ReportInputs(ctx, results, theorem, spectrum, seconds, profile_name, dataset_summary, cpu_seconds, workers)
    lines = []
    for section in REPORT_SECTIONS:
        lines += section(r)
    return "\n".join(lines) + "\n"


def header_section(r: ReportInputs) -> list[str]:
    """Title and what was run: dataset, model size, seeds, runs trained / reused, wall and CPU time."""
    ctx, ds, prof = r.ctx, r.dataset_summary, r.ctx.profile
    # every run folder used, over the figures' own cache and the families' dataset caches (dose, collapse)
    caches = [ctx.cache] + [c for res in r.results.values() for c in getattr(res, "caches", ()) if c is not ctx.cache]
    used = {}
    for c in caches:
        for rec in c.used.values():
            used[rec.run_dir] = used.get(rec.run_dir, True) and rec.reused
    text = (f"Profile `{r.profile_name}`: synthetic dataset with {ds['videos']} videos "
            f"({ds['frames']} frames, {ds['classes']} classes, modalities "
            f"{', '.join(ds['modalities'])}); R3D runs with d_model={prof.model.get('d_model')}, "
            f"{prof.train.get('epochs')} epochs, seeds {list(prof.seeds)}; features of the test split at "
            f"observation ratios {list(prof.obs_ratios)}. {len(used)} runs "
            f"({sum(not reused for reused in used.values())} trained now, the rest reused from the cache). "
            f"Wall time {r.seconds:.0f} s"
            + ("" if r.cpu_seconds is None else f", CPU time {r.cpu_seconds:.0f} s ({r.workers} worker process"
               f"{'es' if r.workers != 1 else ''})")
            + ". Every figure is traced in `figures/manifest.json`.")
    return ["# rankfusion demo report", "", text, ""]


def modality_section(r: ReportInputs) -> list[str]:
    """Sec. 3.2 / Fig. 3: the ranking, whether it matches the construction (and why not), MoC."""
    if "modality" not in r.results:
        return []
    a, d = r.ctx.anchor, r.results["modality"].data
    cmp = d.comparison
    L = ["## Modality selection (Sec. 3.2, Fig. 3)", "", _img("modality_selection", "modality selection"), ""]
    ranked = ", ".join(f"{i + 1}. {c} ({_fmt(d.scores[c])})" for i, c in enumerate(d.ranking))
    second, lead, verdict, lead_cmp = verdicts.top_lead(d.ranking, d.scores, d.seed_scores)
    # the tested difference with its 95 % interval beside the verdict: it is the difference of the seeds'
    # mean scores, not the point scores' lead (a score is the criterion of the gains averaged over seeds)
    lead_ci = (f", {verdicts.diff_ci(lead_cmp)} over the seeds' scores"
               if lead_cmp is not None and verdicts.testable(lead_cmp) else "")
    # with the expected partner first, the same test is a claim of the claims table (Holm over its family)
    # the pair is the ranking's top two, chosen on the same seeds: its p-value is optimistic (a screen)
    scope = ("unadjusted here; the claims table adjusts it over its family" if cmp.get("matches") and lead_cmp is not None
             else "unadjusted, and the pair is the ranking's top two, picked on the same seeds: a screen")
    lead_txt = (f" The first's lead over the second, {second}, is {_fmt(lead)} by the point scores{lead_ci} "
                f"({verdict}" + (f"; {scope})" if lead_cmp is not None else ")")
                + ("." if verdict.startswith("resolved") else ": the order of the first two is not a finding.")
                ) if second else ""
    L.append(f"Ranking of candidates fused with {a} by the mean harmonic mean of ERank gains over "
             f"observation ratios: {ranked}.{lead_txt}")
    if d.reasons:
        L.append("NaN scores (a gain <= 0, no mutual enhancement): "
                 + "; ".join(f"{c}: {why}" for c, why in d.reasons.items()) + ".")
    if cmp["matches"] is True:
        L.append(f"This **matches** the construction of the dataset: {cmp['expected']} is the most "
                 f"complementary partner of {a} by design (docs/datasets.md)"
                 + ("." if not second or verdict.startswith("resolved") else
                    ", but its first place is not a finding (its lead above is "
                    + ("contradicted)." if verdict.startswith("contradicted") else "unresolved).")))
    elif cmp["matches"] is False:
        L += _selection_mismatch(r)
    elif cmp.get("expected") is not None:
        L.append(f"No candidate has a defined criterion (every harmonic mean is NaN), so the order above is "
                 f"a tie-break and says nothing about {cmp['expected']}, the most complementary partner by design.")
    if d.moc:
        best_moc = max(d.moc, key=d.moc.get)
        L.append(f"Task accuracy of the same runs (MoC, mean over the grid): "
                 + ", ".join(f"{a}+{c} {_fmt(v)} %" for c, v in sorted(d.moc.items(), key=lambda kv: -kv[1]))
                 + f"; the highest mean is {a}+{best_moc}'s"
                 + (f", {'the' if best_moc == cmp.get('expected') else 'not the'} pairing expected by construction"
                    if cmp.get("expected") else "")
                 + f" (a description, not tested; the task evidence below tests each pairing against {a} alone).")
    if d.task_gain:
        gains = ", ".join(f"{c} {_fmt(g, '+.2f')} " + ("[n/a: fewer than two seeds an arm, or no spread]" if math.isnan(lo) or math.isnan(hi)
                                                      else f"[{_fmt(lo, '+.2f')}, {_fmt(hi, '+.2f')}]")
                          for c, (g, (lo, hi)) in d.task_gain.items())
        L.append(f"Task evidence: MoC gain of each pairing over {a} alone at the pairs' trunk width (d_model "
                 f"twice the pair's, so both trunks are equally wide), mean [{int(round(100 * (1 - stats.ALPHA)))} % "
                 "Welch interval of the difference of "
                 "the two models' means over seeds, each candidate's unadjusted; per-run values in "
                 "`figures/modality_runs.csv`]: "
                 f"{gains}.")
        if d.agreement is not None:
            L.append("Agreement of the criterion with the task (mean score against mean MoC gain over the "
                     f"candidates): {verdicts.agreement_clause(d.agreement)}.")
    L += ["", to_markdown(r.results["modality"].tables["summary"][list(SUMMARY_COLUMNS)]), ""]
    return L


def _selection_mismatch(r: ReportInputs) -> list[str]:
    """Why the criterion's top candidate is not the one expected by construction, in numbers."""
    a, d = r.ctx.anchor, r.results["modality"].data
    exp, found = d.comparison["expected"], d.comparison["found"]
    gtxt = "; ".join(f"obs {o:g}: gain of {a} {_fmt(v['anchor'], '+.2f')}, gain of {exp} "
                     f"{_fmt(v['candidate'], '+.2f')}" for o, v in d.gains_of(exp).items())
    rel = d.relative_gain_pct
    rtxt = "; ".join(f"{a}+{c}: {a} {_fmt(v['anchor'], '+.1f')}%, {c} {_fmt(v['candidate'], '+.1f')}%"
                     for c, v in rel.items() if c in (exp, found))
    L = [f"By its point scores the ranking does **not match** the construction: {exp}, the most complementary partner of {a} "
         f"by design (docs/datasets.md), ranks {d.comparison['expected_rank']} and {found} ranks first. "
         f"Gains of the {a}+{exp} pair: {gtxt}."]
    top = max(abs(x) for c, v in rel.items() if c in (exp, found) for x in v.values())
    # the two pairings are different models: Welch's t over their seeds' scores (docs/analysis.md: pairing)
    noise = verdicts.score_gap_clause(stats.compare(d.seed_scores.get(found, ()), d.seed_scores.get(exp, ())),
                                      found, exp)
    L.append(f"Why we think so: the gains are {verdicts.gain_size_clause(top)} of each modality's ERank before "
             f"fusion (mean over ratios: {rtxt}); {noise}; and the effective-rank gain measures how much the "
             "token fuser flattens each spectrum, not how much task information the partner brings "
             "(compare the accuracies below).")
    summ = r.results["modality"].tables["summary"]
    before = summ.groupby("candidate")["erank_candidate_before"].mean().sort_values(ascending=False)
    anchor_gain = summ.groupby("candidate")["gain_anchor"].mean()
    relation = stats.agreement(before.to_numpy(), anchor_gain[before.index].to_numpy(), alternative="two-sided")
    L.append("ERank of each candidate before fusion (mean over ratios): "
             + ", ".join(f"{c} {_fmt(v)}" for c, v in before.items())
             + f"; {a}'s gain with each: " + ", ".join(f"{c} {_fmt(anchor_gain[c], '+.2f')}" for c in before.index)
             + verdicts.partner_erank_reading(relation, a))
    nz = r.results.get("noise")
    if nz is not None and r.ctx.partner == exp:
        clean, large = nz.data.gain.get((exp, "clean", a)), nz.data.gain.get((exp, "large", a))
        rise = nz.data.gain_change(exp, a)
        if clean is not None and large is not None and verdicts.change_verdict(rise) == "rises":
            L.append(f"The noise experiment below points the same way: Gaussian noise on {exp} *raises* "
                     f"{a}'s gain from {_fmt(clean, '+.2f')} (clean) to {_fmt(large, '+.2f')} (large noise; "
                     f"{verdicts.diff_ci(rise)}, {verdicts.comparison_verdict(rise, unadjusted=True)}, paired by seed). "
                     f"Blending channels that carry isotropic noise flattens the receiver's spectrum, so "
                     f"the anchor's side of the criterion rewards a partner that spreads energy over many "
                     "directions, whether that energy is complementary information or noise: noise alone "
                     f"raises {a}'s gain.")
    return L


def spectra_section(r: ReportInputs) -> list[str]:
    """Figs. 2 / 9: ERank before / after RTF per modality and of the stacked fused features."""
    if "spectra" not in r.results:
        return []
    a, p, d = r.ctx.anchor, r.ctx.partner, r.results["spectra"].data
    L = ["## Spectra before and after fusion (Figs. 2 and 9)", "", _img("spectra", "spectra"), ""]
    L.append(f"Mean ± sd over {d.n_seeds} seeds (the curves are the first seed's): "
             + "; ".join(f"{m}: ERank {_pmf(d.erank[(m, 'before')], d.erank_sd.get((m, 'before')))} before, "
                         f"{_pmf(d.erank[(m, 'after')], d.erank_sd.get((m, 'after')))} after RTF (gain "
                         f"{_pmf(d.gain[m], d.gain_sd.get(m), '+.2f')})" for m in (a, p)) + ".")
    t = d.stacked_test  # two different models: Welch's t over seeds
    higher = "higher" if verdicts.is_resolved(t) and t.diff > 0 else (
        "lower" if verdicts.is_resolved(t) else "not resolved")
    L.append(f"Stacked fused features entering the temporal fuser: ERank {_pmf(d.stacked_rtf, d.stacked_rtf_sd)} "
             f"with RTF vs {_pmf(d.stacked_plain, d.stacked_plain_sd)} for the plain fusion without RTF "
             f"(difference {verdicts.diff_ci(t)}: {higher} with RTF; {verdicts.comparison_verdict(t, unadjusted=True)}).")
    return L + [""]


def spectrum_section(r: ReportInputs) -> list[str]:
    """Numerical and effective rank of every array of the pair's feature file."""
    if r.spectrum is None:
        return []
    return ["### Effective rank of every exported array", "", to_markdown(r.spectrum), ""]


def theorem_section(r: ReportInputs) -> list[str]:
    """Theorem 3.1 on the exported features: each direction's ERank change, assumptions and verdict."""
    if r.theorem is None:
        return []
    L = ["## Theorem 3.1 on the exported features", ""]
    for t in r.theorem.itertuples():
        L.append(f"- {t.direction}: ERank {_fmt(t.erank_before)} -> {_fmt(t.erank_after)} "
                 f"({_fmt(t.erank_change, '+.3f')}) for alpha={t.alpha}, k={t.k}, |C_low|={t.n_low}; "
                 f"assumptions {'all hold' if t.assumptions_hold else 'fail: ' + t.failed}; verdict: {t.verdict}.")
    return L + [""]


def noise_section(r: ReportInputs) -> list[str]:
    """Figs. 6 / 7: calibrated sigmas, ERank gains and MoC from clean to large noise on each modality."""
    if "noise" not in r.results:
        return []
    a, p, d = r.ctx.anchor, r.ctx.partner, r.results["noise"].data
    L = ["## Noise robustness (Figs. 6 and 7)", "", _img("noise_gains", "ERank gains under noise"), "",
         _img("noise_moc", "MoC under noise"), ""]
    L.append("Calibration: sigma (in units of the modality's input RMS) is chosen so that the noisy "
             "modality's token-fuser input changes by the same relative Frobenius amount "
             f"({', '.join(_fmt(t) for t in r.ctx.profile.noise_targets)}) for every modality and training seed "
             "(docs/analysis.md). Sigmas found (mean ± sd over seeds): "
             + ", ".join(f"{nm} {lv} {_pmf(v, d.sigma_std.get((nm, lv)), '.3f')} (change "
                         f"{_fmt(d.achieved[(nm, lv)], '.3f')})" for (nm, lv), v in d.sigmas.items()) + ".")
    g, gs, m, ms = d.gain, d.gain_std, d.moc, d.moc_std

    def gtxt(k):
        return _pmf(g.get(k), gs.get(k), "+.2f")

    def mtxt(k):
        return _pmf(m.get(k), ms.get(k))

    for nm in (p, a):
        L.append(f"- noise on {nm}: gain of {a} {gtxt((nm, 'clean', a))} -> {gtxt((nm, 'large', a))}, "
                 f"gain of {p} {gtxt((nm, 'clean', p))} -> {gtxt((nm, 'large', p))} (clean -> large); "
                 f"MoC with RTF {mtxt((nm, 'clean', 'with RTF'))} -> {mtxt((nm, 'large', 'with RTF'))} %, without RTF "
                 f"{mtxt((nm, 'clean', 'without RTF'))} -> {mtxt((nm, 'large', 'without RTF'))} % (± sd over seeds).")
    return L + [""]


def exchange_section(r: ReportInputs) -> list[str]:
    """Fig. 5: MoC per exchange ratio and the best ratio."""
    if "exchange" not in r.results:
        return []
    d = r.results["exchange"].data
    return ["## Exchange ratio (Fig. 5)", "", _img("exchange_ratio", "exchange ratio"), "",
            "MoC (mean over observation and prediction ratios): "
            + ", ".join(f"{int(round(100 * k))}% -> {_fmt(v)} %" for k, v in d.moc.items())
            + f"; highest mean at {int(round(100 * d.best))}% (a description: the ratios' differences are not "
            "tested here; the per-seed spread is in the figure's table).", ""]


def angles_section(r: ReportInputs) -> list[str]:
    """Table 6: mean principal angle per direction."""
    if "angles" not in r.results:
        return []
    d = r.results["angles"].data
    return ["## Complementarity angles (Table 6)", "", _img("angles", "principal angles"), "",
            "Mean principal angle between X's 90%-energy dominant subspace and Y's injected channels: "
            + ", ".join(f"{x}: {_fmt(v, '.1f')} deg" + (f" ({(d.why_nan or {})[x]})" if x in (d.why_nan or {}) else "")
                        for x, v in d.angle.items()) + ".", ""]


def ablation_section(r: ReportInputs) -> list[str]:
    """Tables 2, 3, 8, 9: MoC per variant against R3D, and which differences the seeds cannot resolve."""
    if "ablation" not in r.results:
        return []
    d = r.results["ablation"].data
    L = ["## Ablations (Tables 2, 3, 8, 9)", "", _img("ablation", "ablations"), ""]
    base = d.moc.get("R3D (RTF)")
    sd = d.std
    L.append(f"MoC (mean over the grid; +- std over the {len(r.seeds)} seeds): " + ", ".join(
        f"{v}: {_fmt(m)}" + (f" +- {_fmt(sd[v])}" if np.isfinite(sd.get(v, np.nan)) else "") + " %"
        + ("" if v == "R3D (RTF)" or base is None else f" ({_fmt(m - base, '+.2f')})")
        for v, m in d.moc.items()) + ".")
    tests = d.against("R3D (RTF)")  # other models: Welch's t over seeds, Holm over the variants
    if tests:
        adj = dict(zip(tests, verdicts.holm(list(tests.values()))))
        m = sum(verdicts.testable(c) for c in tests.values())
        scope = f"{m} variants" if m == len(tests) else f"{m} of the {len(tests)} variants with two seeds or more an arm and some spread"
        L.append(f"Each variant against R3D (RTF) (Welch's t over seeds, Holm over the {scope}): "
                 + "; ".join(f"{v} {verdicts.diff_ci(c)} ({verdicts.comparison_verdict(c, adj[v], m)})"
                             for v, c in tests.items()) + ".")
        within = verdicts.unresolved_against_base(tests, adj)
        if within:
            L.append("Not resolved from R3D by this many runs: " + ", ".join(within) + ".")
        if "dose" in r.results and any(v.startswith("W/O RTF") for v in tests):
            L.append("Where the dose sweeps' base setting is this dataset, W/O RTF and R3D are the same runs as the "
                     "claims table's \"RTF helps accuracy\" there: the same test, adjusted in each table's own "
                     "family; the larger adjusted p is the conservative reading.")
    return L + ["", "Tables: `figures/ablation.md`, `figures/exchange_ratio.md`, `figures/angles.md`, "
                "`figures/noise_sigmas.md`, `figures/modality_ranking.md`.", ""]


def _dose_report_section(r: ReportInputs) -> list[str]:
    res = r.results.get("dose")
    if res is None or res.data is None:
        return []
    return dose_section(res.data, anchor=r.ctx.anchor, partner=r.ctx.partner)


def _dose_cell_text(dose, dial, level, model, q="moc") -> str:
    c = dose.cell(dial, level, model, q)
    if c is None:
        return "n/a"
    return _fmt(c.mean) + ("" if not np.isfinite(c.sd) else f" ± {_fmt(c.sd)}")


def _verdict_text(c) -> str:
    return f"{verdicts.diff_ci(c.test)} ({c.verdict})"


def dose_section(dose, *, anchor: str, partner: str) -> list[str]:
    """Report lines of the dose-response family: MoC per dial level, oracle, verdicts, reliance."""
    L = ["## Dose-response: complementarity and imbalance", "", _img("dose", "dose-response"), ""]
    L.append(f"MoC (%, mean over the grid; mean ± sd over seeds, ddof = 1) of the anchor alone ({anchor}; also at the "
             f"fused models' trunk width M x D, since R3D stacks its modality tokens and a one-modality model with "
             f"the same D is half as wide), the "
             f"plain fusion ({anchor}+{partner}, no RTF) and R3D ({anchor}+{partner} with RTF) on datasets generated "
             f"with each dial setting (the other dials at the base {dose.dials.get('base')}). Each difference is "
             f"given with its {int(round(100 * (1 - stats.ALPHA)))} % interval and Welch's t over seeds; it is "
             f"**resolved** only when p ≤ {stats.ALPHA:g} (per comparison, unadjusted: the claims table adjusts "
             f"its family); otherwise it is unresolved, never a finding, and the verdict states the difference "
             f"the design could have detected ({100 * stats.POWER:g} % power). Oracle: the generator's best attainable next-action accuracy "
             f"(%) from the hidden factors (synth.json), an upper reference, not a MoC.")
    L.append("")
    orc = {(d, lv, sub): v for d, lv, sub, v in dose.oracle}
    models = ("anchor only", "anchor only, fused width", "plain fusion", "R3D")
    rows = ["| dial | level | " + " | ".join(models) + " | oracle " + anchor + " | oracle " + anchor + "+"
            + partner + " | fusion helps (plain - anchor) | at equal width (plain - wide anchor) "
            "| RTF helps (R3D - plain) |",
            "|---|---|---|---|---|---|---|---|---|---|---|"]
    for dial in ("complementarity", "imbalance"):
        for level in dict.fromkeys(p.level for p in dose.points if p.dial == dial):
            verdict = []
            for label in ("fusion helps (plain fusion - anchor only)",
                          "fusion helps at equal width (plain fusion - anchor only, fused width)",
                          "RTF helps (R3D - plain fusion)"):
                c = next((c for c in dose.comparisons_of(dial, label) if c.level == level), None)
                verdict.append(_verdict_text(c) if c else "n/a")
            rows.append(f"| {dial} | {level:g} | " + " | ".join(_dose_cell_text(dose, dial, level, m) for m in models)
                        + f" | {_fmt(orc.get((dial, level, anchor)))} | {_fmt(orc.get((dial, level, f'{anchor}+{partner}')))}"
                        + " | " + " | ".join(verdict) + " |")
    L += rows + [""]
    rel = [c for c in dose.comparisons if c.dial == "imbalance" and c.quantity.startswith("reliance")]
    if rel:
        L.append("Reliance (MoC points lost when the modality's input comes from another test video of "
                 "similar length, read at the same relative times; mean ± sd over seeds), against imbalance. "
                 "A donor read at the same relative time shows much the same action, so this swap sees only "
                 "what is specific to each video: a reliance near 0 does not mean the model ignores the "
                 "modality (an rgb-only model scores about 0 on its only input; docs/analysis.md, "
                 "\"Modality utilization\", compares the random-time swap):")
        L.append("")
        for c in rel:
            m = c.quantity.split(" ", 1)[1]
            L.append(f"- imbalance {c.level:g}, reliance on {m}: R3D {_dose_cell_text(dose, 'imbalance', c.level, 'R3D', c.quantity)}, "
                     f"plain fusion {_dose_cell_text(dose, 'imbalance', c.level, 'plain fusion', c.quantity)}; "
                     f"R3D - plain {_verdict_text(c)}.")
        L.append("")
    L.append("Tables: `figures/dose_moc.md`, `figures/dose_comparisons.md` (every difference with its verdict), "
             "`figures/dose_reliance.md`, `figures/dose_oracle.md`; per-run values in `figures/dose_runs.csv`.")
    L.append("")
    return L


#: The claims the dose sweeps test: (claim, comparison label, dials it is tested along, sign).
CLAIMS = (
    ("fusion helps (plain fusion > anchor only)", "fusion helps (plain fusion - anchor only)",
     ("complementarity", "imbalance"), +1),
    ("fusion helps at equal trunk width (plain fusion > anchor only at width M x D)",
     "fusion helps at equal width (plain fusion - anchor only, fused width)", ("complementarity", "imbalance"), +1),
    ("RTF raises the effective rank of the fused features", "RTF raises effective rank (R3D - plain fusion)",
     ("complementarity", "imbalance"), +1),
    ("RTF helps accuracy (R3D > plain fusion)", "RTF helps (R3D - plain fusion)", ("complementarity", "imbalance"), +1),
    ("RTF raises reliance on {partner} (R3D relies more on it than plain fusion)",
     "RTF changes reliance on {partner} (R3D - plain fusion)", ("imbalance",), +1),
)


def claim_rows(dose, *, partner: str) -> list[tuple[str, str, object, int]]:
    """``(claim, setting, DoseComparison, sign)`` for every *distinct* comparison of :data:`CLAIMS`.

    A setting both sweeps share (e.g. complementarity 1 at the base imbalance 1 is also imbalance 1
    at the base complementarity 1) is one dataset and one set of runs: it is listed once, its
    setting naming both.
    """
    base = dict(dose.dials.get("base", {}))
    rows, seen = [], {}
    for claim, label, dials, sign in CLAIMS:
        claim, label = claim.format(partner=partner), label.format(partner=partner)
        for dial in dials:
            for c in dose.comparisons_of(dial, label):
                key = (label, tuple(sorted({**base, dial: float(c.level)}.items())))
                setting = f"{dial} {c.level:g}"
                if key in seen:
                    i = seen[key]
                    rows[i] = (rows[i][0], f"{rows[i][1]} = {setting} (same runs)", rows[i][2], rows[i][3])
                    continue
                seen[key] = len(rows)
                rows.append((claim, setting, c, sign))
    return rows


def _claim_cell(c, sign, p_adj, family: int) -> str:
    v = verdicts.claim_verdict(c, sign, p_adj)
    if v == "unresolved" and verdicts.testable(c):
        return f"unresolved ({verdicts.detectable(c, family)})"
    return v


def claims_section(results: dict, *, anchor: str, partner: str) -> list[str]:
    """Which of the paper's claims hold on this data, for which dial settings.

    Every distinct comparison is tested once (Welch's t over seeds, :func:`rankfusion.stats.compare`)
    and adjusted in one Holm family (:func:`rankfusion.stats.adjust`): the dose sweeps' and the
    modality selection's tests form this table's family; the collapse dial's rows keep the adjusted
    p of their own family, the collapse section's. One exception, said in both sections: where the
    ablation's data is the dose sweeps' base setting, its W/O RTF - R3D is this table's "RTF helps
    accuracy" there and is adjusted in the ablation's family too. Each row gives the seeds of
    each arm (``n``): a seed whose value is undefined is left out of its test. A verdict is taken on the adjusted p at
    :data:`rankfusion.stats.ALPHA`.
    """
    dose = results["dose"].data if "dose" in results else None
    rows = claim_rows(dose, partner=partner) if dose is not None else []
    tests = [(claim, setting, dc.test, sign) for claim, setting, dc, sign in rows]
    mod = results.get("modality")
    n_dose = len(tests)
    if mod is not None:
        tests += selection_claim_rows(mod.data)
    family = [t for _, _, t, _ in tests]
    adj = verdicts.holm(family)
    m = sum(verdicts.testable(t) for t in family)
    # (claim, setting, test, sign, adjusted p, family size, family name) of every row
    table = [(*row, pa, m, "") for row, pa in zip(tests, adj)]
    mc = 0
    if "collapse" in results:
        mc = results["collapse"].data.family
        table += [(*row, pa, mc, "collapse") for *row, pa in collapse_claim_rows(results["collapse"])]
    pct = int(round(100 * (1 - stats.ALPHA)))
    L = ["## The paper's claims on this data", ""]
    own = (f"Holm-adjusted over the family of the {m} test{'s' if m != 1 else ''} of the dose sweeps and the "
           f"modality selection below" if m else "of single tests (no test of the dose sweeps or the modality "
           "selection here)")
    if mc:
        own += (f"; the collapse dial's rows keep the Holm p of their own family, the {mc} tests of the collapse "
                "section")
    # the ablation's W/O RTF - R3D is the base setting's "RTF helps accuracy" when its data is that setting
    own += (" (each test is adjusted in one family" + ("; the ablation section names the one it also adjusts in "
                                                        "its own" if "ablation" in results and dose is not None else "")
            + ")" if m or mc else "")
    L.append(f"Each claim is tested per dial setting of the dose-response sweeps and of the collapse dial: the difference of the two "
             f"models' means over seeds with its {pct} % interval and Welch's t-test (it ignores what a seed "
             "ties between two models, its batch order and the weights both build alike: valid where that tie "
             f"is not negative, at some cost in power; docs/analysis.md), p-values {own} (family-wise error {stats.ALPHA:g} each). `holds` means "
             f"adjusted p ≤ {stats.ALPHA:g} in the "
             "claimed direction, `contradicted` resolved in the other direction, `unresolved` otherwise, with "
             f"the difference the design detects with {100 * stats.POWER:g} % power: at most the first number, the level "
             f"{stats.ALPHA:g}/m at which Holm over the row's family of m tests rejects whatever the other tests give, "
             f"and at least the second, the unadjusted {stats.ALPHA:g}. The "
             f"intervals are unadjusted {pct} % intervals, so one can exclude 0 while its Holm p is above "
             f"{stats.ALPHA:g}. A setting both sweeps share is one set of runs, listed once.")
    L.append("")
    # n: the seeds each arm has (a run whose value is undefined, e.g. a NaN score, is left out)
    L += [f"| claim | setting | difference [{pct} % CI] | n | p | Holm p | verdict |", "|---|---|---|---|---|---|---|"]
    for claim, setting, t, sign, pa, size, name in table:
        where = f" ({name} family)" if name and verdicts.testable(t) else ""
        L.append(f"| {claim} | {setting} | {verdicts.diff_ci(t)} | {t.n_a}, {t.n_b} | {verdicts.p_cell(t.p, t.alpha)} | "
                 f"{verdicts.p_cell(pa, t.alpha)}{where} | {_claim_cell(t, sign, pa, size)} |")
    L.append("")
    if mod is not None:
        L += [_selection_outcome(mod.data, tests[n_dose:], adj[n_dose:len(tests)], m), ""]
    return L


def selection_claim_rows(d) -> list[tuple[str, str, object, int]]:
    """``(claim, setting, Comparison, sign)``: the claim "the criterion picks the complementary
    partner" as planned comparisons, the expected partner's per-seed scores against each other
    candidate's (Welch's t), so that no comparison is chosen by the scores it tests. None without
    an expected partner."""
    exp = d.comparison.get("expected")
    if exp is None or d.comparison.get("matches") is None:
        return []
    return [(f"the criterion scores the complementary partner above {c} ({exp} minus {c})", "demo dataset",
             stats.compare(d.seed_scores.get(exp, ()), d.seed_scores.get(c, ())), +1)
            for c in d.ranking if c != exp]


def _selection_outcome(d, rows, p_adj, m: int) -> str:
    """The claims section's sentence on "the criterion picks the complementary partner": its planned
    comparisons ``rows`` (:func:`selection_claim_rows` of ``d``, adjusted p ``p_adj`` over the ``m`` tests
    of the family) read together: it holds when the expected partner scores resolvedly above every other
    candidate, is contradicted when one scores resolvedly above it."""
    cmp = d.comparison
    exp = cmp["expected"]
    family = f"Holm over the claims family's {m} test{'s' if m != 1 else ''}"
    if exp is not None and cmp["found"] is None:
        outcome = "not tested: no candidate has a defined criterion (every harmonic mean is NaN)."
    elif exp is not None and not rows:
        outcome = f"not tested: {exp} is the only candidate."
    elif not rows:
        outcome = "no expectation."
    elif not m or not any(verdicts.testable(t) for _, _, t, _ in rows):
        # the claims family may hold other tests (dose, collapse): what matters is whether these are tested
        outcome = ("unresolved: no comparison is tested (none has two seeds or more an arm and some spread: "
                   + ", ".join(sorted({verdicts.untested(t) for _, _, t, _ in rows})) + ").")
    else:
        others = [c for c in d.ranking if c != exp]  # the rows' order (selection_claim_rows)
        v = {c: verdicts.claim_verdict(row[2], +1, pa) for c, row, pa in zip(others, rows, p_adj)}
        above = [c for c, x in v.items() if x == "contradicted"]
        open_ = [c for c, x in v.items() if x != "holds" and x != "contradicted"]
        if above:
            outcome = (f"does not hold: {', '.join(above)} score{'s' if len(above) == 1 else ''} resolvedly above "
                       f"{exp} ({family}).")
        elif open_:
            untested_ = [c for c, row in zip(others, rows) if not verdicts.testable(row[2])]
            outcome = (f"unresolved: {exp} is not resolvedly above {', '.join(open_)} ({family}; the detectable "
                       "differences are in the table" + (f"; untested: {', '.join(untested_)}" if untested_ else "")
                       + ").")
        else:
            outcome = f"holds: {exp} scores resolvedly above every other candidate ({family})."
    return (f"The criterion picks the complementary partner (modality selection on the demo's dataset): "
            f"top candidate by point score {cmp['found'] or 'none'}, expected {exp} -> " + outcome
            + " See the modality-selection section for the scores.")


def collapse_claim_rows(res) -> list[tuple[str, str, object, int, float]]:
    """``(claim, setting, Comparison, sign, Holm p in the collapse family)`` of the collapse family's
    claims (not its MoC tests)."""
    rows = []
    for c, p_holm in zip(res.data.comparisons, res.data.p_holm):
        if c.quantity == "moc":
            continue
        rows.append((c.claim, f"collapse K={c.level:g}", c.test, c.sign, p_holm))
    return rows


def collapse_section(res) -> list[str]:
    """Report lines of the ``collapse`` family: the remedies table and the family's tests."""
    d = res.data
    hi = d.levels[-1]
    p = d.partner
    n = max((c.n_seeds for c in d.cells), default=0)
    ks = ", ".join(f"{k:g}" for k in d.levels)
    L = ["## Modality collapse and its remedies", "", _img("collapse", "collapse"), ""]
    L.append(f"Datasets of the collapse dial at K = {ks} (data seed {res.params['data_seed']}): {p} alone "
             f"knows each trip's direction, rgb has a hint of it that is right most of the time, and K sets how "
             f"hard {p}'s code is to learn. *Gain where only {p} decides*: the MoC drop when {p}'s input "
             f"comes from another video, counted on the test cut points only {p} can decide; for {p} alone "
             f"it is what is attainable. *Collapse index*: 100 x (1 - gain / attainable). Mean ± sd over "
             f"{n} seeds, at K = {hi:g}, and each arm's gain minus plain fusion's (Welch, Holm over the "
             f"family below):")
    L += ["", to_markdown(remedies_table(d)), ""]
    pct = int(round(100 * (1 - stats.ALPHA)))
    m = d.family
    scope = (f"{m} tests" if m == len(d.comparisons) else
             f"{m} of the {len(d.comparisons)} comparisons, those with two seeds or more an arm and some spread")
    L.append(f"Every test of the family (Welch's t over seeds, {pct} % interval, Holm-adjusted over the "
             f"{scope}; the claims table above adjusts over its own family):" if m else
             f"None of the {len(d.comparisons)} comparisons is tested: none has two seeds or more an arm and "
             "some spread (an untested row shows its difference alone):")
    L += ["", f"| claim | K | difference [{pct} % CI] | p | Holm p | verdict |", "|---|---|---|---|---|---|"]
    for c, pa in zip(d.comparisons, d.p_holm):
        L.append(f"| {c.claim} | {c.level:g} | {verdicts.diff_ci(c.test)} | {verdicts.p_cell(c.test.p, c.test.alpha)} | "
                 f"{verdicts.p_cell(pa, c.test.alpha)} | {_claim_cell(c.test, c.sign, pa, d.family)} |")
    return L + [""]


def dynamics_section(res, *, n_seeds: int) -> list[str]:
    """Report lines of the ``dynamics`` family: ERank change over training per model and name.

    A change is called a fall or a rise only when the paired t-test of final against initial ERank
    over seeds rejects "no change" after Holm's adjustment over the rows; otherwise (or with one
    seed) it is unresolved (the summary's ``verdict``, :func:`rankfusion.verdicts.change_verdict`).
    """
    summary = res.tables.get("summary")
    if summary is None or not len(summary):
        return []
    p = res.params
    L = ["## Rank dynamics over training (docs/monitor.md)", "", _img("dynamics", "rank dynamics"), "",
         f"Effective rank on {p.get('n_videos')} validation videos observed up to {p.get('obs_ratio')}, at "
         f"initialisation (epoch 0) and after epoch {int(summary['epochs'].iloc[0])}, mean over {n_seeds} seed(s) "
         f"(change +- std over seeds; paired t of final against initial ERank, Holm over the "
         f"{p.get('n_tests', len(summary))} distinct tests of the {len(summary)} rows; rows with identical values, "
         "e.g. a modality's tokens after and before the fuser without RTF, are one test, and a row with one seed or "
         "no spread is untested and not in the family):"]
    pct = int(round(100 * (1 - stats.ALPHA)))
    for r in summary.itertuples():
        std = f" +- {_fmt(r.change_std)}" if np.isfinite(r.change_std) else ""
        ci = (f", {pct} % CI [{_fmt(r.ci_low, '+.2f')}, {_fmt(r.ci_high, '+.2f')}]"
              if np.isfinite(r.ci_low) and np.isfinite(r.ci_high) else "")
        test = "" if not np.isfinite(r.p_holm) else f", {verdicts.p_text(r.p_holm)} adjusted"
        L.append(f"- {r.model}, {r.name}: {_fmt(r.erank_init)} -> {_fmt(r.erank_final)} "
                 f"({_fmt(r.change, '+.2f')}{std}{ci}; {r.verdict}{test}); lowest {_fmt(r.erank_min)}.")
    moc = summary.groupby("model")["val_moc_final"].first()
    # every other section evaluates each run's best-validation checkpoint, not its last epoch
    L += ["", "Validation MoC at the last epoch: " + ", ".join(f"{m} {_fmt(v)} %" for m, v in moc.items()) + ". "
          "These are the last epoch's weights; every other section evaluates each run's best-validation "
          "checkpoint (`best.pt`: the epoch where the validation score peaked, often an earlier one).",
          "Modality reliance over epochs is not reported (it is measured on finished runs: dose section).", ""]
    return L


def timeline_section(res) -> list[str]:
    """Report lines of the ``timeline`` family (Fig. 8): which videos are shown and their MoC."""
    d = res.data
    if d is None:
        return []
    L = ["## Timelines (Fig. 8)", "", _img("timeline", "ground truth and predicted future per video"), "",
         f"Test videos observed up to {d.obs:g}, seed {d.seed}: the videos with the largest, median and smallest "
         f"per-video MoC difference with - without RTF among {d.n_videos} (mean difference "
         f"{_fmt(d.mean_diff, '+.2f')} points; one seed, a picture of typical predictions, not a test):"]
    roles = {}
    for role, v in d.videos.items():  # with few test videos one video can fill several roles
        roles.setdefault(v, []).append(role)
    for v, rs in roles.items():
        L.append(f"- {' and '.join(rs)}: {v}, MoC " + ", ".join(f"{k} {_fmt(x)} %" for k, x in d.moc[v].items()) + ".")
    return L + [""]


#: The report's sections in order: each takes the :class:`ReportInputs` and returns its lines
#: (none when its family did not run).
REPORT_SECTIONS = (
    header_section,
    lambda r: claims_section(r.results, anchor=r.ctx.anchor, partner=r.ctx.partner),
    modality_section,
    spectra_section,
    spectrum_section,
    theorem_section,
    noise_section,
    exchange_section,
    angles_section,
    ablation_section,
    _dose_report_section,
    lambda r: collapse_section(r.results["collapse"]) if "collapse" in r.results else [],
    lambda r: dynamics_section(r.results["dynamics"], n_seeds=len(r.seeds)) if "dynamics" in r.results else [],
    lambda r: timeline_section(r.results["timeline"]) if "timeline" in r.results else [],
)
