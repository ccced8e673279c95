"""The paper's figure families, regenerated from cached R3D runs (``rankfusion figures``).

Each family function takes a :class:`FigureContext`, trains (or reuses) the runs it needs via
:class:`rankfusion.runcache.RunCache`, computes its tables with :mod:`rankfusion.featurefiles`, writes
CSV/Markdown tables and PNG+PDF figures into the output folder and returns a
:class:`FigureResult` whose ``findings`` are the numbers the report quotes. :func:`make_figures`
runs a selection of families and writes ``manifest.json`` (runs, seeds, config hashes, git commit,
command) so every figure can be traced to what made it.

=============  ===============================================================================
family         paper counterpart
=============  ===============================================================================
spectra        Figs. 2 / 9: normalised spectra before / after RTF and of a plain fusion (rtf=False)
modality       Fig. 3: harmonic mean of ERank gains of the anchor with each candidate
noise          Figs. 6 / 7: ERank gains and MoC under calibrated Gaussian noise on one modality
exchange       Fig. 5: MoC against the exchange ratio 0.1 / 0.2 / 0.3
angles         Table 6: principal angles between X's dominant subspace and Y's injected channels
ablation       Tables 2, 3, 8, 9 (+ R3D (Uni) of Table 1): MoC per variant
dose           (not in the paper) MoC and modality reliance against the generator's dials
dynamics       (no paper figure) effective rank of each modality over epochs, with / without RTF
timeline       Fig. 8: ground truth vs predicted future per test video, with / without RTF, anchor alone
=============  ===============================================================================
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import featurefiles, selection, spectral, verdicts
from ._progress import bar_disabled
from ._validation import InputError, check_int
from .data.synth import dataset_matches, prepare_dataset
from .files import atomic_path, to_markdown, write_json, write_text
from .files import entry_lock
from .profiles import PROFILES
from .runcache import RunCache, expected_complementary, git_commit
from .stats import ALPHA, Comparison, compare
from .data import open_dataset
from .train import train
from .evaluate import predict_future
from .metrics import MoCAccumulator
from .runs import load_run, resolve_device

#: Exchange ratios of Fig. 5.
EXCHANGE_RATIOS = (0.1, 0.2, 0.3)

#: Ablation variants: label -> R3DConfig overrides (``_uni``: the anchor alone, Table 1's R3D (Uni)).
#: The official code's ``selection="bn_gamma"`` is left out to keep the demo within its time budget.
ABLATIONS = {
    "R3D (RTF)": {},
    "W/O RTF (Tab. 2)": {"rtf": False},
    "static exchange (Tab. 3)": {"exchange": "static"},
    "W/O temporal fuser (Tab. 8)": {"temporal_fuser": False},
    "shared latent (Tab. 9)": {"latent": "shared"},
    "anchor only (Uni)": {"_uni": True},
}


@dataclass
class FigureContext:
    """What every family needs.

    Attributes
    ----------
    cache : RunCache
    out : Path
        Folder the figures and tables are written to.
    anchor : str
        The reference modality (RGB in the paper).
    partner : str
        The modality fused with the anchor for spectra / noise / exchange / angles / ablations:
        the most complementary one by construction on synthetic data, else the first other one.
    formats : tuple of str
        Image formats written for each figure.
    """

    cache: RunCache
    out: Path
    anchor: str = "rgb"
    partner: str | None = None
    formats: tuple = ("png", "pdf")
    modalities: list = field(default_factory=list)

    def __post_init__(self):
        self.out = Path(self.out)
        self.modalities = list(open_dataset(self.cache.data_root).modalities)
        if self.anchor not in self.modalities:
            raise InputError(f"anchor {self.anchor!r} is not a modality of {str(self.cache.data_root)!r}; "
                             f"modalities: {self.modalities}")
        others = [m for m in self.modalities if m != self.anchor]
        if not others:
            raise InputError(f"dataset {str(self.cache.data_root)!r} has only the anchor {self.anchor!r}; "
                             "the analyses need a second modality")
        if self.partner is None:
            exp = expected_complementary(self.cache.data_root)
            self.partner = exp if exp in others else others[0]
        elif self.partner not in others:
            raise InputError(f"partner {self.partner!r} is not a modality of {str(self.cache.data_root)!r} "
                             f"other than the anchor; choose from {others}")

    @property
    def pair(self) -> list[str]:
        return [self.anchor, self.partner]

    @property
    def obs(self) -> float:
        """The observation ratio used by single-ratio figures (0.3 when analysed, else the first)."""
        ratios = self.cache.profile.obs_ratios
        return 0.3 if 0.3 in ratios else ratios[0]


@dataclass
class FigureResult:
    """What a family wrote and found."""

    name: str
    files: list = field(default_factory=list)
    run_keys: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    #: the family's typed result (:class:`SpectraResult`, ..., :class:`DoseResult`)
    data: object = field(default=None, repr=False)
    seconds: float = 0.0
    tables: dict = field(default_factory=dict, repr=False)
    #: extra run caches a family used (the dose family's datasets), for the manifest
    caches: list = field(default_factory=list, repr=False)

    @property
    def findings(self) -> dict:
        """The numbers the manifest records (JSON), from :attr:`data`."""
        return {} if self.data is None else self.data.findings()


# --------------------------------------------------------------------------- typed results
# One frozen dataclass per family: what the report reads (by typed keys, never by parsing a
# string back) and, through ``findings()``, the JSON the manifest records.


@dataclass(frozen=True)
class SpectraResult:
    """Figs. 2 / 9. ``erank`` / ``erank_sd``: ``{(modality, stage): mean / sd over seeds}``;
    ``gain`` / ``gain_sd``: ``{modality: after - before}``; ``stacked_*``: the stacked fused features."""

    erank: dict
    erank_sd: dict
    gain: dict
    gain_sd: dict
    stacked_rtf: float
    stacked_plain: float
    stacked_rtf_sd: float
    stacked_plain_sd: float
    stacked_diff_sd: float
    n_seeds: int
    stacked_rtf_values: tuple = ()  # per seed, in seed order
    stacked_plain_values: tuple = ()

    @property
    def stacked_test(self) -> Comparison:
        """Welch's t of the stacked ERank with RTF against the plain fusion (different models)."""
        return compare(self.stacked_rtf_values, self.stacked_plain_values, alpha=ALPHA)

    def findings(self) -> dict:
        return {"erank": {f"{m} {s}": v for (m, s), v in self.erank.items()},
                "erank_sd": {f"{m} {s}": v for (m, s), v in self.erank_sd.items()},
                "gain": dict(self.gain), "gain_sd": dict(self.gain_sd),
                "stacked_rtf": self.stacked_rtf, "stacked_plain": self.stacked_plain,
                "stacked_rtf_sd": self.stacked_rtf_sd, "stacked_plain_sd": self.stacked_plain_sd,
                "stacked_diff_sd": self.stacked_diff_sd, "n_seeds": self.n_seeds,
                "stacked_test": {"diff": self.stacked_test.diff, "ci": list(self.stacked_test.ci),
                                 "p": self.stacked_test.p, "test": self.stacked_test.test}}


