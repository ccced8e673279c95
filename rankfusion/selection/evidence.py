"""Evidence on paired features (:func:`select_modalities`): criterion by the probe, noise control, task gains.

Every candidate is fitted on the replicates of stratified cross-validation together with its
surrogates (:func:`rankfusion.selection.probe.fit_probe_members`); the task gain's interval is the
corrected resampled t interval (:func:`rankfusion.stats.corrected_ci`); the rank agreement of criterion and task
gain is :func:`rankfusion.stats.agreement`.
"""

from __future__ import annotations

import math
import time

import numpy as np

from .. import spectral, stats
from ..stats import corrected_ci
from .._progress import bar_disabled
from .._validation import InputError, check_int
from ..threads import limited_threads
from .arrays import _unit_scale
from .criterion import nan_last
from .paired import check_paired
from .probe import ProbeConfig, _accuracy, fit_probe, fit_probe_members
from .results import CandidateEvidence, SelectionReport
from .surrogates import _draw_surrogate, _spectral_factors, noise_test


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


def _standardize(x: np.ndarray, train: np.ndarray) -> np.ndarray:
    x = _unit_scale(x, axis=0)  # the same standardised values at any scale (the sd squares x)
    mu = x[train].mean(axis=0)
    sd = x[train].std(axis=0)
    # a column constant on the training rows carries nothing the probe could learn; keep it finite
    return ((x - mu) / np.where(sd > 0, sd, 1.0)).astype(np.float32)


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
    with limited_threads(config.threads):
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
    mu, sv, vt, rows, e = factors
    # every factor (they arrive pickled: compared by value), so other data never reuse the draws
    key = (seed, n, rows, e, mu.tobytes(), sv.tobytes(), vt.shape, vt.tobytes())
    if not _SURROGATE_CACHE or _SURROGATE_CACHE[0][0] != key:
        _SURROGATE_CACHE[:] = [(key, [_draw_surrogate(factors, seed, j) for j in range(n)])]
    return _SURROGATE_CACHE[0][1]


def _surrogate_seed(cand: str, config: ProbeConfig) -> int:
    import zlib

    # seeded by the candidate's name, so a candidate's control does not depend on the others, and
    # by the smallest probe seed, so not on the order the seeds are listed in
    return (zlib.crc32(cand.encode()) + min(int(s) for s in config.seeds)) % 2**31


def _call(task):
    fn, args = task
    return fn(*args)


def _run_tasks(tasks, jobs: int, bar) -> list:
    """Run ``(fn, args)`` tasks; results in task order.

    With ``jobs`` > 1 the calling process runs tasks too, beside ``jobs - 1`` worker processes, each
    taking the next task not yet taken: the caller computes while its workers start (each imports
    torch), and no process waits for work while another still has several tasks queued. Every task
    is seeded on its own, so the results do not depend on ``jobs`` or on scheduling.
    """
    if jobs == 1 or len(tasks) == 1:
        out = []
        for t in tasks:
            out.append(_call(t))
            bar.update(1)
        return out
    import multiprocessing as mp
    import threading
    from concurrent.futures import ProcessPoolExecutor

    results, failed = [None] * len(tasks), []
    lock, order = threading.Lock(), iter(range(len(tasks)))

    def take():
        with lock:
            return None if failed else next(order, None)

    def run(compute):
        try:
            while (i := take()) is not None:
                results[i] = compute(tasks[i])
                with lock:  # tqdm's count is not thread-safe
                    bar.update(1)
        except BaseException as e:  # Ctrl-C in the caller too: stop handing out tasks
            with lock:
                failed.append(e)

    # spawn, not fork: a forked child would inherit torch's thread-pool state mid-use
    with ProcessPoolExecutor(max_workers=jobs - 1, mp_context=mp.get_context("spawn")) as pool:
        # one thread per worker process hands it a task whenever it is free
        feeders = [threading.Thread(target=run, args=(lambda t: pool.submit(_call, t).result(),), daemon=True)
                   for _ in range(jobs - 1)]
        for f in feeders:
            f.start()
        run(_call)
        for f in feeders:
            f.join()
    if failed:
        raise failed[0]
    return results


