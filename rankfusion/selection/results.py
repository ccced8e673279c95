"""The results of modality selection and their ``--json`` schema."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from .probe import ProbeConfig


def _num(v):
    """A JSON number: None for a missing or non-finite value."""
    return None if v is None or not np.isfinite(v) else float(v)


@dataclass(frozen=True)
class CandidateEvidence:
    """Everything measured for one candidate (gains in effective dimensions, accuracy as a fraction).

    ``criterion`` is the harmonic mean of the mean gains over the replicates (NaN when a mean gain
    is <= 0); ``control_values`` the same statistic of each surrogate (fitted on every replicate,
    gains averaged the same way; NaN: no mutual gain), ``control_mean`` / ``control_std`` their mean
    and sd over the finite ones (``control_nan`` counts the others), ``control_gain_*`` the
    surrogates' mean gains; ``excess = criterion - control_mean``; ``control_p`` and
    ``noise_like`` come from :func:`noise_test`. ``task_gain`` is the mean over replicates of
    accuracy(anchor + candidate, RTF) - accuracy(anchor), ``task_gain_ci`` its corrected 95%
    interval, cut to [-1, 1] (a difference of accuracies cannot leave it; the t interval can, with
    few replicates); ``task_gain_plain`` the same without RTF.
    """

    name: str
    criterion: float
    gain_anchor: float
    gain_candidate: float
    control_mean: float
    control_std: float
    control_values: tuple
    control_gain_anchor: float
    control_gain_candidate: float
    excess: float
    control_p: float
    control_nan: int
    noise_like: bool
    task_gain: float | None
    task_gain_ci: tuple | None
    task_gain_plain: float | None
    accuracy: float | None
    accuracy_plain: float | None
    rank_criterion: int = 0
    rank_controlled: int = 0


@dataclass(frozen=True)
class SelectionReport:
    """The result of :func:`select_modalities` (one entry per candidate, in input order)."""

    anchor: str
    candidates: tuple
    agreement: object  # rankfusion.stats.Agreement of criterion and task gain, or None (< 3 candidates)
    accuracy_anchor: float | None
    n_rows: int
    n_replicates: int
    config: ProbeConfig = field(default_factory=ProbeConfig)
    seconds: float = 0.0

    @property
    def spearman(self) -> float | None:
        """Spearman's rho of the criterion and the task gain over the candidates (None: untested)."""
        return None if self.agreement is None else self.agreement.rho

    def to_json(self) -> dict:
        """The ``--json`` schema: anchor, candidates (criterion, control, task gain, ranks), agreement."""
        cands = [{
            "name": c.name, "criterion": _num(c.criterion), "control_mean": _num(c.control_mean),
            "control_std": _num(c.control_std), "control_p": _num(c.control_p), "excess": _num(c.excess),
            "noise_like": bool(c.noise_like),
            "task_gain": _num(c.task_gain),
            "task_gain_ci": None if c.task_gain_ci is None else [_num(v) for v in c.task_gain_ci],
            "rank_criterion": int(c.rank_criterion), "rank_controlled": int(c.rank_controlled),
        } for c in self.candidates]
        return {"anchor": self.anchor, "candidates": cands, "agreement": agreement_json(self.agreement)}

    def table(self) -> pd.DataFrame:
        """One row per candidate with every field (control values as a ';'-joined string)."""
        rows = []
        for c in self.candidates:
            row = asdict(c)
            row["control_values"] = ";".join(f"{v:.6g}" for v in c.control_values)
            lo, hi = c.task_gain_ci if c.task_gain_ci is not None else (math.nan, math.nan)
            row.pop("task_gain_ci")
            row["task_gain_lo"], row["task_gain_hi"] = lo, hi
            rows.append(row)
        df = pd.DataFrame(rows).rename(columns={"name": "candidate"})
        df.insert(0, "anchor", self.anchor)
        return df


def ranking_json(ranking: pd.DataFrame, anchor: str, task: dict | None = None, agreement=None) -> dict:
    """The ``--json`` schema for a ranking from feature files or R3D runs.

    No noise control exists there (the model that made the features cannot be rerun with a
    surrogate), so the control fields and ``noise_like`` are null and ``rank_controlled`` equals
    ``rank_criterion``; task fields come from ``task`` (MoC gains in percent) or are null;
    ``agreement`` is :func:`agreement_json` of a :class:`rankfusion.stats.Agreement` (or None).
    """
    task = task or {}
    cands = []
    for r in ranking.itertuples():
        gain, gci = task.get(r.candidate, (None, None))
        cands.append({"name": r.candidate, "criterion": _num(r.score), "control_mean": None, "control_std": None,
                      "control_p": None, "excess": None, "noise_like": None, "task_gain": _num(gain),
                      "task_gain_ci": None if gci is None else [_num(v) for v in gci],
                      "rank_criterion": int(r.rank), "rank_controlled": int(r.rank)})
    return {"anchor": anchor, "candidates": cands, "agreement": agreement_json(agreement)}


def agreement_json(ag) -> dict:
    """``{"spearman", "ci", "p", "exact", "backed", "alpha", "alternative"}`` of an Agreement (all null
    for None); ``alternative`` is the p-value's side: "greater" (one-sided) or "two-sided".

    ``ci`` stays in the schema and is null: the agreement is tested by permutation over the
    candidates, not given a resampling interval.
    """
    if ag is None:
        return {"spearman": None, "ci": None, "p": None, "exact": None, "backed": None, "alpha": None,
                "alternative": None}
    exact = None if ag.exact is None else bool(ag.exact)  # None: no test was run
    return {"spearman": _num(ag.rho), "ci": None, "p": _num(ag.p), "exact": exact, "backed": bool(ag.backed),
            "alpha": float(ag.alpha), "alternative": ag.alternative}
