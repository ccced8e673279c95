"""Collapse family: does fusion use a modality that holds unique information, and which remedy restores it?

On datasets of the generator's collapse dial (``rankfusion data synth --collapse K``) the partner
(depth) holds information no other modality has, coded ever more nonlinearly as K grows while the
anchor gets an easier, partial hint. For each level K the family trains plain fusion and the
partner alone; at the highest level, where collapse is tested, also R3D (RTF) and plain fusion with
each remedy of :mod:`rankfusion.remedies`. It measures per run (every seed of the profile):

* ``moc``: the grid-mean test MoC;
* ``reliance_<m>``: the MoC drop when m's input comes from another video (length-matched donors);
* ``decidable_gain``: that drop for the partner, counted only on the cut points only the partner
  can decide (:func:`rankfusion.data.synth.partner_only_cuts`); for the partner-alone model it is
  what the partner's information is worth there (the *attainable* gain);
* ``collapse_index``: ``1 - gain / attainable`` in % (:func:`rankfusion.utilization.collapse_index`),
  the attainable gain being the mean over the partner-alone model's seeds;
* ``erank_fused``: ERank of the stacked tokens after fusion (Eq. 1);
and the partner's token ERank over training epochs (``ranks.csv`` of the rank monitor).

Every verdict is a Welch test over seeds (:func:`rankfusion.stats.compare`) with Holm's
adjustment over the family's comparisons (:func:`rankfusion.stats.adjust`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .. import featurefiles, spectral, verdicts
from .._validation import InputError
from ..data.synth import prepare_dataset
from ..files import to_markdown, write_text
from ..profiles import PROFILES
from ..runcache import RunCache
from ..stats import ALPHA, POWER, Comparison, adjust, compare
from ..utilization import collapse_index
from .common import FigureResult, keys, require_generator_partner, run_set, save, table
from .context import FigureContext

#: The arms: label -> (role, options). ``pair`` arms fuse the anchor and the partner, ``partner``
#: is the partner alone (what is attainable from it). The remedies (docs/model.md, "Remedies
#: against modality collapse") take common settings of their papers: the anchor's tokens dropped
#: in half of the training samples (``modality_dropout`` anchor=0.5), auxiliary unimodal heads of
#: loss weight 1, OGM-GE with alpha 0.5 over those heads (Peng et al. use 0.1-0.8).
ARMS = {
    "plain fusion": ("pair", {"rtf": False}),
    "R3D (RTF)": ("pair", {}),
    "plain + modality dropout": ("pair", {"rtf": False, "modality_dropout": "anchor"}),
    "plain + unimodal heads": ("pair", {"rtf": False, "unimodal_heads": 1.0}),
    "plain + OGM-GE": ("pair", {"rtf": False, "unimodal_heads": 1.0, "ogm": 0.5}),
    "partner alone": ("partner", {}),
}
#: Share of training samples whose anchor tokens modality dropout removes.
ANCHOR_DROPOUT = 0.5
#: Arms trained at every level (plain fusion's use of the partner against what is attainable);
#: RTF and the remedies only at the highest, where collapse is tested.
EVERY_LEVEL = ("plain fusion", "partner alone")
BASELINE, PARTNER_ALONE = "plain fusion", "partner alone"
#: How the claims name what each arm adds to plain fusion.
NAMES = {"R3D (RTF)": "RTF", "plain + modality dropout": "modality dropout",
         "plain + unimodal heads": "adding unimodal heads", "plain + OGM-GE": "OGM-GE"}


def arm_args(ctx: FigureContext, arm: str) -> tuple[list, dict]:
    """``(modalities, run options)`` of one of :data:`ARMS` in ``ctx``."""
    role, opts = ARMS[arm]
    opts = dict(opts)
    if opts.get("modality_dropout") == "anchor":
        opts["modality_dropout"] = ((ctx.anchor, ANCHOR_DROPOUT),)
    return (ctx.pair if role == "pair" else [ctx.partner]), opts


@dataclass(frozen=True)
class CollapsePoint:
    """One trained run of the collapse family (one arm, collapse level and seed)."""

    level: float
    arm: str
    seed: int
    moc: float
    decidable_gain: float  # partner's reliance on the partner-only cut points (MoC points)
    erank_fused: float = float("nan")  # stacked tokens after fusion (fused arms)
    reliance: tuple = ()  # ((modality, MoC drop), ...) for the fused arms


@dataclass(frozen=True)
class CollapseCell:
    """Mean and seed spread of one quantity of one arm at one level, with the per-seed values."""

    level: float
    arm: str
    quantity: str  # "moc", "decidable_gain", "collapse_index", "erank_fused" or "reliance <modality>"
    mean: float
    sd: float
    n_seeds: int
    values: tuple = ()


@dataclass(frozen=True)
class CollapseComparison:
    """One tested difference of the family (Welch's t over seeds), with its claimed direction."""

    level: float
    claim: str
    quantity: str
    a: str  # the arm (or "arm at level") whose mean comes first in the difference
    b: str
    sign: int  # +1: the claim says a > b; -1: a < b
    test: Comparison

    def row(self, p_holm: float, family: int) -> dict:
        """The table row; ``mde_holm`` bounds from above what the Holm-adjusted family of ``family``
        tests detects with 80 % power (:meth:`rankfusion.stats.Comparison.mde_in_family`), ``mde``
        from below (unadjusted)."""
        t = self.test
        return {"level": self.level, "claim": self.claim, "quantity": self.quantity, "a": self.a, "b": self.b,
                "diff": t.diff, "ci_low": t.ci[0], "ci_high": t.ci[1], "p": t.p, "p_holm": p_holm, "test": t.test,
                "n_a": t.n_a, "n_b": t.n_b, "mde": t.mde,
                "mde_holm": t.mde_in_family(max(1, family)), "verdict": verdicts.claim_verdict(t, self.sign, p_holm)}


@dataclass(frozen=True)
class CollapseResult:
    """What the collapse family measured: per-run points, cells, the tested comparisons."""

    points: tuple
    cells: tuple
    comparisons: tuple
    p_holm: tuple  # Holm-adjusted p of each comparison, in order
    levels: tuple
    partner: str
    oracle: tuple = ()  # ((level, subset, exact attainable accuracy in %), ...)

    @property
    def family(self) -> int:
        """The number of tests the Holm adjustment runs over (the testable comparisons; 0 when none is)."""
        return sum(verdicts.testable(c.test) for c in self.comparisons)

    def cell(self, level, arm, quantity="moc") -> CollapseCell | None:
        for c in self.cells:
            if (c.level, c.arm, c.quantity) == (float(level), arm, quantity):
                return c
        return None

    def findings(self) -> dict:
        return {
            "cells": {f"K={c.level:g} {c.arm} {c.quantity}": [c.mean, c.sd, c.n_seeds] for c in self.cells},
            "comparisons": {f"K={c.level:g} {c.claim}": {k: v for k, v in c.row(p, self.family).items()
                                                          if k not in ("level", "claim")}
                            for c, p in zip(self.comparisons, self.p_holm)},
            "oracle": {f"K={lv:g} {sub}": v for lv, sub, v in self.oracle},
        }


# --------------------------------------------------------------------------- datasets and runs


def levels(profile) -> tuple:
    """The collapse levels K of the profile (ascending)."""
    return tuple(sorted(float(k) for k in profile.collapse["levels"]))


def dataset_root(ctx: FigureContext, level: float) -> Path:
    """The collapse dataset at ``level``, generated under ``<cache>/collapse/`` unless present."""
    prof = ctx.profile
    kwargs = {**prof.collapse.get("synth", prof.synth), "collapse": float(level)}
    seed = int(prof.collapse.get("data_seed", 0))
    return prepare_dataset(ctx.cache.cache_dir / "collapse" / f"s{seed}-k{level:g}", kwargs, seed=seed)


def _cache(ctx: FigureContext, level: float) -> RunCache:
    cache = RunCache(dataset_root(ctx, level), ctx.cache.cache_dir, ctx.profile, device=ctx.cache.device,
                     progress=ctx.cache.progress)
    cache.trained_now = ctx.cache.trained_now  # one record of what this session's workers trained
    return cache


def _plan(ctx: FigureContext) -> list[tuple]:
    """``[(level, arm, RunSet)]``: the arms of :data:`EVERY_LEVEL` at every level, the others at
    the highest; generates the collapse datasets."""
    if not ctx.profile.collapse:
        raise InputError(f"the profile has no collapse settings; use one of "
                         f"{[n for n, p in PROFILES.items() if p.collapse]}")
    # the family scores the partner on the cut points only the generator's partner can decide
    require_generator_partner(ctx, "collapse", "the only modality that decides its partner-only cut points")
    ks = levels(ctx.profile)
    out = []
    for k in ks:
        cache = _cache(ctx, k)
        for arm in ARMS:
            if arm not in EVERY_LEVEL and k != ks[-1]:
                continue
            mods, opts = arm_args(ctx, arm)
            fused = len(mods) > 1
            out.append((k, arm, run_set(ctx, f"collapse K={k:g} {arm}", mods, obs=(ctx.obs,) if fused else (),
                                        reliance=fused, cache=cache, **opts)))
    return out


def jobs(ctx: FigureContext) -> list:
    """The runs of every arm at every level (fused arms: features and reliance)."""
    return [runs for *_, runs in _plan(ctx)]


# --------------------------------------------------------------------------- measurements


def _points(ctx: FigureContext, plan) -> tuple[list, list]:
    """One :class:`CollapsePoint` per trained run, and the ``(cache, run)`` pairs read."""
    points, runs = [], []
    for level, arm, runset in plan:
        cache = runset.cache
        for rec in runset.records():
            runs.append((cache, rec))
            moc = float(cache.evaluate(rec)["moc"].mean())
            gain = cache.decidable_gain(rec, ctx.partner)
            rel, er = (), float("nan")
            if len(runset.modalities) > 1:
                rel = tuple((r.modality, float(r.drop)) for r in cache.reliance(rec).itertuples())
                fs = featurefiles.load_features(cache.features(rec, ctx.obs))
                er = float(spectral.effective_rank(featurefiles.stacked(fs, list(runset.modalities), "after")))
            points.append(CollapsePoint(level, arm, rec.seed, moc, gain, er, rel))
    return points, runs


def _cells(points) -> list[CollapseCell]:
    """Cells of every quantity; ``collapse_index`` of a fused arm's seed: ``100 * (1 - gain / attainable)``,
    attainable = the partner alone's mean decidable gain at the same level."""
    attain = {}
    for p in points:
        if p.arm == PARTNER_ALONE:
            attain.setdefault(p.level, []).append(p.decidable_gain)
    attain = {k: float(np.mean(v)) for k, v in attain.items()}
    groups: dict = {}
    for p in points:
        # every run has a MoC cell, NaN seeds and all: the cell says the arm ran at this level
        groups.setdefault((p.level, p.arm, "moc"), [])
        vals = {"moc": p.moc, "decidable_gain": p.decidable_gain, "erank_fused": p.erank_fused,
                **{f"reliance {m}": d for m, d in p.reliance}}
        if p.arm != PARTNER_ALONE and p.level in attain:
            vals["collapse_index"] = 100.0 * collapse_index(p.decidable_gain, attain[p.level])
        for q, v in vals.items():
            if np.isfinite(v):
                groups.setdefault((p.level, p.arm, q), []).append(v)
    cells = []
    for (level, arm, q), v in groups.items():
        sd = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
        mean = float(np.mean(v)) if v else float("nan")
        cells.append(CollapseCell(level, arm, q, mean, sd, len(v), tuple(float(x) for x in v)))
    return cells


def comparisons(cells, ks, partner: str) -> list[CollapseComparison]:
    """The family's tests (Welch's t over seeds, :func:`rankfusion.stats.compare`).

    * at each level: plain fusion's decidable gain against the partner alone's (collapse: below);
    * plain fusion's reliance on the partner at the highest level against the lowest;
    * at the highest level, for R3D and each remedy against plain fusion: the decidable gain
      (reduces collapse: above), MoC, and for R3D the stacked ERank after fusion.
    """
    idx = {(c.level, c.arm, c.quantity): c for c in cells}
    ran = {(c.level, c.arm) for c in cells}
    out = []

    def add(level, claim, q, a, b, sign, ka=None, kb=None):
        la = a if ka is None else f"{a} at K={ka:g}"
        lb = b if kb is None else f"{b} at K={kb:g}"
        ka, kb = level if ka is None else ka, level if kb is None else kb
        if (ka, a) in ran and (kb, b) in ran:
            # an arm that ran but has no cell of ``q``: every seed's value undefined, a test of no seed
            # (listed, so that the family keeps its size), not a comparison that silently vanishes
            va, vb = (getattr(idx.get(key), "values", ()) for key in ((ka, a, q), (kb, b, q)))
            out.append(CollapseComparison(level, claim, q, la, lb, sign, compare(va, vb, alpha=ALPHA)))

    lo, hi = ks[0], ks[-1]
    for k in ks:
        add(k, f"plain fusion uses {partner} below what it attains alone", "decidable_gain", BASELINE,
            PARTNER_ALONE, -1)
    if hi != lo:
        add(hi, f"plain fusion relies less on {partner} at K={hi:g} than at K={lo:g}", f"reliance {partner}",
            BASELINE, BASELINE, -1, ka=hi, kb=lo)
    for arm in ARMS:
        if arm in (BASELINE, PARTNER_ALONE):
            continue
        name = NAMES[arm]
        add(hi, f"{name} reduces collapse (uses {partner} more than plain fusion)", "decidable_gain", arm,
            BASELINE, +1)
        add(hi, f"{name} helps accuracy (MoC above plain fusion)", "moc", arm, BASELINE, +1)
    add(hi, "RTF raises the effective rank of the fused features", "erank_fused", "R3D (RTF)", BASELINE, +1)
    return out


def _oracle(ctx: FigureContext, ks) -> list[tuple]:
    """``[(level, subset, oracle accuracy %)]`` where the oracle is exact (every cut decision-bearing)."""
    out = []
    for k in ks:
        meta = json.loads((dataset_root(ctx, k) / "synth.json").read_text())
        if float(meta.get("oracle_exact_share", 1.0)) >= 1.0:
            out += [(k, sub, 100.0 * float(acc)) for sub, acc in sorted(meta.get("oracle", {}).items())]
    return out


def _partner_ranks(ctx: FigureContext, plan) -> pd.DataFrame:
    """The partner's token ERank over epochs (``ranks.csv``, stage "before" the fuser) of plain
    fusion and of the partner alone at every level, every seed."""
    rows = []
    for level, arm, runset in plan:
        if arm not in (BASELINE, PARTNER_ALONE):
            continue
        for rec in runset.records():
            r = pd.read_csv(rec.run_dir / "ranks.csv")
            r = r[(r.modality == ctx.partner) & (r.stage == "before")]
            rows.append(r[["epoch", "effective_rank"]].assign(level=level, arm=arm, seed=rec.seed))
    cols = ["level", "arm", "seed", "epoch", "effective_rank"]
    return pd.concat(rows, ignore_index=True)[cols] if rows else pd.DataFrame(columns=cols)


# --------------------------------------------------------------------------- outputs


def _tables(res: CollapseResult):
    cells = pd.DataFrame([{k: v for k, v in dataclasses.asdict(c).items() if k != "values"} for c in res.cells],
                         columns=["level", "arm", "quantity", "mean", "sd", "n_seeds"])
    comps = pd.DataFrame([c.row(p, res.family) for c, p in zip(res.comparisons, res.p_holm)],
                         columns=["level", "claim", "quantity", "a", "b", "diff", "ci_low", "ci_high", "p", "p_holm",
                                  "test", "n_a", "n_b", "mde", "mde_holm", "verdict"])
    pts = pd.DataFrame([{**{k: v for k, v in dataclasses.asdict(p).items() if k != "reliance"},
                         **{f"reliance_{m}": d for m, d in p.reliance}} for p in res.points])
    return cells, comps, pts


def remedies_table(res: CollapseResult) -> pd.DataFrame:
    """One row per arm at the highest level: MoC, reliance on the partner, decidable gain and
    collapse index as ``mean ± sd`` over seeds, and the arm's decidable gain minus plain fusion's
    with its (1 - alpha) interval and Holm-adjusted p (the report's remedies table)."""
    hi = res.levels[-1]
    vs = {c.a: (c, p) for c, p in zip(res.comparisons, res.p_holm)
          if c.level == hi and c.quantity == "decidable_gain" and c.b == BASELINE}
    pct = int(round(100 * (1 - ALPHA)))
    rows = []
    for arm in ARMS:
        row = {"arm": arm}
        for q, label in (("moc", "MoC"), (f"reliance {res.partner}", f"reliance on {res.partner}"),
                         ("decidable_gain", f"gain from {res.partner} where only it decides"),
                         ("collapse_index", "collapse index %")):
            c = res.cell(hi, arm, q)
            row[label] = verdicts.pm(c.mean, c.sd) if c is not None else "-"
        cmp, p = vs.get(arm, (None, None))
        row[f"gain vs plain fusion [{pct} % CI]"] = verdicts.diff_ci(cmp.test) if cmp is not None else "-"
        row["Holm p"] = verdicts.p_cell(p) if cmp is not None else "-"
        c = res.cell(hi, arm, "moc")
        row["seeds"] = c.n_seeds if c is not None else 0
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons_note(res: CollapseResult) -> str:
    """The line under ``collapse_comparisons.md``: the test, the Holm family and what ``mde_holm`` is."""
    m = res.family
    if not m:
        why = ", ".join(sorted({verdicts.untested(c.test) for c in res.comparisons}))
        return (f"no comparison of this table has two seeds or more an arm and some spread ({why}): none is tested "
                "(p, p_holm, mde and mde_holm are empty).")
    return (f"p: Welch's t over seeds; p_holm: Holm over the {m} comparisons of this table with two seeds or more an "
            f"arm and some spread (family-wise error {ALPHA:g}), and the verdict is taken on it; mde_holm and mde: the difference "
            f"the test detects with {100 * POWER:g} % power at {ALPHA:g}/{m} and at {ALPHA:g}.")


def remedies_note(res: CollapseResult) -> str:
    """The line under ``collapse_remedies.md``: the test of ``gain vs plain fusion`` and the Holm family
    of its ``Holm p`` (the comparisons of ``collapse_comparisons.md``), so the table read on its own says so."""
    m = res.family
    if not m:
        return "gain vs plain fusion: no comparison of the collapse family is tested (Holm p: NaN)."
    pct = int(round(100 * (1 - ALPHA)))
    return (f"gain vs plain fusion: difference of the means over seeds with its unadjusted {pct} % Welch interval; "
            f"Holm p: Welch's t over seeds, Holm-adjusted over the {m} tested comparisons of collapse_comparisons.md "
            f"(family-wise error {ALPHA:g}).")


def write_remedies(out, res: FigureResult, data: CollapseResult) -> None:
    """Write ``collapse_remedies.md`` (:func:`remedies_table` and :func:`remedies_note`) into ``out``."""
    write_text(Path(out) / "collapse_remedies.md", to_markdown(remedies_table(data)) + f"\n\n{remedies_note(data)}\n")
    res.files.append("collapse_remedies.md")


def _write(ctx: FigureContext, res: FigureResult, data: CollapseResult, ranks: pd.DataFrame) -> None:
    from .. import plots

    cells_df, comps_df, pts_df = _tables(data)
    table(ctx.out, pts_df, "collapse_runs", res)
    table(ctx.out, cells_df, "collapse_cells", res)
    table(ctx.out, comps_df, "collapse_comparisons", res, markdown=True, note=comparisons_note(data))
    table(ctx.out, ranks, "collapse_ranks", res)
    write_remedies(ctx.out, res, data)
    save(ctx.out, plots.plot_collapse(cells_df, ranks, arms=list(ARMS), baseline=BASELINE, alone=PARTNER_ALONE,
                                      partner=ctx.partner), "collapse", res, ctx.formats)


def make(ctx: FigureContext) -> FigureResult:
    """Modality collapse on demand: the partner's use against the collapse level for plain fusion,
    RTF and each remedy, against what the partner alone attains; MoC per arm; the partner's ERank
    over epochs. Every difference is a Welch test over seeds, Holm-adjusted over the family."""
    plan = _plan(ctx)
    ks = levels(ctx.profile)
    res = FigureResult("collapse", params={
        "levels": list(ks), "arms": {a: {"role": r, **o} for a, (r, o) in ARMS.items()},
        "every_level": list(EVERY_LEVEL), "data_seed": int(ctx.profile.collapse.get("data_seed", 0)),
        "obs_ratio_erank": ctx.obs, "alpha": ALPHA,
        "test": "Welch t over seeds (rankfusion.stats.compare), Holm over the family (rankfusion.stats.adjust)"})
    points, runs = _points(ctx, plan)
    cells = _cells(points)
    comps = comparisons(cells, ks, ctx.partner)
    p_holm = tuple(adjust([c.test.p for c in comps], "holm")) if comps else ()
    data = CollapseResult(tuple(points), tuple(cells), tuple(comps), p_holm, ks, ctx.partner, tuple(_oracle(ctx, ks)))
    res.run_keys = keys([r for _, r in runs])
    res.caches = list(dict.fromkeys(c for c, _ in runs))
    _write(ctx, res, data, _partner_ranks(ctx, plan))
    res.data = data
    return res
