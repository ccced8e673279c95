"""Modality utilization against what is attainable: donors, Shapley shares, utilization rate, collapse index.

The arithmetic behind the utilization rows of ``rankfusion evaluate`` (docs/analysis.md, "Modality
utilization"); the model passes that feed it are in :mod:`rankfusion.evaluate`.

- :func:`matched_donors`: for each video, a donor video of similar length (within ``tol`` of
  its length, else the nearest), drawn at random, and the achieved length mismatch;
- :func:`conditional_utilization`: the conditional utilization rate of Wu, Jastrzebski, Cho &
  Geras (ICML 2022): the accuracy with a modality minus without it, relative to the accuracy
  with it;
- :func:`shapley_values`: exact Shapley contributions of M modalities from the value of every
  subset (the score with the subset's own inputs and the others' replaced by a donor's), as in
  the Shapley-based imbalance measures of BalanceBenchmark (Xu et al., 2025);
- :func:`collapse_index`: 1 - (the fused model's gain from a partner modality on the cut points
  only the partner can decide) / (the gain the partner alone attains there).
"""

from __future__ import annotations

import fractions
import itertools
import math

import numpy as np

from ._validation import InputError, check_float, check_int


def run_donor_seed(reliance_seed: int, run_seed: int) -> int:
    """The seed of a trained run's donor draws: one stream per ``(reliance_seed, run's training seed)``.

    Each training seed draws its own donors, so the spread of a reliance over seeds, and any
    interval built from it, contains the donors' variance (the same seed everywhere would leave it
    out). ``rankfusion evaluate`` and the figure families derive it the same way.
    """
    reliance_seed = check_int(reliance_seed, "reliance_seed", low=0)
    return int(np.random.SeedSequence([reliance_seed, check_int(run_seed, "run_seed", low=0)]).generate_state(1)[0])


def matched_donors(lengths, seed: int, *, tol: float = 0.1):
    """A donor for each video among the others, of similar length, drawn at random.

    Video ``i`` draws its donor uniformly from the videos ``j != i`` with
    ``|n_j - n_i| <= tol * n_i``; when there is none, from the videos of the nearest length
    (ties drawn at random). Donors may repeat (this is not a permutation).

    Parameters
    ----------
    lengths : sequence of int, shape (V,), V >= 2
        Frame counts of the videos.
    seed : int
        Seed of the draw (``numpy.random.default_rng``).
    tol : float
        Relative length tolerance (0.1: within 10 %), read as written: with 0.7 a video of 90
        frames takes donors of 27 to 153 frames (in doubles 0.7 x 90 is 62.99999999999999).

    Returns
    -------
    donors : ndarray of int64, shape (V,)
        Index of each video's donor (never itself).
    mismatch : ndarray of float64, shape (V,)
        ``|n_donor - n_i| / n_i`` of each pair.
    """
    n = np.asarray(lengths, dtype=np.int64)
    if n.ndim != 1 or n.size < 2 or (n < 1).any():
        raise InputError(f"lengths must be >= 2 positive frame counts, got {lengths!r}")
    tol = check_float(tol, "tol", low=0.0)
    # tol as written (0.3 is 3/10, not the double just below it), compared in integers: a donor
    # exactly at the bound is within it
    frac = fractions.Fraction(repr(tol))
    rng = np.random.default_rng(check_int(seed, "seed", low=0))
    donors = np.empty(n.size, np.int64)
    for i in range(n.size):
        gap = np.abs(n - n[i])
        gap[i] = -1  # never its own donor
        # |n_j - n_i| <= tol * n_i for an integer gap is gap <= floor(tol * n_i), in exact integers
        bound = min(frac.numerator * int(n[i]) // frac.denominator, int(np.iinfo(np.int64).max))
        ok = np.flatnonzero((gap >= 0) & (gap <= bound))
        if ok.size == 0:
            ok = np.flatnonzero(gap == gap[gap >= 0].min())
        donors[i] = ok[rng.integers(ok.size)]
    return donors, np.abs(n[donors] - n) / n


def conditional_utilization(with_it: float, without_it: float) -> float:
    """Conditional utilization rate (Wu et al., ICML 2022): ``(A_with - A_without) / A_with``.

    ``A_with`` is the score with every input the sample's own, ``A_without`` with the modality's
    input replaced (here: by a donor's). NaN when ``A_with`` is 0 or not finite.
    """
    a, b = float(with_it), float(without_it)
    if not (math.isfinite(a) and math.isfinite(b)) or a == 0:
        return float("nan")
    return (a - b) / a


def shapley_values(value: dict, modalities) -> dict:
    """Exact Shapley contributions from the value of every subset of ``modalities``.

    ``phi_m = sum_{S not containing m} |S|! (M - |S| - 1)! / M! * (v(S + m) - v(S))``; they add
    up to ``v(all) - v(empty)`` (efficiency).

    Parameters
    ----------
    value : dict of frozenset to float
        ``v(S)`` for all 2^M subsets S (the score when the modalities in S are the sample's own).
    modalities : sequence of str

    Returns
    -------
    dict of str to float
    """
    mods = list(modalities)
    if not mods or len(set(mods)) != len(mods):
        raise InputError(f"modalities must be distinct names, got {mods!r}")
    M = len(mods)
    subsets = [frozenset(c) for k in range(M + 1) for c in itertools.combinations(mods, k)]
    missing = [sorted(s) for s in subsets if s not in value]
    if missing:
        raise InputError(f"value lacks the subsets {missing}")
    out = {}
    for m in mods:
        rest = [x for x in mods if x != m]
        phi = 0.0
        for k in range(M):
            w = math.factorial(k) * math.factorial(M - k - 1) / math.factorial(M)
            for c in itertools.combinations(rest, k):
                s = frozenset(c)
                phi += w * (float(value[s | {m}]) - float(value[s]))
        out[m] = phi
    return out


def collapse_index(fused_gain: float, partner_gain: float) -> float:
    """``1 - fused_gain / partner_gain`` on the cut points only the partner can decide.

    ``fused_gain``: what the fused model loses there when the partner's input is replaced (its
    reliance on the partner, restricted to those cut points). ``partner_gain``: what the
    partner-alone model loses there when its input is replaced, i.e. what the partner's
    information is worth to a model that has only it. 0: the fused model uses the partner as
    much as the partner alone can be used; 1: not at all; below 0: more than the partner alone.
    NaN when ``partner_gain <= 0`` (nothing attainable to compare with).
    """
    f, p = float(fused_gain), float(partner_gain)
    if not (math.isfinite(f) and math.isfinite(p)) or p <= 0:
        return float("nan")
    return 1.0 - f / p
