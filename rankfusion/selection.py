"""Modality selection (Sec. 3.2, Fig. 3) with evidence.

Three numbers per candidate modality, meant to be read together (docs/analysis.md):

1. **The paper's criterion**: the harmonic mean ``H`` of the anchor's and the candidate's
   effective-rank gains through fusion (Eq. 1, Sec. 3.2), from feature files of any model
   (:func:`modality_selection`) or from a small fusion probe on paired features
   (:func:`select_modalities`).
2. **A spectrum-matched noise control**: ``H`` recomputed, through exactly the same fits and
   averaging, with the candidate replaced by surrogates that keep its column means and its exact
   singular spectrum but whose rows are random (:func:`spectral_surrogates`); the candidate's
   ``control_p`` is the empirical p-value of its ``H`` among theirs (:func:`noise_test`) and it is
   flagged ``noise_like`` unless that p is below :data:`rankfusion.stats.ALPHA`.
3. **Task evidence**: the cross-validated accuracy gain of anchor+candidate over the anchor alone
   (:class:`FusionProbe`), and the rank agreement between ``H`` and the task gains
   (:func:`rankfusion.stats.agreement`: Spearman's rho, tested by permutation over candidates).

The maths (effective rank, gains, harmonic mean) comes from :mod:`rankfusion.spectral`; the
exchange of the probe is the model's own RTF (Eqs. 3-5, :class:`rankfusion.model.RankEnhancingTokenFuser`).
Nothing here draws a plot (:mod:`rankfusion.plots`) or parses the command line.
"""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from . import spectral, stats
from ._progress import bar_disabled
from ._validation import InputError, InputTypeError, check_float, check_int, is_torch
from .featurefiles import FeatureSet, load_features
from .spectral import blended_channel_count, low_informative_channels, rank_tolerance
from .model import blend, blend_weights, channel_scores, RankEnhancingTokenFuser
from .data.importer import read_table
from .files import load_arrays

# --------------------------------------------------------------------------- modality selection


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
        gains[role] = float(after) - float(before)
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
        No files, a file without the anchor or without any candidate.
    """
    paths = list(paths)
    if not paths:
        raise InputError("no feature files given (expected one or more .npz files)")
    if not isinstance(anchor, str) or not anchor:
        raise InputError(f"anchor must be a modality name, got {anchor!r}")
    rows = []
    for path in paths:
        fs = load_features(path)
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
                "seed": fs.meta.get("seed", ""),
                "anchor": anchor,
                "candidate": cand,
                "obs_ratio": fs.obs_ratio,
            }
            row.update(pair_gains(fs, anchor, cand))
            row["note"] = nan_reason(row["gain_anchor"], row["gain_candidate"], anchor, cand)
            rows.append(row)
    return pd.DataFrame(rows)


def summarize_selection(table: pd.DataFrame) -> pd.DataFrame:
    """Average the per-file rows over seeds: one row per (candidate, observation ratio).

    The harmonic mean is recomputed from the *mean* gains (the paper reports one score per pair
    and ratio); ``n_files`` counts the files averaged.
    """
    if table.empty:
        raise InputError("table is empty: no feature rows to summarise")
    cols = ["erank_anchor_before", "erank_anchor_after", "erank_candidate_before",
            "erank_candidate_after", "gain_anchor", "gain_candidate"]
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
    then by score. ``wins`` counts the ratios where the candidate has the highest harmonic mean.

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
    df["_score"] = df["score"].fillna(-np.inf)
    df = df.sort_values(["n_nan", "_score", "candidate"], ascending=[True, False, True], kind="mergesort")
    df = df.drop(columns="_score").reset_index(drop=True)
    df.insert(0, "rank", np.arange(1, len(df) + 1))
    return df


def compare_with_expected(ranking: pd.DataFrame, expected_best: str | None) -> dict:
    """Compare a ranking with the modality that is most complementary by construction.

    Returns a dict ``{"expected": ..., "found": ..., "matches": bool or None, "expected_rank": int
    or None}``; ``matches`` is None when nothing is expected (real data).
    """
    found = str(ranking["candidate"].iloc[0]) if len(ranking) else None
    if expected_best is None:
        return {"expected": None, "found": found, "matches": None, "expected_rank": None}
    hit = ranking.loc[ranking["candidate"] == expected_best, "rank"]
    return {
        "expected": expected_best,
        "found": found,
        "matches": found == expected_best,
        "expected_rank": int(hit.iloc[0]) if len(hit) else None,
    }


# --------------------------------------------------------------------------- noise control


def _as_numpy64(x, name: str) -> np.ndarray:
    """A float64 NumPy copy of an array or tensor (the probe and the control run on host copies)."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise InputTypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    return x.astype(np.float64, copy=False)


def _like(out: np.ndarray, ref):
    """Return ``out`` in the type of ``ref``: a tensor on ref's device and dtype, else ref's dtype."""
    if is_torch(ref):
        import torch

        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        return torch.as_tensor(out, device=ref.device).to(dtype)
    dtype = ref.dtype if np.asarray(ref).dtype.kind == "f" else np.float64
    return out.astype(dtype, copy=False)


