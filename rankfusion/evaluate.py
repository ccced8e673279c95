"""Metrics: long-term anticipation (MoC, the protocol of docs/datasets.md) and action segmentation.

Anticipation
    :func:`decode_queries` turns one prediction of the model (per-query class logits and
    durations) into future frame labels; :func:`expand_transcript` does the same for a predicted
    (class, duration) list. :class:`MoCAccumulator` pools true/false frame counts per class over
    videos and reports the mean over classes (MoC) per observation ratio and prediction ratio.

Segmentation
    :func:`frame_accuracy`, :func:`edit_score`, :func:`f1_at_overlap` per video, and
    :func:`segmentation_scores` pooled over videos the way MS-TCN reports them.

Trained runs
    :func:`moc_grid`, :func:`segmentation_grid` and :func:`modality_reliance` apply the
    protocols to a trained R3D model, one video at a time; :func:`evaluate_run` evaluates a run
    folder (one seed or several) and writes ``RUN/eval_<split>.csv`` (percentages). torch is
    imported only there.

The metric scores are fractions in [0, 1] (multiply by 100 for the percentages of papers).
Predictions and labels are NumPy int arrays; torch tensors are accepted and moved to the CPU.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ._validation import InputError, InputTypeError, check_choice, check_float, check_int, is_torch
from .data.torchdata import video_inputs
from .distributed import all_reduce_list, shard
from .io import write_text
from .runs import check_config_data, load_run, open_data, resolve_device, seed_dirs

if TYPE_CHECKING:
    from .config import RunConfig

#: Prediction ratios beta of the protocol.
DEFAULT_BETAS = (0.1, 0.2, 0.3, 0.5)
#: Observation ratios alpha of the protocol.
DEFAULT_OBS_RATIOS = (0.2, 0.3)
#: Overlap thresholds of F1@{10,25,50}.
DEFAULT_OVERLAPS = (0.1, 0.25, 0.5)


def _np(x, name, *, ndim, kind="i"):
    if is_torch(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D, got shape {x.shape}")
    if kind == "i":
        if x.size and x.dtype.kind not in "iu":
            if x.dtype.kind == "f" and np.all(np.isfinite(x)) and np.all(x == np.round(x)):
                x = x.astype(np.int64)
            else:
                raise InputTypeError(f"{name} must hold integer labels, got dtype {x.dtype}")
        return x.astype(np.int64, copy=False)
    if x.dtype.kind not in "fiu":
        raise InputTypeError(f"{name} must be real numbers, got dtype {x.dtype}")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise InputError(f"{name} contains NaN or Inf values")
    return x


# ----------------------------------------------------------------------------- anticipation
def expand_transcript(classes, durations, n_frames, *, none_index=None) -> np.ndarray:
    """Expand a predicted transcript into per-frame labels of the future window.

    Only the actions before the first ``none_index`` are kept. Their durations are normalised to
    sum to 1; action ``i`` gets ``floor(0.5 + n_frames * w_i)`` frames in order, and the last kept
    action fills whatever remains of the window (so the rounding never leaves a gap, and lengths
    that overshoot the window are cut at its end). With no action kept every frame is
    ``none_index`` (``-1`` when ``none_index`` is None), which never matches a true label.

    Parameters
    ----------
    classes : array-like of int, shape (Q,)
        Predicted classes in order.
    durations : array-like of float, shape (Q,)
        Non-negative relative durations (any scale; normalised over the kept actions).
    n_frames : int
        Length of the future window in frames.
    none_index : int, optional
        The NONE class id; the transcript stops at its first occurrence.

    Returns
    -------
    ndarray of int64, shape (n_frames,)
    """
    classes = _np(classes, "classes", ndim=1)
    durations = _np(durations, "durations", ndim=1, kind="f")
    if classes.shape != durations.shape:
        raise InputError(f"classes and durations must have the same length, got {classes.shape} and {durations.shape}")
    n_frames = check_int(n_frames, "n_frames", low=0)
    fill = -1 if none_index is None else check_int(none_index, "none_index", low=0)
    k = classes.size
    if none_index is not None:
        hits = np.flatnonzero(classes == none_index)
        if hits.size:
            k = int(hits[0])
    out = np.full(n_frames, fill, dtype=np.int64)
    if k == 0:
        return out
    w = durations[:k]
    if np.any(w < 0):
        raise InputError(f"durations must be non-negative, got {w.min()}")
    total = w.sum()
    if total <= 0:
        raise InputError("durations of the kept actions sum to 0; cannot split the future window")
    lengths = np.floor(0.5 + n_frames * (w / total)).astype(np.int64)
    pos = 0
    for i in range(k - 1):
        out[pos:pos + lengths[i]] = classes[i]
        pos += int(lengths[i])
    if pos < n_frames:
        out[pos:] = classes[k - 1]  # the last kept action absorbs the rounding remainder
    return out


def decode_queries(class_logits, durations, n_future_frames, none_index, *, log_durations=True) -> np.ndarray:
    """Future frame labels from one prediction of the anticipation head (the MoC protocol).

    ``a = argmax(class_logits)`` per query (ties go to the lower class index, so an action beats
    NONE on a tie); the queries before the first NONE are kept (all of them when no NONE is
    predicted); their weights ``exp(d)`` are normalised over the kept queries and expanded by
    :func:`expand_transcript`.

    Parameters
    ----------
    class_logits : array-like of float, shape (Q, n_classes + 1)
        Scores per query, NONE included.
    durations : array-like of float, shape (Q,)
        The duration outputs ``d``; weights are ``exp(d)`` (``log_durations=True``, the protocol)
        or ``d`` itself when the model already outputs non-negative fractions.
    n_future_frames : int
        ``int(0.5 * N)`` for a video of ``N`` frames.
    none_index : int
        Column of NONE in ``class_logits`` (normally ``n_classes``).

    Returns
    -------
    ndarray of int64, shape (n_future_frames,)
        Predicted labels; frames without a kept query are ``none_index`` (never a match).
    """
    logits = _np(class_logits, "class_logits", ndim=2, kind="f")
    d = _np(durations, "durations", ndim=1, kind="f")
    if d.shape[0] != logits.shape[0]:
        raise InputError(f"durations must have one entry per query ({logits.shape[0]}), got shape {d.shape}")
    none_index = check_int(none_index, "none_index", low=0, high=logits.shape[1] - 1)
    a = np.argmax(logits, axis=1)  # first maximum on ties
    hits = np.flatnonzero(a == none_index)
    k = int(hits[0]) if hits.size else a.size
    if k == 0:
        return np.full(check_int(n_future_frames, "n_future_frames", low=0), none_index, dtype=np.int64)
    if log_durations:
        w = np.exp(d[:k] - d[:k].max())  # shift for overflow safety; cancels in the normalisation
    else:
        w = d[:k]
    return expand_transcript(a[:k], w, n_future_frames, none_index=none_index)


class MoCAccumulator:
    """Mean-over-classes accuracy of long-term anticipation, pooled over videos.

    For each video (``N`` frames, ``past = int(obs * N)``) the prediction of the future window is
    appended to the observed ground truth; for each beta the frames ``t`` in
    ``[past, min(int((obs + beta) * N), past + len(pred), N))`` count as true or false for class
    ``gt[t]``. One prediction of the 0.5 window serves every beta. MoC = mean over classes with
    at least one counted frame of ``T / (T + F)``; counts are pooled over videos first.

    Parameters
    ----------
    n_classes : int
        Number of action classes (NONE excluded).
    betas : sequence of float
        Prediction ratios.
    future_ratio : float
        Window predicted by :meth:`add_queries` / :meth:`add_transcript` (0.5 in the protocol).
    """

    def __init__(self, n_classes, betas=DEFAULT_BETAS, *, future_ratio=0.5):
        self.n_classes = check_int(n_classes, "n_classes", low=1)
        betas = tuple(betas)
        if not betas:
            raise InputError("betas must not be empty")
        self.betas = tuple(check_float(b, "betas", low=0.0, high=1.0, low_open=True) for b in betas)
        self.future_ratio = check_float(future_ratio, "future_ratio", low=0.0, high=1.0, low_open=True)
        self._true: dict[float, np.ndarray] = {}
        self._false: dict[float, np.ndarray] = {}
        self._videos: dict[float, int] = {}

    def _gt(self, gt):
        gt = _np(gt, "gt", ndim=1)
        if gt.size == 0:
            raise InputError("gt must not be empty")
        if gt.min() < 0 or gt.max() >= self.n_classes:
            bad = gt[(gt < 0) | (gt >= self.n_classes)][0]
            raise InputError(f"gt holds label {bad}, outside [0, {self.n_classes - 1}] (n_classes={self.n_classes})")
        return gt

    def n_future_frames(self, n_frames) -> int:
        """Length of the predicted window for a video of ``n_frames`` frames."""
        return int(self.future_ratio * n_frames)

    def add(self, gt, obs_ratio, future_pred) -> None:
        """Count one video at one observation ratio.

        Parameters
        ----------
        gt : array-like of int, shape (N,)
            Per-frame true labels of the whole video.
        obs_ratio : float
            Observation ratio in (0, 1], rounded to 6 decimals (a float32 0.3 counts as 0.3).
        future_pred : array-like of int, shape (n,)
            Predicted labels of the frames from ``int(obs_ratio * N)`` on. Any length: frames
            past the end of the video are ignored; beyond ``n`` nothing is counted (the protocol's
            ``min(..., len(seq))``). NONE or any id outside the classes never matches.
        """
        gt = self._gt(gt)
        if is_torch(obs_ratio):
            obs_ratio = float(obs_ratio)
        obs = check_float(obs_ratio, "obs_ratio", low=0.0, high=1.0, low_open=True)
        # float32 ratios from a batch (0.30000001) must give the same key and frame counts as 0.3
        obs = round(obs, 6)
        pred = _np(future_pred, "future_pred", ndim=1)
        n = gt.size
        past = int(obs * n)
        t_counts = self._true.setdefault(obs, np.zeros((len(self.betas), self.n_classes), np.int64))
        f_counts = self._false.setdefault(obs, np.zeros((len(self.betas), self.n_classes), np.int64))
        self._videos[obs] = self._videos.get(obs, 0) + 1
        for i, beta in enumerate(self.betas):
            end = min(int((obs + beta) * n), past + pred.size, n)
            if end <= past:
                continue
            g = gt[past:end]
            hit = g == pred[: end - past]
            t_counts[i] += np.bincount(g[hit], minlength=self.n_classes)
            f_counts[i] += np.bincount(g[~hit], minlength=self.n_classes)

    def add_transcript(self, gt, obs_ratio, classes, durations, *, none_index=None) -> None:
        """Count a predicted (class, duration) list for the future window (see :func:`expand_transcript`)."""
        gt = self._gt(gt)
        pred = expand_transcript(classes, durations, self.n_future_frames(gt.size), none_index=none_index)
        self.add(gt, obs_ratio, pred)

    def add_queries(self, gt, obs_ratio, class_logits, durations, *, log_durations=True) -> None:
        """Count raw model outputs (see :func:`decode_queries`); NONE is column ``n_classes``."""
        gt = self._gt(gt)
        logits = _np(class_logits, "class_logits", ndim=2, kind="f")
        if logits.shape[1] != self.n_classes + 1:
            raise InputError(
                f"class_logits must have n_classes + 1 = {self.n_classes + 1} columns (NONE last), "
                f"got shape {logits.shape}"
            )
        pred = decode_queries(logits, durations, self.n_future_frames(gt.size), self.n_classes,
                              log_durations=log_durations)
        self.add(gt, obs_ratio, pred)

    def merge(self, other: "MoCAccumulator") -> "MoCAccumulator":
        """Add the counts of ``other`` (same classes and betas) into this accumulator."""
        if not isinstance(other, MoCAccumulator):
            raise InputTypeError(f"other must be a MoCAccumulator, got {type(other).__name__}")
        if other.n_classes != self.n_classes or other.betas != self.betas:
            raise InputError("other must have the same n_classes and betas")
        for obs in other._true:
            for mine, theirs in ((self._true, other._true), (self._false, other._false)):
                mine.setdefault(obs, np.zeros_like(theirs[obs]))
                mine[obs] = mine[obs] + theirs[obs]
            self._videos[obs] = self._videos.get(obs, 0) + other._videos[obs]
        return self

    def add_counts(self, obs_ratio, true, false, n_videos: int) -> None:
        """Add pooled ``(T, F)`` count tables of ``n_videos`` videos at one observation ratio.

        The inverse of :meth:`counts`: tables summed over processes (an all-reduce of each
        process's :meth:`counts`) give the same MoC as one process counting every video.

        Parameters
        ----------
        obs_ratio : float
        true, false : array-like of int, shape (n_betas, n_classes)
        n_videos : int
        """
        obs = round(check_float(float(obs_ratio), "obs_ratio", low=0.0, high=1.0, low_open=True), 6)
        shape = (len(self.betas), self.n_classes)
        tables = []
        for name, t in (("true", true), ("false", false)):
            t = np.asarray(t.cpu() if is_torch(t) else t)
            if t.shape != shape or t.dtype.kind not in "iu" or (t < 0).any():
                raise InputError(f"{name} must be non-negative integer counts of shape {shape}, got "
                                 f"{t.dtype} {t.shape}")
            tables.append(t.astype(np.int64))
        for mine, t in zip((self._true, self._false), tables):
            mine[obs] = mine.get(obs, np.zeros(shape, np.int64)) + t
        self._videos[obs] = self._videos.get(obs, 0) + check_int(n_videos, "n_videos", low=0)

    @property
    def obs_ratios(self) -> list:
        """Observation ratios seen so far, ascending."""
        return sorted(self._true)

    def counts(self, obs_ratio):
        """Pooled ``(T, F)`` counts, int64 arrays of shape (n_betas, n_classes), for one ratio."""
        obs_ratio = round(float(obs_ratio), 6)
        if obs_ratio not in self._true:
            raise KeyError(f"obs_ratio {obs_ratio!r} was never added; have {self.obs_ratios}")
        return self._true[obs_ratio].copy(), self._false[obs_ratio].copy()

    def _moc(self, obs):
        t, f = self._true[obs], self._false[obs]
        tot = t + f
        out = np.full(len(self.betas), np.nan)
        for i in range(len(self.betas)):
            seen = tot[i] > 0  # classes absent from the evaluated frames do not count
            if seen.any():
                out[i] = float(np.mean(t[i, seen] / tot[i, seen]))
        return out

    def result(self):
        """MoC as a DataFrame: rows = observation ratio (index ``obs_ratio``), columns = beta.

        Cells are fractions in [0, 1]; NaN where no frame was counted.
        """
        import pandas as pd

        rows = [self._moc(obs) for obs in self.obs_ratios]
        df = pd.DataFrame(rows, index=pd.Index(self.obs_ratios, name="obs_ratio"),
                          columns=pd.Index(self.betas, name="beta"))
        return df

    def tidy(self):
        """Long form: columns ``obs_ratio, beta, moc, n_classes, n_frames, n_videos``."""
        import pandas as pd

        recs = []
        for obs in self.obs_ratios:
            m = self._moc(obs)
            tot = self._true[obs] + self._false[obs]
            for i, beta in enumerate(self.betas):
                recs.append({"obs_ratio": obs, "beta": beta, "moc": m[i], "n_classes": int((tot[i] > 0).sum()),
                             "n_frames": int(tot[i].sum()), "n_videos": self._videos[obs]})
        return pd.DataFrame(recs, columns=["obs_ratio", "beta", "moc", "n_classes", "n_frames", "n_videos"])


def moc(records, n_classes, *, betas=DEFAULT_BETAS):
    """MoC table from ``(gt, obs_ratio, future_pred)`` records (see :meth:`MoCAccumulator.add`).

    Returns
    -------
    pandas.DataFrame
        Rows = observation ratio, columns = beta, fractions in [0, 1].
    """
    acc = MoCAccumulator(n_classes, betas)
    for rec in records:
        if len(rec) != 3:
            raise InputError(f"each record must be (gt, obs_ratio, future_pred), got {len(rec)} items")
        acc.add(*rec)
    return acc.result()


# ----------------------------------------------------------------------------- modality reliance
def derangement(n, seed=0) -> np.ndarray:
    """A seeded random derangement of ``range(n)``: a permutation with no fixed point.

    Used by modality reliance (:func:`modality_reliance`): video ``i`` receives
    one modality's input from video ``perm[i] != i``. Drawn uniformly among derangements by
    rejection (a random permutation is a derangement with probability ~1/e, so ~2.7 draws).

    Parameters
    ----------
    n : int
        Number of items (>= 2: a single video has no other video to borrow from).
    seed : int
        Seed of the generator; the same seed gives the same derangement.

    Returns
    -------
    ndarray of int64, shape (n,)
    """
    n = check_int(n, "n", low=2)
    seed = check_int(seed, "seed", low=0)
    rng = np.random.default_rng(seed)
    idx = np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == idx):
            return perm.astype(np.int64)


# ----------------------------------------------------------------------------- segmentation
def segments(labels, *, ignore_classes=()):
    """Segments of a label sequence as ``(labels, starts, ends)`` int64 arrays, ``ends`` exclusive.

    Segments whose class is in ``ignore_classes`` (e.g. background) are dropped.
    """
    labels = _np(labels, "labels", ndim=1)
    if labels.size == 0:
        z = np.zeros(0, np.int64)
        return z, z, z
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    ends = np.r_[starts[1:], labels.size]
    lab = labels[starts]
    keep = ~np.isin(lab, np.asarray(list(ignore_classes), dtype=np.int64))
    return lab[keep], starts[keep].astype(np.int64), ends[keep].astype(np.int64)


def _pair(gt, pred):
    gt = _np(gt, "gt", ndim=1)
    pred = _np(pred, "pred", ndim=1)
    if gt.shape != pred.shape:
        raise InputError(f"gt and pred must have the same length, got {gt.size} and {pred.size}")
    return gt, pred


def frame_accuracy(gt, pred, *, ignore_index=-100) -> float:
    """Fraction of frames whose predicted label equals the true one (frames with ``gt == ignore_index`` skipped).

    Returns NaN when no frame is left.
    """
    gt, pred = _pair(gt, pred)
    valid = gt != ignore_index
    if not valid.any():
        return float("nan")
    return float(np.mean(gt[valid] == pred[valid]))


def _levenshtein(a, b) -> int:
    """Edit distance between two int sequences, one NumPy pass per row of the DP table."""
    a, b = np.asarray(a, np.int64), np.asarray(b, np.int64)
    j = np.arange(len(b) + 1)
    prev = j.copy()
    for i in range(1, len(a) + 1):
        # deletion / substitution first; insertions chain along the row: cur[j] = min_k (t[k] + j - k)
        t = np.empty_like(prev)
        t[0] = i
        t[1:] = np.minimum(prev[1:] + 1, prev[:-1] + (b != a[i - 1]))
        prev = j + np.minimum.accumulate(t - j)
    return int(prev[-1])


def edit_score(gt, pred, *, ignore_classes=()) -> float:
    """Segmental edit score: ``1 - levenshtein(P, Y) / max(|P|, |Y|)`` on the segment transcripts.

    ``gt`` and ``pred`` may differ in length (only the transcripts are compared). Two empty
    transcripts score 1.
    """
    y, _, _ = segments(gt, ignore_classes=ignore_classes)
    p, _, _ = segments(pred, ignore_classes=ignore_classes)
    n = max(len(p), len(y))
    if n == 0:
        return 1.0
    return 1.0 - _levenshtein(list(p), list(y)) / n


def segment_matches(gt, pred, overlap, *, ignore_classes=()):
    """True positives, false positives and false negatives at IoU threshold ``overlap`` (MS-TCN rule).

    Each predicted segment is matched to the same-class true segment of highest IoU (the first
    on ties); it is a true positive when that IoU >= ``overlap`` and the true segment is not
    already taken, otherwise a false positive. Unmatched true segments are false negatives.

    Returns
    -------
    tuple of int
        ``(tp, fp, fn)``.
    """
    overlap = check_float(overlap, "overlap", low=0.0, high=1.0)
    gt, pred = _pair(gt, pred)
    yl, ys, ye = segments(gt, ignore_classes=ignore_classes)
    pl, ps, pe = segments(pred, ignore_classes=ignore_classes)
    hits = np.zeros(len(yl), bool)
    tp = fp = 0
    for j in range(len(pl)):
        if len(yl) == 0:
            fp += 1
            continue
        inter = np.minimum(pe[j], ye) - np.maximum(ps[j], ys)
        union = np.maximum(pe[j], ye) - np.minimum(ps[j], ys)
        iou = np.where(yl == pl[j], np.clip(inter, 0, None) / union, 0.0)
        idx = int(np.argmax(iou))
        if iou[idx] >= overlap and not hits[idx]:
            tp += 1
            hits[idx] = True
        else:
            fp += 1
    return tp, fp, int(len(yl) - hits.sum())


def _f1(tp, fp, fn) -> float:
    # MS-TCN convention: an undefined precision/recall (0/0) makes F1 0.
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def f1_at_overlap(gt, pred, overlap, *, ignore_classes=()) -> float:
    """Segmental F1 at IoU threshold ``overlap`` (F1@10/25/50 use 0.1/0.25/0.5) for one video."""
    return _f1(*segment_matches(gt, pred, overlap, ignore_classes=ignore_classes))


def segmentation_scores(pairs, *, overlaps=DEFAULT_OVERLAPS, ignore_classes=(), ignore_index=-100) -> dict:
    """Segmentation metrics over videos, pooled as MS-TCN reports them.

    Accuracy pools frames over all videos; edit is the mean over videos; F1 uses tp/fp/fn summed
    over videos.

    Parameters
    ----------
    pairs : iterable of (gt, pred)
        Per-video true and predicted frame labels of equal length.

    Returns
    -------
    dict
        ``{"accuracy", "edit", "f1@10", "f1@25", "f1@50", "n_videos"}`` (keys follow
        ``overlaps``); fractions in [0, 1].
    """
    overlaps = tuple(overlaps)
    correct = total = 0
    edits = []
    counts = np.zeros((len(overlaps), 3), np.int64)
    for gt, pred in pairs:
        gt, pred = _pair(gt, pred)
        valid = gt != ignore_index
        correct += int(np.sum(gt[valid] == pred[valid]))
        total += int(valid.sum())
        g, p = gt[valid], pred[valid]
        edits.append(edit_score(g, p, ignore_classes=ignore_classes))
        for i, ov in enumerate(overlaps):
            counts[i] += segment_matches(g, p, ov, ignore_classes=ignore_classes)
    if not edits:
        raise InputError("pairs must not be empty")
    out = {"accuracy": correct / total if total else float("nan"), "edit": float(np.mean(edits))}
    for i, ov in enumerate(overlaps):
        out[f"f1@{round(100 * ov):d}"] = _f1(*counts[i])
    out["n_videos"] = len(edits)
    return out

# ----------------------------------------------------------------------------- evaluation of trained runs
# The protocols above applied to a trained R3D run (:func:`rankfusion.train.load_run`), each video
# observed alone, as the MoC protocol does; :func:`evaluate_run` writes ``RUN/eval_<split>.csv``.


def moc_grid(model, ds, split, config: RunConfig, dev, *, obs=None, betas=None, ctx=None, notes=None,
             swap=None, shifts=None, only=None) -> dict:
    """MoC in percent for each (obs, beta): ``{(obs, beta): value}`` over ``split``'s videos.

    Each video is observed alone (batch of one) and decoded with
    :meth:`rankfusion.evaluate.MoCAccumulator.add_queries` (the MoC protocol). With ``ctx``
    (a :class:`rankfusion.distributed.DistContext`) each process counts every ``world_size``-th
    video and the T/F count tables are summed over processes: integer counts, so the MoC is
    exactly the single-process one for the same weights. A video too short to observe one frame
    at a ratio (``int(obs * N) == 0``) has nothing to score there (the protocol's future window
    starts at an empty past): it is skipped at that ratio, with a line naming it appended to
    ``notes`` (a list) when given. A cell no video reaches is NaN.
    ``swap`` (``{modality: {video: donor video}}``) replaces that modality's input of each video
    by the donor's (:func:`modality_reliance`); labels and the other modalities stay the video's own.
    ``shifts`` (``{video: u}``, u in [0, 1)) reads the donors at a random time instead of the same
    relative times (:func:`_video_inputs`). ``only`` (a set of ``(video, obs)`` pairs) counts those
    cut points alone.
    """

    obs = config.train.eval_obs if obs is None else obs
    betas = config.train.eval_betas if betas is None else betas
    videos = shard(ds.split(split), ctx)
    acc = _moc_counts(model, ds, videos, config, dev, obs, betas, notes, swap, shifts, only)
    if ctx is not None:
        acc = _all_reduce_moc(acc, len(videos), obs, dev)
    table = acc.result() if acc.obs_ratios else None

    def cell(o, b):
        key = round(float(o), 6)
        return 100.0 * float(table.loc[key, b]) if table is not None and key in table.index else float("nan")

    return {(float(o), float(b)): cell(o, b) for o in obs for b in betas}


def _moc_counts(model, ds, videos, config, dev, obs, betas, notes=None, swap=None, shifts=None, only=None):
    model.eval()
    acc = MoCAccumulator(model.config.n_classes, betas=tuple(betas), future_ratio=config.train.future_ratio)
    for o in obs:
        for video in videos:
            if only is not None and (video, round(float(o), 6)) not in only:
                continue
            gt = ds.labels(video)
            past = int(o * len(gt))
            if past == 0:
                if notes is not None:
                    notes.append(f"video {video!r} ({len(gt)} frames) has no observed frame at obs {o:g} "
                                 f"(int({o:g} * {len(gt)}) = 0): skipped at that cut point")
                continue
            donors = {m: per_video[video] for m, per_video in swap.items()} if swap else None
            acc.add_queries(gt, o, *_queries(model, ds, video, config, dev, past, donors,
                                             shifts[video] if shifts else None))
    return acc


def _queries(model, ds, video, config, dev, past, donors=None, shift=None):
    """The model's raw future queries for one video observed up to frame ``past`` (batch of one):
    ``(class_logits (Q, C + 1), durations (Q,))`` as NumPy arrays. ``donors`` and ``shift``: see
    :func:`rankfusion.data.torchdata.video_inputs`."""
    import torch

    feats, mask = video_inputs(ds, video, config.model.modalities, past, config.train.sample_rate, dev,
                               donors=donors, shift=shift)
    with torch.no_grad():
        out = model(feats, mask)
    return out.class_logits[0].cpu().numpy(), out.durations[0].cpu().numpy()


def predict_future(model, ds, video, config: RunConfig, dev, obs: float) -> tuple:
    """Per-frame predicted labels of one video's future window at a cut point (the MoC protocol).

    The video is observed up to ``past = int(obs * N)`` and its queries decoded into the next
    ``int(future_ratio * N)`` frames exactly as :func:`moc_grid` scores them (NONE = ``n_classes``).

    Parameters
    ----------
    model : R3D in eval mode
    ds : dataset with ``labels(video)`` and the model's modalities
    video : str
    config : RunConfig of the run
    dev : torch.device
    obs : float
        Observation ratio in (0, 1].

    Returns
    -------
    (gt, past, pred) : (int64 array (N,), int, int64 array (int(future_ratio * N),))
    """
    gt = np.asarray(ds.labels(video))
    obs = check_float(obs, "obs", low=0.0, high=1.0, low_open=True)
    past = int(obs * len(gt))  # as moc_grid cuts the input
    if past == 0:
        raise InputError(f"video {video!r} ({len(gt)} frames) has no observed frame at obs {obs:g}")
    model.eval()
    logits, durations = _queries(model, ds, video, config, dev, past)
    pred = decode_queries(logits, durations, int(config.train.future_ratio * len(gt)), model.config.n_classes)
    return gt, past, pred


def _all_reduce_moc(acc, n_videos, obs, dev):
    """``acc``'s count tables summed over all processes (a process may hold no video)."""
    import torch
    import torch.distributed as dist

    shape = (len(acc.betas), acc.n_classes)
    tables = []
    for o in obs:
        # a process may hold no video, or only videos too short for this ratio
        t, f = acc.counts(o) if round(float(o), 6) in acc.obs_ratios else (np.zeros(shape, np.int64),) * 2
        tables.append(np.stack([t, f]))
    counts = torch.from_numpy(np.stack(tables)).to(dev)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    n_all = int(all_reduce_list([n_videos], dev)[0])
    out = MoCAccumulator(acc.n_classes, betas=acc.betas, future_ratio=acc.future_ratio)
    for o, (t, f) in zip(obs, counts.cpu().numpy()):
        out.add_counts(o, t, f, n_all)
    return out


@dataclass(frozen=True)
class Reliance:
    """How much a trained model uses one modality (:func:`modality_reliance`).

    Attributes
    ----------
    modality : str
    moc : float
        Grid-mean MoC (%) with every input the video's own.
    moc_swapped : float
        Grid-mean MoC (%) with this modality's input taken from another video (mean over draws).
    drop : float
        ``moc - moc_swapped`` in MoC points: 0 for a modality the model ignores.
    grid : tuple of (obs, beta, drop)
        The drop per cell of the evaluation grid (mean over the donor draws).
    seed : int
        Seed of the donor draws.
    sd : float
        Standard deviation of the grid-mean drop over the donor draws (ddof 1; NaN for one draw).
    n_draws : int
        Number of donor draws averaged.
    mismatch : float
        Mean relative length mismatch ``|n_donor - n| / n`` of the donors (over videos and draws).
    matched : float
        Share of the donors within the length tolerance.
    read : str
        ``"aligned"`` (donor read at the same relative times) or ``"random"`` (at a random time).
    drops : tuple of float
        The grid-mean drop of each donor draw.
    """

    modality: str
    moc: float
    moc_swapped: float
    drop: float
    grid: tuple
    seed: int
    sd: float = float("nan")
    n_draws: int = 1
    mismatch: float = float("nan")
    matched: float = float("nan")
    read: str = "aligned"
    drops: tuple = ()


def _grid_mean(grid: dict) -> float:
    vals = [v for v in grid.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


@dataclass(frozen=True)
class DonorDraws:
    """Donor assignments of one reliance measurement (:func:`donor_draws`).

    donors : list of dict, one per draw, ``{video: donor video}``.
    shifts : list of dict, one per draw, ``{video: u}`` with u uniform in [0, 1) (random-time reads).
    mismatch, matched : float
        Mean relative length mismatch, and share within ``tol``, over videos and draws.
    """

    donors: list
    shifts: list
    mismatch: float
    matched: float


def donor_draws(ds, split, *, seed: int = 0, draws: int = 3, tol: float = 0.1) -> DonorDraws:
    """Length-matched donors for every video of ``split``, ``draws`` times (:func:`rankfusion.utilization.matched_donors`).

    Draw ``d`` uses the seed sequence ``(seed, d)``; the random-time offsets come from the same
    generator. Needs at least 2 videos.
    """
    from .utilization import matched_donors

    videos = list(ds.split(split))
    if len(videos) < 2:
        raise InputError(f"modality reliance needs at least 2 videos in split {split!r}, got {len(videos)}")
    draws = check_int(draws, "draws", low=1)
    seed = check_int(seed, "seed", low=0)
    lengths = [ds.n_frames(v) for v in videos]
    donors, shifts, gaps = [], [], []
    for d in range(draws):
        sub = int(np.random.SeedSequence([seed, d]).generate_state(1)[0])
        idx, gap = matched_donors(lengths, sub, tol=tol)
        u = np.random.default_rng([sub, 1]).random(len(videos))
        donors.append({v: videos[j] for v, j in zip(videos, idx)})
        shifts.append({v: float(x) for v, x in zip(videos, u)})
        gaps.append(gap)
    gaps = np.concatenate(gaps)
    return DonorDraws(donors, shifts, float(gaps.mean()), float(np.mean(gaps <= tol + 1e-12)))


def _swapped_grid(model, ds, split, config, dev, swapped, draws: DonorDraws, d: int, read: str, only):
    swap = {m: draws.donors[d] for m in swapped}
    return moc_grid(model, ds, split, config, dev, swap=swap, only=only,
                    shifts=draws.shifts[d] if read == "random" else None)


def modality_reliance(model, ds, split, config: RunConfig, dev, *, seed: int = 0, modalities=None,
                      clean: dict | None = None, draws: int = 3, read: str = "aligned", tol: float = 0.1,
                      only=None, donors: DonorDraws | None = None) -> list[Reliance]:
    """Modality reliance: the MoC drop when one modality's input comes from another video.

    For each modality m, every video of ``split`` is evaluated (the MoC protocol, as
    :func:`moc_grid`) with m's observed input replaced by m's input of a donor video of similar
    length (:func:`donor_draws`: within ``tol`` of its length, else the nearest), the labels and
    the other modalities being the video's own; ``drop = MoC(clean) - MoC(swapped)``, averaged
    over ``draws`` independent donor draws (their spread is :attr:`Reliance.sd`). A sample from
    another video keeps the input on the data distribution (right scale, spectrum and temporal
    structure), so the drop measures what the model takes from this video's m, not its reaction
    to an input it never saw (zeros would be off-distribution). A model that ignores m gets
    exactly the clean predictions, so its drop is exactly 0.

    ``read="aligned"`` reads the donor at the same relative times: what videos share at the same
    point of their progress (e.g. a common script of actions) stays in the input, so this
    measures the *video-specific* information the model takes from m. ``read="random"`` reads a
    window of the same span starting at a random time of the donor: information shared by time
    is removed too, so a single-modality model's reliance on its only input approaches its gain
    over an input-free baseline (docs/analysis.md).

    Parameters
    ----------
    model, ds, split, config, dev
        As for :func:`moc_grid`.
    seed : int
        Seed of the donor draws.
    modalities : sequence of str, optional
        Default: every modality of the model.
    clean : dict, optional
        The clean :func:`moc_grid` result (with the same ``only``) when already computed.
    draws : int
        Donor draws averaged (>= 1; 3 by default).
    read : {"aligned", "random"}
    tol : float
        Relative length tolerance of the donors.
    only : set of (video, obs), optional
        Count only these cut points (e.g. those only one modality can decide).
    donors : DonorDraws, optional
        Donors already drawn (then ``seed``, ``draws`` and ``tol`` are not used).

    Returns
    -------
    list of Reliance
        One per modality, in order.
    """
    check_choice(read, "read", {"aligned", "random"})
    draw = donor_draws(ds, split, seed=seed, draws=draws, tol=tol) if donors is None else donors
    mods = list(config.model.modalities if modalities is None else modalities)
    for m in mods:
        if m not in config.model.modalities:
            raise InputError(f"modalities must be among {list(config.model.modalities)}, got {m!r}")
    only = None if only is None else {(v, round(float(o), 6)) for v, o in only}
    clean = moc_grid(model, ds, split, config, dev, only=only) if clean is None else clean
    out = []
    for m in mods:
        per_draw = [_swapped_grid(model, ds, split, config, dev, [m], draw, d, read, only)
                    for d in range(len(draw.donors))]
        swapped = {k: float(np.mean([g[k] for g in per_draw])) for k in clean}
        grid = tuple((o, b, clean[(o, b)] - swapped[(o, b)]) for (o, b) in clean)
        c, s_ = _grid_mean(clean), _grid_mean(swapped)
        drops = [c - _grid_mean(g) for g in per_draw]
        sd = float(np.std(drops, ddof=1)) if len(drops) > 1 else float("nan")
        out.append(Reliance(m, c, s_, c - s_, grid, int(seed), sd, len(drops), draw.mismatch, draw.matched, read,
                            tuple(drops)))
    return out


def modality_shapley(model, ds, split, config: RunConfig, dev, *, seed: int = 0, draws: int = 3,
                     read: str = "aligned", tol: float = 0.1, clean: dict | None = None,
                     donors: DonorDraws | None = None) -> dict:
    """Exact Shapley contributions (grid-mean MoC points) of the model's modalities over swap subsets.

    The value of a subset S is the grid-mean MoC when the modalities in S are the video's own
    and all the others come from the same donor (:func:`donor_draws`, averaged over the draws);
    ``v(all)`` is the clean MoC. :func:`rankfusion.utilization.shapley_values` gives the shares,
    which add up to ``v(all) - v(empty)``. Cost: 2^M - 1 MoC grids per draw.

    Returns
    -------
    dict of str to float
    """
    import itertools

    from .utilization import shapley_values

    check_choice(read, "read", {"aligned", "random"})
    draw = donor_draws(ds, split, seed=seed, draws=draws, tol=tol) if donors is None else donors
    mods = list(config.model.modalities)
    clean = moc_grid(model, ds, split, config, dev) if clean is None else clean
    value = {frozenset(mods): _grid_mean(clean)}
    for k in range(len(mods)):
        for own in itertools.combinations(mods, k):
            swapped = [m for m in mods if m not in own]
            value[frozenset(own)] = float(np.mean([
                _grid_mean(_swapped_grid(model, ds, split, config, dev, swapped, draw, d, read, None))
                for d in range(len(draw.donors))]))
    return shapley_values(value, mods)


def segmentation_grid(model, ds, split, config: RunConfig, dev, *, obs=None) -> dict:
    """Frame accuracy, edit and F1@{10,25,50} (percent) of the segmentation head, per observation ratio.

    For each ratio in ``obs`` (default ``eval_obs``) the head segments the observed part of every
    video, the inputs it is trained on (training never observes more than the largest training
    ratio, so whole videos would be out of distribution for the positional code and the
    attention span). Predictions are upsampled back to the ground truth's frame rate and pooled
    over videos as MS-TCN reports them (:func:`segmentation_scores`).

    Returns
    -------
    dict
        ``{obs: {"accuracy", "edit", "f1@10", "f1@25", "f1@50"}}``.
    """
    import torch

    model.eval()
    sr = config.train.sample_rate
    out = {}
    for o in (config.train.eval_obs if obs is None else obs):
        preds, gts = [], []
        for video in ds.split(split):
            gt = np.asarray(ds.labels(video))
            stop = max(1, int(o * len(gt)))
            feats, mask = video_inputs(ds, video, config.model.modalities, stop, sr, dev)
            with torch.no_grad():
                seg = model(feats, mask).seg_logits[0].argmax(-1).cpu().numpy()
            # each sampled step stands for the sample_rate frames that follow it
            preds.append(np.repeat(seg, sr)[:stop])
            gts.append(gt[:stop])
        out[float(o)] = _segmentation_metrics(gts, preds)
    return out


def _segmentation_metrics(gts, preds) -> dict:
    res = segmentation_scores(list(zip(gts, preds)), overlaps=DEFAULT_OVERLAPS)
    return {k: 100.0 * float(v) for k, v in res.items() if k != "n_videos"}


def _evaluate_single(run_dir: Path, split, data_root, dev, checkpoint, reliance: bool = True,
                     reliance_seed: int = 0, reliance_draws: int = 3, partner: dict | None = None) -> dict:

    model, config, info = load_run(run_dir, checkpoint=checkpoint, device=dev)
    ds = open_data(data_root or info["dataset"], config.model.modalities)
    check_config_data(config, ds)  # the model's channels and classes must be the dataset's
    notes = []
    grid = moc_grid(model, ds, split, config, dev, notes=notes)
    rows = [("moc", "", o, b, v) for (o, b), v in grid.items()]
    rows += [(k, "", o, float("nan"), v) for o, scores in segmentation_grid(model, ds, split, config, dev).items()
             for k, v in scores.items()]
    if reliance and len(ds.split(split)) >= 2:
        # each training seed draws its own donors, so the donor variance is in the spread over seeds
        seed = int(np.random.SeedSequence([reliance_seed, int(info["seed"])]).generate_state(1)[0])
        rows += utilization_rows(model, ds, split, config, dev, seed=seed, clean=grid, draws=reliance_draws)
        if partner is not None:
            rows += collapse_rows(model, ds, split, config, dev, partner, seed=seed, draws=reliance_draws)
    elif reliance:
        notes.append(f"modality reliance skipped: split {split!r} has {len(ds.split(split))} video "
                     "(it swaps a modality's input between videos, so it needs at least 2)")
    return {"rows": rows, "info": info, "notes": notes}


def partner_reference(partner_run, fused_modalities, split, *, data_root=None, device=None, checkpoint="best",
                      seed: int = 0, draws: int = 3) -> dict:
    """What the partner alone attains on the cut points only it can decide (for :func:`collapse_rows`).

    ``partner_run`` is a run (one seed or several) of a single-modality model, the partner, on
    a synthetic dataset whose generator marks those cut points
    (:func:`rankfusion.data.synth.partner_only_cuts`). Its attainable gain is its time-aligned
    reliance on its only input restricted to them, averaged over its seeds.

    Returns
    -------
    dict
        ``modality``, ``only`` (set of ``(video, obs)``), ``attainable`` (MoC points), ``n_cuts``.
    """
    from .data.synth import partner_only_cuts

    dev = resolve_device(device)
    gains, only, mod = [], None, None
    for d in seed_dirs(Path(partner_run)):
        model, config, info = load_run(d, checkpoint=checkpoint, device=dev)
        mods = list(config.model.modalities)
        if len(mods) != 1 or mods[0] not in fused_modalities:
            raise InputError(f"partner run {str(d)!r} must be a single-modality run of one of {list(fused_modalities)}, "
                             f"got modalities {mods}")
        mod = mods[0]
        root = data_root or info["dataset"]
        ds = open_data(root, mods)
        if only is None:
            cuts = partner_only_cuts(root, ds.split(split))
            only = {(v, round(o, 6)) for v, obs in cuts.items() for o in obs
                    if round(o, 6) in {round(float(x), 6) for x in config.train.eval_obs}}
            if not only:
                raise InputError(f"dataset {str(root)!r} has no partner-only cut point in split {split!r}")
        sub = int(np.random.SeedSequence([seed, int(info["seed"])]).generate_state(1)[0])
        gains.append(modality_reliance(model, ds, split, config, dev, seed=sub, draws=draws, only=only)[0].drop)
    return {"modality": mod, "only": only, "attainable": float(np.mean(gains)), "n_cuts": len(only)}


def collapse_rows(model, ds, split, config, dev, partner: dict, *, seed: int, draws: int = 3) -> list:
    """Rows of the collapse index of a fused model against :func:`partner_reference`.

    ``decidable_gain``: the fused model's time-aligned reliance on the partner restricted to the
    partner-only cut points (MoC points); ``decidable_attainable``: the partner alone's there;
    ``collapse_index``: ``100 * (1 - gain / attainable)`` (%; :func:`rankfusion.utilization.collapse_index`);
    ``decidable_cuts``: how many cut points they count.
    """
    from .utilization import collapse_index

    m = partner["modality"]
    gain = modality_reliance(model, ds, split, config, dev, modalities=[m], seed=seed, draws=draws,
                             only=partner["only"])[0].drop
    return [("decidable_gain", m, NAN, NAN, gain), ("decidable_attainable", m, NAN, NAN, partner["attainable"]),
            ("collapse_index", m, NAN, NAN, 100.0 * collapse_index(gain, partner["attainable"])),
            ("decidable_cuts", m, NAN, NAN, float(partner["n_cuts"]))]


NAN = float("nan")

#: Utilization rows of the evaluation CSV (``metric`` names; docs/analysis.md, "Modality utilization").
UTILIZATION_METRICS = ("reliance", "reliance_random", "reliance_donor_sd", "reliance_random_donor_sd",
                       "reliance_donor_ci_low", "reliance_donor_ci_high", "reliance_random_donor_ci_low",
                       "reliance_random_donor_ci_high",
                       "cur", "cur_random", "shapley", "donor_mismatch", "donor_matched", "collapse_index",
                       "decidable_gain", "decidable_attainable", "decidable_cuts")


def utilization_rows(model, ds, split, config, dev, *, seed: int, clean: dict, draws: int = 3) -> list:
    """``(metric, modality, obs, beta, value)`` rows of each modality's utilization (percent / MoC points).

    Per cell: ``reliance`` (length-matched donors read at the same relative times) and
    ``reliance_random`` (read at a random time), each the mean over ``draws`` donor draws. Per
    modality (obs and beta NaN): ``reliance_donor_sd`` / ``reliance_random_donor_sd`` (the spread
    of the grid-mean drop over the draws) and ``*_donor_ci_low`` / ``*_donor_ci_high`` (its 95 %
    interval over the draws, :func:`rankfusion.stats.compare`, paired t), ``cur`` / ``cur_random`` (the conditional utilization
    rate in %, :func:`rankfusion.utilization.conditional_utilization`), and for three or more
    modalities ``shapley`` (exact Shapley contributions over swap subsets, MoC points). Per run:
    ``donor_mismatch`` (mean relative length difference of the donors, %) and ``donor_matched``
    (% of donors within 10 % of the video's length).
    """
    from .stats import compare
    from .utilization import conditional_utilization

    draw = donor_draws(ds, split, seed=seed, draws=draws)
    rows = []
    for read, name in (("aligned", "reliance"), ("random", "reliance_random")):
        for r in modality_reliance(model, ds, split, config, dev, seed=seed, clean=clean, read=read, donors=draw):
            rows += [(name, r.modality, o, b, d) for o, b, d in r.grid]
            rows.append((f"{name}_donor_sd", r.modality, NAN, NAN, r.sd))
            # the 95 % interval of the drop over the donor draws (paired t: the same clean grid)
            ci = compare(list(r.drops), [0.0] * len(r.drops), paired=True).ci
            rows += [(f"{name}_donor_ci_low", r.modality, NAN, NAN, ci[0]),
                     (f"{name}_donor_ci_high", r.modality, NAN, NAN, ci[1])]
            cur = conditional_utilization(r.moc, r.moc_swapped)
            rows.append(("cur" if read == "aligned" else "cur_random", r.modality, NAN, NAN, 100.0 * cur))
    if len(config.model.modalities) > 2:
        phi = modality_shapley(model, ds, split, config, dev, seed=seed, clean=clean, donors=draw)
        rows += [("shapley", m, NAN, NAN, v) for m, v in phi.items()]
    rows += [("donor_mismatch", "", NAN, NAN, 100.0 * draw.mismatch),
             ("donor_matched", "", NAN, NAN, 100.0 * draw.matched)]
    return rows


def evaluate_run(run_dir, split: str = "test", *, device=None, data_root=None, checkpoint: str = "best",
                 reliance: bool = True, reliance_seed: int = 0, reliance_draws: int = 3, partner_run=None):
    """Evaluate a run (one seed or several) on ``split``; write ``RUN/eval_<split>.csv``.

    Parameters
    ----------
    run_dir : str or Path
        A run folder made by :func:`rankfusion.train.train`.
    split : {"test", "val", "train"}
    device : str, optional
    data_root : str or Path, optional
        Dataset folder; default the one the run was trained on.
    checkpoint : {"best", "last"}
    reliance : bool, default True
        Also compute each modality's utilization (:func:`utilization_rows`: reliance with
        length-matched donors read at the same relative times and at a random time, the
        conditional utilization rate, Shapley contributions for three or more modalities;
        2 x ``reliance_draws`` extra MoC grids per modality, plus 2^M - 1 per draw for Shapley),
        skipped when the split has fewer than 2 videos.
    reliance_seed : int
        Seed of the donor draws; each training seed draws from ``(reliance_seed, its seed)``, so
        the spread over seeds includes the donors' variance.
    reliance_draws : int
        Donor draws averaged per run (>= 1; 3 by default).
    partner_run : str or Path, optional
        A single-modality run of the partner on the same synthetic dataset: adds the collapse
        index rows (:func:`collapse_rows`, with ``reliance``).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric`` ("moc", "accuracy", "edit", "f1@10", "f1@25", "f1@50", and the
        utilization metrics :data:`UTILIZATION_METRICS`), ``modality`` (the modality of a
        utilization row, else empty), ``obs``, ``beta`` (NaN for the segmentation metrics, which
        score the observed part at ``obs``, and for the per-modality utilization summaries),
        ``mean``, ``std`` (over seeds, ddof=1; NaN for one seed) and ``n_seeds``. All values are
        percentages or MoC points (reliance: MoC points lost when the modality's input comes from
        another video). ``attrs["notes"]`` lists the videos skipped at a cut point (:func:`moc_grid`).
    """
    import pandas as pd


    check_choice(split, "split", {"train", "val", "test"})
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    per_seed, notes = [], []
    partner = None
    if partner_run is not None and reliance:
        from .config import RunConfig

        recorded = json.loads((seed_dirs(run_dir)[0] / "config.json").read_text())
        fused = RunConfig.from_dict(recorded["config"])
        theirs = json.loads((seed_dirs(Path(partner_run))[0] / "config.json").read_text()).get("dataset")
        if data_root is None and theirs != recorded.get("dataset"):
            raise InputError(f"partner run {str(partner_run)!r} was trained on {theirs!r}, not on the run's "
                             f"dataset {recorded.get('dataset')!r}; the collapse index compares them on one dataset")
        partner = partner_reference(partner_run, fused.model.modalities, split, data_root=data_root, device=dev,
                                    checkpoint=checkpoint, seed=reliance_seed, draws=reliance_draws)
    for d in seed_dirs(run_dir):
        res = _evaluate_single(d, split, data_root, dev, checkpoint, reliance,
                               check_int(reliance_seed, "reliance_seed", low=0),
                               check_int(reliance_draws, "reliance_draws", low=1), partner)
        notes += [n for n in res["notes"] if n not in notes]
        df = pd.DataFrame(res["rows"], columns=["metric", "modality", "obs", "beta", "value"])
        df.insert(0, "seed", res["info"]["seed"])
        if len(seed_dirs(run_dir)) > 1:
            _write_csv(d / f"eval_{split}.csv", _aggregate(df))
        per_seed.append(df)
    allv = pd.concat(per_seed, ignore_index=True)
    out = _aggregate(allv)
    _write_csv(run_dir / f"eval_{split}.csv", out)
    out.attrs["notes"] = notes
    return out


def _aggregate(df):
    g = df.groupby(["metric", "modality", "obs", "beta"], dropna=False, sort=False)["value"]
    out = g.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"),
                n_seeds="count").reset_index()
    return out


def _write_csv(path, df):
    write_text(path, df.to_csv(index=False, float_format="%.4f"))


def format_eval_table(df) -> str:
    """Human-readable table of :func:`evaluate_run`'s result (mean +- std when several seeds)."""

    def cell(r):
        return f"{r['mean']:.2f}" if not (r["n_seeds"] > 1) else f"{r['mean']:.2f} +- {r['std']:.2f}"

    lines = []
    moc = df[df["metric"] == "moc"]
    betas = sorted(moc["beta"].unique())
    if len(moc):
        lines.append("MoC (%)      " + "".join(f"{'beta=' + format(b, 'g'):>18}" for b in betas))
        for o in sorted(moc["obs"].unique()):
            sub = moc[moc["obs"] == o].set_index("beta")
            lines.append(f"obs={o:<8g} " + "".join(f"{cell(sub.loc[b]):>18}" for b in betas))
    for metric, what in (("reliance", "the same relative times"), ("reliance_random", "a random time")):
        rel = df[df["metric"] == metric]
        if len(rel):
            lines.append(f"{metric}: MoC points lost when the modality's input comes from another video of similar "
                         f"length, read at {what}")
        for m in dict.fromkeys(rel["modality"]):
            for o in sorted(rel["obs"].unique()):
                sub = rel[(rel["modality"] == m) & (rel["obs"] == o)].set_index("beta")
                lines.append(f"{m[:8]:<8s} {o:<4g}" + "".join(f"{cell(sub.loc[b]):>18}" for b in betas
                                                              if b in sub.index))
    summary = df[df["metric"].isin(UTILIZATION_METRICS) & df["obs"].isna()]
    for metric in dict.fromkeys(summary["metric"]):
        rows = summary[summary["metric"] == metric]
        lines.append(f"{metric}: " + "  ".join(f"{r['modality'] or 'all'} {cell(r)}" for _, r in rows.iterrows()))
    seg = df[~df["metric"].isin(("moc",) + UTILIZATION_METRICS)]
    for o in sorted(seg["obs"].unique()):
        rows = seg[seg["obs"] == o]
        lines.append(f"segmentation (%) of the observed {o:g}: "
                     + "  ".join(f"{r['metric']} {cell(r)}" for _, r in rows.iterrows()))
    n = int(df["n_seeds"].max()) if len(df) else 0
    lines.append(f"({n} seed{'s' if n != 1 else ''})")
    return "\n".join(lines)
