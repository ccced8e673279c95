"""Tables 2, 3, 8, 9 (+ R3D (Uni) of Table 1): MoC of R3D and of each variant that removes or changes one part."""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from ..stats import ALPHA, compare
from .common import FigureResult, RunSet, grid_moc_over_seeds, keys, pair_runs, run_set, save, seed_moc, spread, table
from .context import FigureContext

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


def variant_runs(ctx: FigureContext, variant: str) -> RunSet:
    """The runs of one :data:`ABLATIONS` variant (R3D and W/O RTF are the pair's own runs)."""
    opts = dict(ABLATIONS[variant])
    if opts.pop("_uni", False):
        name = ctx.anchor + ("" if not opts else " " + ",".join(f"{k}={v}" for k, v in opts.items()))
        return run_set(ctx, name, [ctx.anchor], **opts)
    if not opts or opts == {"rtf": False}:
        return pair_runs(ctx, rtf=not opts)
    return run_set(ctx, "+".join(ctx.pair) + " " + ",".join(f"{k}={v}" for k, v in opts.items()), ctx.pair, **opts)


def jobs(ctx: FigureContext) -> list:
    """The runs of every variant of :data:`ABLATIONS`, in that order."""
    return [variant_runs(ctx, v) for v in ABLATIONS]


def make(ctx: FigureContext) -> FigureResult:
    """Tables 2, 3, 8, 9 (+ Uni): MoC per variant, observation ratio and beta."""
    from .. import plots

    res = FigureResult("ablation", params={"variants": {k: v for k, v in ABLATIONS.items()}})
    rows, parts, runs = [], [], []
    for label, runset in zip(ABLATIONS, jobs(ctx)):
        rr = runset.records()
        runs += rr
        parts.append(seed_moc(ctx.cache, rr).assign(variant=label))
        for r in grid_moc_over_seeds(ctx.cache, rr).itertuples():
            rows.append({"variant": label, "obs_ratio": r.obs_ratio, "beta": r.beta, "moc": r.moc})
    res.run_keys = keys(runs)
    long = pd.DataFrame(rows)
    per_seed = pd.concat(parts, ignore_index=True)
    wide = long.pivot_table(index="variant", columns=["obs_ratio", "beta"], values="moc", sort=False)
    wide.columns = [f"a={o:g} b={b:g}" for o, b in wide.columns]
    wide = wide.reset_index()
    overall = spread(per_seed, ["variant"])
    wide["mean"] = overall["moc"].to_numpy()
    wide["std over seeds"] = overall["moc_std"].to_numpy()
    table(ctx.out, long, "ablation_long", res)
    table(ctx.out, wide, "ablation", res, markdown=True)
    per_obs = spread(per_seed, ["variant", "obs_ratio"])
    save(ctx.out, plots.plot_ablation(per_obs), "ablation", res, ctx.formats)
    seed_means = per_seed.groupby(["variant", "seed"], sort=False)["moc"].mean()
    # each run's grid-mean MoC: the values the report's Welch tests take
    table(ctx.out, seed_means.reset_index(), "ablation_runs", res)
    res.data = AblationResult(moc={v: float(m) for v, m in zip(wide["variant"], wide["mean"])},
                              std={v: float(m) for v, m in zip(wide["variant"], wide["std over seeds"])},
                              values={v: tuple(float(x) for x in seed_means.loc[v]) for v in wide["variant"]})
    return res
