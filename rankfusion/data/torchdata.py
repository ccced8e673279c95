"""Long-term anticipation samples as a torch ``Dataset`` (the MoC protocol of docs/datasets.md).

One item per (video, observation ratio): the observed features of every modality, the per-frame
labels of the observed part (segmentation targets), and the transcript of the future window with
a final NONE, durations as fractions of that window, padded to ``n_queries``. Evaluation, modality
reliance and the rank monitor read one video's observed inputs as a batch of one through
:func:`video_inputs`.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from .._validation import InputError, InputTypeError, check_float, check_int
from ..config import FUTURE_RATIO, TRAIN_OBS_RATIOS, cut_frames, observed_frames
from .layout import MultiModalDataset
from .memo import Memo

#: Padding value of label targets (the default ``ignore_index`` of torch's cross-entropy).
PAD_LABEL = -100

#: Bytes of features a dataset keeps in memory (:class:`rankfusion.data.memo.Memo`: the first
#: arrays read, until the budget is full). Every epoch reads each video at every observation ratio; without the cache each
#: read re-opens the memory map and gathers a strided, transposed slice (about a sixth of a small
#: training run's time, docs/datasets.md).
FEATURE_CACHE_BYTES = 256 * 2**20


def transcript(labels) -> tuple[np.ndarray, np.ndarray]:
    """Run-length encode a label sequence.

    Parameters
    ----------
    labels : array-like of int, shape (n,)

    Returns
    -------
    classes : ndarray of int64, shape (n_segments,)
        Consecutive duplicates merged.
    lengths : ndarray of int64, shape (n_segments,)
        Frames per segment (sums to ``n``).
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise InputError(f"labels must be 1-D, got shape {labels.shape}")
    if labels.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    lengths = np.diff(np.r_[starts, labels.size])
    return labels[starts].astype(np.int64), lengths.astype(np.int64)


def anticipation_targets(future_labels, n_queries: int, none_index: int):
    """Future transcript + NONE, padded to ``n_queries`` (the training targets).

    Parameters
    ----------
    future_labels : array-like of int, shape (n_future,)
        Per-frame labels of the future window (``n_future >= 1``).
    n_queries : int
        N_q. The transcript is cut to ``n_queries - 1`` actions so the NONE always fits.
    none_index : int
        Class id of NONE (= number of action classes).

    Returns
    -------
    classes : ndarray of int64, shape (n_queries,)
        Actions, then NONE, then ``PAD_LABEL``.
    durations : ndarray of float32, shape (n_queries,)
        Segment length / future window length; 0 at NONE and padding. Sums to 1 unless the
        transcript was cut.
    mask : ndarray of bool, shape (n_queries,)
        True for the actions and the NONE.
    """
    cls, lengths = transcript(future_labels)
    if cls.size == 0:
        raise InputError("future_labels must not be empty")
    n_fut = int(lengths.sum())
    keep = min(cls.size, n_queries - 1)
    classes = np.full(n_queries, PAD_LABEL, dtype=np.int64)
    durations = np.zeros(n_queries, dtype=np.float32)
    mask = np.zeros(n_queries, dtype=bool)
    classes[:keep] = cls[:keep]
    durations[:keep] = lengths[:keep] / n_fut
    classes[keep] = none_index
    mask[: keep + 1] = True
    return classes, durations, mask