def spectral_surrogates(X, n_surrogates: int = 10, *, seed: int = 0):
    """Noise surrogates of ``X`` with its exact column means and singular spectrum.

    With ``X = 1 mu^T + U S V^T`` (column means ``mu``, thin SVD of the centred matrix), each
    surrogate is ``1 mu^T + Q S V^T`` where ``Q`` is a Haar-random ``(N, r)`` orthonormal matrix
    orthogonal to the all-ones vector (QR of a column-centred Gaussian matrix, signs fixed by
    ``diag(R) > 0`` so that the law is exactly Haar). So a surrogate has, by construction, the
    same column means, the same centred covariance ``V S^2 V^T / N`` and therefore the same
    singular values (centred or not) as ``X``, while its rows are a random rotation of ``X``'s
    row space: they carry no information about any other modality or about labels.

    Why not Gaussian rows with ``X``'s covariance: their singular values scatter around ``X``'s
    by sampling error (Wishart), so a control built from them differs from the candidate in
    spectrum *and* in content; here it differs in content only.

    Parameters
    ----------
    X : ndarray or tensor of shape (N, D)
        The candidate modality's features.
    n_surrogates : int, default 8
    seed : int, default 0
        Surrogate ``j`` is drawn from ``numpy.random.default_rng([seed, j])``: it does not depend
        on how many surrogates are asked for.

    Returns
    -------
    ndarray or tensor of shape (n_surrogates, N, D)
        Same type, dtype and device as ``X`` (float64 for integer input).
    """
    n_surrogates = check_int(n_surrogates, "n_surrogates", low=1)
    seed = check_int(seed, "seed", low=0)
    X64 = _as_numpy64(X, "X")
    if X64.ndim != 2 or X64.shape[0] < 2 or X64.shape[1] < 1:
        raise InputError(f"X must be a 2-D (N >= 2, D >= 1) matrix, got shape {X64.shape}")
    if not np.isfinite(X64).all():
        raise InputError("X contains NaN or Inf values")
    factors = _spectral_factors(X64)
    out = np.stack([_draw_surrogate(factors, seed, j) for j in range(n_surrogates)])
    return _like(out, X)


def min_surrogates(alpha: float | None = None) -> int:
    """The fewest control draws whose empirical p-value can reach ``alpha``: ``ceil(1/alpha) - 1``
    (19 at :data:`rankfusion.stats.ALPHA` = 0.05, where the smallest p is 1/20)."""
    alpha = stats.ALPHA if alpha is None else alpha
    return int(math.ceil(1.0 / alpha - 1e-9)) - 1


def noise_test(criterion: float, controls, alpha: float | None = None) -> tuple[float, bool]:
    """Is a candidate's criterion above its noise control? ``(control_p, noise_like)``.

    ``controls`` are the same statistic computed for each surrogate (the same fits, the same
    averaging over replicates). ``control_p`` is the empirical p-value
    :func:`rankfusion.stats.empirical_p`, ``(1 + #{control >= criterion}) / (1 + n)``, valid at
    every level when the candidate is one more draw from the surrogates' law (P(p <= alpha) <=
    alpha, so the rejection region is ``p <= alpha``: a discrete p-value reaches alpha exactly);
    ``noise_like`` is ``control_p > alpha``: not above the control at alpha.

    A NaN value (no mutual gain: a gain <= 0, so the harmonic mean is undefined) is ordered below
    every finite value, because a finite harmonic mean of two positive gains means more mutual
    enhancement than none; two NaN values tie. A NaN criterion is therefore never above its
    control (``control_p`` = 1). Only the order enters the p-value, never the NaN's size.
    """
    alpha = stats.ALPHA if alpha is None else alpha
    c = np.asarray(controls, dtype=np.float64).ravel()
    if c.size == 0:
        raise InputError("controls must hold at least one surrogate value")
    if not np.isfinite(criterion):
        return 1.0, True
    # NaN controls lie below a finite criterion: any finite stand-in below it counts the same
    ok = np.isfinite(c)
    below = min(float(criterion), float(c[ok].min()) if ok.any() else float(criterion)) - 1.0
    p = stats.empirical_p(float(criterion), np.where(ok, c, below))
    return p, bool(p > alpha)


def _spectral_factors(X64: np.ndarray) -> tuple:
    """``(mu, s, vt, n, e)`` of :func:`spectral_surrogates`: column means, the nonzero singular values
    of the centred matrix and their right singular vectors (``(r,)`` and ``(r, D)``), row count,
    all of ``X * 2**-e`` (:func:`_unit_scale`; a surrogate is scaled back by ``2**e``).

    Computed once per matrix; every surrogate of it is drawn from these factors
    (:func:`_draw_surrogate`), so no draw repeats the SVD.
    """
    top = np.abs(X64).max()
    e = int(np.frexp(top)[1])
    X64 = _unit_scale(X64)  # one exact factor 2**-e: the mean of huge values cannot overflow
    mu = X64.mean(axis=0)
    _, s, vt = np.linalg.svd(X64 - mu, full_matrices=False)
    # Drop the numerically-zero directions (centring removes one, rank deficiency more): a random
    # Q column on them would inject energy that X does not have.
    tol = rank_tolerance(s[0] if s.size else 0.0, max(X64.shape), np.finfo(np.float64).eps)
    r = int(np.sum(s > tol))
    return mu, s[:r], vt[:r], X64.shape[0], e


def _draw_surrogate(factors: tuple, seed: int, j: int) -> np.ndarray:
    """Surrogate number ``j`` of :func:`spectral_surrogates` from :func:`_spectral_factors`."""
    mu, s, vt, n, e = factors
    rng = np.random.default_rng([seed, j])
    g = rng.standard_normal((n, s.size))
    g -= g.mean(axis=0)  # span(g) is orthogonal to the ones vector: column means stay mu
    q, rr = np.linalg.qr(g)
    q *= np.where(np.diag(rr) < 0, -1.0, 1.0)  # sign fix: makes the QR factor Haar-distributed
    return np.ldexp(mu + (q * s) @ vt, e)


# --------------------------------------------------------------------------- the fusion probe


