"""Fig. 5: MoC of the anchor+partner model against the share of exchanged channels (0.1 / 0.2 / 0.3)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .common import FigureResult, keys, run_set, save, seed_moc, spread, table
from .context import FigureContext

#: Exchange ratios of Fig. 5.
EXCHANGE_RATIOS = (0.1, 0.2, 0.3)


@dataclass(frozen=True)
class ExchangeResult:
    """Fig. 5. ``moc``: ``{exchange ratio: MoC mean over the grid}``; ``best``: the ratio of the highest."""

    moc: dict
    best: float

    def findings(self) -> dict:
        return {"moc": {f"{k:g}": v for k, v in self.moc.items()}, "best": self.best}


def jobs(ctx: FigureContext) -> list:
    """The pair's runs at each exchange ratio of :data:`EXCHANGE_RATIOS`, in that order."""
    return [run_set(ctx, f"{ctx.anchor}+{ctx.partner} exchange {ratio:g}", ctx.pair, exchange_ratio=ratio)
            for ratio in EXCHANGE_RATIOS]


def make(ctx: FigureContext) -> FigureResult:
    """Fig. 5: MoC (mean over beta) for exchange ratios 0.1 / 0.2 / 0.3."""
    from .. import plots

    res = FigureResult("exchange", params={"exchange_ratios": list(EXCHANGE_RATIOS), "modalities": ctx.pair})
    parts, runs = [], []
    for ratio, runset in zip(EXCHANGE_RATIOS, jobs(ctx)):
        rr = runset.records()
        runs += rr
        parts.append(seed_moc(ctx.cache, rr).assign(exchange_ratio=ratio))
    res.run_keys = keys(runs)
    df = spread(pd.concat(parts, ignore_index=True), ["exchange_ratio", "obs_ratio"])
    table(ctx.out, df, "exchange_ratio", res, markdown=True)
    save(ctx.out, plots.plot_exchange_ratio(df, pair=f"{ctx.anchor} + {ctx.partner}"), "exchange_ratio", res,
         ctx.formats)
    by_ratio = df.groupby("exchange_ratio")["moc"].mean()
    res.data = ExchangeResult(moc={float(k): float(v) for k, v in by_ratio.items()}, best=float(by_ratio.idxmax()))
    return res
