"""Figs. 6 / 7: ERank gains and MoC under calibrated Gaussian noise on one modality at a time."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from .. import featurefiles
from ..stats import ALPHA, Comparison, compare
from .common import FigureResult, keys, pair_runs, save, table
from .context import FigureContext


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


def jobs(ctx: FigureContext) -> list:
    """The pair's runs with RTF (features at the single-figure ratio: calibrated on) and without."""
    return [pair_runs(ctx, obs=(ctx.obs,)), pair_runs(ctx, rtf=False)]


def _calibrate(ctx: FigureContext, rec, nm: str, targets, noise_seed: int) -> list[dict]:
    """Sigmas of one run for noisy modality ``nm`` (rule in :func:`make`)."""
    cache = ctx.cache
    clean = featurefiles.load_features(cache.features(rec, ctx.obs))

    def response(s):
        noisy = featurefiles.load_features(cache.features(rec, ctx.obs, noise=(nm, s, noise_seed)))
        return featurefiles.relative_change(clean.get(nm, "before"), noisy.get(nm, "before"))

    return featurefiles.calibrate_sigma(response, targets, sigma0=0.2, iters=3, rtol=0.1)


def _levels(targets) -> list[str]:
    return ["clean"] + (["small", "large"] if len(targets) == 2 else [f"level {i + 1}" for i in range(len(targets))])


def _seed_rows(ctx: FigureContext, nm: str, rec, plain, targets, noise_seed: int):
    """Sigma, gain and MoC rows of one training seed with noise on ``nm``."""
    cache, levels = ctx.cache, _levels(targets)
    sig_rows, gain_rows, moc_rows = [], [], []
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
    return sig_rows, gain_rows, moc_rows


def make(ctx: FigureContext, *, noise_seed: int = 0) -> FigureResult:
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
    targets = tuple(ctx.profile.noise_targets)
    res = FigureResult("noise", params={"obs_ratio": ctx.obs, "targets": list(targets), "noise_seed": noise_seed,
                                        "rule": "relative Frobenius change of the noisy modality's token-fuser "
                                                "input, calibrated per training seed"})
    rtf_runs, plain_runs = (s.records() for s in jobs(ctx))
    res.run_keys = keys(rtf_runs + plain_runs)
    sig_rows, gain_rows, moc_rows = [], [], []
    for nm in [ctx.partner, ctx.anchor]:
        for rec, plain in zip(rtf_runs, plain_runs):
            s, g, m = _seed_rows(ctx, nm, rec, plain, targets, noise_seed)
            sig_rows += s
            gain_rows += g
            moc_rows += m
    res.params["sigmas"] = sig_rows
    _outputs(ctx, res, pd.DataFrame(sig_rows), pd.DataFrame(gain_rows), pd.DataFrame(moc_rows))
    return res


def _outputs(ctx: FigureContext, res: FigureResult, sig_df, gain_df, moc_seed) -> None:
    """Seed means and spreads of the noise family's per-seed rows; tables, figures, findings."""
    from .. import plots

    by = ["noisy_modality", "level"]
    gain_mean = gain_df.groupby(by + ["modality"], sort=False, as_index=False).agg(
        sigma=("sigma", "mean"), erank_before=("erank_before", "mean"), erank_after=("erank_after", "mean"),
        gain=("gain", "mean"), gain_std=("gain", "std"), n_seeds=("seed", "count"))
    moc_df = moc_seed.groupby(by + ["model"], sort=False, as_index=False).agg(
        sigma=("sigma", "mean"), moc=("moc", "mean"), moc_std=("moc", "std"), n_seeds=("seed", "count"))
    sig_mean = sig_df.groupby(by, sort=False, as_index=False).agg(
        sigma_rms_units=("sigma_rms_units", "mean"), sigma_std=("sigma_rms_units", "std"),
        achieved_change=("achieved_change", "mean"), target_change=("target_change", "first"))
    table(ctx.out, sig_df, "noise_sigmas", res, markdown=True)
    table(ctx.out, gain_df, "noise_gains", res)
    table(ctx.out, moc_seed, "noise_moc_seeds", res)
    table(ctx.out, moc_df, "noise_moc", res, markdown=True)
    save(ctx.out, plots.plot_noise_gains(gain_mean), "noise_gains", res, ctx.formats)
    save(ctx.out, plots.plot_noise_moc(moc_df), "noise_moc", res, ctx.formats)
    res.data = NoiseResult(
        sigmas={(r.noisy_modality, r.level): float(r.sigma_rms_units) for r in sig_mean.itertuples()},
        sigma_std={(r.noisy_modality, r.level): float(r.sigma_std) for r in sig_mean.itertuples()},
        achieved={(r.noisy_modality, r.level): float(r.achieved_change) for r in sig_mean.itertuples()},
        gain={(r.noisy_modality, r.level, r.modality): float(r.gain) for r in gain_mean.itertuples()},
        gain_std={(r.noisy_modality, r.level, r.modality): float(r.gain_std) for r in gain_mean.itertuples()},
        moc={(r.noisy_modality, r.level, r.model): float(r.moc) for r in moc_df.itertuples()},
        moc_std={(r.noisy_modality, r.level, r.model): float(r.moc_std) for r in moc_df.itertuples()},
        gain_values={k: {int(r.seed): float(r.gain) for r in g.itertuples()}
                     for k, g in gain_df.groupby(by + ["modality"], sort=False)},
    )
