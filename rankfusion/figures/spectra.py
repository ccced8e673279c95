"""Figs. 2 / 9: normalised spectra of each modality before / after RTF, of a plain fusion and of the stacked features."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import featurefiles, spectral
from ..stats import ALPHA, Comparison, compare
from .common import FigureResult, keys, pair_runs, save, table
from .context import FigureContext


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


def jobs(ctx: FigureContext) -> list:
    """The pair's runs with and without RTF, features at the single-figure ratio."""
    return [pair_runs(ctx, obs=(ctx.obs,)), pair_runs(ctx, rtf=False, obs=(ctx.obs,))]


def _eranks(ctx: FigureContext, rtf_runs, plain_runs) -> pd.DataFrame:
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


def _curves(ctx: FigureContext, rec, plain) -> pd.DataFrame:
    """The first seed's normalised spectra: each modality before / after RTF, the plain fusion, the stacks."""
    f_rtf = featurefiles.load_features(ctx.cache.features(rec, ctx.obs))
    f_plain = featurefiles.load_features(ctx.cache.features(plain, ctx.obs))
    parts = [featurefiles.spectra_of(f_rtf, ctx.pair, label="R3D"),
             featurefiles.spectra_of(f_plain, ctx.pair, stages=("after",), label="plain").assign(stage="plain")]
    # The stacked features that enter the temporal fuser: the fused representation of Fig. 9.
    for name, fs in (("fused (RTF)", f_rtf), ("fused (plain)", f_plain)):
        X = featurefiles.stacked(fs, ctx.pair, "after")
        p = featurefiles.normalized_spectrum(X)
        parts.append(pd.DataFrame({"label": name, "modality": name, "stage": "after",
                                   "index": np.arange(1, len(p) + 1), "p": p,
                                   "erank": float(spectral.effective_rank(X))}))
    return pd.concat(parts, ignore_index=True)


def make(ctx: FigureContext) -> FigureResult:
    """Figs. 2 / 9: spectra of each modality before/after RTF, a plain fusion, and the stacked features.

    The curves are those of the first seed; every ERank is also given as mean ± sd over the seeds
    (legend, ``spectra_erank.csv``, findings).
    """
    from .. import plots

    res = FigureResult("spectra", params={"obs_ratio": ctx.obs, "modalities": ctx.pair, "curves_seed": ctx.seeds[0]})
    rtf_runs, plain_runs = (s.records() for s in jobs(ctx))
    res.run_keys = keys(rtf_runs + plain_runs)
    eranks = _eranks(ctx, rtf_runs, plain_runs)
    spread = eranks.groupby(["modality", "stage"], sort=False)["erank"].agg(erank_mean="mean", erank_sd="std")
    spectra = _curves(ctx, rtf_runs[0], plain_runs[0]).join(spread, on=["modality", "stage"])
    table(ctx.out, spectra, "spectra", res)
    table(ctx.out, eranks, "spectra_erank", res)
    save(ctx.out, plots.plot_spectra(spectra), "spectra", res, ctx.formats)
    mean, sd = spread["erank_mean"], spread["erank_sd"]
    by_seed = eranks.pivot_table(index=["modality", "seed"], columns="stage", values="erank")
    # each seed's Delta_m (Sec. 3.2), then their mean and sd over seeds
    gains = {m: pd.Series([float(spectral.rank_gain(b, a)) for b, a in zip(by_seed.loc[m]["before"],
                                                                             by_seed.loc[m]["after"])])
             for m in ctx.pair}
    stacked = eranks[eranks.modality.str.startswith("fused")].pivot_table(index="seed", columns="modality",
                                                                           values="erank")
    diff = stacked["fused (RTF)"] - stacked["fused (plain)"]
    res.data = SpectraResult(
        erank={(m, st): float(v) for (m, st), v in mean.items()},
        erank_sd={(m, st): float(v) for (m, st), v in sd.items()},
        gain={m: float(g.mean()) for m, g in gains.items()},
        gain_sd={m: float(g.std()) for m, g in gains.items()},
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