@dataclass(frozen=True)
class ProbeConfig:
    """Settings of the fusion probe and of the evidence computed with it.

    Attributes
    ----------
    width : int, default 32
        Common token width D every modality is projected to (Eq. 2: Linear + ReLU).
    exchange_ratio : float, default 0.1
        Fraction of channels RTF blends (Eq. 3), as in the paper.
    head : {"linear", "mlp"}, default "linear"
        Classifier on the concatenated fused tokens.
    hidden : int, default 64
        Hidden width of the MLP head.
    steps : int, default 100
        Full-batch Adam steps per fit (deterministic: no shuffling).
    lr, weight_decay : float
        Adam settings.
    folds : int, default 5
        Stratified cross-validation folds.
    seeds : tuple of int, default (0,)
        Each seed sets a fold assignment and the probe's initialisation; replicates are
        ``folds * len(seeds)`` (more seeds: a tighter task-gain interval at proportional cost).
    n_surrogates : int, default 19
        Noise-control surrogates per candidate, each fitted on every replicate like the candidate.
        At least :func:`min_surrogates` (19 at alpha 0.05): with fewer, the empirical p-value of
        the control can never fall below alpha.
    threads : int, default 1
        Torch threads while fitting (small matrices: one thread is as fast and robust on shared cores).
    """

    width: int = 32
    exchange_ratio: float = 0.1
    head: str = "linear"
    hidden: int = 64
    steps: int = 100
    lr: float = 2e-2
    weight_decay: float = 1e-4
    folds: int = 5
    seeds: tuple = (0,)
    n_surrogates: int = 19
    threads: int = 1

    def __post_init__(self):
        check_int(self.width, "width", low=1)
        check_float(self.exchange_ratio, "exchange_ratio", low=0.0, high=1.0, low_open=True)
        if self.head not in ("linear", "mlp"):
            raise InputError(f"head must be 'linear' or 'mlp', got {self.head!r}")
        check_int(self.hidden, "hidden", low=1)
        check_int(self.steps, "steps", low=1)
        check_float(self.lr, "lr", low=0.0, low_open=True)
        check_float(self.weight_decay, "weight_decay", low=0.0)
        check_int(self.folds, "folds", low=2)
        if not self.seeds:
            raise InputError("seeds must hold at least one seed")
        for s in self.seeds:
            check_int(s, "seeds", low=0)
        check_int(self.n_surrogates, "n_surrogates", low=1)
        if self.n_surrogates < min_surrogates():
            raise InputError(f"n_surrogates must be at least {min_surrogates()} (the empirical p-value of "
                             f"{self.n_surrogates} surrogates cannot reach alpha {stats.ALPHA:g}), "
                             f"got {self.n_surrogates}")
        check_int(self.threads, "threads", low=1)

        if blended_channel_count(self.exchange_ratio, self.width) == 0:
            raise InputError(f"width {self.width} x exchange_ratio {self.exchange_ratio:g} blends no channel "
                             "(RTF would be the identity): raise width or exchange_ratio")


def _probe_class():
    # torch is imported lazily: rankfusion.selection's criterion on feature files needs no torch.
    import torch
    from torch import nn
    from torch.nn import functional as F


    class FusionProbe(nn.Module):
        """Per-modality Linear+ReLU to a common width (Eq. 2), RTF (Eqs. 3-5) or not, a head.

        ``forward`` takes a list of ``(N, C_m)`` tensors (anchor first) and returns ``(N, K)``
        logits; :meth:`tokens` returns the fuser's inputs and outputs, each a list of ``(N, D)``;
        :meth:`freeze` fixes RTF's channel choice on the given (training) rows for evaluation.
        """

        def __init__(self, dims, n_classes: int, config: ProbeConfig, rtf: bool = True):
            super().__init__()
            w = config.width
            self.proj = nn.ModuleList(nn.Linear(int(d), w) for d in dims)
            names = tuple(f"m{i}" for i in range(len(dims)))
            self.rtf = (RankEnhancingTokenFuser(names, w, exchange_ratio=config.exchange_ratio)
                        if rtf and len(dims) > 1 else None)
            wide = w * len(dims)
            self.head = (nn.Linear(wide, n_classes) if config.head == "linear" else
                         nn.Sequential(nn.Linear(wide, config.hidden), nn.ReLU(), nn.Linear(config.hidden, n_classes)))

        def tokens(self, xs):
            before = [F.relu(p(x)) for p, x in zip(self.proj, xs)]
            if self.rtf is None:
                return before, before
            # rows are independent samples: one time step each, all valid
            mask = torch.ones(before[0].shape[0], 1, dtype=torch.bool, device=before[0].device)
            out = self.rtf([b[:, None, :] for b in before], mask)
            return before, [a[:, 0, :] for a in out.after]

        def forward(self, xs):
            return self.head(torch.cat(self.tokens(xs)[1], dim=1))

        @torch.no_grad()
        def freeze(self, xs):
            """Choose RTF's blended channels on ``xs`` (the training rows) and use them at evaluation."""
            if self.rtf is None:
                return
            before = [F.relu(p(x)) for p, x in zip(self.proj, xs)]
            mask = torch.ones(before[0].shape[0], 1, dtype=torch.bool, device=before[0].device)
            self.rtf.freeze([b[:, None, :] for b in before], mask)

    return FusionProbe


@contextlib.contextmanager
def _torch_threads(n: int):
    """``n`` torch threads and ``n`` BLAS threads for NumPy (the surrogates' QR: a multi-threaded
    BLAS on small matrices spin-waits for busy cores)."""
    import torch
    from threadpoolctl import threadpool_limits

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(n):
            yield
    finally:
        torch.set_num_threads(old)


def fit_probe(xs, labels, *, config: ProbeConfig | None = None, rtf: bool = True, seed: int = 0):
    """Train a fusion probe on ``xs`` (anchor first) to predict ``labels``.

    Parameters
    ----------
    xs : sequence of ndarray or tensor of shape (N, C_m)
        Standardised features, rows aligned; one entry gives the anchor-only probe.
    labels : ndarray or tensor of shape (N,)
        Class ids in ``[0, K)``.
    config : ProbeConfig, optional
    rtf : bool, default True
        Fuse with RTF (Eq. 4); False concatenates the projections (the plain fusion of Table 2).
    seed : int, default 0
        Seeds the initialisation (weights and RTF's alpha). Full-batch training has no other
        randomness: the same seed on the same machine gives bit-identical weights.

    Returns
    -------
    FusionProbe
        In eval mode, float32, on the CPU, with RTF's channel choice frozen on the training rows
        (:meth:`rankfusion.model.RankEnhancingTokenFuser.freeze`): evaluating held-out rows does not
        let them pick the channels.
    """
    import torch
    from torch.nn import functional as F

    config = config or ProbeConfig()
    ts = [torch.as_tensor(_as_numpy64(x, "xs"), dtype=torch.float32) for x in xs]
    y = torch.as_tensor(_as_numpy64(labels, "labels").astype(np.int64))
    n_classes = int(y.max()) + 1
    with _torch_threads(config.threads):
        torch.manual_seed(seed)
        model = _probe_class()([t.shape[1] for t in ts], n_classes, config, rtf=rtf)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        model.train()
        for _ in range(config.steps):
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(ts), y).backward()
            opt.step()
        model.eval()
        model.freeze(ts)
    return model