@dataclass(frozen=True)
class ModalityResult:
    """Fig. 3. ``scores``: ``{candidate: score or None}`` in ranking order; ``gains``:
    ``{(candidate, obs_ratio): {"anchor", "candidate", "harmonic_mean"}}``; ``relative_gain_pct``:
    ``{candidate: {"anchor" / "candidate": % of the ERank before fusion}}``; ``moc``:
    ``{candidate: grid-mean MoC of the anchor+candidate runs}``; ``seed_scores``: ``{candidate:
    per-seed scores}`` (seeds without a finite score dropped); ``comparison``:
    :func:`rankfusion.selection.compare_with_expected`; ``task_gain``: ``{candidate: (mean, (lo,
    hi))}``; ``agreement``: :func:`rankfusion.stats.agreement` of score and task gain, or None."""

    ranking: tuple
    scores: dict
    reasons: dict
    comparison: dict
    moc: dict
    seed_scores: dict
    relative_gain_pct: dict
    gains: dict
    task_gain: dict = field(default_factory=dict)
    agreement: object = None

    @property
    def seed_std(self) -> dict:
        """``{candidate: sd of the per-seed scores}`` (NaN with fewer than two)."""
        return {c: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for c, v in self.seed_scores.items()}

    def gains_of(self, candidate: str) -> dict:
        """``{obs_ratio: gains}`` of one candidate."""
        return {o: g for (c, o), g in self.gains.items() if c == candidate}

    def findings(self) -> dict:
        return {"ranking": list(self.ranking), "scores": dict(self.scores), "reasons": dict(self.reasons),
                "comparison": self.comparison, "moc": dict(self.moc), "seed_std": dict(self.seed_std),
                "seed_scores": {c: list(v) for c, v in self.seed_scores.items()},
                "relative_gain_pct": self.relative_gain_pct,
                "gains": {f"{c}@{o:g}": g for (c, o), g in self.gains.items()},
                "task_gain": {c: [g, list(ci)] for c, (g, ci) in self.task_gain.items()},
                "agreement": None if self.agreement is None else dataclasses.asdict(self.agreement)}


@dataclass(frozen=True)
class NoiseResult:
    """Figs. 6 / 7, means and sds over seeds. ``sigmas`` / ``sigma_std`` / ``achieved``:
    ``{(noisy modality, level): value}``; ``gain`` / ``gain_std``: ``{(noisy modality, level,
    receiving modality): ERank gain}``; ``moc`` / ``moc_std``: ``{(noisy modality, level, model): MoC}``
    with model "with RTF" / "without RTF"; level "clean", "small", "large" (or "level i")."""

    sigmas: dict
    sigma_std: dict
    achieved: dict
    gain: dict
    gain_std: dict
    moc: dict
    moc_std: dict
    gain_values: dict = field(default_factory=dict)  # {(noisy, level, receiving): {seed: gain}}

    def gain_change(self, noisy: str, receiving: str, frm: str = "clean", to: str = "large") -> Comparison:
        """Paired t of ``receiving``'s gain at noise level ``to`` against ``frm`` (noise on ``noisy``).

        Paired by training seed: both levels are the *same* trained run fed clean or noisy input,
        so a seed's luck is common to both (docs/analysis.md, "How findings are judged").
        """
        a, b = self.gain_values.get((noisy, to, receiving), {}), self.gain_values.get((noisy, frm, receiving), {})
        seeds = sorted(set(a) & set(b))
        return compare([a[s] for s in seeds], [b[s] for s in seeds], paired=True, alpha=ALPHA)

    def findings(self) -> dict:
        def joined(d):
            return {" ".join(k): v for k, v in d.items()}

        def arrow(d):
            return {f"{n} {lv} -> {m}": v for (n, lv, m), v in d.items()}

        return {"sigmas": joined(self.sigmas), "sigma_std": joined(self.sigma_std),
                "achieved": joined(self.achieved), "gain": arrow(self.gain), "gain_std": arrow(self.gain_std),
                "moc": joined(self.moc), "moc_std": joined(self.moc_std)}


@dataclass(frozen=True)
class ExchangeResult:
    """Fig. 5. ``moc``: ``{exchange ratio: MoC mean over the grid}``; ``best``: the ratio of the highest."""

    moc: dict
    best: float

    def findings(self) -> dict:
        return {"moc": {f"{k:g}": v for k, v in self.moc.items()}, "best": self.best}


@dataclass(frozen=True)
class AnglesResult:
    """Table 6. ``angle``: ``{"X <- Y": mean principal angle in degrees}``."""

    angle: dict

    def findings(self) -> dict:
        return {"angle": dict(self.angle)}


@dataclass(frozen=True)
class DynamicsResult:
    """Rank dynamics over training. ``erank``: ``{(model, name): {"erank_init", "erank_final",
    "change", "change_std", "erank_min", "p", "p_holm"}}`` (means over seeds, the change's sd over
    seeds, the paired t of final against initial ERank and its Holm adjustment over the family's
    rows); ``reliance``: why modality reliance is not drawn per epoch."""

    erank: dict
    reliance: str

    def findings(self) -> dict:
        out = {f"{m} {n}": dict(v) for (m, n), v in self.erank.items()}
        out["reliance"] = self.reliance
        return out


@dataclass(frozen=True)
class AblationResult:
    """Tables 2, 3, 8, 9. ``moc`` / ``std``: ``{variant: grid-mean MoC / its sd over seeds}``;
    ``values``: ``{variant: per-seed grid-mean MoC}``."""

    moc: dict
    std: dict
    values: dict = field(default_factory=dict)

    def against(self, base: str = "R3D (RTF)") -> dict:
        """``{variant: Welch's t of its per-seed MoC against base's}`` (variants are other models)."""
        if base not in self.values:
            return {}
        return {v: compare(x, self.values[base], alpha=ALPHA) for v, x in self.values.items() if v != base}

    def findings(self) -> dict:
        return {"moc": dict(self.moc), "std": dict(self.std), "values": {k: list(v) for k, v in self.values.items()},
                "against R3D (RTF)": {v: {"diff": c.diff, "ci": list(c.ci), "p": c.p, "test": c.test}
                                      for v, c in self.against().items()}}


def _save(out: Path, fig, stem: str, res: FigureResult, formats=("png", "pdf")):
    from . import plots

    paths = plots.save_figure(fig, Path(out) / stem, formats=formats)
    plots.close(fig)
    res.files += [p.name for p in paths]


