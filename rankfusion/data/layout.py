"""Reading datasets in the MS-TCN / FUTR layout, extended to several modalities.

Layout (docs/datasets.md)::

    DATA/mapping.txt                         "<index> <action name>" per line
    DATA/groundTruth/<video>.txt             one action name per frame
    DATA/features/<modality>/<video>.npy     float array of shape (channels, frames)
    DATA/splits/<split>.<set>.bundle         one video file name per line (e.g. train.split1.bundle)

A plain FUTR / MS-TCN dataset, whose ``features/`` folder holds ``<video>.npy`` files directly,
reads as one modality named :data:`PLAIN_MODALITY`.

Feature files are memory-mapped: :meth:`MultiModalDataset.features` returns a transposed view
of the ``(channels, frames)`` array without reading it whole.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

import numpy as np

from .._progress import bar_disabled
from .._validation import InputError, InputTypeError, check_choice, check_folder, option_name
from ..config import FUTURE_RATIO, TRAIN_OBS_RATIOS, min_frames
from ..files import NUMPY_READ_ERRORS, atomic_dir, check_not_source, read_text

#: Modality name given to the features of a plain (single-modality) FUTR/MS-TCN dataset.
PLAIN_MODALITY = "features"

#: Frame-count policies: "error" refuses any mismatch, "min" cuts every stream to the shortest.
TRIM_POLICIES = ("error", "min")

#: Split names every split set is expected to provide.
SPLIT_NAMES = ("train", "val", "test")
#: Splits ``validate`` insists on (MS-TCN datasets have no ``val``; it is reported, not required).
REQUIRED_SPLITS = ("train", "test")

# Extensions stripped from bundle lines: MS-TCN bundles list "<video>.txt".
_VIDEO_SUFFIXES = (".txt", ".npy")


def _video_id(line: str) -> str:
    name = line.strip()
    for suffix in _VIDEO_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


def read_mapping(path) -> list[str]:
    """Read ``mapping.txt`` into a list of class names indexed by label id.

    Parameters
    ----------
    path : path-like
        The mapping file: one ``"<index> <action name>"`` per line, indices 0..K-1.

    Returns
    -------
    list of str
        ``classes[i]`` is the name of label ``i``.

    Raises
    ------
    InputError
        If the file is missing, a line is malformed, or indices / names repeat or leave gaps.
    """
    path = Path(path)
    by_index: dict[int, str] = {}
    for lineno, raw in enumerate(read_text(path, "mapping file").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"-?[0-9]+", parts[0]):
            raise InputError(f"{str(path)!r} line {lineno}: expected '<index> <action name>', got {raw!r}")
        idx, name = int(parts[0]), parts[1].strip()
        if idx in by_index:
            raise InputError(f"{str(path)!r} line {lineno}: index {idx} appears twice")
        by_index[idx] = name
    if not by_index:
        raise InputError(f"mapping file {str(path)!r} is empty")
    if sorted(by_index) != list(range(len(by_index))):
        raise InputError(
            f"{str(path)!r}: indices must be 0..{len(by_index) - 1} without gaps, got {sorted(by_index)[:10]}..."
        )
    classes = [by_index[i] for i in range(len(by_index))]
    seen: set[str] = set()
    for name in classes:
        if name in seen:
            raise InputError(f"{str(path)!r}: action name {name!r} appears twice")
        seen.add(name)
    return classes


def _npy_shape(path: Path) -> tuple[tuple[int, ...], np.dtype]:
    # Read only the header: opening thousands of files at start-up must stay cheap.
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            else:
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            data_bytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
            held = os.fstat(fh.fileno()).st_size - fh.tell()
    except NUMPY_READ_ERRORS as exc:
        raise InputError(f"cannot read feature file {str(path)!r}: {exc}") from None
    if held < data_bytes:
        raise InputError(f"feature file {str(path)!r} is truncated: its header says {tuple(shape)} {np.dtype(dtype)} "
                         f"({data_bytes:,} bytes of data) but it holds {held:,} (not fully written?)")
    return tuple(shape), np.dtype(dtype)


@dataclasses.dataclass(frozen=True)
class VideoInfo:
    """Frame counts of one video as stored on disk (before any trimming)."""

    video: str
    label_frames: int
    feature_frames: dict  # modality -> frames
    n_frames: int  # frames used (after the trim policy)


class MultiModalDataset:
    """A dataset in the multi-modal MS-TCN / FUTR layout (see :func:`open_dataset`).

    Attributes
    ----------
    root : pathlib.Path
        The dataset folder.
    classes : list of str
        Action names; the index is the label id.
    modalities : list of str
        The modalities in use (a subset of those on disk when ``modalities`` was given).
    available_modalities : list of str
        Every modality found under ``features/``.
    split_set : str or None
        The split set in use (``"split1"`` for ``train.split1.bundle``), None without splits.
    videos : list of str
        Every video of the split set (all of ``groundTruth/`` when there are no splits).
    trim : {"error", "min"}
        The frame-count policy.
    """

    def __init__(self, root, *, modalities=None, trim="error", split_set=None):
        if not isinstance(root, (str, os.PathLike)):
            raise InputTypeError(f"root must be a path, got {type(root).__name__} {root!r}")
        self.root = Path(root)
        check_choice(trim, "trim", TRIM_POLICIES)
        self.trim = trim
        check_folder(self.root, "dataset folder")
        self.classes = read_mapping(self.root / "mapping.txt")
        self._class_index = {name: i for i, name in enumerate(self.classes)}
        self._plain, self.available_modalities = self._find_modalities()
        if modalities is None:
            self.modalities = list(self.available_modalities)
        else:
            given = modalities
            if isinstance(modalities, str):  # "rgb, depth" as "rgb,depth" (train --modalities reads it so too)
                modalities = [m.strip() for m in modalities.split(",") if m.strip()]
            modalities = list(modalities)
            if not modalities:
                raise InputError(f"{option_name('modalities', '--modalities')} must name at least one modality, "
                                 f"got {given!r}")
            for m in modalities:
                if m not in self.available_modalities:
                    raise InputError(
                        f"modality {m!r} not found under {str(self.root / 'features')!r}; "
                        f"available: {self.available_modalities}"
                    )
            if len(set(modalities)) != len(modalities):
                raise InputError(f"modalities must not repeat, got {modalities}")
            self.modalities = modalities
        self.split_sets = self._find_split_sets()
        self.split_set = self._pick_split_set(split_set)
        self._splits: dict[str, list[str]] = {}
        self.videos = self._all_videos()
        self._labels: dict[str, np.ndarray] = {}
        self._info: dict[str, VideoInfo] = {}
        self._channels: dict[str, int] = {}
        self._channels_of: dict[str, str] = {}  # the video each modality's channel count was read from
        for video in self.videos:
            self._info[video] = self._inspect(video)

    # ------------------------------------------------------------------ discovery
    def _find_modalities(self):
        feat = self.root / "features"
        if not feat.is_dir():
            raise InputError(f"features folder {str(feat)!r} does not exist")
        subdirs = sorted(p.name for p in feat.iterdir() if p.is_dir() and not p.name.startswith("."))
        files = sorted(p for p in feat.glob("*.npy"))
        if subdirs and files:
            raise InputError(
                f"{str(feat)!r} mixes modality folders {subdirs} with .npy files (e.g. {files[0].name!r}); "
                "use one layout"
            )
        if files:
            return True, [PLAIN_MODALITY]
        if not subdirs:
            raise InputError(f"features folder {str(feat)!r} holds no modality folders and no .npy files")
        return False, subdirs

    def _find_split_sets(self) -> list[str]:
        sdir = self.root / "splits"
        if not sdir.is_dir():
            return []
        sets = set()
        for p in sdir.glob("*.bundle"):
            parts = p.name[: -len(".bundle")].split(".", 1)
            if len(parts) == 2:
                sets.add(parts[1])
        return sorted(sets)

    def _pick_split_set(self, split_set):
        if split_set is not None:
            if split_set not in self.split_sets:
                raise InputError(
                    f"split set {split_set!r} not found in {str(self.root / 'splits')!r}; "
                    f"available: {self.split_sets}"
                )
            return split_set
        if not self.split_sets:
            return None
        # MS-TCN datasets ship split1..split4; the first is the conventional default.
        return "split1" if "split1" in self.split_sets else self.split_sets[0]

    def _bundle_path(self, name: str) -> Path:
        return self.root / "splits" / f"{name}.{self.split_set}.bundle"

    def _read_bundle(self, name: str) -> list[str]:
        path = self._bundle_path(name)
        if not path.exists():
            have = sorted(p.name for p in (self.root / "splits").glob(f"*.{self.split_set}.bundle"))
            raise InputError(f"split {name!r}: bundle {str(path)!r} does not exist; available: {have}")
        videos = [_video_id(line) for line in read_text(path, f"split {name!r}: bundle").splitlines() if line.strip()]
        if not videos:
            raise InputError(f"split {name!r} is empty ({str(path)!r} lists no videos)")
        dup = sorted({v for v in videos if videos.count(v) > 1})
        if dup:
            raise InputError(f"split {name!r} lists video {dup[0]!r} more than once ({str(path)!r})")
        return videos

    def _all_videos(self) -> list[str]:
        if self.split_set is None:
            gt = self.root / "groundTruth"
            if not gt.is_dir():
                raise InputError(f"groundTruth folder {str(gt)!r} does not exist")
            videos = sorted(p.stem for p in gt.glob("*.txt"))
            if not videos:
                raise InputError(f"groundTruth folder {str(gt)!r} holds no <video>.txt files")
            return videos
        seen: dict[str, str] = {}
        names = [p.name.split(".", 1)[0] for p in (self.root / "splits").glob(f"*.{self.split_set}.bundle")]
        # train, val, test first so messages and summaries follow the usual order
        order = {n: i for i, n in enumerate(SPLIT_NAMES)}
        for name in sorted(names, key=lambda n: (order.get(n, len(order)), n)):
            self._splits[name] = self._read_bundle(name)
            for v in self._splits[name]:
                if v in seen:
                    # a video in two splits leaks: e.g. test scores of a video the model trained on
                    raise InputError(
                        f"video {v!r} is listed in two splits, {seen[v]!r} and {name!r} "
                        f"({self.split_set}); each video must belong to one split"
                    )
                seen[v] = name
        return list(seen)

    # ------------------------------------------------------------------ per video
    def _feature_path(self, video: str, modality: str) -> Path:
        if self._plain:
            return self.root / "features" / f"{video}.npy"
        return self.root / "features" / modality / f"{video}.npy"

    def _read_labels(self, video: str) -> np.ndarray:
        path = self.root / "groundTruth" / f"{video}.txt"
        names = [line.strip() for line in read_text(path, f"video {video!r}: label file").splitlines()]
        # A trailing newline is common; empty lines elsewhere would shift every later frame.
        while names and not names[-1]:
            names.pop()
        if not names:
            raise InputError(f"video {video!r}: label file {str(path)!r} is empty")
        out = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names):
            idx = self._class_index.get(name)
            if idx is None:
                what = "an empty line" if not name else f"label {name!r}"
                raise InputError(
                    f"video {video!r}: {what} at frame {i} ({str(path)!r} line {i + 1}) is not in mapping.txt"
                )
            out[i] = idx
        return out

    def _inspect(self, video: str) -> VideoInfo:
        labels = self._read_labels(video)
        self._labels[video] = labels
        frames = {}
        for m in self.modalities:
            path = self._feature_path(video, m)
            if not path.is_file():
                raise InputError(f"video {video!r}: modality {m!r} is missing ({str(path)!r} does not exist)")
            shape, dtype = _npy_shape(path)
            if len(shape) != 2:
                raise InputError(
                    f"video {video!r}: {str(path)!r} must hold a (channels, frames) array, got shape {shape}"
                )
            if dtype.kind not in "fiu":
                raise InputError(f"video {video!r}: {str(path)!r} is not numeric (dtype {dtype})")
            if shape[0] == 0:
                raise InputError(f"video {video!r}: modality {m!r} has 0 channels ({str(path)!r} holds shape {shape}); "
                                 "a modality needs at least one")
            ch = self._channels.setdefault(m, shape[0])
            first = self._channels_of.setdefault(m, video)
            if shape[0] != ch:
                # both videos named: the one read first may be the odd one
                raise InputError(
                    f"video {video!r}: modality {m!r} has {shape[0]} channels ({str(path)!r}) "
                    f"but video {first!r}, read before it, has {ch}: every video of a modality needs the same count"
                )
            frames[m] = shape[1]
        n_lab = len(labels)
        mismatched = {m: f for m, f in frames.items() if f != n_lab}
        if mismatched and self.trim == "error":
            m, f = next(iter(mismatched.items()))
            hint = " (the array may be stored as (frames, channels))" if self._channels[m] == n_lab else ""
            raise InputError(
                f"video {video!r}: modality {m!r} has {f} frames but groundTruth has {n_lab} "
                f"({f - n_lab:+d}){hint}; fix the files so that every stream of the video has as many frames as "
                "its labels (open_dataset(..., trim='min') in Python cuts them to the shortest; "
                "'rankfusion data check DATA --trim min' checks the dataset that way, writing nothing)"
            )
        n = min([n_lab, *frames.values()])
        return VideoInfo(video, n_lab, frames, n)

    # ------------------------------------------------------------------ public API
    def split(self, name: str) -> list[str]:
        """Video ids of split ``name`` (``"train"``, ``"val"``, ``"test"``) of the split set in use.

        Raises
        ------
        InputError
            If the dataset has no splits, the bundle file is missing, or the split is empty.
        """
        if self.split_set is None:
            raise InputError(f"split {name!r}: dataset {str(self.root)!r} has no splits/<split>.<set>.bundle files")
        if name not in self._splits:
            self._splits[name] = self._read_bundle(name)
        return list(self._splits[name])

    def info(self, video: str) -> VideoInfo:
        """Stored frame counts of ``video`` (labels and each modality)."""
        self._check_video(video)
        return self._info[video]

    def _check_video(self, video):
        if video not in self._info:
            raise InputError(f"video {video!r} is not part of dataset {str(self.root)!r}")

    def n_frames(self, video: str) -> int:
        """Number of frames of ``video`` (after the trim policy)."""
        self._check_video(video)
        return self._info[video].n_frames

    def labels(self, video: str) -> np.ndarray:
        """Per-frame label ids of ``video``, int64 array of shape (n_frames,)."""
        self._check_video(video)
        return self._labels[video][: self._info[video].n_frames]

    def channels(self, modality: str) -> int:
        """Channel count of ``modality``."""
        if modality not in self._channels:
            raise InputError(f"modality {modality!r} is not in use; modalities: {self.modalities}")
        return self._channels[modality]

    def features(self, video: str, modality: str) -> np.ndarray:
        """Features of ``video`` for ``modality``, float32 array of shape (n_frames, channels).

        A memory-mapped, transposed view of the stored ``(channels, frames)`` array when it is
        float32 (nothing is read until sliced); other dtypes are converted (a copy).
        """
        self._check_video(video)
        if modality not in self.modalities:
            raise InputError(f"modality {modality!r} is not in use; modalities: {self.modalities}")
        path = self._feature_path(video, modality)
        try:
            arr = np.load(path, mmap_mode="r", allow_pickle=False)
        except NUMPY_READ_ERRORS as exc:
            raise InputError(f"video {video!r}: cannot read {str(path)!r}: {exc}") from None
        view = arr.T[: self._info[video].n_frames]
        if view.dtype != np.float32:
            # a float64 value beyond the float32 range becomes inf, which validate() reports
            # naming the video; the overflow warning would only precede that line
            with np.errstate(over="ignore"):
                view = view.astype(np.float32)
        return view

    def validate(self, *, progress=False) -> "CheckReport":
        """Run every check, reading all features (non-finite values, empty splits, class balance).

        Returns
        -------
        CheckReport
            The summary printed by ``rankfusion data check``.

        Raises
        ------
        InputError
            On the first problem, naming the video (and modality / frame) concerned.
        """
        notes = []
        if self.split_set is None:
            # train needs them (and a folder left by a killed writer has none): not a valid dataset
            raise InputError(
                f"dataset {str(self.root)!r} has no split files: expected "
                f"{str(self.root / 'splits')}/<split>.<set>.bundle for the splits {list(REQUIRED_SPLITS)}"
            )
        for name in REQUIRED_SPLITS:
            self.split(name)
        if not self._bundle_path("val").is_file():
            # MS-TCN datasets ship train/test only; choosing checkpoints on test inflates scores
            notes.append(f"no val split (val.{self.split_set}.bundle): train needs one; hold out part of train "
                         "for model selection")
        # every bundle of the set, in the order train, val, test, others (read at open)
        splits = {name: self.split(name) for name in self._splits}
        counts = np.zeros(len(self.classes), dtype=np.int64)
        trimmed = []
        it = self.videos
        if progress:
            from tqdm import tqdm

            it = tqdm(it, desc="check", unit="video", leave=False, disable=bar_disabled(True))
        for video in it:
            info = self._info[video]
            counts += np.bincount(self.labels(video), minlength=len(self.classes))
            if any(f != info.n_frames for f in [info.label_frames, *info.feature_frames.values()]):
                trimmed.append(video)
            for m in self.modalities:
                x = self.features(video, m)
                bad = ~np.isfinite(x)
                if bad.any():
                    t, c = np.argwhere(bad)[0]
                    raise InputError(
                        f"video {video!r}: modality {m!r} has a non-finite value ({x[t, c]}) "
                        f"at frame {t}, channel {c} ({int(bad.sum())} in all)"
                    )
        short = [v for v in self.videos if self.n_frames(v) < min_frames()]
        if short:
            named = ", ".join(f"{v!r} ({self.n_frames(v)} frames)" for v in short[:3]) + (", ..." if len(short) > 3 else "")
            notes.append(f"{len(short)} video(s) too short for the default anticipation protocol (cut at "
                         f"{'/'.join(f'{r:g}' for r in TRAIN_OBS_RATIOS)} of a video, {FUTURE_RATIO:g} of it to "
                         f"predict: at least one observed and one future frame at each cut): {named}; train "
                         "refuses them in its train and val splits, evaluate skips them")
        return CheckReport(
            root=str(self.root),
            split_set=self.split_set,
            splits={k: len(v) for k, v in splits.items()},
            n_videos=len(self.videos),
            n_frames=int(sum(i.n_frames for i in self._info.values())),
            frames_min=int(min(i.n_frames for i in self._info.values())),
            frames_max=int(max(i.n_frames for i in self._info.values())),
            classes=list(self.classes),
            class_frames=[int(c) for c in counts],
            channels={m: self._channels[m] for m in self.modalities},
            trim=self.trim,
            trimmed_videos=trimmed,
            notes=notes,
        )

    def __repr__(self):
        return (
            f"MultiModalDataset({str(self.root)!r}, videos={len(self.videos)}, classes={len(self.classes)}, "
            f"modalities={self.modalities})"
        )


@dataclasses.dataclass(frozen=True)
class CheckReport:
    """Summary of a validated dataset (``rankfusion data check``)."""

    root: str
    split_set: str | None
    splits: dict
    n_videos: int
    n_frames: int
    frames_min: int
    frames_max: int
    classes: list
    class_frames: list
    channels: dict
    trim: str
    trimmed_videos: list
    notes: list = dataclasses.field(default_factory=list)

    def format(self) -> str:
        """Human-readable summary."""
        lines = [
            f"dataset   {self.root}",
            f"videos    {self.n_videos}  (" + ", ".join(f"{k} {v}" for k, v in self.splits.items())
            + (f"; split set {self.split_set})" if self.split_set else "no splits)"),
            f"frames    {self.n_frames}  (per video {self.frames_min}..{self.frames_max})",
            f"classes   {len(self.classes)}",
            "channels  " + ", ".join(f"{m} {c}" for m, c in self.channels.items()),
            f"trim      {self.trim}"
            + (f" ({len(self.trimmed_videos)} videos cut to their shortest stream)" if self.trimmed_videos else ""),
            *[f"note      {n}" for n in self.notes],
            "class balance (frames, share):",
        ]
        total = max(sum(self.class_frames), 1)
        width = max(len(c) for c in self.classes)
        for i, (name, n) in enumerate(zip(self.classes, self.class_frames)):
            flag = "   <- absent" if n == 0 else ""
            lines.append(f"  {i:>3} {name:<{width}} {n:>9} {100 * n / total:6.2f}%{flag}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return dataclasses.asdict(self)


def open_dataset(root, *, modalities=None, trim="error", split_set=None) -> MultiModalDataset:
    """Open a dataset in the (multi-modal) MS-TCN / FUTR layout.

    Structural checks run here (mapping, label files, presence, shape and frame count of every
    feature file of every video in the split set); reading every value for non-finite entries is
    left to :meth:`MultiModalDataset.validate` (``rankfusion data check``).

    Parameters
    ----------
    root : path-like
        Dataset folder (``mapping.txt``, ``groundTruth/``, ``features/``, ``splits/``).
    modalities : list of str or str, optional
        Modalities to use (a comma-separated string is accepted); default all found.
    trim : {"error", "min"}
        What to do when labels and modalities disagree on a video's frame count: ``"error"``
        raises naming the video and the difference; ``"min"`` cuts every stream to the shortest.
    split_set : str, optional
        Which ``splits/<split>.<split_set>.bundle`` files to use; default ``"split1"`` when
        present, else the first in sorted order.

    Returns
    -------
    MultiModalDataset
    """
    return MultiModalDataset(root, modalities=modalities, trim=trim, split_set=split_set)


def check_split_set_name(split_set) -> str:
    """A split set's name as it goes into bundle file names (``<split>.<set>.bundle``): a non-empty
    plain name, without ``.`` or ``/``."""
    if not isinstance(split_set, str) or not split_set or "." in split_set or "/" in split_set:
        raise InputError(f"{option_name('split_set', '--split-set')} must be a plain name without '.' or '/', "
                         f"got {split_set!r}")
    return split_set


#: Longest file name most file systems take, in bytes (NAME_MAX); a video's files add ``.txt`` / ``.npy``.
NAME_MAX_BYTES = 255


def check_video_name(video, source: str = "") -> None:
    """Refuse a video id that cannot be a file name (``<video>.txt``, ``<video>.npy``): empty,
    ``.`` or ``..``, holding ``/``, ``\\`` or a NUL character, a line break or white space at
    either end (bundles list one stripped video a line), or longer than :data:`NAME_MAX_BYTES` with its suffix (UTF-8 bytes).
    ``source`` (e.g. ``" (column 'subj' of 'a.csv')"``) says where the id came from."""
    shown = repr(video) if len(video) <= 60 else repr(video[:50]) + "..."
    bad = next((c for c in ("/", "\\", "\0", "\n", "\r") if c in video), None)
    if bad is not None or video.strip() in ("", ".", ".."):
        what = f"holds {bad!r}" if bad is not None else "is empty, '.' or '..'"
        raise InputError(f"video id {shown}{source} {what}, which a file name cannot hold")
    if video != video.strip():
        raise InputError(f"video id {shown}{source} begins or ends with white space, which the split files lose")
    n = len(f"{video}.txt".encode("utf-8", "surrogatepass"))
    if n > NAME_MAX_BYTES:
        raise InputError(f"video id {shown}{source} is too long for a file name: '<video>.txt' would be {n} bytes, "
                         f"at most {NAME_MAX_BYTES} are allowed; shorten it")


def write_dataset(root, classes, labels, features, splits, *, split_set="split1", plain=False,
                  overwrite=False, extra_files=None, validate=False, sources=()):
    """Write a dataset in the standard layout, atomically (a temp folder renamed into place).

    Parameters
    ----------
    root : path-like
        Destination folder; must not exist unless ``overwrite``.
    classes : list of str
        Action names; index = label id (``mapping.txt``).
    labels : dict
        ``{video: sequence}`` of per-frame action names (str) or label ids (int).
    features : dict
        ``{modality: {video: array of shape (frames, channels)}}``; stored transposed as
        ``(channels, frames)`` float32. Not checked against ``labels`` here: run
        :meth:`MultiModalDataset.validate` on the result.
    splits : dict
        ``{split name: [video, ...]}``, written as ``splits/<name>.<split_set>.bundle``.
    split_set : str
        Split-set name.
    plain : bool
        Write ``features/<video>.npy`` (one modality, the plain FUTR layout).
    overwrite : bool
        Replace an existing ``root``.
    extra_files : dict, optional
        ``{relative path: text}`` written as well (e.g. a provenance JSON).
    validate : bool
        Run every check of :meth:`MultiModalDataset.validate` on the written temporary folder
        *before* it replaces ``root``: an invalid dataset raises and leaves ``root`` as it was
        (an existing dataset intact, no new folder).
    sources : sequence of path-like
        The files and folders the dataset is made from: a ``root`` that is one of them or holds
        one is refused before anything is written, with or without ``overwrite``.

    Returns
    -------
    pathlib.Path
    """
    root = Path(root)
    check_split_set_name(split_set)
    check_not_source(root, sources)
    if root.exists() and not overwrite:
        raise InputError(f"output folder {str(root)!r} already exists; pass "
                         f"{option_name('overwrite=True', '--force')} to replace it")
    if plain and len(features) != 1:
        raise InputError(f"plain=True needs exactly one modality, got {sorted(features)}")
    for video in labels:
        check_video_name(str(video))
    with atomic_dir(root, sources=sources) as tmp:
        (tmp / "mapping.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(classes)))
        (tmp / "groundTruth").mkdir()
        for video, lab in labels.items():
            names = [classes[int(x)] if not isinstance(x, str) else x for x in lab]
            (tmp / "groundTruth" / f"{video}.txt").write_text("".join(n + "\n" for n in names))
        for m, per_video in features.items():
            folder = tmp / "features" if plain else tmp / "features" / m
            folder.mkdir(parents=True, exist_ok=True)
            for video, x in per_video.items():
                np.save(folder / f"{video}.npy", np.ascontiguousarray(np.asarray(x, dtype=np.float32).T))
        (tmp / "splits").mkdir()
        for name, videos in splits.items():
            (tmp / "splits" / f"{name}.{split_set}.bundle").write_text("".join(f"{v}.txt\n" for v in videos))
        for rel, text in (extra_files or {}).items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            (tmp / rel).write_text(text)
        if validate:
            try:
                MultiModalDataset(tmp).validate()
            except InputError as exc:
                # the temporary folder is never seen, and the file named is not in root: name the
                # file by its place in the dataset
                msg = str(exc).replace(str(tmp) + os.sep, "").replace(str(tmp), str(root))
                raise InputError(f"the dataset for {str(root)!r} would be invalid, so nothing was written: "
                                 f"{msg}") from None
    return root
