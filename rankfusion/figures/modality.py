"""Fig. 3: candidates ranked by the harmonic mean of the ERank gains of the anchor and each candidate."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import selection
from .._validation import InputError
from ..runcache import expected_complementary
from .common import FigureResult, fused_width_anchor, grid_moc_over_seeds, keys, run_set, save, seed_moc, table
from .context import FigureContext


@dataclass(frozen=True)
class ModalityResult:
    """Fig. 3. ``scores``: ``{candidate: score or None}`` in ranking order; ``gains``:
    ``{(candidate, obs_ratio): {"anchor", "candidate", "harmonic_mean"}}``; ``relative_gain_pct``:
    ``{candidate: {"anchor" / "candidate": % of the ERank before fusion}}``; ``moc``:
    ``{candidate: grid-mean MoC of the anchor+candidate runs}``; ``seed_scores``: ``{candidate:
    per-seed scores}`` (seeds with a NaN harmonic mean at some ratio dropped); ``comparison``:
    :func:`rankfusion.selection.compare_with_expected`; ``task_gain``: ``{candidate: (mean, (lo,
    hi))}``; ``agreement``: :func:`rankfusion.stats.agreement` of score and task gain, or None."""

    ranking: tuple
    scores: dict
    reasons: dict
    comparison: dict
    moc: dict
    seed_scores: dict
    relative_gain_pct: dict
    gains: dict
    task_gain: dict = field(default_factory=dict)
    agreement: object = None

    @property
    def seed_std(self) -> dict:
        """``{candidate: sd of the per-seed scores}`` (NaN with fewer than two)."""
        return {c: float(np.std(v, ddof=1)) if len(v) > 1 else float("nan") for c, v in self.seed_scores.items()}

    def gains_of(self, candidate: str) -> dict:
        """``{obs_ratio: gains}`` of one candidate."""
        return {o: g for (c, o), g in self.gains.items() if c == candidate}

    def findings(self) -> dict:
        return {"ranking": list(self.ranking), "scores": dict(self.scores), "reasons": dict(self.reasons),
                "comparison": self.comparison, "moc": dict(self.moc), "seed_std": dict(self.seed_std),
                "seed_scores": {c: list(v) for c, v in self.seed_scores.items()},
                "relative_gain_pct": self.relative_gain_pct,
                "gains": {f"{c}@{o:g}": g for (c, o), g in self.gains.items()},
                "task_gain": {c: [g, list(ci)] for c, (g, ci) in self.task_gain.items()},
                "agreement": None if self.agreement is None else dataclasses.asdict(self.agreement)}


def _candidates(ctx: FigureContext, candidates) -> list[str]:
    """The candidates ranked (default: every modality but the anchor), checked against the dataset."""
    cands = ctx.candidates if candidates is None else list(candidates)
    if not cands:
        raise InputError("candidates must name at least one modality")
    for c in cands:
        if c not in ctx.modalities or c == ctx.anchor:
            raise InputError(f"candidate {c!r} is not a modality of {str(ctx.data_root)!r} other than "
                             f"the anchor; choose from {ctx.candidates}")
    return cands


def _check_expected(expected, candidates) -> None:
    """InputError unless ``expected`` (None: no expectation) is one of ``candidates``."""
    if expected is not None and expected not in candidates:
        raise InputError(f"expected {expected!r} is not a candidate; candidates: {list(candidates)}")


def jobs(ctx: FigureContext, candidates=None) -> list:
    """The anchor+candidate runs of each candidate (features at every ratio), then the anchor alone
    at the pairs' trunk width (the task evidence's baseline)."""
    pairs = [run_set(ctx, f"{ctx.anchor}+{c}", [ctx.anchor, c], obs=ctx.obs_ratios)
             for c in _candidates(ctx, candidates)]
    mods, opts = fused_width_anchor(ctx)
    return pairs + [run_set(ctx, f"{ctx.anchor} alone, fused width", mods, **opts)]


def per_seed_scores(table_: pd.DataFrame) -> pd.DataFrame:
    """``candidate, seed, score``: a seed's score is the mean over ratios of its own harmonic means,
    NaN when one of them is NaN (a ratio where its fusion is not mutual), as the ranking puts a
    candidate with a NaN ratio after every candidate finite at all of them
    (:func:`rankfusion.selection.rank_candidates`): a test never scores a seed on the ratios it
    happens to be finite at."""
    g = table_.groupby(["candidate", "seed"])["harmonic_mean"]
    score = g.mean().where(g.count() == g.size())
    return score.rename("score").reset_index()


def seed_scores(table_: pd.DataFrame) -> dict:
    """``{candidate: each seed's score}`` (:func:`per_seed_scores`), the run-to-run values the
    ranking's lead is tested on; a seed with no score is dropped, explicitly."""
    return {c: tuple(float(x) for x in v.dropna()) for c, v in
            per_seed_scores(table_).groupby("candidate")["score"]}


def write_selection(out, table_: pd.DataFrame, *, anchor: str, expected: str | None = None,
                    formats=("png", "pdf")) -> dict:
    """Summarise, rank and write a modality-selection table (CSV, Markdown, Fig. 3-style plot).

    Parameters
    ----------
    out : path-like
        Output folder.
    table_ : DataFrame
        :func:`rankfusion.selection.modality_selection` output.
    anchor : str
    expected : str, optional
        The candidate expected to rank first (the most complementary one by construction).

    Returns
    -------
    dict
        ``summary``, ``ranking`` (DataFrames), ``comparison`` (dict), ``seed_scores``
        (:func:`seed_scores`), ``files`` (names written).
    """
    from .. import plots

    out = Path(out)
    summary = selection.summarize_selection(table_)
    ranking = selection.rank_candidates(summary)
    _check_expected(expected, list(ranking["candidate"]))
    out.mkdir(parents=True, exist_ok=True)
    res = FigureResult("modality")
    table(out, table_, "modality_selection_files", res)
    table(out, summary, "modality_selection", res, markdown=True)
    table(out, ranking, "modality_ranking", res, markdown=True)
    save(out, plots.plot_modality_selection(summary, anchor=anchor), "modality_selection", res, tuple(formats))
    return {"summary": summary, "ranking": ranking, "files": res.files, "seed_scores": seed_scores(table_),
            "comparison": selection.compare_with_expected(ranking, expected)}


def _moc_gains(ctx: FigureContext, pair_runs, alone) -> pd.DataFrame:
    """``candidate, seed, moc, base, gain``: grid-mean MoC of each pairing's run, of the anchor-only
    run of the same seed, and their difference (percent points); ``pair_runs`` are named
    ``"<anchor>+<candidate>"``."""
    base = seed_moc(ctx.cache, alone).groupby("seed")["moc"].mean()
    rows = []
    for r in pair_runs:
        m = float(seed_moc(ctx.cache, [r])["moc"].mean())
        rows.append({"candidate": r.name.split("+", 1)[1], "seed": r.seed, "moc": m, "base": float(base[r.seed]),
                     "gain": m - float(base[r.seed])})
    return pd.DataFrame(rows)


def _result(ranking, summary, sel: dict, table_: pd.DataFrame, moc: dict, task, agreement) -> ModalityResult:
    """The typed result of the ranked table."""
    return ModalityResult(
        ranking=tuple(ranking["candidate"]),
        scores={c: (None if not np.isfinite(s) else float(s)) for c, s in zip(ranking["candidate"], ranking["score"])},
        reasons={c: r for c, r in zip(ranking["candidate"], ranking["reason"]) if r},
        comparison=sel["comparison"],
        moc=moc,
        # run-to-run values: each seed's score (mean over ratios of its own harmonic means); a seed
        # with a NaN one has no score and is dropped, explicitly (the tests' n says how many)
        seed_scores=seed_scores(table_),
        # gains as a percentage of the ERank before fusion, mean over ratios: {candidate: {role: %}}
        relative_gain_pct={
            c: {role: float(100 * (grp[f"gain_{role}"] / grp[f"erank_{role}_before"]).mean())
                for role in ("anchor", "candidate")}
            for c, grp in summary.groupby("candidate")},
        gains={(r.candidate, float(r.obs_ratio)): {
            "anchor": float(r.gain_anchor), "candidate": float(r.gain_candidate),
            "harmonic_mean": None if not np.isfinite(r.harmonic_mean) else float(r.harmonic_mean)}
            for r in summary.itertuples()},
        task_gain=task,
        agreement=agreement,
    )


def make(ctx: FigureContext, candidates=None, expected: str | None = None) -> FigureResult:
    """Fig. 3: rank candidates by the harmonic mean of ERank gains with the anchor."""
    cands = _candidates(ctx, candidates)
    _check_expected(expected, cands)  # before any run is trained
    res = FigureResult("modality", params={"anchor": ctx.anchor, "candidates": cands,
                                           "obs_ratios": list(ctx.obs_ratios)})
    *pair_sets, alone_set = jobs(ctx, cands)
    runs = [rec for s in pair_sets for rec in s.records()]
    files = [ctx.cache.features(rec, o) for rec in runs for o in ctx.obs_ratios]
    res.run_keys = keys(runs)
    # Task accuracy of each pairing: an independent view of complementarity to set against the
    # rank-based ranking (the report compares the two).
    moc = {c: float(grid_moc_over_seeds(ctx.cache, [r for r in runs if r.name == f"{ctx.anchor}+{c}"])["moc"].mean())
           for c in cands}
    table_ = selection.modality_selection(files, anchor=ctx.anchor)
    # task evidence: each seed's MoC gain over the anchor alone at the pairs' trunk width (a
    # one-modality R3D with the same D is half as wide), against each seed's criterion
    alone = alone_set.records()
    res.run_keys += keys(alone)
    scores = per_seed_scores(table_)
    gains = _moc_gains(ctx, runs, alone)
    # each pairing run's criterion and MoC gain over the anchor alone: the values the report's tests take
    table(ctx.out, scores.merge(gains, on=["candidate", "seed"], how="outer"), "modality_runs", res)
    # paths inside the cache relative to it, so a committed table names no machine's folders. The
    # run is the folder the cache holds the file in, not the feature file's meta.run: that is the
    # absolute folder at export time, outside the cache once the cache has been copied or moved.
    cache_dir = Path(ctx.cache.cache_dir).resolve()
    file_runs = [rec.run_dir for rec in runs for _ in ctx.obs_ratios]  # the order of ``files``
    run_of = {Path(f).resolve(): Path(d).resolve() for f, d in zip(files, file_runs)}
    table_["run"] = [str(run_of.get(Path(f).resolve(), r)) for f, r in zip(table_["file"], table_["run"])]
    for col in ("file", "run"):
        full = [Path(f).resolve() for f in table_[col]]
        table_[col] = [p.relative_to(cache_dir).as_posix() if p.is_relative_to(cache_dir) else f
                       for p, f in zip(full, table_[col])]
    if expected is None:
        expected = expected_complementary(ctx.data_root)
        expected = expected if expected in cands else None  # no expectation about these candidates
    sel = write_selection(ctx.out, table_, anchor=ctx.anchor, expected=expected, formats=ctx.formats)
    # the task evidence of the ranking as written: its order against each pairing's MoC gain
    task, agreement = selection.runs_task_evidence(sel["ranking"], gains)
    res.files += sel["files"]
    res.tables = {"summary": sel["summary"], "ranking": sel["ranking"], "files": table_}
    res.data = _result(sel["ranking"], sel["summary"], sel, table_, moc, task, agreement)
    return res
