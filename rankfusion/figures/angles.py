"""Table 6: principal angles between each modality's dominant subspace and the other's injected channels."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import featurefiles
from .common import FigureResult, keys, pair_runs, save, table
from .context import FigureContext


@dataclass(frozen=True)
class AnglesResult:
    """Table 6. ``angle``: ``{"X <- Y": mean principal angle in degrees}``; ``why_nan``: for a NaN
    angle, why (``{"X <- Y": reason}``)."""

    angle: dict
    why_nan: dict = None

    def findings(self) -> dict:
        return {"angle": dict(self.angle)}


def jobs(ctx: FigureContext) -> list:
    """The pair's runs with RTF, features at every observation ratio."""
    return [pair_runs(ctx, obs=ctx.obs_ratios)]


def make(ctx: FigureContext) -> FigureResult:
    """Table 6: angles between each modality's dominant subspace and the other's injected channels."""
    from .. import plots

    res = FigureResult("angles", params={"obs_ratios": list(ctx.obs_ratios), "energy": 0.9})
    (runset,) = jobs(ctx)
    runs = runset.records()
    res.run_keys = keys(runs)
    tabs = []
    for rec in runs:
        for obs in ctx.obs_ratios:
            fs = featurefiles.load_features(ctx.cache.features(rec, obs))
            tabs.append(featurefiles.angle_table(fs).assign(obs_ratio=obs, seed=rec.seed))
    full = pd.concat(tabs, ignore_index=True)
    mean = full.groupby(["direction", "target", "source", "channels"], sort=False, as_index=False)[
        ["k", "n_low", "mean_angle_deg", "min_angle_deg", "max_angle_deg", "mean_channel_angle_deg"]].mean()
    table(ctx.out, full, "angles_all", res)
    table(ctx.out, mean, "angles", res, markdown=True)
    save(ctx.out, plots.plot_angles(mean), "angles", res, ctx.formats)
    angle = {r.direction: float(r.mean_angle_deg) for r in mean.itertuples()}
    # NaN only where no run and ratio had a direction to measure (the mean skips NaN)
    why = {d: full.loc[full["direction"] == d, "note"].iloc[0] for d, v in angle.items() if v != v}
    res.data = AnglesResult(angle=angle, why_nan=why)
    return res
