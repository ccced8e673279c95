"""The paper's modality-selection criterion on feature files (Sec. 3.2, Fig. 3): gains, harmonic mean, ranking.

For each (anchor, candidate) pair fused by a model, the effective-rank gains of both modalities
through fusion (Eq. 1) and their harmonic mean ``H`` (:func:`pair_gains`), per file
(:func:`modality_selection`), averaged over seeds (:func:`summarize_selection`) and ranked
(:func:`rank_candidates`); a pair without a mutual gain (``H`` NaN) ranks last.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .. import spectral
from .._validation import InputError
from ..featurefiles import FeatureSet, load_features


#: The per-(candidate, ratio) values :func:`summarize` averages over files, in the order the
#: summary tables print them (after ``candidate, obs_ratio``; then ``harmonic_mean``).
SUMMARY_VALUES = ("erank_anchor_before", "erank_anchor_after", "erank_candidate_before", "erank_candidate_after",
                  "gain_anchor", "gain_candidate")
#: The columns of the summary table that ``modality-select`` and the report print.
SUMMARY_COLUMNS = ("candidate", "obs_ratio", *SUMMARY_VALUES, "harmonic_mean")


def pair_gains(features: FeatureSet, anchor: str, candidate: str) -> dict:
    """Effective-rank gains of an (anchor, candidate) pair fused by one model (Sec. 3.2).

    Parameters
    ----------
    features : FeatureSet
        Holds ``<anchor>.before/after`` and ``<candidate>.before/after``.
    anchor, candidate : str
        The two modalities (e.g. ``"rgb"`` and ``"depth"``).

    Returns
    -------
    dict
        ``erank_<role>_before``, ``erank_<role>_after``, ``gain_<role>`` for role in
        (anchor, candidate) and ``harmonic_mean`` = 2ab/(a+b) of the two gains, NaN when either
        gain is <= 0 (a pair that does not enhance both modalities is not mutual, Sec. 3.2).
    """
    if anchor == candidate:
        raise InputError(f"candidate must differ from anchor, got {candidate!r} for both")
    out = {}
    gains = {}
    for role, mod in (("anchor", anchor), ("candidate", candidate)):
        before = spectral.effective_rank(features.get(mod, "before"))
        after = spectral.effective_rank(features.get(mod, "after"))
        out[f"erank_{role}_before"] = float(before)
        out[f"erank_{role}_after"] = float(after)
        gains[role] = float(spectral.rank_gain(before, after))
        out[f"gain_{role}"] = gains[role]
    out["harmonic_mean"] = float(spectral.harmonic_mean_gain(gains["anchor"], gains["candidate"]))
    return out


def nan_reason(gain_anchor: float, gain_candidate: float, anchor: str, candidate: str) -> str:
    """Why a harmonic mean is NaN ("" when it is not): which gain is not positive."""
    bad = [f"gain of {m} = {g:+.3f} <= 0" for m, g in ((anchor, gain_anchor), (candidate, gain_candidate))
           if not (g > 0)]
    return "; ".join(bad)


def modality_selection(paths, anchor: str = "rgb") -> pd.DataFrame:
    """Per-file effective-rank gains of the anchor fused with each candidate.

    Parameters
    ----------
    paths : sequence of str or Path
        Feature files. Each holds the anchor and one or more candidates (every other fused
        modality of the file is a candidate; the paper fuses one pair per model).
    anchor : str, default "rgb"
        The modality every candidate is paired with.

    Returns
    -------
    DataFrame
        One row per (file, candidate): ``file, run, seed, candidate, obs_ratio``, the columns of
        :func:`pair_gains`, and ``note`` (why the harmonic mean is NaN, else "").

    Raises
    ------
    InputError
        No files, a file without the anchor or without any candidate; two files of the same run,
        seed and observation ratio (they would be averaged as if they were seeds); files
        extracted with different noise (``meta.noise``).
    """
    paths = list(paths)
    if not paths:
        raise InputError("no feature files given (expected one or more .npz files)")
    if not isinstance(anchor, str) or not anchor:
        raise InputError(f"anchor must be a modality name, got {anchor!r}")
    rows = []
    seen, first_noise = {}, None
    for path in paths:
        fs = load_features(path)
        noise = _noise_of(fs)
        if first_noise is None:
            first_noise = (fs.path, noise)
        elif noise != first_noise[1]:
            raise InputError(
                f"files {str(first_noise[0])!r} and {str(fs.path)!r} were extracted with different noise "
                f"({_noise_text(first_noise[1])} vs {_noise_text(noise)}): compare files with the same noise")
        key = (str(fs.meta.get("run", fs.path.stem)), str(_seed_of(fs)),
               None if math.isnan(fs.obs_ratio) else fs.obs_ratio)
        if key in seen:
            raise InputError(
                f"files {str(seen[key])!r} and {str(fs.path)!r} are of the same run, seed and observation "
                f"ratio (run {key[0]!r}, seed {key[1] or '?'}, obs {fs.obs_ratio:g}): pass one file per "
                "run, seed and ratio")
        seen[key] = fs.path
        if anchor not in fs.modalities:
            raise InputError(
                f"file {str(fs.path)!r} has no '{anchor}.before'/'{anchor}.after' arrays for the anchor "
                f"{anchor!r}; modalities with both: {fs.modalities}"
            )
        cands = [m for m in fs.modalities if m != anchor]
        if not cands:
            raise InputError(f"file {str(fs.path)!r} holds only the anchor {anchor!r}, no candidate modality")
        for cand in cands:
            row = {
                "file": str(fs.path),
                "run": fs.meta.get("run", fs.path.stem),
                "seed": _seed_of(fs),
                "anchor": anchor,
                "candidate": cand,
                "obs_ratio": fs.obs_ratio,
            }
            row.update(pair_gains(fs, anchor, cand))
            row["note"] = nan_reason(row["gain_anchor"], row["gain_candidate"], anchor, cand)
            rows.append(row)
    return pd.DataFrame(rows)


def _noise_of(fs: FeatureSet) -> dict:
    """The file's input noise, ``{modality: sigma}`` without zero sigmas (``{}``: clean)."""
    noise = fs.meta.get("noise") or {}
    try:
        sigmas = {str(m): float(v) for m, v in sorted(noise.items())}
    except (AttributeError, TypeError, ValueError):
        raise InputError(f"file {str(fs.path)!r}: meta.noise must be {{modality: sigma}} with numeric sigmas, "
                         f"got {noise!r}") from None
    return {m: v for m, v in sigmas.items() if v != 0.0}


