"""The paper's figure families, regenerated from cached R3D runs (``rankfusion figures``).

Each family function takes a :class:`FigureContext`, trains (or reuses) the runs it needs via
:class:`rankfusion.pipeline.RunCache`, computes its tables with :mod:`rankfusion.analysis`, writes
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
=============  ===============================================================================
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from . import analysis, selection
from ._validation import InputError
from .io import atomic_path, write_json, write_text
from .pipeline import RunCache, expected_complementary, git_commit

#: Family names in the order ``rankfusion figures`` runs them.
FAMILIES = ("spectra", "modality", "noise", "exchange", "angles", "ablation")

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
        from .data import open_dataset

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
    findings: dict = field(default_factory=dict)
    seconds: float = 0.0
    tables: dict = field(default_factory=dict, repr=False)


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


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub-style Markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "NaN" if not np.isfinite(v) else format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):  # itertuples keeps each column's dtype (ints stay ints)
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)


def _keys(runs) -> list[str]:
    return [f"{r.name}/s{r.seed}" for r in runs]


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


def fig_spectra(ctx: FigureContext) -> FigureResult:
    """Figs. 2 / 9: spectra of each modality before/after RTF, a plain fusion, and the stacked features."""
    from . import plots, spectral

    res = FigureResult("spectra", params={"obs_ratio": ctx.obs, "modalities": ctx.pair})
    seed = ctx.cache.profile.seeds[0]
    rtf = ctx.cache.run(f"{ctx.anchor}+{ctx.partner}", ctx.pair, seed=seed)
    plain = ctx.cache.run(f"{ctx.anchor}+{ctx.partner} W/O RTF", ctx.pair, seed=seed, rtf=False)
    res.run_keys = _keys([rtf, plain])
    f_rtf = analysis.load_features(ctx.cache.features(rtf, ctx.obs))
    f_plain = analysis.load_features(ctx.cache.features(plain, ctx.obs))
    parts = [analysis.spectra_of(f_rtf, ctx.pair, label="R3D"),
             analysis.spectra_of(f_plain, ctx.pair, stages=("after",), label="plain").assign(stage="plain")]
    # The stacked features that enter the temporal fuser: the fused representation of Fig. 9.
    for name, fs in (("fused (RTF)", f_rtf), ("fused (plain)", f_plain)):
        X = analysis.stacked(fs, ctx.pair, "after")
        p = analysis.normalized_spectrum(X)
        parts.append(pd.DataFrame({"label": name, "modality": name, "stage": "after",
                                   "index": np.arange(1, len(p) + 1), "p": p,
                                   "erank": float(spectral.effective_rank(X))}))
    spectra = pd.concat(parts, ignore_index=True)
    _table(ctx.out, spectra, "spectra", res)
    _save(ctx.out, plots.plot_spectra(spectra), "spectra", res, ctx.formats)
    summary = spectra.groupby(["modality", "stage"], sort=False)["erank"].first()
    res.findings = {
        "erank": {f"{m} {s}": float(v) for (m, s), v in summary.items()},
        "gain": {m: float(summary[(m, "after")] - summary[(m, "before")]) for m in ctx.pair},
        "stacked_rtf": float(summary[("fused (RTF)", "after")]),
        "stacked_plain": float(summary[("fused (plain)", "after")]),
    }
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
    # paths relative to the cache, so a committed table does not carry local paths
    table["file"] = [Path(f).relative_to(ctx.cache.cache_dir).as_posix()
                     if Path(f).is_relative_to(ctx.cache.cache_dir) else f for f in table["file"]]
    if expected is None:
        expected = expected_complementary(ctx.cache.data_root)
    sel = write_selection(ctx.out, table, anchor=ctx.anchor, expected=expected, formats=ctx.formats)
    summary, ranking = sel["summary"], sel["ranking"]
    res.files += sel["files"]
    res.tables = {"summary": summary, "ranking": ranking, "files": table}
    res.findings = {
        "ranking": ranking["candidate"].tolist(),
        "scores": {c: (None if not np.isfinite(s) else float(s)) for c, s in zip(ranking["candidate"], ranking["score"])},
        "reasons": {c: r for c, r in zip(ranking["candidate"], ranking["reason"]) if r},
        "comparison": sel["comparison"],
        "moc": moc,
        # run-to-run spread: each seed's score (mean over ratios of its own harmonic means), then
        # the standard deviation over seeds (NaN with one seed)
        "seed_std": {c: float(v) for c, v in table.groupby(["candidate", "seed"])["harmonic_mean"].mean()
                     .groupby("candidate").std().items()},
        # gains as a percentage of the ERank before fusion, mean over ratios: {candidate: {role: %}}
        "relative_gain_pct": {
            c: {role: float(100 * (grp[f"gain_{role}"] / grp[f"erank_{role}_before"]).mean())
                for role in ("anchor", "candidate")}
            for c, grp in summary.groupby("candidate")},
        "gains": {f"{r.candidate}@{r.obs_ratio:g}": {
            "anchor": float(r.gain_anchor), "candidate": float(r.gain_candidate),
            "harmonic_mean": None if not np.isfinite(r.harmonic_mean) else float(r.harmonic_mean)}
            for r in summary.itertuples()},
    }
    return res


def fig_noise(ctx: FigureContext, *, noise_seed: int = 0) -> FigureResult:
    """Figs. 6 / 7: ERank gains and MoC with calibrated Gaussian noise on one modality at a time.

    Calibration rule: for each noisy modality m and target relative change t (profile's
    ``noise_targets``, "small" and "large"), sigma_m is chosen so that the test features of m at
    the token fuser's *input* (after the Eq. 2 projection of the trained RTF model) move by
    ||F_noisy - F_clean||_F / ||F_clean||_F = t. Noise is N(0, (sigma_m * RMS_m)^2) on m's input
    features, RMS_m over the test split; sigma_m is found by proportional (secant-through-0)
    updates (:func:`rankfusion.analysis.calibrate_sigma`), and the achieved change is recorded.
    """
    from . import plots

    cache = ctx.cache
    targets = tuple(cache.profile.noise_targets)
    levels = ["clean"] + (["small", "large"] if len(targets) == 2 else [f"level {i + 1}" for i in range(len(targets))])
    res = FigureResult("noise", params={"obs_ratio": ctx.obs, "targets": list(targets), "noise_seed": noise_seed,
                                        "rule": "relative Frobenius change of the noisy modality's token-fuser input"})
    seeds = cache.profile.seeds
    rtf_runs = cache.runs(f"{ctx.anchor}+{ctx.partner}", ctx.pair)
    plain_runs = cache.runs(f"{ctx.anchor}+{ctx.partner} W/O RTF", ctx.pair, rtf=False)
    res.run_keys = _keys(rtf_runs + plain_runs)
    calib_run = rtf_runs[0]
    clean = analysis.load_features(cache.features(calib_run, ctx.obs))
    sig_rows, gain_rows, moc_rows = [], [], []
    for nm in [ctx.partner, ctx.anchor]:
        def response(s, nm=nm):
            noisy = analysis.load_features(cache.features(calib_run, ctx.obs, noise=(nm, s, noise_seed)))
            return analysis.relative_change(clean.get(nm, "before"), noisy.get(nm, "before"))

        cal = analysis.calibrate_sigma(response, targets, sigma0=0.2, iters=3, rtol=0.1)
        sigmas = [0.0] + [c["sigma"] for c in cal]
        for lv, c in zip(levels[1:], cal):
            sig_rows.append({"noisy_modality": nm, "level": lv, "sigma_rms_units": c["sigma"],
                             "rms": cache.rms(nm), "std": c["sigma"] * cache.rms(nm),
                             "target_change": c["target"], "achieved_change": c["achieved"],
                             "evaluations": c["evaluations"], "noise_seed": noise_seed,
                             "calibrated_on": f"{calib_run.name}/s{calib_run.seed}"})
        for lv, s in zip(levels, sigmas):
            noise = None if s == 0 else (nm, s, noise_seed)
            for rec in rtf_runs:
                fs = analysis.load_features(cache.features(rec, ctx.obs, noise=noise))
                for row in analysis.gains_table(fs, ctx.pair).to_dict("records"):
                    gain_rows.append({"noisy_modality": nm, "level": lv, "sigma": s, "seed": rec.seed, **row})
            for model, runs in (("with RTF", rtf_runs), ("without RTF", plain_runs)):
                m = _mean_moc(cache, runs, noise=noise)
                moc_rows.append({"noisy_modality": nm, "level": lv, "sigma": s, "model": model,
                                 "moc": float(m["moc"].mean()), "n_seeds": len(seeds)})
    sig_df, gain_df, moc_df = pd.DataFrame(sig_rows), pd.DataFrame(gain_rows), pd.DataFrame(moc_rows)
    gain_mean = gain_df.groupby(["noisy_modality", "level", "sigma", "modality"], sort=False, as_index=False)[
        ["erank_before", "erank_after", "gain"]].mean()
    _table(ctx.out, sig_df, "noise_sigmas", res, markdown=True)
    _table(ctx.out, gain_df, "noise_gains", res)
    _table(ctx.out, moc_df, "noise_moc", res, markdown=True)
    _save(ctx.out, plots.plot_noise_gains(gain_mean), "noise_gains", res, ctx.formats)
    _save(ctx.out, plots.plot_noise_moc(moc_df), "noise_moc", res, ctx.formats)
    res.params["sigmas"] = sig_rows
    res.findings = {
        "sigmas": {f"{r['noisy_modality']} {r['level']}": r["sigma_rms_units"] for r in sig_rows},
        "achieved": {f"{r['noisy_modality']} {r['level']}": r["achieved_change"] for r in sig_rows},
        "gain": {f"{r.noisy_modality} {r.level} -> {r.modality}": float(r.gain) for r in gain_mean.itertuples()},
        "moc": {f"{r.noisy_modality} {r.level} {r.model}": float(r.moc) for r in moc_df.itertuples()},
    }
    return res


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
    res.findings = {"moc": {f"{k:g}": float(v) for k, v in by_ratio.items()}, "best": float(by_ratio.idxmax())}
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
            fs = analysis.load_features(ctx.cache.features(rec, obs))
            tabs.append(analysis.angle_table(fs, exchange_ratio=ratio).assign(obs_ratio=obs, seed=rec.seed))
    full = pd.concat(tabs, ignore_index=True)
    mean = full.groupby(["direction", "target", "source"], sort=False, as_index=False)[
        ["k", "n_low", "mean_angle_deg", "min_angle_deg", "max_angle_deg", "mean_channel_angle_deg"]].mean()
    _table(ctx.out, full, "angles_all", res)
    _table(ctx.out, mean, "angles", res, markdown=True)
    _save(ctx.out, plots.plot_angles(mean), "angles", res, ctx.formats)
    res.findings = {"angle": {r.direction: float(r.mean_angle_deg) for r in mean.itertuples()}}
    return res


def fig_ablation(ctx: FigureContext) -> FigureResult:
    """Tables 2, 3, 8, 9 (+ Uni): MoC per variant, observation ratio and beta."""
    from . import plots

    res = FigureResult("ablation", params={"variants": {k: v for k, v in ABLATIONS.items()}})
    rows, parts, runs = [], [], []
    for label, opts in ABLATIONS.items():
        opts = dict(opts)
        mods = [ctx.anchor] if opts.pop("_uni", False) else ctx.pair
        name = f"{'+'.join(mods)}" + ("" if not opts else " " + ",".join(f"{k}={v}" for k, v in opts.items()))
        if not opts and mods == ctx.pair:
            name = f"{ctx.anchor}+{ctx.partner}"
        if opts == {"rtf": False}:
            name = f"{ctx.anchor}+{ctx.partner} W/O RTF"
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
    res.findings = {"moc": {v: float(m) for v, m in zip(wide["variant"], wide["mean"])},
                    "std": {v: float(m) for v, m in zip(wide["variant"], wide["std over seeds"])}}
    return res


FAMILY_FUNCS = {"spectra": fig_spectra, "modality": fig_modality, "noise": fig_noise,
                "exchange": fig_exchange, "angles": fig_angles, "ablation": fig_ablation}


def make_figures(ctx: FigureContext, only=None, *, command: str = "", progress: bool = True) -> dict:
    """Run the selected families and write ``<out>/manifest.json``; return ``{name: FigureResult}``.

    The manifest is merged with an existing one, so ``--only`` updates just those figures' entries.
    """
    from tqdm.auto import tqdm

    names = list(FAMILIES) if not only else list(dict.fromkeys(only))
    for n in names:
        if n not in FAMILY_FUNCS:
            raise InputError(f"--only must be among {list(FAMILIES)}, got {n!r}")
    ctx.out.mkdir(parents=True, exist_ok=True)
    results = {}
    bar = tqdm(names, desc="figures", disable=not progress, unit="fig")
    for n in bar:
        bar.set_postfix_str(n)
        t0 = time.perf_counter()
        r = FAMILY_FUNCS[n](ctx)
        r.seconds = round(time.perf_counter() - t0, 2)
        results[n] = r
    write_manifest(ctx, results, command=command)
    return results


def write_manifest(ctx: FigureContext, results: dict, *, command: str = "") -> Path:
    """Write/merge ``manifest.json``: per figure its files, runs (config hash, seed), parameters."""
    path = ctx.out / "manifest.json"
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
            "runs": ctx.cache.manifest_runs(r.run_keys),
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
