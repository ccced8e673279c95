"""Metrics of long-term anticipation (MoC, the protocol of docs/datasets.md) and action segmentation.

Anticipation
    :func:`decode_queries` turns one prediction of the model (per-query class logits and
    durations) into future frame labels; :func:`expand_transcript` does the same for a predicted
    (class, duration) list. :class:`MoCAccumulator` pools true/false frame counts per class over
    videos and reports the mean over classes (MoC) per observation ratio and prediction ratio;
    :func:`grid_cells` reads it as ``{(obs, beta): percent}``.

Segmentation
    :func:`frame_accuracy`, :func:`edit_score`, :func:`f1_at_overlap` per video, and
    :func:`segmentation_scores` pooled over videos the way MS-TCN reports them.

Everything here is a pure function of labels and predictions; applying the protocols to a
trained model is :mod:`rankfusion.evaluate`. The scores are fractions in [0, 1] (multiply by 100
for the percentages of papers). Predictions and labels are NumPy int arrays; torch tensors are
accepted and moved to the CPU.
"""

from __future__ import annotations

import numpy as np

from ._validation import InputError, InputTypeError, check_float, check_int, is_torch
from .config import EVAL_BETAS, FUTURE_RATIO, observed_frames, ratio_key

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

    def __init__(self, n_classes, betas=EVAL_BETAS, *, future_ratio=FUTURE_RATIO):
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
        obs = ratio_key(obs)
        pred = _np(future_pred, "future_pred", ndim=1)
        n = gt.size
        past = observed_frames(n, obs)
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
        obs = ratio_key(check_float(float(obs_ratio), "obs_ratio", low=0.0, high=1.0, low_open=True))
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

    def n_videos(self, obs_ratio) -> int:
        """Videos counted at one observation ratio (0 for a ratio never added)."""
        return int(self._videos.get(ratio_key(obs_ratio), 0))

    def counts(self, obs_ratio):
        """Pooled ``(T, F)`` counts, int64 arrays of shape (n_betas, n_classes), for one ratio."""
        obs_ratio = ratio_key(obs_ratio)
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


def moc(records, n_classes, *, betas=EVAL_BETAS):
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


def grid_cells(acc, obs, betas) -> dict:
    """``{(obs, beta): MoC in percent}`` of a filled :class:`MoCAccumulator`; NaN where no video counted."""
    table = acc.result() if acc.obs_ratios else None

    def cell(o, b):
        key = ratio_key(o)
        return 100.0 * float(table.loc[key, b]) if table is not None and key in table.index else float("nan")

    return {(float(o), float(b)): cell(o, b) for o in obs for b in betas}


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


def segmentation_keys(overlaps=DEFAULT_OVERLAPS) -> tuple:
    """The score names of :func:`segmentation_scores`, in its order: ``("accuracy", "edit", "f1@10", ...)``."""
    return ("accuracy", "edit", *(f"f1@{round(100 * ov):d}" for ov in overlaps))


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
    values = [correct / total if total else float("nan"), float(np.mean(edits)), *(_f1(*c) for c in counts)]
    out = dict(zip(segmentation_keys(overlaps), values))
    out["n_videos"] = len(edits)
    return out