def _seed_of(fs: FeatureSet):
    """The file's ``meta.seed`` ("" when absent or null): a number or text, the key seeds are grouped by."""
    seed = fs.meta.get("seed")
    if seed is None:
        return ""
    if isinstance(seed, (list, dict)):
        raise InputError(f"file {str(fs.path)!r}: meta.seed must be a number or text, got {seed!r}")
    return seed


def _noise_text(noise: dict) -> str:
    return ",".join(f"{m}={v:g}" for m, v in noise.items()) if noise else "no noise"


def summarize_selection(table: pd.DataFrame) -> pd.DataFrame:
    """Average the per-file rows over seeds: one row per (candidate, observation ratio).

    The harmonic mean is recomputed from the *mean* gains (the paper reports one score per pair
    and ratio); ``n_files`` counts the files averaged.
    """
    if table.empty:
        raise InputError("table is empty: no feature rows to summarise")
    cols = list(SUMMARY_VALUES)
    # NaN obs ratios (files without metadata) would vanish in groupby; keep them as a group.
    keyed = table.assign(obs_ratio=table["obs_ratio"].fillna(-1.0))
    grouped = keyed.groupby(["anchor", "candidate", "obs_ratio"], sort=True)
    out = grouped[cols].mean().reset_index()
    out["n_files"] = grouped.size().to_numpy()
    out["obs_ratio"] = out["obs_ratio"].replace(-1.0, np.nan)
    out["harmonic_mean"] = [
        float(spectral.harmonic_mean_gain(a, c)) for a, c in zip(out["gain_anchor"], out["gain_candidate"])
    ]
    # seed spread: std over the files (seeds) of each file's own harmonic mean (NaN for one file)
    if "harmonic_mean" in keyed:
        out["harmonic_mean_std"] = grouped["harmonic_mean"].std().to_numpy()
    out["note"] = [
        nan_reason(a, c, an, ca)
        for a, c, an, ca in zip(out["gain_anchor"], out["gain_candidate"], out["anchor"], out["candidate"])
    ]
    return out