def _table(out: Path, df: pd.DataFrame, name: str, res: FigureResult, markdown: bool = False):
    with atomic_path(Path(out) / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    res.files.append(f"{name}.csv")
    if markdown:
        write_text(Path(out) / f"{name}.md", to_markdown(df) + "\n")
        res.files.append(f"{name}.md")


def _keys(runs) -> list[tuple]:
    """The cache keys of runs, ``(run folder, label)``, for the manifest."""
    return [(r.run_dir, r.name) for r in runs]


def _seed_moc(cache: RunCache, runs) -> pd.DataFrame:
    """MoC per run: ``seed, obs_ratio, beta, moc``."""
    return pd.concat([cache.evaluate(r).assign(seed=r.seed) for r in runs], ignore_index=True)


def _spread(per_seed: pd.DataFrame, keys) -> pd.DataFrame:
    """Mean over beta per seed, then mean and standard deviation over seeds (NaN std for one seed)."""
    per = per_seed.groupby(list(keys) + ["seed"], sort=False, as_index=False)["moc"].mean()
    out = per.groupby(list(keys), sort=False)["moc"].agg(moc="mean", moc_std="std", n_seeds="count").reset_index()
    return out


def _mean_moc(cache: RunCache, runs, noise=None) -> pd.DataFrame:
    """MoC per (obs, beta), averaged over the runs (seeds)."""
    tabs = [cache.evaluate(r, noise=noise) for r in runs]
    return pd.concat(tabs).groupby(["obs_ratio", "beta"], as_index=False)["moc"].mean()


# --------------------------------------------------------------------------- families


def _spectra_eranks(ctx: FigureContext, rtf_runs, plain_runs) -> pd.DataFrame:
    """ERank of every curve of the spectra figure for every seed: ``modality, stage, seed, erank``."""
    rows = []
    for rec, plain in zip(rtf_runs, plain_runs):
        fr = featurefiles.load_features(ctx.cache.features(rec, ctx.obs))
        fp = featurefiles.load_features(ctx.cache.features(plain, ctx.obs))
        arrays = [(m, st, fr.get(m, st)) for m in ctx.pair for st in ("before", "after")]
        arrays += [(m, "plain", fp.get(m, "after")) for m in ctx.pair]
        arrays += [("fused (RTF)", "after", featurefiles.stacked(fr, ctx.pair, "after")),
                   ("fused (plain)", "after", featurefiles.stacked(fp, ctx.pair, "after"))]
        rows += [{"modality": m, "stage": st, "seed": rec.seed, "erank": float(spectral.effective_rank(X))}
                 for m, st, X in arrays]
    return pd.DataFrame(rows)


def fig_spectra(ctx: FigureContext) -> FigureResult:
    """Figs. 2 / 9: spectra of each modality before/after RTF, a plain fusion, and the stacked features.

    The curves are those of the first seed; every ERank is also given as mean ± sd over the seeds
    (legend, ``spectra_erank.csv``, findings).
    """
    from . import plots

    res = FigureResult("spectra", params={"obs_ratio": ctx.obs, "modalities": ctx.pair, "curves_seed":
                                          ctx.cache.profile.seeds[0]})
    rtf_runs = ctx.cache.runs(f"{ctx.anchor}+{ctx.partner}", ctx.pair)
    plain_runs = ctx.cache.runs(f"{ctx.anchor}+{ctx.partner} W/O RTF", ctx.pair, rtf=False)
    res.run_keys = _keys(rtf_runs + plain_runs)
    f_rtf = featurefiles.load_features(ctx.cache.features(rtf_runs[0], ctx.obs))
    f_plain = featurefiles.load_features(ctx.cache.features(plain_runs[0], ctx.obs))
    parts = [featurefiles.spectra_of(f_rtf, ctx.pair, label="R3D"),
             featurefiles.spectra_of(f_plain, ctx.pair, stages=("after",), label="plain").assign(stage="plain")]
    # The stacked features that enter the temporal fuser: the fused representation of Fig. 9.
    for name, fs in (("fused (RTF)", f_rtf), ("fused (plain)", f_plain)):
        X = featurefiles.stacked(fs, ctx.pair, "after")
        p = featurefiles.normalized_spectrum(X)
        parts.append(pd.DataFrame({"label": name, "modality": name, "stage": "after",
                                   "index": np.arange(1, len(p) + 1), "p": p,
                                   "erank": float(spectral.effective_rank(X))}))
    eranks = _spectra_eranks(ctx, rtf_runs, plain_runs)
    spread = eranks.groupby(["modality", "stage"], sort=False)["erank"].agg(erank_mean="mean", erank_sd="std")
    spectra = pd.concat(parts, ignore_index=True).join(spread, on=["modality", "stage"])
    _table(ctx.out, spectra, "spectra", res)
    _table(ctx.out, eranks, "spectra_erank", res)
    _save(ctx.out, plots.plot_spectra(spectra), "spectra", res, ctx.formats)
    mean, sd = spread["erank_mean"], spread["erank_sd"]
    gains = eranks.pivot_table(index=["modality", "seed"], columns="stage", values="erank")
    stacked = eranks[eranks.modality.str.startswith("fused")].pivot_table(index="seed", columns="modality",
                                                                           values="erank")
    diff = stacked["fused (RTF)"] - stacked["fused (plain)"]
    res.data = SpectraResult(
        erank={(m, st): float(v) for (m, st), v in mean.items()},
        erank_sd={(m, st): float(v) for (m, st), v in sd.items()},
        gain={m: float((gains.loc[m]["after"] - gains.loc[m]["before"]).mean()) for m in ctx.pair},
        gain_sd={m: float((gains.loc[m]["after"] - gains.loc[m]["before"]).std()) for m in ctx.pair},
        stacked_rtf=float(mean[("fused (RTF)", "after")]),
        stacked_plain=float(mean[("fused (plain)", "after")]),
        stacked_rtf_sd=float(sd[("fused (RTF)", "after")]),
        stacked_plain_sd=float(sd[("fused (plain)", "after")]),
        stacked_diff_sd=float(diff.std()),
        n_seeds=int(len(rtf_runs)),
        stacked_rtf_values=tuple(float(v) for v in stacked["fused (RTF)"]),
        stacked_plain_values=tuple(float(v) for v in stacked["fused (plain)"]),
    )
    return res


def write_selection(out, table: pd.DataFrame, *, anchor: str, expected: str | None = None,
                    formats=("png", "pdf")) -> dict:
    """Summarise, rank and write a modality-selection table (CSV, Markdown, Fig. 3-style plot).

    Parameters
    ----------
    out : path-like
        Output folder.
    table : DataFrame
        :func:`rankfusion.selection.modality_selection` output.
    anchor : str
    expected : str, optional
        The candidate expected to rank first (the most complementary one by construction).

    Returns
    -------
    dict
        ``summary``, ``ranking`` (DataFrames), ``comparison`` (dict), ``files`` (names written).
    """
    from . import plots

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res = FigureResult("modality")
    summary = selection.summarize_selection(table)
    ranking = selection.rank_candidates(summary)
    _table(out, table, "modality_selection_files", res)
    _table(out, summary, "modality_selection", res, markdown=True)
    _table(out, ranking, "modality_ranking", res, markdown=True)
    _save(out, plots.plot_modality_selection(summary, anchor=anchor), "modality_selection", res, tuple(formats))
    return {"summary": summary, "ranking": ranking, "files": res.files,
            "comparison": selection.compare_with_expected(ranking, expected)}


def fig_modality(ctx: FigureContext, candidates=None, expected: str | None = None) -> FigureResult:
    """Fig. 3: rank candidates by the harmonic mean of ERank gains with the anchor."""
    cands = [m for m in ctx.modalities if m != ctx.anchor] if candidates is None else list(candidates)
    if not cands:
        raise InputError("candidates must name at least one modality")
    for c in cands:
        if c not in ctx.modalities or c == ctx.anchor:
            raise InputError(f"candidate {c!r} is not a modality of {str(ctx.cache.data_root)!r} other than "
                             f"the anchor; choose from {[m for m in ctx.modalities if m != ctx.anchor]}")
    res = FigureResult("modality", params={"anchor": ctx.anchor, "candidates": cands,
                                           "obs_ratios": list(ctx.cache.profile.obs_ratios)})
    files, runs = [], []
    for c in cands:
        for rec in ctx.cache.runs(f"{ctx.anchor}+{c}", [ctx.anchor, c]):
            runs.append(rec)
            files += [ctx.cache.features(rec, o) for o in ctx.cache.profile.obs_ratios]
    res.run_keys = _keys(runs)
    # Task accuracy of each pairing: an independent view of complementarity to set against the
    # rank-based ranking (the report compares the two).
    moc = {c: float(_mean_moc(ctx.cache, [r for r in runs if r.name == f"{ctx.anchor}+{c}"])["moc"].mean())
           for c in cands}
    table = selection.modality_selection(files, anchor=ctx.anchor)
    # task evidence: each seed's MoC gain over the anchor alone at the pairs' trunk width (a
    # one-modality R3D with the same D is half as wide), against each seed's criterion
    mods, opts = _fused_width_anchor(ctx)
    alone = ctx.cache.runs(f"{ctx.anchor} alone, fused width", mods, **opts)
    res.run_keys += _keys(alone)
    per_seed_score = table.groupby(["candidate", "seed"], as_index=False)["harmonic_mean"].mean()
    task, agreement = selection.runs_task_evidence(per_seed_score.rename(columns={"harmonic_mean": "score"}),
                                                 _moc_gains(ctx.cache, runs, alone))
    # paths relative to the cache, so a committed table does not carry local paths
    table["file"] = [Path(f).relative_to(ctx.cache.cache_dir).as_posix()
                     if Path(f).is_relative_to(ctx.cache.cache_dir) else f for f in table["file"]]
    if expected is None:
        expected = expected_complementary(ctx.cache.data_root)
    sel = write_selection(ctx.out, table, anchor=ctx.anchor, expected=expected, formats=ctx.formats)
    summary, ranking = sel["summary"], sel["ranking"]
    res.files += sel["files"]
    res.tables = {"summary": summary, "ranking": ranking, "files": table}
    res.data = ModalityResult(
        ranking=tuple(ranking["candidate"]),
        scores={c: (None if not np.isfinite(s) else float(s)) for c, s in zip(ranking["candidate"], ranking["score"])},
        reasons={c: r for c, r in zip(ranking["candidate"], ranking["reason"]) if r},
        comparison=sel["comparison"],
        moc=moc,
        # run-to-run values: each seed's score (mean over ratios of its own finite harmonic means);
        # a seed with no finite one has no score and is dropped, explicitly
        seed_scores={c: tuple(float(x) for x in v.dropna()) for c, v in
                     table.groupby(["candidate", "seed"])["harmonic_mean"].mean().groupby("candidate")},
        # gains as a percentage of the ERank before fusion, mean over ratios: {candidate: {role: %}}
        relative_gain_pct={
            c: {role: float(100 * (grp[f"gain_{role}"] / grp[f"erank_{role}_before"]).mean())
                for role in ("anchor", "candidate")}
            for c, grp in summary.groupby("candidate")},
        gains={(r.candidate, float(r.obs_ratio)): {
            "anchor": float(r.gain_anchor), "candidate": float(r.gain_candidate),
            "harmonic_mean": None if not np.isfinite(r.harmonic_mean) else float(r.harmonic_mean)}
            for r in summary.itertuples()},
        task_gain=task,
        agreement=agreement,
    )
    return res


def _fused_width_anchor(ctx: FigureContext):
    """``(modalities, overrides)`` of the anchor alone with ``d_model`` = M x the pair's D, so its
    trunk is as wide as the pair's (the dose family's "anchor only, fused width")."""
    return [ctx.anchor], {"d_model": len(ctx.pair) * ctx.cache.config(ctx.pair).model.d_model}


def _moc_gains(cache: RunCache, pair_runs, alone) -> pd.DataFrame:
    """``candidate, seed, moc, base, gain``: grid-mean MoC of each pairing's run, of the anchor-only
    run of the same seed, and their difference (percent points); ``pair_runs`` are named
    ``"<anchor>+<candidate>"``."""
    base = _seed_moc(cache, alone).groupby("seed")["moc"].mean()
    rows = []
    for r in pair_runs:
        m = float(_seed_moc(cache, [r])["moc"].mean())
        rows.append({"candidate": r.name.split("+", 1)[1], "seed": r.seed, "moc": m, "base": float(base[r.seed]),
                     "gain": m - float(base[r.seed])})
    return pd.DataFrame(rows)


def _calibrate(ctx: FigureContext, rec, nm: str, targets, noise_seed: int) -> list[dict]:
    """Sigmas of one run for noisy modality ``nm`` (rule in :func:`fig_noise`)."""
    cache = ctx.cache
    clean = featurefiles.load_features(cache.features(rec, ctx.obs))

    def response(s):
        noisy = featurefiles.load_features(cache.features(rec, ctx.obs, noise=(nm, s, noise_seed)))
        return featurefiles.relative_change(clean.get(nm, "before"), noisy.get(nm, "before"))

    return featurefiles.calibrate_sigma(response, targets, sigma0=0.2, iters=3, rtol=0.1)


def fig_noise(ctx: FigureContext, *, noise_seed: int = 0) -> FigureResult:
    """Figs. 6 / 7: ERank gains and MoC with calibrated Gaussian noise on one modality at a time.

    Calibration rule: for each noisy modality m, target relative change t (profile's
    ``noise_targets``, "small" and "large") and training seed, sigma_m is chosen so that the test
    features of m at the token fuser's *input* (after the Eq. 2 projection of that seed's trained
    RTF model) move by ||F_noisy - F_clean||_F / ||F_clean||_F = t. Noise is
    N(0, (sigma_m * RMS_m)^2) on m's input features, RMS_m over the test split; sigma_m is found by
    proportional (secant-through-0) updates (:func:`rankfusion.featurefiles.calibrate_sigma`), and the
    achieved change is recorded. Calibrating per seed keeps the rule exact for every model (each
    seed's projection has its own gain), so a level means the same representation change in every
    seed and the seed spread of the gains and MoC is that of the models, not of a mis-set sigma.
    The run without RTF of a seed is perturbed with that seed's sigmas (it has no token fuser of
    its own to calibrate on).
    """
    cache = ctx.cache
    targets = tuple(cache.profile.noise_targets)
    levels = ["clean"] + (["small", "large"] if len(targets) == 2 else [f"level {i + 1}" for i in range(len(targets))])
    res = FigureResult("noise", params={"obs_ratio": ctx.obs, "targets": list(targets), "noise_seed": noise_seed,
                                        "rule": "relative Frobenius change of the noisy modality's token-fuser "
                                                "input, calibrated per training seed"})
    rtf_runs = cache.runs(f"{ctx.anchor}+{ctx.partner}", ctx.pair)
    plain_runs = cache.runs(f"{ctx.anchor}+{ctx.partner} W/O RTF", ctx.pair, rtf=False)
    res.run_keys = _keys(rtf_runs + plain_runs)
    sig_rows, gain_rows, moc_rows = [], [], []
    for nm in [ctx.partner, ctx.anchor]:
        for rec, plain in zip(rtf_runs, plain_runs):
            cal = _calibrate(ctx, rec, nm, targets, noise_seed)
            for lv, c in zip(levels[1:], cal):
                sig_rows.append({"noisy_modality": nm, "level": lv, "seed": rec.seed, "sigma_rms_units": c["sigma"],
                                 "rms": cache.rms(nm), "std": c["sigma"] * cache.rms(nm),
                                 "target_change": c["target"], "achieved_change": c["achieved"],
                                 "evaluations": c["evaluations"], "noise_seed": noise_seed,
                                 "calibrated_on": f"{rec.name}/s{rec.seed}"})
            for lv, s_ in zip(levels, [0.0] + [c["sigma"] for c in cal]):
                noise = None if s_ == 0 else (nm, s_, noise_seed)
                fs = featurefiles.load_features(cache.features(rec, ctx.obs, noise=noise))
                for row in featurefiles.gains_table(fs, ctx.pair).to_dict("records"):
                    gain_rows.append({"noisy_modality": nm, "level": lv, "sigma": s_, "seed": rec.seed, **row})
                for model, r in (("with RTF", rec), ("without RTF", plain)):
                    moc_rows.append({"noisy_modality": nm, "level": lv, "sigma": s_, "model": model, "seed": r.seed,
                                     "moc": float(cache.evaluate(r, noise=noise)["moc"].mean())})
    res.params["sigmas"] = sig_rows
    _noise_outputs(ctx, res, pd.DataFrame(sig_rows), pd.DataFrame(gain_rows), pd.DataFrame(moc_rows))
    return res


def _noise_outputs(ctx: FigureContext, res: FigureResult, sig_df, gain_df, moc_seed) -> None:
    """Seed means and spreads of the noise family's per-seed rows; tables, figures, findings."""
    from . import plots

    keys = ["noisy_modality", "level"]
    gain_mean = gain_df.groupby(keys + ["modality"], sort=False, as_index=False).agg(
        sigma=("sigma", "mean"), erank_before=("erank_before", "mean"), erank_after=("erank_after", "mean"),
        gain=("gain", "mean"), gain_std=("gain", "std"), n_seeds=("seed", "count"))
    moc_df = moc_seed.groupby(keys + ["model"], sort=False, as_index=False).agg(
        sigma=("sigma", "mean"), moc=("moc", "mean"), moc_std=("moc", "std"), n_seeds=("seed", "count"))
    sig_mean = sig_df.groupby(keys, sort=False, as_index=False).agg(
        sigma_rms_units=("sigma_rms_units", "mean"), sigma_std=("sigma_rms_units", "std"),
        achieved_change=("achieved_change", "mean"), target_change=("target_change", "first"))
    _table(ctx.out, sig_df, "noise_sigmas", res, markdown=True)
    _table(ctx.out, gain_df, "noise_gains", res)
    _table(ctx.out, moc_seed, "noise_moc_seeds", res)
    _table(ctx.out, moc_df, "noise_moc", res, markdown=True)
    _save(ctx.out, plots.plot_noise_gains(gain_mean), "noise_gains", res, ctx.formats)
    _save(ctx.out, plots.plot_noise_moc(moc_df), "noise_moc", res, ctx.formats)
    res.data = NoiseResult(
        sigmas={(r.noisy_modality, r.level): float(r.sigma_rms_units) for r in sig_mean.itertuples()},
        sigma_std={(r.noisy_modality, r.level): float(r.sigma_std) for r in sig_mean.itertuples()},
        achieved={(r.noisy_modality, r.level): float(r.achieved_change) for r in sig_mean.itertuples()},
        gain={(r.noisy_modality, r.level, r.modality): float(r.gain) for r in gain_mean.itertuples()},
        gain_std={(r.noisy_modality, r.level, r.modality): float(r.gain_std) for r in gain_mean.itertuples()},
        moc={(r.noisy_modality, r.level, r.model): float(r.moc) for r in moc_df.itertuples()},
        moc_std={(r.noisy_modality, r.level, r.model): float(r.moc_std) for r in moc_df.itertuples()},
        gain_values={k: {int(r.seed): float(r.gain) for r in g.itertuples()}
                     for k, g in gain_df.groupby(keys + ["modality"], sort=False)},
    )


def fig_exchange(ctx: FigureContext) -> FigureResult:
    """Fig. 5: MoC (mean over beta) for exchange ratios 0.1 / 0.2 / 0.3."""
    from . import plots

    res = FigureResult("exchange", params={"exchange_ratios": list(EXCHANGE_RATIOS), "modalities": ctx.pair})
    parts, runs = [], []
    for ratio in EXCHANGE_RATIOS:
        rr = ctx.cache.runs(f"{ctx.anchor}+{ctx.partner} exchange {ratio:g}", ctx.pair, exchange_ratio=ratio)
        runs += rr
        parts.append(_seed_moc(ctx.cache, rr).assign(exchange_ratio=ratio))
    res.run_keys = _keys(runs)
    df = _spread(pd.concat(parts, ignore_index=True), ["exchange_ratio", "obs_ratio"])
    _table(ctx.out, df, "exchange_ratio", res, markdown=True)
    _save(ctx.out, plots.plot_exchange_ratio(df, pair=f"{ctx.anchor} + {ctx.partner}"), "exchange_ratio", res,
          ctx.formats)
    by_ratio = df.groupby("exchange_ratio")["moc"].mean()
    res.data = ExchangeResult(moc={float(k): float(v) for k, v in by_ratio.items()}, best=float(by_ratio.idxmax()))
    return res


def fig_angles(ctx: FigureContext) -> FigureResult:
    """Table 6: angles between each modality's dominant subspace and the other's injected channels."""
    from . import plots

    res = FigureResult("angles", params={"obs_ratios": list(ctx.cache.profile.obs_ratios), "energy": 0.9})
    runs = ctx.cache.runs(f"{ctx.anchor}+{ctx.partner}", ctx.pair)
    res.run_keys = _keys(runs)
    ratio = float(ctx.cache.config(ctx.pair).model.exchange_ratio)
    tabs = []
    for rec in runs:
        for obs in ctx.cache.profile.obs_ratios:
            fs = featurefiles.load_features(ctx.cache.features(rec, obs))
            tabs.append(featurefiles.angle_table(fs, exchange_ratio=ratio).assign(obs_ratio=obs, seed=rec.seed))
    full = pd.concat(tabs, ignore_index=True)
    mean = full.groupby(["direction", "target", "source"], sort=False, as_index=False)[
        ["k", "n_low", "mean_angle_deg", "min_angle_deg", "max_angle_deg", "mean_channel_angle_deg"]].mean()
    _table(ctx.out, full, "angles_all", res)
    _table(ctx.out, mean, "angles", res, markdown=True)
    _save(ctx.out, plots.plot_angles(mean), "angles", res, ctx.formats)
    res.data = AnglesResult(angle={r.direction: float(r.mean_angle_deg) for r in mean.itertuples()})
    return res


def _ablation_run(ctx: FigureContext, opts: dict):
    """``(run name, modalities, R3DConfig overrides)`` of one ablation variant."""
    opts = dict(opts)
    mods = [ctx.anchor] if opts.pop("_uni", False) else ctx.pair
    name = f"{'+'.join(mods)}" + ("" if not opts else " " + ",".join(f"{k}={v}" for k, v in opts.items()))
    if not opts and mods == ctx.pair:
        name = f"{ctx.anchor}+{ctx.partner}"
    if opts == {"rtf": False}:
        name = f"{ctx.anchor}+{ctx.partner} W/O RTF"
    return name, mods, opts


def fig_ablation(ctx: FigureContext) -> FigureResult:
    """Tables 2, 3, 8, 9 (+ Uni): MoC per variant, observation ratio and beta."""
    from . import plots

    res = FigureResult("ablation", params={"variants": {k: v for k, v in ABLATIONS.items()}})
    rows, parts, runs = [], [], []
    for label, opts in ABLATIONS.items():
        name, mods, opts = _ablation_run(ctx, opts)
        rr = ctx.cache.runs(name, mods, **opts)
        runs += rr
        parts.append(_seed_moc(ctx.cache, rr).assign(variant=label))
        m = _mean_moc(ctx.cache, rr)
        for r in m.itertuples():
            rows.append({"variant": label, "obs_ratio": r.obs_ratio, "beta": r.beta, "moc": r.moc})
    res.run_keys = _keys(runs)
    long = pd.DataFrame(rows)
    per_seed = pd.concat(parts, ignore_index=True)
    wide = long.pivot_table(index="variant", columns=["obs_ratio", "beta"], values="moc", sort=False)
    wide.columns = [f"a={o:g} b={b:g}" for o, b in wide.columns]
    wide = wide.reset_index()
    overall = _spread(per_seed, ["variant"])
    wide["mean"] = overall["moc"].to_numpy()
    wide["std over seeds"] = overall["moc_std"].to_numpy()
    _table(ctx.out, long, "ablation_long", res)
    _table(ctx.out, wide, "ablation", res, markdown=True)
    per_obs = _spread(per_seed, ["variant", "obs_ratio"])
    _save(ctx.out, plots.plot_ablation(per_obs), "ablation", res, ctx.formats)
    seed_means = per_seed.groupby(["variant", "seed"], sort=False)["moc"].mean()
    res.data = AblationResult(moc={v: float(m) for v, m in zip(wide["variant"], wide["mean"])},
                              std={v: float(m) for v, m in zip(wide["variant"], wide["std over seeds"])},
                              values={v: tuple(float(x) for x in seed_means.loc[v]) for v in wide["variant"]})
    return res


# --------------------------------------------------------------------------- dose-response

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
# differ in shape or in their fusion, so a shared seed number does not pair them (docs/analysis.md).


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
        return verdicts.comparison_verdict(self.test)

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


def _dose_cache(ctx: FigureContext, dials: dict) -> RunCache:
    """The run cache of one dose dataset (generated under ``<cache>/dose/`` unless present)."""
    prof = ctx.cache.profile
    kwargs, seed = {**prof.dose.get("synth", prof.synth), **dials}, int(prof.dose.get("data_seed", 0))
    if dataset_matches(ctx.cache.data_root, kwargs, seed=seed):
        return ctx.cache  # the figures' own dataset is this point of the sweep: its runs are shared
    tag = "-".join(f"{k[0]}{v:g}" for k, v in sorted(dials.items()))
    root = prepare_dataset(ctx.cache.cache_dir / "dose" / tag, kwargs, seed=seed)
    cache = RunCache(root, ctx.cache.cache_dir, prof, device=ctx.cache.device, progress=ctx.cache.progress)
    cache.trained_now = ctx.cache.trained_now  # one record of what this session's workers trained
    return cache


def _dose_model_cache(ctx: FigureContext, model: str, dials: dict) -> RunCache:
    """The run cache of ``model`` at generator ``dials``.

    The imbalance dial scales only the partner's noise (the anchor's features, labels and splits
    are byte-identical across its levels, tests/test_synth.py), so the anchor-only models of the
    imbalance sweep are the runs of the base imbalance: the same computation, trained once.
    """
    if DOSE_MODELS[model][0].startswith("anchor"):
        dials = {**dials, "imbalance": float(ctx.cache.profile.dose["base"]["imbalance"])}
    return _dose_cache(ctx, dials)


def _dose_run_args(ctx: FigureContext, model: str):
    role, opts = DOSE_MODELS[model]
    if role == "anchor_wide":
        mods, wide = _fused_width_anchor(ctx)
        return mods, {**opts, **wide}
    return ([ctx.anchor] if role == "anchor" else ctx.pair), dict(opts)


def dose_jobs(ctx: FigureContext) -> list:
    """The runs of the dose family (for :func:`plan_jobs`); generates the dose datasets."""
    jobs = []
    for _, _, dials in dose_settings(ctx.cache.profile):
        for model in DOSE_MODELS:
            cache = _dose_model_cache(ctx, model, dials)
            mods, opts = _dose_run_args(ctx, model)
            fused = len(mods) > 1
            jobs += [cache.job(mods, s, obs_ratios=(ctx.obs,) if fused else (), reliance=fused, **opts)
                     for s in cache.profile.seeds]
    return jobs


def _dose_points(ctx: FigureContext):
    points, oracle, runs = [], [], []
    for dial, level, dials in dose_settings(ctx.cache.profile):
        meta = json.loads((_dose_cache(ctx, dials).data_root / "synth.json").read_text())
        # the oracle is an exact bound only where every evaluation cut point is decision-bearing
        # (oracle_exact_share 1); elsewhere it is the loose bound 1.0, which would say nothing
        exact = float(meta.get("oracle_exact_share", 1.0)) >= 1.0
        for subset, acc in sorted(meta.get("oracle", {}).items()) if exact else ():
            oracle.append((dial, level, subset, 100.0 * float(acc)))
        for model in DOSE_MODELS:
            mods, opts = _dose_run_args(ctx, model)
            cache = _dose_model_cache(ctx, model, dials)
            for rec in cache.runs(f"dose {dial}={level:g} {model}", mods, **opts):
                runs.append((cache, rec))
                moc = float(cache.evaluate(rec)["moc"].mean())
                rel, er = (), float("nan")
                if len(mods) > 1:
                    rel = tuple((r.modality, float(r.drop)) for r in cache.reliance(rec).itertuples())
                    fs = featurefiles.load_features(cache.features(rec, ctx.obs))
                    er = float(spectral.effective_rank(featurefiles.stacked(fs, mods, "after")))
                points.append(DosePoint(dial, level, model, rec.seed, moc, er, rel))
    return points, oracle, runs


def _dose_cells(points) -> list[DoseCell]:
    groups: dict = {}
    for p in points:
        vals = {"moc": p.moc, "erank_fused": p.erank_fused, **{f"reliance {m}": d for m, d in p.reliance}}
        for q, v in vals.items():
            if np.isfinite(v):
                groups.setdefault((p.dial, p.level, p.model, q), []).append(v)
    cells = []
    for (dial, level, model, q), v in groups.items():
        sd = float(np.std(v, ddof=1)) if len(v) > 1 else float("nan")
        cells.append(DoseCell(dial, level, model, q, float(np.mean(v)), sd, len(v), tuple(float(x) for x in v)))
    return cells


def _compare(dial, level, label, quantity, a: DoseCell, b: DoseCell) -> DoseComparison:
    """Welch's t of cell a's per-seed values against cell b's (different models: no pairing)."""
    return DoseComparison(dial, level, label, quantity, compare(a.values, b.values, alpha=ALPHA))


def dose_comparisons(cells, pair) -> list[DoseComparison]:
    """Model differences (MoC, stacked ERank) and reliance differences (RTF vs no RTF) per level."""
    idx = {(c.dial, c.level, c.model, c.quantity): c for c in cells}
    out = []
    for dial, level in dict.fromkeys((c.dial, c.level) for c in cells):
        for label, a, b in DOSE_COMPARISONS:
            ca, cb = idx.get((dial, level, a, "moc")), idx.get((dial, level, b, "moc"))
            if ca and cb:
                out.append(_compare(dial, level, label, "moc", ca, cb))
        ca, cb = idx.get((dial, level, "R3D", "erank_fused")), idx.get((dial, level, "plain fusion", "erank_fused"))
        if ca and cb:
            out.append(_compare(dial, level, "RTF raises effective rank (R3D - plain fusion)", "erank_fused", ca, cb))
        for m in pair:
            q = f"reliance {m}"
            ca, cb = idx.get((dial, level, "R3D", q)), idx.get((dial, level, "plain fusion", q))
            if ca and cb:
                out.append(_compare(dial, level, f"RTF changes reliance on {m} (R3D - plain fusion)", q, ca, cb))
    return out


def _dose_tables(res: DoseResult):
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


def fig_dose(ctx: FigureContext) -> FigureResult:
    """Dose-response: MoC of anchor only / plain fusion / R3D against complementarity and imbalance,
    with the oracle and seed spreads; reliance of each modality against imbalance, with and without
    RTF. Every difference is tabulated with its Welch test over seeds: difference, 95 % interval,
    p-value, the difference the design could detect, and its verdict at alpha (unadjusted)."""
    from . import plots

    prof = ctx.cache.profile
    if not prof.dose:
        raise InputError(f"the profile has no dose-response settings; use one of "
                         f"{[n for n, p in PROFILES.items() if p.dose]}")
    res = FigureResult("dose", params={"dose": {k: (list(v) if isinstance(v, tuple) else v)
                                                 for k, v in prof.dose.items()},
                                       "obs_ratio_erank": ctx.obs, "alpha": ALPHA,
                                       "test": "Welch t over seeds (rankfusion.stats.compare), unadjusted"})
    points, oracle, runs = _dose_points(ctx)
    cells = _dose_cells(points)
    dose = DoseResult(tuple(points), tuple(cells), tuple(dose_comparisons(cells, ctx.pair)), tuple(oracle),
                      dials=res.params["dose"])
    res.run_keys = _keys([r for _, r in runs])
    res.caches = list(dict.fromkeys(c for c, _ in runs))
    cells_df, oracle_df, comps_df, pts_df = _dose_tables(dose)
    _table(ctx.out, pts_df, "dose_runs", res)
    moc = cells_df[cells_df.quantity == "moc"].copy()
    moc["moc"] = [_pm(m, s) for m, s in zip(moc["mean"], moc["sd"])]
    _table(ctx.out, cells_df, "dose_cells", res)
    _table(ctx.out, oracle_df, "dose_oracle", res, markdown=True)
    write_text(ctx.out / "dose_moc.md", to_markdown(moc[["dial", "level", "model", "moc", "n_seeds"]]) + "\n")
    res.files.append("dose_moc.md")
    rel = cells_df[cells_df.quantity.str.startswith("reliance")].copy()
    rel["value"] = [_pm(m, s) for m, s in zip(rel["mean"], rel["sd"])]
    write_text(ctx.out / "dose_reliance.md", to_markdown(rel[["dial", "level", "model", "quantity", "value",
                                                              "n_seeds"]]) + "\n")
    res.files.append("dose_reliance.md")
    _table(ctx.out, comps_df, "dose_comparisons", res, markdown=True)
    _save(ctx.out, plots.plot_dose(cells_df, oracle_df, anchor=ctx.anchor, partner=ctx.partner), "dose", res,
          ctx.formats)
    res.data = dose
    return res


def _run_ranks(cache: RunCache, rec) -> tuple[pd.DataFrame, bool]:
    """``RUN/ranks.csv`` of a cached run; regenerated when the run predates the monitor.

    Training is deterministic for a (config, seed, machine) and the monitor does not change it,
    so the run is retrained with the monitor in a scratch folder and only its ranks.csv is kept.
    Returns the table and whether it had to be regenerated.
    """
    import shutil


    path = rec.run_dir / "ranks.csv"
    if path.exists():
        return pd.read_csv(path), False
    overrides = dict(rec.overrides)
    cfg = cache.config(overrides.pop("modalities"), **overrides)
    tmp = rec.run_dir.with_name(rec.run_dir.name + ".ranks-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    train(cfg, cache.data_root, tmp, seed=rec.seed, device=cache.device, progress=cache.progress, monitor=True)
    with atomic_path(path) as out:
        shutil.copyfile(tmp / "ranks.csv", out)
    shutil.rmtree(tmp)
    return pd.read_csv(path), True


def fig_dynamics(ctx: FigureContext) -> FigureResult:
    """Rank dynamics: ERank of each modality's tokens over epochs with and without RTF, beside val MoC.

    Reads ``RUN/ranks.csv`` (``rankfusion train --monitor``: a fixed validation subset, epoch 0 =
    initialisation) and ``RUN/metrics.csv`` of the pair's runs with and without RTF, every seed.
    """
    from . import plots

    a, p = ctx.anchor, ctx.partner
    variants = {"with RTF": ctx.cache.runs(f"{a}+{p}", ctx.pair),
                "without RTF": ctx.cache.runs(f"{a}+{p} W/O RTF", ctx.pair, rtf=False)}
    res = FigureResult("dynamics", params={"modalities": ctx.pair, "split": "val", "regenerated": []})
    ranks, moc = [], []
    for model, runs in variants.items():
        for rec in runs:
            r, regen = _run_ranks(ctx.cache, rec)
            if regen:
                res.params["regenerated"].append(f"{rec.name}/s{rec.seed}")
            ranks.append(r.assign(model=model, seed=rec.seed))
            m = pd.read_csv(rec.run_dir / "metrics.csv")
            moc.append(m[["epoch", "val_moc", "val_loss", "train_loss"]].assign(model=model, seed=rec.seed))
        res.run_keys += _keys(runs)
    cols = ["model", "seed", "epoch", "name", "modality", "stage", "n_rows", "numerical_rank", "effective_rank"]
    ranks = pd.concat(ranks, ignore_index=True)
    res.params.update(obs_ratio=float(ranks["obs"].iloc[0]), n_videos=int(ranks["n_videos"].iloc[0]))
    ranks = ranks[cols]
    moc = pd.concat(moc, ignore_index=True)[["model", "seed", "epoch", "val_moc", "val_loss", "train_loss"]]
    _table(ctx.out, ranks, "dynamics_ranks", res)
    _table(ctx.out, moc, "dynamics_moc", res)
    summary = _dynamics_summary(ranks, moc)
    _table(ctx.out, summary, "dynamics", res, markdown=True)
    _save(ctx.out, plots.plot_dynamics(ranks, moc, modalities=ctx.pair), "dynamics", res, ctx.formats)
    res.tables = {"summary": summary}
    res.data = DynamicsResult(
        erank={(r.model, r.name): {k: float(getattr(r, k)) for k in
                                   ("erank_init", "erank_final", "change", "change_std", "erank_min", "p", "p_holm")}
               for r in summary.itertuples()},
        reliance="not per epoch: evaluate.modality_reliance is measured on finished runs (family dose)")
    return res


def _dynamics_summary(ranks: pd.DataFrame, moc: pd.DataFrame) -> pd.DataFrame:
    """Per model and name: ERank at initialisation and at the last epoch, the change (mean and
    std over seeds), the lowest value over epochs, the validation MoC of the last epoch, and the
    test of the change: paired t of final against initial ERank over seeds (the same run measured
    twice), Holm-adjusted over the rows, and its verdict (:func:`rankfusion.verdicts.change_verdict`)."""
    last = int(ranks["epoch"].max())
    per_seed = ranks.pivot_table(index=["model", "name", "seed"], columns="epoch", values="effective_rank")
    out = pd.DataFrame({"erank_init": per_seed[0], "erank_final": per_seed[last],
                        "change": per_seed[last] - per_seed[0], "erank_min": per_seed.min(axis=1)}).reset_index()
    agg = out.groupby(["model", "name"], sort=False).agg(
        erank_init=("erank_init", "mean"), erank_final=("erank_final", "mean"), change=("change", "mean"),
        change_std=("change", "std"), erank_min=("erank_min", "mean"), n_seeds=("seed", "count")).reset_index()
    tests = [compare(g["erank_final"], g["erank_init"], paired=True, alpha=ALPHA)
             for _, g in out.groupby(["model", "name"], sort=False)]
    agg["p"] = [t.p for t in tests]
    agg["p_holm"] = verdicts.holm(tests)
    agg["verdict"] = [verdicts.change_verdict(t, p) for t, p in zip(tests, agg["p_holm"])]
    final_moc = moc[moc["epoch"] == moc["epoch"].max()].groupby("model")["val_moc"].mean()
    agg["val_moc_final"] = agg["model"].map(final_moc)
    agg.insert(2, "epochs", last)
    return agg


#: Fig. 8's rows: label -> the ablation variant whose (cached) run draws it.
TIMELINE_MODELS = {"with RTF": "R3D (RTF)", "without RTF": "W/O RTF (Tab. 2)", "anchor alone": "anchor only (Uni)"}
#: The videos Fig. 8 shows, by the MoC difference with - without RTF over the test split.
TIMELINE_ROLES = ("largest", "median", "smallest")


@dataclass(frozen=True)
class TimelineResult:
    """Fig. 8. ``videos``: ``{role: video}`` for the largest / median / smallest per-video MoC
    difference (with - without RTF) at the cut point ``obs``; ``moc``: ``{video: {model: MoC %}}``
    of the shown videos (mean over the betas); ``seed``: the run seed drawn; ``n_videos``: test
    videos ranked; ``mean_diff``: the difference averaged over them."""

    videos: dict
    moc: dict
    obs: float
    seed: int
    n_videos: int
    mean_diff: float

    def findings(self) -> dict:
        return {"videos": dict(self.videos), "moc": {v: dict(m) for v, m in self.moc.items()}, "obs": self.obs,
                "seed": self.seed, "n_videos": self.n_videos, "mean_diff": self.mean_diff}


def _timeline_runs(ctx: FigureContext):
    """``[(label, name, modalities, overrides)]`` of Fig. 8's three models (the ablation family's runs)."""
    return [(label, *_ablation_run(ctx, ABLATIONS[variant])) for label, variant in TIMELINE_MODELS.items()]


def _timeline_predictions(ctx: FigureContext, rec, obs: float) -> dict:
    """``{video: (gt, past, pred)}`` of one run on every test video long enough to observe."""
    dev = resolve_device(ctx.cache.device)
    model, config, _ = load_run(rec.run_dir, device=dev)
    ds = open_dataset(ctx.cache.data_root, modalities=list(config.model.modalities))
    return {v: predict_future(model, ds, v, config, dev, obs) for v in ds.split("test")
            if int(obs * ds.n_frames(v)) > 0}


def _video_moc(gt, obs, pred, n_classes, betas) -> float:
    """One video's MoC (%), mean over the betas, scored as :func:`rankfusion.evaluate.moc_grid` does."""
    acc = MoCAccumulator(n_classes, betas=betas)
    acc.add(gt, obs, pred)
    return 100.0 * float(np.nanmean(acc.result().to_numpy(dtype=float)))


def fig_timeline(ctx: FigureContext) -> FigureResult:
    """Fig. 8: per test video, colour bars of ground truth and predicted future at the cut point."""
    from . import plots

    seed, obs = ctx.cache.profile.seeds[0], ctx.obs
    res = FigureResult("timeline", params={"obs": obs, "seed": seed, "split": "test", "models": dict(TIMELINE_MODELS)})
    preds, runs = {}, []
    for label, name, mods, opts in _timeline_runs(ctx):
        rec = ctx.cache.run(name, mods, seed=seed, **opts)
        runs.append(rec)
        preds[label] = _timeline_predictions(ctx, rec, obs)
    ds = open_dataset(ctx.cache.data_root)
    betas = tuple(ctx.cache.config(ctx.pair).train.eval_betas)
    rows = []
    for v, (gt, past, _) in preds["with RTF"].items():
        row = {"video": v, "n_frames": int(gt.size), "past": past}
        row.update({f"moc {m}": _video_moc(gt, obs, preds[m][v][2], len(ds.classes), betas) for m in TIMELINE_MODELS})
        rows.append(row)
    if not rows:
        raise InputError(f"no test video of {str(ctx.cache.data_root)!r} is long enough to observe at {obs:g}")
    table = pd.DataFrame(rows)
    table["diff"] = table["moc with RTF"] - table["moc without RTF"]
    order = table.sort_values(["diff", "video"], kind="stable")["video"].tolist()
    chosen = {"largest": order[-1], "median": order[len(order) // 2], "smallest": order[0]}
    table["shown as"] = table["video"].map({v: r for r, v in reversed(list(chosen.items()))}).fillna("")
    _table(ctx.out, table, "timeline", res)
    panels = []
    for role, v in chosen.items():
        gt, past, _ = preds["with RTF"][v]
        r = table.set_index("video").loc[v]
        title = (f"{v}: {role} MoC difference ({r['diff']:+.1f}; with RTF {r['moc with RTF']:.1f}, "
                 f"without {r['moc without RTF']:.1f}, anchor alone {r['moc anchor alone']:.1f})")
        panels.append({"title": title, "gt": gt, "past": past,
                       "rows": [(m, preds[m][v][2]) for m in TIMELINE_MODELS]})
    _save(ctx.out, plots.plot_timelines(panels, list(ds.classes), obs=obs), "timeline", res, ctx.formats)
    res.run_keys = _keys(runs)
    res.data = TimelineResult(
        videos=chosen, obs=obs, seed=seed, n_videos=len(table), mean_diff=float(table["diff"].mean()),
        moc={v: {m: float(table.set_index("video").loc[v, f"moc {m}"]) for m in TIMELINE_MODELS}
             for v in dict.fromkeys(chosen.values())})
    return res


#: The one registry of figure families: name -> function, in the order ``rankfusion figures`` runs them.
FAMILIES = {"spectra": fig_spectra, "modality": fig_modality, "noise": fig_noise,
            "exchange": fig_exchange, "angles": fig_angles, "ablation": fig_ablation, "dose": fig_dose,
            "dynamics": fig_dynamics, "timeline": fig_timeline}


def plan_jobs(ctx: FigureContext, names) -> list:
    """The independent runs the families ``names`` need, as :class:`rankfusion.runcache.RunJob` s.

    Each job trains (or reuses) one run and makes the MoC grid and feature exports its families
    read, so :func:`make_figures` can do all of them in a process pool first; the families then
    find every run finished in the cache. Work a family does after that (noisy copies, the
    calibration, the analyses) stays serial: it depends on finished runs and is short.
    """
    c, prof = ctx.cache, ctx.cache.profile
    seeds, every = prof.seeds, tuple(prof.obs_ratios)
    jobs = []

    def add(mods, seeds=seeds, obs=(), **opts):
        jobs.extend(c.job(mods, s, obs_ratios=obs, **opts) for s in seeds)

    if "spectra" in names:
        add(ctx.pair, obs=(ctx.obs,))
        add(ctx.pair, obs=(ctx.obs,), rtf=False)
    if "modality" in names:
        for cand in (m for m in ctx.modalities if m != ctx.anchor):
            add([ctx.anchor, cand], obs=every)
        mods, opts = _fused_width_anchor(ctx)
        add(mods, **opts)  # the task evidence's baseline
    if "noise" in names:
        add(ctx.pair, obs=(ctx.obs,))
        add(ctx.pair, rtf=False)
    if "exchange" in names:
        for ratio in EXCHANGE_RATIOS:
            add(ctx.pair, exchange_ratio=ratio)
    if "angles" in names:
        add(ctx.pair, obs=every)
    if "ablation" in names:
        for opts in ABLATIONS.values():
            _, mods, o = _ablation_run(ctx, opts)
            add(mods, **o)
    if "dose" in names:
        jobs += dose_jobs(ctx)
    if "dynamics" in names:
        add(ctx.pair)
        add(ctx.pair, rtf=False)
    if "timeline" in names:
        for _, _, mods, opts in _timeline_runs(ctx):
            add(mods, seeds=seeds[:1], **opts)
    return jobs


def make_figures(ctx: FigureContext, only=None, *, command: str = "", progress: bool = True,
                 workers: int = 1) -> dict:
    """Run the selected families and write ``<out>/manifest.json``; return ``{name: FigureResult}``.

    With ``workers > 1`` the runs every family needs (:func:`plan_jobs`) are first trained,
    evaluated and exported in that many processes (:func:`rankfusion.runcache.run_jobs`). The
    manifest is merged with an existing one, so ``--only`` updates just those figures' entries.
    """
    from tqdm.auto import tqdm

    names = list(FAMILIES) if not only else list(dict.fromkeys(only))
    for n in names:
        if n not in FAMILIES:
            raise InputError(f"--only must be among {list(FAMILIES)}, got {n!r}")
    workers = check_int(workers, "workers", low=1)
    ctx.out.mkdir(parents=True, exist_ok=True)
    if workers > 1:
        ctx.cache.prefetch(plan_jobs(ctx, names), workers=workers, progress=progress)
    results = {}
    bar = tqdm(names, desc="figures", disable=bar_disabled(progress), unit="fig")
    for n in bar:
        bar.set_postfix_str(n)
        t0 = time.perf_counter()
        r = FAMILIES[n](ctx)
        r.seconds = round(time.perf_counter() - t0, 2)
        results[n] = r
    write_manifest(ctx, results, command=command)
    return results


def write_manifest(ctx: FigureContext, results: dict, *, command: str = "") -> Path:
    """Write/merge ``manifest.json``: per figure its files, runs (config hash, seed), parameters.

    The read-merge-write holds the manifest's file lock, so processes writing figures into one
    folder at once keep each other's entries.
    """
    path = ctx.out / "manifest.json"
    with entry_lock(path):
        return _merge_manifest(ctx, path, results, command)


def _merge_manifest(ctx: FigureContext, path: Path, results: dict, command: str) -> Path:
    manifest = {}
    if path.exists():
        try:
            manifest = json.loads(path.read_text())
        except ValueError:
            manifest = {}
    figs = manifest.get("figures", {})
    for n, r in results.items():
        figs[n] = {
            "files": r.files,
            "runs": ctx.cache.manifest_runs(r.run_keys) + [d for c in r.caches if c is not ctx.cache
                                                              for d in c.manifest_runs(r.run_keys)],
            "params": r.params,
            "findings": r.findings,
            "seconds": r.seconds,
            "git_commit": git_commit(),
            "command": command,
            "dataset": {"root": str(ctx.cache.data_root), "fingerprint": ctx.cache.fingerprint},
            "profile": {"model": ctx.cache.profile.model, "train": ctx.cache.profile.train,
                        "seeds": list(ctx.cache.profile.seeds), "obs_ratios": list(ctx.cache.profile.obs_ratios)},
        }
    manifest["figures"] = figs
    manifest["anchor"] = ctx.anchor
    manifest["partner"] = ctx.partner
    write_json(path, manifest)
    return path