class AnticipationDataset(torch.utils.data.Dataset):
    """Anticipation samples of one split: one item per (video, observation ratio).

    For a video of ``N`` frames and ratio ``obs``: ``past = int(obs * N)`` observed frames
    (:func:`rankfusion.config.observed_frames`: the ratio taken to 6 decimals),
    subsampled as ``[:past][::sample_rate]`` (features and segmentation labels alike), and the
    future window ``[past, past + int(future_ratio * N))`` (clipped to the video) turned into a
    transcript + NONE (:func:`anticipation_targets`). Durations are fractions of that window.

    Parameters
    ----------
    ds : MultiModalDataset
    split : str
        ``"train"``, ``"val"`` or ``"test"`` (see :meth:`MultiModalDataset.split`).
    obs_ratios : sequence of float
        Observation ratios, each in (0, 1).
    future_ratio : float
        Length of the future window as a fraction of the video, in (0, 1].
    sample_rate : int
        Temporal stride tau of the observed part (Sec. 4.1), >= 1.
    n_queries : int
        N_q, >= 1.
    modalities : list of str, optional
        Subset of ``ds.modalities``; default all of them.

    Raises
    ------
    InputError
        If a video is too short to give one observed step and one future frame at some ratio.
    """

    def __init__(self, ds: MultiModalDataset, split: str, *, obs_ratios=TRAIN_OBS_RATIOS, future_ratio=FUTURE_RATIO,
                 sample_rate=1, n_queries=8, modalities=None):
        if not isinstance(ds, MultiModalDataset):
            raise InputTypeError(f"ds must be a MultiModalDataset (from open_dataset), got {type(ds).__name__}")
        self.ds = ds
        self.split = split
        if isinstance(obs_ratios, (int, float)):
            obs_ratios = (obs_ratios,)
        self.obs_ratios = tuple(
            check_float(r, "obs_ratios", low=0.0, high=1.0, low_open=True) for r in obs_ratios
        )
        if not self.obs_ratios:
            raise InputError("obs_ratios must not be empty")
        for r in self.obs_ratios:
            if r >= 1.0:
                raise InputError(f"obs_ratios must be < 1, got {r}")
        self.future_ratio = check_float(future_ratio, "future_ratio", low=0.0, high=1.0, low_open=True)
        self.sample_rate = check_int(sample_rate, "sample_rate", low=1)
        self.n_queries = check_int(n_queries, "n_queries", low=1)
        if modalities is None:
            modalities = list(ds.modalities)
        else:
            modalities = list(modalities)
            for m in modalities:
                if m not in ds.modalities:
                    raise InputError(f"modalities: {m!r} is not one of the dataset's {ds.modalities}")
            if not modalities:
                raise InputError("modalities must not be empty")
        self.modalities = modalities
        self._cache = Memo(FEATURE_CACHE_BYTES)  # (video, modality) -> _subsampled's checked array
        self.none_index = len(ds.classes)
        self.videos = ds.split(split)
        self.items = []
        for video in self.videos:
            n = ds.n_frames(video)
            for r in self.obs_ratios:
                past, fut = cut_frames(n, r, self.future_ratio)
                if past < 1 or fut < 1:
                    raise InputError(
                        f"video {video!r} ({n} frames) is too short for obs_ratio {r} and future_ratio "
                        f"{self.future_ratio}: {past} observed and {fut} future frames"
                    )
                self.items.append((video, r))

    def __len__(self):
        return len(self.items)

    def steps(self, i) -> int:
        """Time steps of item ``i`` (:func:`observed_steps`), without reading it."""
        video, r = self.items[i]
        return observed_steps(observed_frames(self.ds.n_frames(video), r), self.sample_rate)

    def __getitem__(self, i):
        video, r = self.items[i]
        n = self.ds.n_frames(video)
        past = observed_frames(n, r)
        fut = int(self.future_ratio * n)
        labels = self.ds.labels(video)
        feats = {}
        steps = self.steps(i)
        for m in self.modalities:
            # a copy: the cached array is shared by every item of the video
            feats[m] = torch.from_numpy(self._subsampled(video, m)[:steps].copy())
        classes, durations, mask = anticipation_targets(labels[past:past + fut], self.n_queries, self.none_index)
        return {
            "features": feats,
            "seg_labels": torch.from_numpy(np.ascontiguousarray(labels[:past:self.sample_rate])),
            "future_classes": torch.from_numpy(classes),
            "future_durations": torch.from_numpy(durations),
            "future_mask": torch.from_numpy(mask),
            "last_observed": int(labels[past - 1]),
            "video": video,
            "obs_ratio": float(r),
            "n_frames": int(n),
        }

    def _subsampled(self, video: str, modality: str) -> np.ndarray:
        """``features[:end:sample_rate]`` with ``end = int(max(obs_ratios) * n_frames)`` (the longest
        observed part of any item of the video), contiguous float32, checked for non-finite values
        once, kept in memory within :data:`FEATURE_CACHE_BYTES`."""
        return self._cache.get((video, modality), lambda: self._read(video, modality))

    def _read(self, video: str, modality: str) -> np.ndarray:
        # up to the largest observed part any item of this dataset uses
        end = observed_frames(self.ds.n_frames(video), max(self.obs_ratios))
        x = np.array(self.ds.features(video, modality)[:end:self.sample_rate], dtype=np.float32, order="C")
        check_finite_frames(x, video, modality, self.sample_rate)
        return x

    def check_finite(self) -> None:
        """Read every video of the split as its items will (through the cache) and raise the
        :func:`check_finite_frames` error for the first non-finite value: a run checks its data
        before it writes anything."""
        for video in self.videos:
            for m in self.modalities:
                self._subsampled(video, m)

    def __repr__(self):
        return (
            f"AnticipationDataset(split={self.split!r}, videos={len(self.videos)}, obs_ratios={self.obs_ratios}, "
            f"sample_rate={self.sample_rate}, n_queries={self.n_queries}, modalities={self.modalities})"
        )