def rank_candidates(summary: pd.DataFrame) -> pd.DataFrame:
    """Rank candidates by their harmonic mean of rank gains over observation ratios.

    A candidate's ``score`` is the mean of its harmonic means over the ratios where it is finite;
    candidates whose harmonic mean is NaN at some ratio (one gain <= 0 there: the fusion is not
    mutual) rank after every candidate that is finite everywhere, then by how many ratios are NaN,
    then by score; a candidate whose harmonic mean is NaN at every ratio (no score) ranks after
    every candidate with a score, whatever its number of ratios. ``wins`` counts the ratios where
    the candidate has the highest harmonic mean.

    Returns
    -------
    DataFrame
        ``rank`` (1 = best), ``candidate``, ``score``, ``n_ratios``, ``n_nan``, ``wins``, ``reason``
        (empty unless some ratio is NaN; says which gain is <= 0 and where).
    """
    if summary.empty:
        raise InputError("summary is empty: nothing to rank")
    best = summary.groupby("obs_ratio", dropna=False)["harmonic_mean"].transform(
        lambda s: s.max() if s.notna().any() else np.nan
    )
    is_win = summary["harmonic_mean"].notna() & (summary["harmonic_mean"] == best)
    rows = []
    for cand, grp in summary.groupby("candidate", sort=False):
        finite = grp["harmonic_mean"].dropna()
        reasons = [
            f"obs {r:g}: {n}" if np.isfinite(r) else n
            for r, n in zip(grp["obs_ratio"], grp["note"]) if n
        ]
        rows.append({
            "candidate": cand,
            "score": float(finite.mean()) if len(finite) else math.nan,
            "n_ratios": int(len(grp)),
            "n_nan": int(grp["harmonic_mean"].isna().sum()),
            "wins": int(is_win[grp.index].sum()),
            "reason": "harmonic mean NaN (" + "; ".join(reasons) + ")" if reasons else "",
        })
    df = pd.DataFrame(rows)
    df["_none"], df["_score"] = df["score"].isna(), nan_last(df["score"])
    df = df.sort_values(["_none", "n_nan", "_score", "candidate"], ascending=[True, True, False, True],
                        kind="mergesort")
    df = df.drop(columns=["_none", "_score"]).reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def ranking_key(ranking: pd.DataFrame) -> dict:
    """``{candidate: key}``, larger for a candidate :func:`rank_candidates` places higher, equal where
    its order ties (same ``n_nan`` and score): the ranking as printed, for a rank correlation."""
    score = nan_last(ranking["score"])
    none = np.isnan(ranking["score"].to_numpy(dtype=np.float64))
    # no score (NaN at every ratio) ranks last whatever n_nan (rank_candidates)
    order = pd.DataFrame({"scored": ~none, "n_nan": -ranking["n_nan"].to_numpy(), "score": score})
    key = order.apply(tuple, axis=1).rank(method="dense").to_numpy() if len(order) else np.array([])
    return dict(zip(ranking["candidate"], key.astype(float)))


def compare_with_expected(ranking: pd.DataFrame, expected_best: str | None) -> dict:
    """Compare a ranking with the modality that is most complementary by construction.

    Returns a dict ``{"expected": ..., "found": ..., "matches": bool or None, "expected_rank": int
    or None}``; ``matches`` is None when nothing is expected (real data), and when no candidate has a
    defined score (every harmonic mean NaN): the order is then a tie-break, and ``found`` is None.
    """
    # a ranking without scores (given by hand) counts as defined
    defined = len(ranking) and ("score" not in ranking or math.isfinite(float(ranking["score"].iloc[0])))
    found = str(ranking["candidate"].iloc[0]) if defined else None
    if expected_best is None or not defined:
        return {"expected": expected_best, "found": found, "matches": None, "expected_rank": None}
    hit = ranking.loc[ranking["candidate"] == expected_best, "rank"]
    return {
        "expected": expected_best,
        "found": found,
        "matches": found == expected_best,
        "expected_rank": int(hit.iloc[0]) if len(hit) else None,
    }


def nan_last(a) -> np.ndarray:
    """``a`` with its NaN entries (no mutual gain: a gain <= 0, so no harmonic mean) replaced by one
    value below every finite entry, so they rank last and tie with each other.

    The one ordering rule of selection: a finite harmonic mean of two positive gains is more mutual
    enhancement than none. Only the order of the result means anything (ranks, Spearman's rho,
    the noise control's empirical p), never the stand-in's size.
    """
    a = np.asarray(a, dtype=np.float64)
    ok = np.isfinite(a)
    low = a[ok].min() if ok.any() else 0.0
    return np.where(ok, a, low - 1.0 - abs(low))  # strictly below low at every magnitude
