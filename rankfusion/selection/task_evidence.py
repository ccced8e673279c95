"""Task evidence for runs of a trained model (the ``--data`` route): MoC gains, agreement with the criterion."""

from __future__ import annotations

import pandas as pd

from .. import stats
from .criterion import ranking_key


def runs_task_evidence(ranking: pd.DataFrame, per_seed_gain: pd.DataFrame | None, *,
                       alpha: float | None = None) -> tuple[dict, object]:
    """Task gains and rank agreement for runs of a trained model (the ``--data`` route).

    Parameters
    ----------
    ranking : DataFrame
        :func:`rankfusion.selection.rank_candidates`' table: the order the agreement is tested on
        is the order it prints (:func:`rankfusion.selection.criterion.ranking_key`).
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
        :func:`rankfusion.stats.agreement` of the ranking with the mean gains over the candidates
        (None with fewer than three candidates).
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
    key = ranking_key(ranking)
    cands = [c for c in task if c in key]
    if len(cands) < 3:
        return task, None
    return task, stats.agreement([key[c] for c in cands], [task[c][0] for c in cands], alpha=alpha)