def fit_probe_members(anchor_x, candidate_xs, labels, *, config: ProbeConfig | None = None, seed: int = 0):
    """Train one RTF fusion probe per candidate matrix at once, all from the same initialisation.

    Member ``i`` is the probe :func:`fit_probe` would train on ``[anchor_x, candidate_xs[i]]``
    with ``rtf=True`` and ``seed``: the same initial weights (those of ``fit_probe``'s probe),
    loss, full-batch Adam steps and RTF (Eqs. 3-5, :func:`rankfusion.model.blend`), run as batched
    matrix products. Adam acts element by element and each member's loss depends on its own
    weights only, so the members train independently; only the floating-point summation order
    differs from separate fits. This is how the noise control affords fitting every surrogate on
    every replicate: the candidate and its surrogates go through this one routine together.

    Parameters
    ----------
    anchor_x : ndarray of shape (N, C_a)
        Standardised anchor rows (training rows only).
    candidate_xs : ndarray of shape (S, N, C_c)
        One standardised candidate matrix per member, rows aligned with ``anchor_x``.
    labels : ndarray of shape (N,)
    config : ProbeConfig, optional
    seed : int, default 0

    Returns
    -------
    ProbeMembers
        The trained weights, with RTF's channel choice frozen on these training rows.
    """
    import torch
    from torch.nn import functional as F

    config = config or ProbeConfig()
    za = torch.as_tensor(_as_numpy64(anchor_x, "anchor_x"), dtype=torch.float32)
    zc = torch.as_tensor(_as_numpy64(candidate_xs, "candidate_xs"), dtype=torch.float32)
    if zc.dim() != 3 or zc.shape[1] != za.shape[0]:
        raise InputError(f"candidate_xs must be (S, N, C) with N = {za.shape[0]} anchor rows, got {tuple(zc.shape)}")
    y = torch.as_tensor(_as_numpy64(labels, "labels").astype(np.int64))
    n_classes = int(y.max()) + 1
    S, N = zc.shape[0], zc.shape[1]
    with _torch_threads(config.threads):
        torch.manual_seed(seed)
        ref = _probe_class()([za.shape[1], zc.shape[2]], n_classes, config, rtf=True)
        members = ProbeMembers(ref, S)
        opt = torch.optim.Adam(members.params.values(), lr=config.lr, weight_decay=config.weight_decay)
        target = y.repeat(S)
        for _ in range(config.steps):
            opt.zero_grad(set_to_none=True)
            logits = members.logits(za, zc)
            # the sum over members of each member's mean loss: member i's gradient is its own
            F.cross_entropy(logits.reshape(S * N, -1), target, reduction="sum").div(N).backward()
            opt.step()
        members.freeze(za, zc)
    return members


class ProbeMembers:
    """``S`` RTF fusion probes with stacked weights (:func:`fit_probe_members`)."""

    def __init__(self, ref, n_members: int):
        import torch

        self.k_prime = ref.rtf.k_prime
        if ref.rtf.alpha_param != "sigmoid" or ref.rtf.exchange != "adaptive":
            raise InputError("probe members need the probe's adaptive sigmoid alpha")
        self.mlp = not isinstance(ref.head, torch.nn.Linear)
        self.params = {n: p.detach().unsqueeze(0).repeat(n_members, *([1] * p.dim())).clone().requires_grad_()
                       for n, p in ref.named_parameters()}
        self.low = None  # (2, S, k') frozen channel choice

    def tokens(self, za, zc):
        """``(before, after)``, each ``[anchor, candidate]`` of shape (S, N, D)."""
        import torch
        from torch.nn import functional as F


        P = self.params
        a = F.relu(torch.matmul(za, P["proj.0.weight"].transpose(1, 2)) + P["proj.0.bias"][:, None, :])
        c = F.relu(torch.bmm(zc, P["proj.1.weight"].transpose(1, 2)) + P["proj.1.bias"][:, None, :])
        if self.low is None:
            with torch.no_grad():  # Eq. 3 on this batch's rows, as RTF does in training
                low = [low_informative_channels(channel_scores(x.detach()), k_prime=self.k_prime) for x in (a, c)]
        else:
            low = self.low
        alpha = torch.sigmoid(P["rtf.alpha_raw"])  # (S, 2, D)
        wa, wc = blend_weights(low[0], alpha[:, 0]), blend_weights(low[1], alpha[:, 1])
        return [a, c], [blend(a, c, wa[:, None, :]), blend(c, a, wc[:, None, :])]

    def logits(self, za, zc):
        import torch
        from torch.nn import functional as F

        P = self.params
        h = torch.cat(self.tokens(za, zc)[1], dim=-1)
        if not self.mlp:
            return torch.baddbmm(P["head.bias"][:, None, :], h, P["head.weight"].transpose(1, 2))
        h = F.relu(torch.baddbmm(P["head.0.bias"][:, None, :], h, P["head.0.weight"].transpose(1, 2)))
        return torch.baddbmm(P["head.2.bias"][:, None, :], h, P["head.2.weight"].transpose(1, 2))

    def freeze(self, za, zc):
        """Fix the channel choice on these (training) rows for every later call."""
        import torch


        self.low = None
        with torch.no_grad():
            before, _ = self.tokens(za, zc)
            self.low = [low_informative_channels(channel_scores(x), k_prime=self.k_prime) for x in before]

    def evaluate(self, anchor_x, candidate_xs, labels) -> tuple[np.ndarray, np.ndarray]:
        """``(gains (S, 2), accuracy (S,))`` on held-out rows: each member's anchor and candidate
        ERank gains through its RTF (:func:`rankfusion.spectral.rank_gain`) and its accuracy."""
        import torch


        za = torch.as_tensor(np.asarray(anchor_x), dtype=torch.float32)
        zc = torch.as_tensor(np.asarray(candidate_xs), dtype=torch.float32)
        with torch.no_grad():
            before, after = self.tokens(za, zc)
            pred = self.logits(za, zc).argmax(-1).numpy()
        gains = np.array([[float(spectral.rank_gain(before[m][i], after[m][i])) for m in range(2)]
                          for i in range(zc.shape[0])])
        return gains, (pred == np.asarray(labels)[None, :]).mean(axis=1)