def check_finite_frames(x, video: str, modality: str, frames) -> None:
    """Raise an :class:`InputError` naming the video, modality and frame of the first non-finite
    value of ``x`` (rows: time steps), or return.

    ``frames`` gives each row's frame number: an int step (row ``i`` is frame ``i * frames``) or
    an array of frame numbers, one per row.
    """
    if np.isfinite(x).all():
        return
    row = int(np.argwhere(~np.isfinite(x))[0, 0])
    t = row * frames if np.ndim(frames) == 0 else int(frames[row])
    raise InputError(f"video {video!r}: modality {modality!r} has a non-finite value at frame {t}")


def collate_anticipation(items) -> dict:
    """Batch :class:`AnticipationDataset` items, padding time to the longest in the batch.

    Returns
    -------
    dict
        ``"features"``: {modality: float32 (B, T, C_m)} zero-padded; ``"mask"``: bool (B, T),
        True at valid steps; ``"seg_labels"``: int64 (B, T), -100 at padding;
        ``"future_classes"``: int64 (B, N_q); ``"future_durations"``: float32 (B, N_q);
        ``"future_mask"``: bool (B, N_q); ``"last_observed"``: int64 (B,), the label of the last
        observed frame (``past - 1``, before subsampling); ``"video"``: list of str; ``"obs_ratio"``: float32 (B,);
        ``"n_frames"``: int64 (B,).
    """
    items = list(items)
    if not items:
        raise InputError("items must not be empty")
    lengths = torch.tensor([int(it["seg_labels"].shape[0]) for it in items])
    t = int(lengths.max())
    # one padding call per field (a copy per item and field was most of the collate's time)
    feats = {m: pad_sequence([it["features"][m] for it in items], batch_first=True).to(torch.float32)
             for m in items[0]["features"]}
    mask = torch.arange(t) < lengths[:, None]
    seg = pad_sequence([it["seg_labels"] for it in items], batch_first=True, padding_value=PAD_LABEL).to(torch.int64)
    return {
        "features": feats,
        "mask": mask,
        "seg_labels": seg,
        "future_classes": torch.stack([it["future_classes"] for it in items]),
        "future_durations": torch.stack([it["future_durations"] for it in items]),
        "future_mask": torch.stack([it["future_mask"] for it in items]),
        "last_observed": torch.tensor([it["last_observed"] for it in items], dtype=torch.int64),
        "video": [it["video"] for it in items],
        "obs_ratio": torch.tensor([it["obs_ratio"] for it in items], dtype=torch.float32),
        "n_frames": torch.tensor([it["n_frames"] for it in items], dtype=torch.int64),
    }