def _evidence(arrays, y, anchor, cands, config, jobs, bar):
    """All probe fits, one task per (replicate, candidate) plus one per replicate for the anchor.

    Returns ``acc_a`` (n_rep,), and per candidate ``acc`` / ``acc_plain`` (n_rep,) and ``gains``
    (n_rep, 1 + S, 2): member 0 the candidate, members 1..S its surrogates.
    """
    reps = list(_replicates(y, config))
    factors = {c: _spectral_factors(arrays[c]) for c in cands}  # one SVD per candidate
    # candidate-major: a process's consecutive tasks share the candidate and so its surrogates; the
    # widest candidates (the longest fits) first, so the last tasks, which can leave a process
    # idle, are short ones
    by_cost = sorted(cands, key=lambda c: -arrays[c].shape[1])
    tasks = [(_replicate_task, (arrays, factors, y, anchor, [c], tr, te, seed, config, j == 0))
             for j, c in enumerate(by_cost) for tr, te, seed in reps]
    results = _run_tasks(tasks, jobs, bar)
    r = len(reps)
    per_rep = [{"anchor": results[i]["anchor"], **{c: results[j * r + i][c] for j, c in enumerate(by_cost)}}
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


def _candidate_row(name: str, gains, acc, acc_plain, acc_a, ratio: float) -> dict:
    """The fields of one :class:`CandidateEvidence` (ranks aside) from its replicates.

    ``gains`` (n_rep, 1 + S, 2): member 0 the candidate, 1..S its surrogates; ``acc``, ``acc_plain``
    and ``acc_a`` (n_rep,): accuracies with RTF, without, and of the anchor alone; ``ratio``
    ``n_test / n_train`` of one fold (:func:`rankfusion.stats.corrected_ci`).
    """
    crit_all = replicate_criterion(gains)
    crit, values = float(crit_all[0]), crit_all[1:]
    p, noise = noise_test(crit, values)
    finite = values[np.isfinite(values)]
    mean = float(finite.mean()) if finite.size else math.nan
    sd = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
    ga, gc = gains[:, 0].mean(axis=0)
    cga, cgc = gains[:, 1:].mean(axis=(0, 1))
    diffs = acc - acc_a
    return dict(name=name, criterion=crit, gain_anchor=float(ga), gain_candidate=float(gc),
                control_mean=mean, control_std=sd, control_values=tuple(float(v) for v in values),
                control_gain_anchor=float(cga), control_gain_candidate=float(cgc),
                excess=crit - mean if np.isfinite(crit) else math.nan, control_p=p,
                control_nan=int(values.size - finite.size), noise_like=noise,
                task_gain=float(diffs.mean()),
                task_gain_ci=tuple(float(v) for v in np.clip(corrected_ci(diffs, ratio, scale=max(
                    np.abs(acc).max(), np.abs(acc_a).max())), -1.0, 1.0)),
                task_gain_plain=float((acc_plain - acc_a).mean()), accuracy=float(acc.mean()),
                accuracy_plain=float(acc_plain.mean()))


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
        Processes computing the probe fits (each one torch thread): the caller and ``jobs - 1``
        worker processes. The result does not depend on it: every fit is seeded on its own.
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
        where = f"class {names[small].item()!r} ({len(y)} rows, {len(counts)} classes{' in ' + source if source else ''})"
        if counts.min() < 2:  # no number of folds (at least 2) can work
            raise InputError(f"the smallest {where} has a single row: stratified folds need at least 2 rows of "
                             "every class; drop that class or merge it with another")
        raise InputError(f"folds={config.folds} (--folds) is more than the {counts.min()} row(s) of the smallest "
                         f"{where}: stratified folds need a row of every class in each fold; use at most {counts.min()}")
    n_rep = config.folds * len(config.seeds)
    with tqdm(total=n_rep * len(cands), desc="probe tasks", disable=bar_disabled(progress), leave=False) as bar:
        acc_a, acc, acc_plain, gains = _evidence(arrays, y, anchor, cands, config, jobs, bar)
    ratio = 1.0 / (config.folds - 1)  # n_test / n_train of one fold
    rows = [_candidate_row(c, gains[c], acc[c], acc_plain[c], acc_a, ratio) for c in cands]
    crit, excess = nan_last([r["criterion"] for r in rows]), nan_last([r["excess"] for r in rows])
    by_crit = _ranks([(-crit[i], r["name"]) for i, r in enumerate(rows)])
    by_ctrl = _ranks([(r["noise_like"], -excess[i], r["name"]) for i, r in enumerate(rows)])
    out = tuple(CandidateEvidence(**r, rank_criterion=a, rank_controlled=b) for r, a, b in zip(rows, by_crit, by_ctrl))
    agreement = None
    if len(cands) >= 3:
        # one definition of agreement: Spearman's rho, tested by permutation over the candidates
        agreement = stats.agreement(crit, [r["task_gain"] for r in rows])
    return SelectionReport(anchor=anchor, candidates=out, agreement=agreement,
                           accuracy_anchor=float(acc_a.mean()), n_rows=len(y), n_replicates=n_rep, config=config,
                           seconds=time.perf_counter() - t0)
