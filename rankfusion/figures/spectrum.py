"""Numerical and effective rank of every array of the anchor+partner run's feature file (``spectrum.md``)."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .. import featurefiles, spectral
from ..files import to_markdown, write_text
from .common import FigureResult, keys, pair_runs
from .context import FigureContext


@dataclass(frozen=True)
class SpectrumResult:
    """``table``: ``array, shape, numerical_rank, effective_rank`` of every array of the first seed's file."""

    table: pd.DataFrame

    def findings(self) -> dict:
        return {r["array"]: {"numerical_rank": r["numerical_rank"], "effective_rank": r["effective_rank"]}
                for r in self.table.to_dict("records")}


def jobs(ctx: FigureContext) -> list:
    """The pair's runs with RTF (the first seed's features at the single-figure ratio are read)."""
    return [pair_runs(ctx, obs=(ctx.obs,))]


def make(ctx: FigureContext) -> FigureResult:
    """Numerical rank and effective rank of every array of the pair's feature file (``rankfusion spectrum``)."""
    res = FigureResult("spectrum", params={"obs_ratio": ctx.obs, "seed": ctx.seeds[0]})
    (runset,) = jobs(ctx)
    rec = runset.records()[0]
    res.run_keys = keys([rec])
    fs = featurefiles.load_features(ctx.cache.features(rec, ctx.obs))
    rows = [{"array": key, "shape": "x".join(map(str, X.shape)), "numerical_rank": int(spectral.numerical_rank(X)),
             "effective_rank": float(spectral.effective_rank(X))} for key, X in fs.arrays.items()]
    tab = pd.DataFrame(rows)
    ctx.out.mkdir(parents=True, exist_ok=True)
    write_text(ctx.out / "spectrum.md", to_markdown(tab) + "\n")
    res.files.append("spectrum.md")
    res.tables = {"spectrum": tab}
    res.data = SpectrumResult(tab)
    return res