def probe_gains(model, xs) -> tuple[float, float]:
    """Effective-rank gains (Sec. 3.2) of the anchor and the candidate through a probe's RTF.

    ``before`` and ``after`` come from one forward pass of ``model`` on ``xs`` (held-out rows),
    so both sides of each gain are computed by the same routine (:func:`rankfusion.spectral.rank_gain`).
    """
    import torch


    if getattr(model, "rtf", None) is None:
        raise InputError("model has no RTF fuser: gains through fusion need rtf=True and two modalities")
    ts = [torch.as_tensor(_as_numpy64(x, "xs"), dtype=torch.float32) for x in xs]
    with torch.no_grad():
        before, after = model.tokens(ts)
    return tuple(float(spectral.rank_gain(b, a)) for b, a in zip(before[:2], after[:2]))


def _accuracy(model, xs, y) -> float:
    import torch

    with torch.no_grad():
        pred = model([torch.as_tensor(x, dtype=torch.float32) for x in xs]).argmax(1).numpy()
    return float(np.mean(pred == y))


# --------------------------------------------------------------------------- paired features


def check_paired(modalities: dict, labels, anchor: str, candidates=None, *, source: str = "") -> tuple:
    """Validate paired per-modality features; return ``(arrays, class_ids, class_names, candidates)``.

    Raises :class:`InputError` naming the modality (and ``source``, e.g. the file) for: an anchor
    that is not a modality, a modality that is not 2-D, has width 0, holds NaN/Inf, has zero
    variance or a row count different from the anchor's; labels that are not one per row, hold a
    missing value or a single class; no candidate.
    """
    where = f" in {source}" if source else ""
    if not isinstance(anchor, str) or anchor not in modalities:
        raise InputError(f"anchor {anchor!r} is not a modality{where}; modalities: {list(modalities)}")
    cands = [m for m in modalities if m != anchor] if candidates is None else list(candidates)
    repeated = sorted({c for c in cands if cands.count(c) > 1})
    if repeated:
        raise InputError(f"candidate {repeated[0]!r} is named more than once; name each candidate once")
    for c in cands:
        if c not in modalities or c == anchor:
            raise InputError(f"candidate {c!r} is not a modality{where} other than the anchor {anchor!r}; "
                             f"modalities: {list(modalities)}")
    if not cands:
        raise InputError(f"no candidate modality{where}: only the anchor {anchor!r}")
    arrays = {}
    n_rows = None
    for name in [anchor] + cands:
        try:
            x = _as_numpy64(modalities[name], name)
        except TypeError as exc:
            raise InputError(f"modality {name!r}{where}: {exc}") from None
        if x.ndim != 2:
            raise InputError(f"modality {name!r}{where} must be 2-D (rows, channels), got shape {x.shape}")
        if x.shape[1] == 0:
            raise InputError(f"modality {name!r}{where} has width 0 (no channels)")
        if x.shape[0] == 0:
            raise InputError(f"modality {name!r}{where} has no rows")
        if n_rows is None:
            n_rows = x.shape[0]
        elif x.shape[0] != n_rows:
            raise InputError(f"modality {name!r}{where} has {x.shape[0]} rows but the anchor {anchor!r} has "
                             f"{n_rows}: rows must be aligned across modalities")
        bad = ~np.isfinite(x)
        if bad.any():
            i, j = np.argwhere(bad)[0]
            raise InputError(f"modality {name!r}{where} holds a non-finite value ({x[i, j]}) at row {i}, column {j}")
        if not (x.max(axis=0) > x.min(axis=0)).any():
            raise InputError(f"modality {name!r}{where} has zero variance (every row is the same)")
        arrays[name] = x
    y, names = _class_ids(labels, n_rows, where)
    return arrays, y, names, cands


def _class_ids(labels, n_rows: int, where: str):
    if labels is None:
        raise InputError(f"no labels{where}: the task evidence needs one class id per row")
    lab = labels.detach().cpu().numpy() if is_torch(labels) else np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n_rows:
        raise InputError(f"labels{where} must be one class per row, shape ({n_rows},), got shape {lab.shape}")
    if lab.dtype.kind == "f" and not np.isfinite(lab).all():
        raise InputError(f"labels{where} hold a missing or non-finite value at row {int(np.argmin(np.isfinite(lab)))}")
    if lab.dtype.kind == "O" and pd.isna(lab).any():
        raise InputError(f"labels{where} hold a missing value at row {int(np.flatnonzero(pd.isna(lab))[0])}")
    names, y, counts = np.unique(lab, return_inverse=True, return_counts=True)
    if len(names) < 2:
        raise InputError(f"labels{where} have a single class ({names[0]!r}): accuracy gains need at least two")
    if counts.max() < 2:
        raise InputError(f"labels{where} give every row its own class ({len(names)} classes over {n_rows} rows; "
                         "continuous values?): a probe cannot be tested on a class it was not trained on")
    return y.astype(np.int64), names


def stratified_folds(y, folds: int, seed: int) -> np.ndarray:
    """Fold id of each row: each class is shuffled (seeded) and dealt round-robin to the folds."""
    rng = np.random.default_rng(seed)
    fold = np.empty(len(y), dtype=np.int64)
    start = 0
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        # continue the deal where the last class stopped, so small classes do not all land in fold 0
        fold[idx] = (start + np.arange(len(idx))) % folds
        start = (start + len(idx)) % folds
    return fold


def _unit_scale(x: np.ndarray, axis=None) -> np.ndarray:
    """``x`` times the power of two that brings its largest ``|x|`` (per column with ``axis=0``) into [0.5, 1).

    Exact (a change of the exponent only), as the rows of the streamed Gram matrix
    (:class:`~rankfusion.spectral.GramAccumulator`) are scaled: the squares taken afterwards
    neither overflow (finite ``|x|`` above ~1e154) nor underflow (below ~1e-162, denormals),
    and every scale-invariant result (standardised features, singular vectors) is unchanged.
    """
    top = np.abs(x).max(axis=axis, keepdims=axis is not None)
    return np.ldexp(x, -np.frexp(top)[1])  # frexp(0) gives exponent 0: a zero column stays zero


