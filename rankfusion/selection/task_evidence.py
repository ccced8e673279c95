"""Task evidence for runs of a trained model (the ``--data`` route): MoC gains, agreement with the criterion."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .. import stats
from .criterion import nan_last


def runs_task_evidence(per_seed_score: pd.DataFrame, per_seed_gain: pd.DataFrame | None, *,
                       alpha: float | None = None) -> tuple[dict, object]:
    """Task gains and rank agreement for runs of a trained model (the ``--data`` route).

    Parameters
    ----------
    per_seed_score : DataFrame
        ``candidate, seed, score``: each seed's criterion (its harmonic means averaged over ratios).
    per_seed_gain : DataFrame or None
        ``candidate, seed, moc, base``: each seed's MoC(anchor + candidate) and MoC(anchor alone),
        in percent (``gain`` = moc - base is derived). None: no task evidence.
    alpha : float, optional
        Level of the interval and of the agreement test (default :data:`rankfusion.stats.ALPHA`).

    Returns
    -------
    (dict, Agreement or None)
        ``{candidate: (mean gain, (lo, hi))}``: the difference of the mean MoCs with its Welch
        interval over seeds (:func:`rankfusion.stats.compare`; the pairing and the anchor alone are
        different models, not paired by seed; NaN bounds with one seed), and
        :func:`rankfusion.stats.agreement` of the mean scores with the mean gains over the
        candidates (None with fewer than three candidates). A candidate whose score is undefined
        for every seed ranks last.
    """
    alpha = stats.ALPHA if alpha is None else alpha
    if per_seed_gain is None or per_seed_gain.empty:
        return {}, None
    task = {}
    for c, grp in per_seed_gain.groupby("candidate", sort=False):
        t = stats.compare(grp["moc"].to_numpy(float), grp["base"].to_numpy(float), alpha=alpha)
        task[c] = (t.diff, t.ci)
    if len(task) < 3:
        return task, None
    cands = list(task)
    scores = per_seed_score.pivot_table(index="candidate", columns="seed", values="score", sort=False,
                                        dropna=False).reindex(index=cands)
    crit = _nanmean_rows(scores.to_numpy(dtype=float))
    return task, stats.agreement(nan_last(crit), [task[c][0] for c in cands], alpha=alpha)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means over the finite entries; NaN for a row without any (a seed without mutual gain)."""
    ok = np.isfinite(a)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)
