"""Theorem 3.1 checked on the exported features of the anchor+partner run, in both directions (``theorem.md``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .. import featurefiles
from ..files import to_markdown, write_text
from ..spectral import dominant_k, singular_values
from ..theorem import theorem_3_1
from .common import FigureResult, keys, pair_runs
from .context import FigureContext


@dataclass(frozen=True)
class TheoremResult:
    """:func:`theorem_table` of the pair's first-seed features: one row per direction ``X <- Y``."""

    table: pd.DataFrame

    def findings(self) -> dict:
        return {r["direction"]: {k: v for k, v in r.items() if k != "direction"}
                for r in self.table.to_dict("records")}


def theorem_table(features, pairs, *, exchange_ratio: float | None = None, alpha: float = 0.5) -> pd.DataFrame:
    """Theorem 3.1 on a feature file's ``.before`` arrays, one row per direction ``X <- Y``.

    C_low are :func:`rankfusion.featurefiles.injected_channels` of X (the channels the run blended
    when the file records them, column ``channels`` = ``"run"``; else as many as RTF blends at
    ``exchange_ratio``, of lowest column energy on the file's rows, ``"criterion"``), k the
    90%-energy dominant subspace (:func:`rankfusion.spectral.dominant_k`) and a uniform alpha.
    """
    rows = []
    for target, source in pairs:
        X = np.asarray(features.get(target, "before"), dtype=np.float64)
        Y = np.asarray(features.get(source, "before"), dtype=np.float64)
        low, source_of_low = featurefiles.injected_channels(features, target, exchange_ratio)
        rep = theorem_3_1(X, Y, k=dominant_k(singular_values(X)), alpha=alpha, low=low, informativeness="full")
        rows.append({"direction": f"{target} <- {source}", "channels": source_of_low, "k": rep.k, "n_low": rep.n_low, "alpha": alpha,
                     "erank_before": rep.erank_before, "erank_after": rep.erank_after,
                     "erank_change": rep.erank_change, "assumptions_hold": rep.assumptions_hold,
                     "failed": ", ".join(rep.failed) if rep.failed else "", "verdict": rep.verdict})
    return pd.DataFrame(rows)


def jobs(ctx: FigureContext) -> list:
    """The pair's runs with RTF (the first seed's features at the single-figure ratio are read)."""
    return [pair_runs(ctx, obs=(ctx.obs,))]


def make(ctx: FigureContext, *, alpha: float = 0.5) -> FigureResult:
    """:func:`theorem_table` on the R3D features of the anchor+partner run, in both directions."""
    res = FigureResult("theorem", params={"obs_ratio": ctx.obs, "seed": ctx.seeds[0], "alpha": alpha})
    (runset,) = jobs(ctx)
    rec = runset.records()[0]
    res.run_keys = keys([rec])
    fs = featurefiles.load_features(ctx.cache.features(rec, ctx.obs))
    tab = theorem_table(fs, ((ctx.anchor, ctx.partner), (ctx.partner, ctx.anchor)), alpha=alpha)
    ctx.out.mkdir(parents=True, exist_ok=True)
    write_text(ctx.out / "theorem.md", to_markdown(tab, floatfmt=".3f") + "\n")
    res.files.append("theorem.md")
    res.tables = {"theorem": tab}
    res.data = TheoremResult(tab)
    return res