def _standardize(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    x = _unit_scale(x, axis=0)  # the same standardised values at any scale (the sd squares x)
    mu = x[train].mean(axis=0)
    sd = x[train].std(axis=0)
    # a column constant on the training rows carries nothing the probe could learn; keep it finite
    return ((x - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


def corrected_ci(diffs, test_over_train: float, level: float | None = None) -> tuple[float, float]:
    """Confidence interval of the mean of repeated cross-validation differences.

    The ``n`` differences share training rows, so their naive variance understates the spread;
    the corrected resampled t interval (Nadeau & Bengio, 2003) inflates ``s^2 / n`` to
    ``(1/n + n_test/n_train) s^2`` with ``n - 1`` degrees of freedom; ``level`` defaults to
    ``1 - rankfusion.stats.ALPHA``.
    """
    from scipy.stats import t as student_t

    level = 1.0 - stats.ALPHA if level is None else level
    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n < 2:
        return (math.nan, math.nan)
    half = student_t.ppf(0.5 + level / 2, n - 1) * math.sqrt((1.0 / n + test_over_train) * d.var(ddof=1))
    return (float(d.mean() - half), float(d.mean() + half))


# --------------------------------------------------------------------------- evidence


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
        def num(v):
            return None if v is None or not np.isfinite(v) else float(v)

        cands = [{
            "name": c.name, "criterion": num(c.criterion), "control_mean": num(c.control_mean),
            "control_std": num(c.control_std), "control_p": num(c.control_p), "excess": num(c.excess),
            "noise_like": bool(c.noise_like),
            "task_gain": num(c.task_gain),
            "task_gain_ci": None if c.task_gain_ci is None else [num(v) for v in c.task_gain_ci],
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


def _hm(a, b):
    return spectral.harmonic_mean_gain(a, b)


def _ranks(keys) -> list[int]:
    order = sorted(range(len(keys)), key=lambda i: keys[i])
    ranks = [0] * len(keys)
    for r, i in enumerate(order, start=1):
        ranks[i] = r
    return ranks


def _replicates(y, config: ProbeConfig):
    for s in config.seeds:
        fold = stratified_folds(y, config.folds, s)
        for k in range(config.folds):
            # each replicate gets its own initialisation; the same one for every pairing in it
            yield fold != k, fold == k, int(s) * 1000 + k


def _replicate_task(arrays, factors, y, anchor, cands, tr, te, seed, config, with_anchor=True):
    """One replicate: anchor-only accuracy; per candidate, the candidate and its surrogates fitted
    together (:func:`fit_probe_members`: RTF accuracy of each, both gains of each) and the plain
    (no RTF) accuracy of the candidate.

    Surrogate ``j`` of a candidate is the same matrix in every replicate (drawn from the
    candidate's spectral factors with the candidate's seed), standardised on the replicate's
    training rows like the candidate: each surrogate goes through exactly what the candidate does.
    """
    with _torch_threads(config.threads):
        return _replicate_fits(arrays, factors, y, anchor, cands, tr, te, seed, config, with_anchor)


def _replicate_fits(arrays, factors, y, anchor, cands, tr, te, seed, config, with_anchor):
    za = _standardize(arrays[anchor], tr)
    out = {}
    if with_anchor:
        model = fit_probe([za[tr]], y[tr], config=config, seed=seed)
        out["anchor"] = _accuracy(model, [za[te]], y[te])
    for c in cands:
        sur = _surrogates_of(factors[c], _surrogate_seed(c, config), config.n_surrogates)
        z = np.stack([_standardize(x, tr) for x in [arrays[c]] + sur])  # (1 + S, N, C): candidate first
        members = fit_probe_members(za[tr], z[:, tr], y[tr], config=config, seed=seed)
        gains, acc = members.evaluate(za[te], z[:, te], y[te])
        plain = fit_probe([za[tr], z[0, tr]], y[tr], config=config, rtf=False, seed=seed)
        out[c] = (float(acc[0]), gains, _accuracy(plain, [za[te], z[0, te]], y[te]))
    return out


#: The last candidate's surrogates drawn in this process: ``(key, list of (N, C) arrays)``.
_SURROGATE_CACHE: list = []


def _surrogates_of(factors, seed: int, n: int) -> list:
    """Surrogates ``0..n-1`` of one candidate (:func:`_draw_surrogate`), drawn once per process and
    candidate: the tasks of one candidate follow each other, and the draws (a QR each) are the same
    in every replicate."""
    key = (seed, n, factors[3], factors[1].tobytes(), factors[0].tobytes())  # the factors arrive pickled: by value
    if not _SURROGATE_CACHE or _SURROGATE_CACHE[0][0] != key:
        _SURROGATE_CACHE[:] = [(key, [_draw_surrogate(factors, seed, j) for j in range(n)])]
    return _SURROGATE_CACHE[0][1]


def _surrogate_seed(cand: str, config: ProbeConfig) -> int:
    import zlib

    # seeded by the candidate's name, so a candidate's control does not depend on the others
    return (zlib.crc32(cand.encode()) + int(config.seeds[0])) % 2**31


def _call(task):
    fn, args = task
    return fn(*args)


def _run_tasks(tasks, jobs: int, bar) -> list:
    """Run ``(fn, args)`` tasks in order (``jobs`` worker processes when > 1); results in task order.

    Every task is seeded on its own, so the results do not depend on ``jobs`` or on scheduling.
    """
    if jobs == 1:
        out = []
        for t in tasks:
            out.append(_call(t))
            bar.update(1)
        return out
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a forked child would inherit torch's thread-pool state mid-use
    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_call, t) for t in tasks]
        for f in futures:
            f.result()
            bar.update(1)
        return [f.result() for f in futures]


def _evidence(arrays, y, anchor, cands, config, jobs, bar):
    """All probe fits, one task per (replicate, candidate) plus one per replicate for the anchor.

    Returns ``acc_a`` (n_rep,), and per candidate ``acc`` / ``acc_plain`` (n_rep,) and ``gains``
    (n_rep, 1 + S, 2): member 0 the candidate, members 1..S its surrogates.
    """
    reps = list(_replicates(y, config))
    factors = {c: _spectral_factors(arrays[c]) for c in cands}  # one SVD per candidate
    # candidate-major: a worker's consecutive tasks share the candidate and so its surrogates
    tasks = [(_replicate_task, (arrays, factors, y, anchor, [c], tr, te, seed, config, j == 0))
             for j, c in enumerate(cands) for tr, te, seed in reps]
    results = _run_tasks(tasks, jobs, bar)
    r = len(reps)
    per_rep = [{"anchor": results[i]["anchor"], **{c: results[j * r + i][c] for j, c in enumerate(cands)}}
               for i in range(r)]
    acc_a = np.array([r["anchor"] for r in per_rep])
    acc = {c: np.array([r[c][0] for r in per_rep]) for c in cands}
    gains = {c: np.stack([r[c][1] for r in per_rep]).astype(np.float64) for c in cands}
    acc_plain = {c: np.array([r[c][2] for r in per_rep]) for c in cands}
    return acc_a, acc, acc_plain, gains


def replicate_criterion(gains) -> np.ndarray:
    """The criterion of each member from its per-replicate gains ``(n_rep, n_members, 2)``: the
    harmonic mean of the gains averaged over replicates (NaN where a mean gain is <= 0)."""
    g = np.asarray(gains, dtype=np.float64)
    mean = g.mean(axis=0)
    return np.asarray(_hm(mean[:, 0], mean[:, 1]), dtype=np.float64)


def select_modalities(modalities: dict, labels, anchor: str, *, candidates=None, config: ProbeConfig | None = None,
                      jobs: int = 1, progress: bool = False, source: str = "") -> SelectionReport:
    """Rank candidate modalities for an anchor with the criterion, a noise control and task gains.

    Parameters
    ----------
    modalities : dict of str to ndarray or tensor of shape (N, C_m)
        Paired features, rows aligned across modalities; widths may differ.
    labels : ndarray or tensor of shape (N,)
        One class per row (any hashable values; at least two classes).
    anchor : str
        The modality every candidate is fused with.
    candidates : sequence of str, optional
        Default: every other modality.
    config : ProbeConfig, optional
    jobs : int, default 1
        Worker processes for the probe fits (each one torch thread). The result does not depend
        on it: every fit is seeded on its own.
    progress : bool, default False
        A tqdm bar over the probe tasks (on stderr).
    source : str, optional
        Where the data came from (a file name), for error messages.

    Returns
    -------
    SelectionReport

    Raises
    ------
    InputError
        The bad inputs of :func:`check_paired`, each naming the modality; ``config.folds`` above the
        row count of the smallest class.
    """
    from tqdm.auto import tqdm

    config = config or ProbeConfig()
    t0 = time.perf_counter()
    arrays, y, names, cands = check_paired(modalities, labels, anchor, candidates, source=source)
    jobs = check_int(jobs, "jobs", low=1)
    counts = np.bincount(y)
    if config.folds > counts.min():
        small = int(np.argmin(counts))
        raise InputError(f"folds={config.folds} (--folds) is more than the {counts.min()} row(s) of the smallest "
                         f"class {names[small].item()!r} ({len(y)} rows, {len(counts)} classes{' in ' + source if source else ''}): "
                         f"stratified folds need a row of every class in each fold; use at most {counts.min()}")
    n_rep = config.folds * len(config.seeds)
    with tqdm(total=n_rep * len(cands), desc="probe tasks", disable=bar_disabled(progress), leave=False) as bar:
        acc_a, acc, acc_plain, gains = _evidence(arrays, y, anchor, cands, config, jobs, bar)
    diffs = {c: acc[c] - acc_a for c in cands}
    ratio = 1.0 / (config.folds - 1)  # n_test / n_train of one fold
    rows = []
    for c in cands:
        crit_all = replicate_criterion(gains[c])  # member 0: the candidate; 1..S: its surrogates
        crit, values = float(crit_all[0]), crit_all[1:]
        p, noise = noise_test(crit, values)
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if finite.size else math.nan
        sd = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
        ga, gc = gains[c][:, 0].mean(axis=0)
        cga, cgc = gains[c][:, 1:].mean(axis=(0, 1))
        rows.append(dict(name=c, criterion=crit, gain_anchor=float(ga), gain_candidate=float(gc),
                         control_mean=mean, control_std=sd, control_values=tuple(float(v) for v in values),
                         control_gain_anchor=float(cga), control_gain_candidate=float(cgc),
                         excess=crit - mean if np.isfinite(crit) else math.nan, control_p=p,
                         control_nan=int(values.size - finite.size), noise_like=noise,
                         task_gain=float(diffs[c].mean()),
                         task_gain_ci=tuple(float(v) for v in np.clip(corrected_ci(diffs[c], ratio), -1.0, 1.0)),
                         task_gain_plain=float((acc_plain[c] - acc_a).mean()), accuracy=float(acc[c].mean()),
                         accuracy_plain=float(acc_plain[c].mean())))
    by_crit = _ranks([(-r["criterion"] if np.isfinite(r["criterion"]) else math.inf, r["name"]) for r in rows])
    by_ctrl = _ranks([(r["noise_like"], -r["excess"] if np.isfinite(r["excess"]) else math.inf, r["name"])
                      for r in rows])
    out = tuple(CandidateEvidence(**r, rank_criterion=a, rank_controlled=b) for r, a, b in zip(rows, by_crit, by_ctrl))
    agreement = None
    if len(cands) >= 3:
        # one definition of agreement: Spearman's rho, tested by permutation over the candidates
        agreement = stats.agreement(_rank_last([r["criterion"] for r in rows]), [r["task_gain"] for r in rows])
    return SelectionReport(anchor=anchor, candidates=out, agreement=agreement,
                           accuracy_anchor=float(acc_a.mean()), n_rows=len(y), n_replicates=n_rep, config=config,
                           seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- paired files


def load_paired(path, *, labels: str = "labels", modalities=None) -> tuple[dict, np.ndarray | None]:
    """Read paired per-modality features from ``.npz``, CSV/TSV or Parquet.

    Parameters
    ----------
    path : str or Path
        ``.npz``: one ``(N, C_m)`` array per modality plus the ``labels`` array. A table: one row per
        sample, the modalities' columns chosen by ``modalities``.
    labels : str, default "labels"
        Key (``.npz``) or column (tables) of the class of each row.
    modalities : dict of str to list of str, optional
        Tables only (required there): ``{name: [glob patterns]}``, as ``rankfusion data import-csv``.

    Returns
    -------
    (dict of str to ndarray, labels ndarray)
        Unvalidated beyond what reading needs; :func:`check_paired` validates.
    """
    from pathlib import Path


    path = Path(path)
    if path.suffix.lower() == ".npz":
        if modalities:
            raise InputError(f"--modality NAME=PATTERN applies to CSV/Parquet tables, not to {str(path)!r} "
                             "(an .npz holds one array per modality)")
        arrays = load_arrays(path, text_keys=(labels,))  # labels may be any values, strings included
        if labels not in arrays:
            raise InputError(f"labels key {labels!r} not found in {str(path)!r}; keys: {sorted(arrays)} "
                             "(name another with --labels KEY)")
        lab = np.asarray(arrays.pop(labels))
        return {k: np.asarray(v) for k, v in arrays.items()}, lab
    if not modalities:
        raise InputError(f"{str(path)!r} is a table: name its modalities with --modality NAME=PATTERN (repeat)")
    df = read_table(path)
    if labels not in df.columns:
        raise InputError(f"labels column {labels!r} not found in {str(path)!r}; columns: "
                         f"{[str(c) for c in df.columns][:20]}")
    out = {}
    for name, cols in _table_columns(df, path, modalities, labels).items():
        out[name] = _numeric_block(df, cols, name, path)
    return out, df[labels].to_numpy()


def _table_columns(df, path, modalities: dict, labels: str) -> dict:
    import fnmatch

    out, owner = {}, {}
    for name, patterns in modalities.items():
        cols = [c for c in df.columns if c != labels and any(fnmatch.fnmatchcase(str(c), p) for p in patterns)]
        if not cols and any(fnmatch.fnmatchcase(str(labels), p) for p in patterns):
            raise InputError(f"modality {name!r}: pattern {','.join(patterns)!r} matches only {str(labels)!r} of "
                             f"{str(path)!r}, the label column (--labels): a modality's columns are features")
        if not cols:
            raise InputError(f"modality {name!r}: pattern {','.join(patterns)!r} matches no column of {str(path)!r}; "
                             f"columns: {[str(c) for c in df.columns][:20]}")
        for c in cols:
            if c in owner:
                raise InputError(f"column {str(c)!r} of {str(path)!r} matches modalities {owner[c]!r} and {name!r}")
            owner[c] = name
        out[name] = cols
    return out


def _numeric_block(df, cols, name: str, path) -> np.ndarray:
    block = df[cols].apply(pd.to_numeric, errors="coerce")
    bad = block.isna().to_numpy() & df[cols].notna().to_numpy()
    if bad.any():
        i, j = np.argwhere(bad)[0]
        raise InputError(f"modality {name!r}: column {str(cols[j])!r} of {str(path)!r} has a non-numeric cell "
                         f"{df[cols[j]].iloc[i]!r} at data row {i}")
    return block.to_numpy(dtype=np.float64)


# --------------------------------------------------------------------------- runs of a model (feature files, R3D)


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
        different models, so a shared seed number pairs nothing; NaN bounds with one seed), and
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
    return task, stats.agreement(_rank_last(crit), [task[c][0] for c in cands], alpha=alpha)


def _rank_last(a) -> np.ndarray:
    """``a`` with NaN entries (no mutual gain) set below every finite one: they rank last, as in the
    paper; rank statistics see nothing else of the value."""
    a = np.asarray(a, dtype=np.float64)
    ok = np.isfinite(a)
    floor = (a[ok].min() - 1.0) if ok.any() else 0.0
    return np.where(ok, a, floor)


def _nanmean_rows(a: np.ndarray) -> np.ndarray:
    """Row means over the finite entries; NaN for a row without any (a seed without mutual gain)."""
    ok = np.isfinite(a)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(n, 1), np.nan)


def ranking_json(ranking: pd.DataFrame, anchor: str, task: dict | None = None, agreement=None) -> dict:
    """The ``--json`` schema for a ranking from feature files or R3D runs.

    No noise control exists there (the model that made the features cannot be rerun with a
    surrogate), so the control fields and ``noise_like`` are null and ``rank_controlled`` equals
    ``rank_criterion``; task fields come from ``task`` (MoC gains in percent) or are null;
    ``agreement`` is :func:`agreement_json` of a :class:`rankfusion.stats.Agreement` (or None).
    """
    def num(v):
        return None if v is None or not np.isfinite(v) else float(v)

    task = task or {}
    cands = []
    for r in ranking.itertuples():
        gain, gci = task.get(r.candidate, (None, None))
        cands.append({"name": r.candidate, "criterion": num(r.score), "control_mean": None, "control_std": None,
                      "control_p": None, "excess": None, "noise_like": None, "task_gain": num(gain),
                      "task_gain_ci": None if gci is None else [num(v) for v in gci],
                      "rank_criterion": int(r.rank), "rank_controlled": int(r.rank)})
    return {"anchor": anchor, "candidates": cands, "agreement": agreement_json(agreement)}


def agreement_json(ag) -> dict:
    """``{"spearman", "ci", "p", "exact", "backed", "alpha"}`` of an Agreement (all null for None).

    ``ci`` stays in the schema and is null: the agreement is tested by permutation over the
    candidates, not given a resampling interval.
    """
    def num(v):
        return None if v is None or not np.isfinite(v) else float(v)

    if ag is None:
        return {"spearman": None, "ci": None, "p": None, "exact": None, "backed": None, "alpha": None}
    return {"spearman": num(ag.rho), "ci": None, "p": num(ag.p), "exact": bool(ag.exact), "backed": bool(ag.backed),
            "alpha": float(ag.alpha)}