# ----------------------------------------------------------------------------- one video's inputs
def relative_time_indices(past, n_frames, n_donor) -> np.ndarray:
    """Frame indices of a donor video at the same relative times as frames ``0 .. past-1`` of a video.

    Frame ``t`` of a video of ``n_frames`` frames maps to ``floor(t * n_donor / n_frames)`` of the
    donor: the replacement input covers the same observed *fraction* of another video, so it has
    the temporal progression (and the observed-ratio statistics) the model was trained on.

    Returns
    -------
    ndarray of int64, shape (past,), values in [0, n_donor)
    """
    past = check_int(past, "past", low=0)
    n_frames = check_int(n_frames, "n_frames", low=1)
    n_donor = check_int(n_donor, "n_donor", low=1)
    if past > n_frames:
        raise ValueError(f"past must be <= n_frames ({n_frames}), got {past}")
    return np.minimum((np.arange(past, dtype=np.int64) * n_donor) // n_frames, n_donor - 1)


def observed_steps(past: int, sample_rate: int) -> int:
    """Time steps of a video observed for ``past`` frames: the rows of ``features[:past:sample_rate]``."""
    return len(range(0, past, sample_rate))


#: Padded time steps (videos x longest video) one forward pass may hold when videos are batched
#: (:func:`length_batches`: evaluation, validation, feature export); bounds the attention's
#: (videos, heads, T, T) memory.
EVAL_BATCH_STEPS = 4096


def length_batches(lengths, keys=None) -> list:
    """Padded batches of items of these lengths: lists of indices. Items of one key (all, without
    ``keys``; in first-seen order of the keys) sorted by length (stable) and cut into runs whose
    padded size (items x longest) is at most :data:`EVAL_BATCH_STEPS` (an item longer than that
    alone)."""
    keys = [None] * len(lengths) if keys is None else list(keys)
    out = []
    for key in dict.fromkeys(keys):
        batch = []
        for i in sorted((i for i, k in enumerate(keys) if k == key), key=lambda i: lengths[i]):
            if batch and (len(batch) + 1) * lengths[i] > EVAL_BATCH_STEPS:
                out.append(batch)
                batch = []
            batch.append(i)
        if batch:
            out.append(batch)
    return out


def pad_videos(inputs) -> tuple:
    """Videos given as batches of one (:func:`video_inputs`' ``(features, mask)``) as one batch,
    time zero-padded to the longest: ``(features {m: (B, T, C_m)}, mask (B, T))``, video order kept."""
    inputs = list(inputs)
    if not inputs:
        raise InputError("inputs must not be empty")
    lengths = [int(mask.shape[1]) for _, mask in inputs]
    feats = {}
    for m, first in inputs[0][0].items():
        out = first.new_zeros(len(inputs), max(lengths), first.shape[2])
        for j, (f, _) in enumerate(inputs):
            out[j, : lengths[j]] = f[m][0]
        feats[m] = out
    mask = torch.arange(max(lengths), device=inputs[0][1].device)[None, :] < torch.tensor(
        lengths, device=inputs[0][1].device)[:, None]
    return feats, mask


class CachedFeatures:
    """A dataset whose features are read once and then kept in memory, for work that reads the
    same videos many times: evaluation scores every video once per MoC grid, and its reliance and
    Shapley values take hundreds of grids.

    Everything but :meth:`features` is the wrapped dataset's. Each ``(video, modality)`` array is
    read whole, as contiguous float32, and kept while the kept arrays fit in ``max_bytes``
    (:class:`rankfusion.data.memo.Memo`; the others are read through the dataset each time). The
    arrays are read-only: every reader copies what it uses.
    """

    def __init__(self, ds, max_bytes: int = FEATURE_CACHE_BYTES):
        self._ds, self._kept = ds, Memo(max_bytes)

    def __getattr__(self, name):  # only for names not set on the wrapper itself
        if name.startswith("_"):  # (copy and pickle probe these before __init__ has run)
            raise AttributeError(name)
        return getattr(self._ds, name)

    def features(self, video: str, modality: str) -> np.ndarray:
        """As :meth:`rankfusion.data.MultiModalDataset.features`, from memory once read."""
        key = (video, modality)
        if key in self._kept:
            return self._kept.get(key, None)
        x = self._ds.features(video, modality)
        if not self._kept.fits(x.size * 4):  # as the dataset gives it, not copied
            return x
        return self._kept.get(key, lambda: _read_only_float32(x))


def _read_only_float32(x) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    x.flags.writeable = False
    return x


def video_inputs(ds, video, modalities, stop, sample_rate, dev, noise=None, rng=None, donors=None, shift=None):
    """One video's observed frames ``[:stop:sample_rate]`` as a batch of one: ``(features, mask)``.

    ``donors={modality: video}`` swaps a modality's input for another video's, read at the same
    relative times (:func:`relative_time_indices`; modality reliance); ``shift`` in [0, 1) moves
    that donor window to a random time: it starts at ``floor(shift * (n_donor - span + 1))``
    instead of 0, ``span`` being the donor frames the aligned window covers.
    ``noise={modality: sd}`` adds Gaussian noise drawn from ``rng`` (noise robustness).
    """
    feats = {}
    for m in modalities:
        if donors and m in donors:
            src = ds.features(donors[m], m)
            idx = relative_time_indices(stop, ds.n_frames(video), len(src))
            if shift is not None and idx.size:
                idx = idx + int(shift * (len(src) - int(idx[-1])))
            idx = idx[::sample_rate]
            x = np.ascontiguousarray(src[idx], dtype=np.float32)  # fancy indexing copies
            check_finite_frames(x, donors[m], m, idx)
        else:
            # a copy: the dataset's arrays are read-only memory maps, which torch must not wrap
            x = np.array(ds.features(video, m)[:stop:sample_rate], dtype=np.float32, order="C")
            check_finite_frames(x, video, m, sample_rate)
        if noise and m in noise:
            x = x + rng.normal(0.0, noise[m], size=x.shape).astype(np.float32)
        feats[m] = torch.from_numpy(x)[None].to(dev)
    mask = torch.ones(1, next(iter(feats.values())).shape[1], dtype=torch.bool, device=dev)
    return feats, mask
