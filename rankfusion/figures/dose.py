"""Dose-response (not in the paper): MoC, stacked ERank and modality reliance against the generator's dials.

Each point of the complementarity and imbalance sweeps (:func:`dose_settings`) is a synthetic
dataset of its own (generated under ``<cache>/dose/``), on which the anchor alone, the anchor alone
at the fused width, a plain fusion and R3D are trained for every seed; every difference between
models is tested over seeds (:class:`DoseComparison`).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import featurefiles, spectral, verdicts
from .._validation import InputError
from ..data.synth import dataset_matches, prepare_dataset
from ..files import to_markdown, write_text
from ..profiles import PROFILES
from ..runcache import RunCache
from ..stats import ALPHA, POWER, Comparison, compare
from .common import FigureResult, fused_width_anchor, keys, require_generator_partner, run_set, save, table
from .context import FigureContext

#: The three models of the dose-response family: label -> (modalities role, R3DConfig overrides).
#: "anchor only, fused width" is the anchor alone with d_model = M x D of the pair, so its trunk
#: (temporal fuser, heads: R3D stacks the M tokens to width M x D) is as wide as the fused models':
#: a one-modality R3D with the same D is half as wide, which alone gains a pure-noise partner
#: +3 MoC (docs/benchmarks.md, "Dials").
DOSE_MODELS = {"anchor only": ("anchor", {}), "anchor only, fused width": ("anchor_wide", {}),
               "plain fusion": ("pair", {"rtf": False}), "R3D": ("pair", {})}

#: Comparisons tabulated at every dial level: (label, model a, model b); the difference is a - b.
DOSE_COMPARISONS = (("fusion helps (plain fusion - anchor only)", "plain fusion", "anchor only"),
                    ("fusion helps at equal width (plain fusion - anchor only, fused width)", "plain fusion",
                     "anchor only, fused width"),
                    ("RTF helps (R3D - plain fusion)", "R3D", "plain fusion"),
                    ("R3D - anchor only", "R3D", "anchor only"))

# A difference is tested with Welch's t over seeds (rankfusion.stats.compare): the models compared
# share their batch order and the initial weights of the parts both have, a tie of unknown strength
# that Welch's test ignores (valid where the tie is not negative; docs/analysis.md).


@dataclass(frozen=True)
class DosePoint:
    """One trained run of the dose-response family (one model, dial level and seed)."""

    dial: str
    level: float
    model: str
    seed: int
    moc: float
    erank_fused: float
    reliance: tuple = ()  # ((modality, MoC drop), ...) for the fused models


@dataclass(frozen=True)
class DoseCell:
    """Mean and seed spread of one quantity of one model at one dial level."""

    dial: str
    level: float
    model: str
    quantity: str  # "moc", "erank_fused" or "reliance <modality>"
    mean: float
    sd: float  # over seeds, ddof = 1 (NaN with one seed)
    n_seeds: int
    values: tuple = ()  # the per-seed values, in seed order


@dataclass(frozen=True)
class DoseComparison:
    """A difference between two models (or two reliances) at one dial level, tested over seeds.

    ``test`` is :func:`rankfusion.stats.compare` of model a's per-seed values against model b's
    (Welch's t); ``verdict`` is its per-comparison verdict at :data:`rankfusion.stats.ALPHA`,
    unadjusted (the claims table adjusts its family, :func:`rankfusion.report.claims_section`).
    """

    dial: str
    level: float
    comparison: str
    quantity: str
    test: Comparison

    @property
    def diff(self) -> float:
        """mean of a - mean of b."""
        return self.test.diff

    @property
    def resolved(self) -> bool:
        return verdicts.is_resolved(self.test)

    @property
    def verdict(self) -> str:
        return verdicts.comparison_verdict(self.test, unadjusted=True)

    def row(self) -> dict:
        """The flat fields of the comparison tables."""
        t = self.test
        return {"dial": self.dial, "level": self.level, "comparison": self.comparison, "quantity": self.quantity,
                "diff": t.diff, "ci_low": t.ci[0], "ci_high": t.ci[1], "p": t.p, "test": t.test, "n_a": t.n_a,
                "n_b": t.n_b, "mde": t.mde, "resolved": self.resolved, "verdict": self.verdict}


@dataclass(frozen=True)
class DoseResult:
    """Everything the dose family measured: per-run points, cells, comparisons and the oracle."""

    points: tuple
    cells: tuple
    comparisons: tuple
    oracle: tuple  # ((dial, level, subset, oracle accuracy in %), ...)
    dials: dict = field(default_factory=dict)  # the dose settings used (levels, base dials, dataset)

    def cell(self, dial, level, model, quantity="moc") -> DoseCell | None:
        for c in self.cells:
            if (c.dial, c.level, c.model, c.quantity) == (dial, float(level), model, quantity):
                return c
        return None

    def comparisons_of(self, dial, comparison) -> list:
        return [c for c in self.comparisons if c.dial == dial and c.comparison == comparison]

    def findings(self) -> dict:
        return {
            "cells": {f"{c.dial}={c.level:g} {c.model} {c.quantity}": [c.mean, c.sd, c.n_seeds] for c in self.cells},
            "comparisons": {f"{c.dial}={c.level:g} {c.comparison}": {
                k: v for k, v in c.row().items() if k not in ("dial", "level", "comparison")}
                for c in self.comparisons},
            "oracle": {f"{d}={lv:g} {sub}": v for d, lv, sub, v in self.oracle},
        }


def dose_settings(profile) -> list[tuple[str, float, dict]]:
    """``(dial, level, generator dials)`` of every point of the sweeps (docs/analysis.md).

    The complementarity sweep runs at the base imbalance, the imbalance sweep at the base
    complementarity; a point both sweeps share is one dataset (and one set of runs).
    """
    d = profile.dose
    base = dict(d["base"])
    out = []
    for dial in ("complementarity", "imbalance"):
        for level in d[dial]:
            out.append((dial, float(level), {**base, dial: float(level)}))
    return out


def dataset_root(ctx: FigureContext, dials: dict) -> Path:
    """The dataset of one point of the sweeps: the figures' own when it is that point, else one
    generated under ``<cache>/dose/`` (unless present)."""
    prof = ctx.profile
    kwargs, seed = {**prof.dose.get("synth", prof.synth), **dials}, int(prof.dose.get("data_seed", 0))
    if dataset_matches(ctx.data_root, kwargs, seed=seed):
        return ctx.data_root
    tag = "-".join(f"{k[0]}{v:g}" for k, v in sorted(dials.items()))
    return prepare_dataset(ctx.cache.cache_dir / "dose" / tag, kwargs, seed=seed)


def _cache(ctx: FigureContext, dials: dict) -> RunCache:
    """The run cache of one dose dataset (:func:`dataset_root`)."""
    root = dataset_root(ctx, dials)
    if root == ctx.data_root:
        return ctx.cache  # the figures' own dataset is this point of the sweep: its runs are shared
    cache = RunCache(root, ctx.cache.cache_dir, ctx.profile, device=ctx.cache.device, progress=ctx.cache.progress)
    cache.trained_now = ctx.cache.trained_now  # one record of what this session's workers trained
    return cache


def _model_dials(ctx: FigureContext, model: str, dials: dict) -> dict:
    """The generator dials ``model`` is trained at, for a point of the sweeps at ``dials``.

    The imbalance dial scales only the partner's noise (the anchor's features, labels and splits
    are byte-identical across its levels, tests/test_synth.py), so the anchor-only models of the
    imbalance sweep are the runs of the base imbalance: the same computation, trained once.
    """
    if DOSE_MODELS[model][0].startswith("anchor"):
        return {**dials, "imbalance": float(ctx.profile.dose["base"]["imbalance"])}
    return dials


def run_args(ctx: FigureContext, model: str):
    """``(modalities, R3DConfig overrides)`` of one of :data:`DOSE_MODELS`."""
    role, opts = DOSE_MODELS[model]
    if role == "anchor_wide":
        mods, wide = fused_width_anchor(ctx)
        return mods, {**opts, **wide}
    return ([ctx.anchor] if role == "anchor" else ctx.pair), dict(opts)


def _plan(ctx: FigureContext) -> list[tuple]:
    """``[(dial, level, model, RunSet)]`` of every point of the sweeps and every model; generates
    the dose datasets."""
    if not ctx.profile.dose:
        raise InputError(f"the profile has no dose-response settings; use one of "
                         f"{[n for n, p in PROFILES.items() if p.dose]}")
    require_generator_partner(ctx, "dose", "the modality its complementarity and imbalance dials move")
    out = []
    for dial, level, dials in dose_settings(ctx.profile):
        for model in DOSE_MODELS:
            mods, opts = run_args(ctx, model)
            fused = len(mods) > 1
            out.append((dial, level, model, run_set(
                ctx, f"dose {dial}={level:g} {model}", mods, obs=(ctx.obs,) if fused else (), reliance=fused,
                cache=_cache(ctx, _model_dials(ctx, model, dials)), **opts)))
    return out


def jobs(ctx: FigureContext) -> list:
    """The runs of every model at every point of the sweeps (fused models: features and reliance)."""
    return [runs for *_, runs in _plan(ctx)]


def _oracle(ctx: FigureContext) -> list[tuple]:
    """``[(dial, level, subset, oracle accuracy %)]`` of the points whose oracle is exact."""
    oracle = []
    for dial, level, dials in dose_settings(ctx.profile):
        meta = json.loads((dataset_root(ctx, dials) / "synth.json").read_text())
        # the oracle is an exact bound only where every evaluation cut point is decision-bearing
        # (oracle_exact_share 1); elsewhere it is the loose bound 1.0, which would say nothing
        exact = float(meta.get("oracle_exact_share", 1.0)) >= 1.0
        for subset, acc in sorted(meta.get("oracle", {}).items()) if exact else ():
            oracle.append((dial, level, subset, 100.0 * float(acc)))
    return oracle


def _points(ctx: FigureContext, plan) -> tuple[list, list]:
    """One :class:`DosePoint` per trained run, and the ``(cache, run)`` pairs read."""
    points, runs = [], []
    for dial, level, model, runset in plan:
        cache = runset.cache
        for rec in runset.records():
            runs.append((cache, rec))
            moc = float(cache.evaluate(rec)["moc"].mean())
            rel, er = (), float("nan")
            if len(runset.modalities) > 1:
                rel = tuple((r.modality, float(r.drop)) for r in cache.reliance(rec).itertuples())
                fs = featurefiles.load_features(cache.features(rec, ctx.obs))
                er = float(spectral.effective_rank(featurefiles.stacked(fs, list(runset.modalities), "after")))
            points.append(DosePoint(dial, level, model, rec.seed, moc, er, rel))
    return points, runs


def _cells(points) -> list[DoseCell]:
    groups: dict = {}
    for p in points:
        # every run has a MoC cell, NaN seeds and all: the cell says the model ran at this level
        groups.setdefault((p.dial, p.level, p.model, "moc"), [])
        vals = {"moc": p.moc, "erank_fused": p.erank_fused, **{f"reliance {m}": d for m, d in p.reliance}}
        for q, v in vals.items():
            if np.isfinite(v):
                groups.setdefault((p.dial, p.level, p.model, q), []).append(v)
    cells = []
    for (dial, level, model, q), v in groups.items():
        sd = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
        mean = float(np.mean(v)) if v else float("nan")
        cells.append(DoseCell(dial, level, model, q, mean, sd, len(v), tuple(float(x) for x in v)))
    return cells


def _compare(dial, level, label, quantity, a: DoseCell | None, b: DoseCell | None) -> DoseComparison:
    """Welch's t of cell a's per-seed values against cell b's (different models: not paired by seed);
    a missing cell (every seed's value undefined) enters with no values."""
    va, vb = (() if c is None else c.values for c in (a, b))
    return DoseComparison(dial, level, label, quantity, compare(va, vb, alpha=ALPHA))


def dose_comparisons(cells, pair) -> list[DoseComparison]:
    """Model differences (MoC, stacked ERank) and reliance differences (RTF vs no RTF) per level.

    Welch's t of one model's per-seed values against the other's. A comparison is listed whenever
    both models ran at the level; a model without a cell of the quantity (every seed's value
    undefined) enters with no values, a test of no seed, so that no comparison silently vanishes."""
    idx = {(c.dial, c.level, c.model, c.quantity): c for c in cells}
    ran = {(c.dial, c.level, c.model) for c in cells}
    out = []

    def add(dial, level, label, q, a, b):
        if (dial, level, a) in ran and (dial, level, b) in ran:
            out.append(_compare(dial, level, label, q, idx.get((dial, level, a, q)), idx.get((dial, level, b, q))))

    for dial, level in dict.fromkeys((c.dial, c.level) for c in cells):
        for label, a, b in DOSE_COMPARISONS:
            add(dial, level, label, "moc", a, b)
        add(dial, level, "RTF raises effective rank (R3D - plain fusion)", "erank_fused", "R3D", "plain fusion")
        for m in pair:
            add(dial, level, f"RTF changes reliance on {m} (R3D - plain fusion)", f"reliance {m}", "R3D",
                "plain fusion")
    return out


def _tables(res: DoseResult):
    cells = pd.DataFrame([{k: v for k, v in dataclasses.asdict(c).items() if k != "values"} for c in res.cells])
    oracle = pd.DataFrame(list(res.oracle), columns=["dial", "level", "subset", "oracle_pct"])
    comps = pd.DataFrame([c.row() for c in res.comparisons],
                         columns=["dial", "level", "comparison", "quantity", "diff", "ci_low", "ci_high", "p", "test",
                                  "n_a", "n_b", "mde", "resolved", "verdict"])
    pts = pd.DataFrame([{**{k: v for k, v in dataclasses.asdict(p).items() if k != "reliance"},
                         **{f"reliance_{m}": d for m, d in p.reliance}} for p in res.points])
    return cells, oracle, comps, pts


def _pm(mean, sd) -> str:
    return f"{mean:.2f}" if not np.isfinite(sd) else f"{mean:.2f} ± {sd:.2f}"


#: The line under ``dose_comparisons.md``: its p-values are single tests, adjusted elsewhere.
COMPARISONS_NOTE = (f"p, `resolved` and `verdict`: Welch's t over seeds, each comparison on its own at alpha "
                    f"{ALPHA:g}, not adjusted for multiplicity here (the report's claims table Holm-adjusts the comparisons of "
                    "its claims over its family; the others, such as R3D - anchor only and the reliance on the anchor, are "
                    f"in no family: single tests); `mde`: the difference each test detects with {100 * POWER:g} % power at that level.")


def _write(ctx: FigureContext, res: FigureResult, dose: DoseResult) -> None:
    """The dose family's tables and figure."""
    from .. import plots

    cells_df, oracle_df, comps_df, pts_df = _tables(dose)
    table(ctx.out, pts_df, "dose_runs", res)
    moc = cells_df[cells_df.quantity == "moc"].copy()
    moc["moc"] = [_pm(m, s) for m, s in zip(moc["mean"], moc["sd"])]
    table(ctx.out, cells_df, "dose_cells", res)
    table(ctx.out, oracle_df, "dose_oracle", res, markdown=True)
    write_text(ctx.out / "dose_moc.md", to_markdown(moc[["dial", "level", "model", "moc", "n_seeds"]]) + "\n")
    res.files.append("dose_moc.md")
    rel = cells_df[cells_df.quantity.str.startswith("reliance")].copy()
    rel["value"] = [_pm(m, s) for m, s in zip(rel["mean"], rel["sd"])]
    write_text(ctx.out / "dose_reliance.md", to_markdown(rel[["dial", "level", "model", "quantity", "value",
                                                              "n_seeds"]]) + "\n")
    res.files.append("dose_reliance.md")
    table(ctx.out, comps_df, "dose_comparisons", res, markdown=True, note=COMPARISONS_NOTE)
    save(ctx.out, plots.plot_dose(cells_df, oracle_df, anchor=ctx.anchor, partner=ctx.partner), "dose", res,
         ctx.formats)


def make(ctx: FigureContext) -> FigureResult:
    """Dose-response: MoC of anchor only / plain fusion / R3D against complementarity and imbalance,
    with the oracle and seed spreads; reliance of each modality against imbalance, with and without
    RTF. Every difference is tabulated with its Welch test over seeds: difference, 95 % interval,
    p-value, the difference the design could detect, and its verdict at alpha (unadjusted)."""
    plan = _plan(ctx)
    res = FigureResult("dose", params={"dose": {k: (list(v) if isinstance(v, tuple) else v)
                                                 for k, v in ctx.profile.dose.items()},
                                       "obs_ratio_erank": ctx.obs, "alpha": ALPHA,
                                       "test": "Welch t over seeds (rankfusion.stats.compare), unadjusted"})
    oracle = _oracle(ctx)
    points, runs = _points(ctx, plan)
    cells = _cells(points)
    dose = DoseResult(tuple(points), tuple(cells), tuple(dose_comparisons(cells, ctx.pair)), tuple(oracle),
                      dials=res.params["dose"])
    res.run_keys = keys([r for _, r in runs])
    res.caches = list(dict.fromkeys(c for c, _ in runs))
    _write(ctx, res, dose)
    res.data = dose
    return res
