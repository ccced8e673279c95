"""Importing the official R3D code's FUTR-style folder into the standard layout.

The folder the official code reads (docs/datasets.md, "Using the paper's datasets")::

    SRC/mapping*.txt                   "<index> <action name>" per line
    SRC/splits/<split>_split.txt       one video per line (train, val, test)
    SRC/groundTruth/<video>.txt        one action name per frame, or "frame_path,label,UNDEFINED"
    SRC/features/<video>.npy           per-frame features, (frames, channels) or (channels, frames)
    SRC/features_<name>/<video>.npy    another modality (features_depth -> depth)

Every video of every split is checked (label file, each modality's array header, frame counts,
labels known to the mapping) before anything is written; the new dataset is then written in a
temporary folder, passes every check of ``rankfusion data check`` there, and only then is
renamed into place.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from .._validation import InputError, check_choice, check_folder
from ..files import NUMPY_READ_ERRORS, check_not_source, read_text
from .layout import SPLIT_NAMES, _npy_shape, _video_id, check_split_set_name, check_video_name, write_dataset

#: Modality name of the plain ``features/`` folder of the official code (its RGB stream).
DEFAULT_FEATURES_NAME = "rgb"

#: How the arrays are laid out: found from the label count, or fixed.
FEATURE_AXES = ("auto", "frames-first", "channels-first")

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def modality_folders(src: Path, rename: dict | None = None) -> dict:
    """``{modality: folder}`` of every ``features*/`` folder of ``src``.

    ``features`` is :data:`DEFAULT_FEATURES_NAME`, ``features_<name>`` is ``<name>``; ``rename``
    (``{old: new}``, old being that derived name or the folder's name) renames them.
    """
    rename = dict(rename or {})
    out = {}
    named = sorted(p for p in src.iterdir() if re.match(r"^features(_.+)?$", p.name))
    stray = [p for p in named if not p.is_dir()]
    if stray:  # a modality would go missing without a word
        raise InputError(f"{str(stray[0])!r} is a file, not a folder of features (<video>.npy files)")
    for folder in named:
        name = DEFAULT_FEATURES_NAME if folder.name == "features" else folder.name[len("features_"):]
        new = rename.pop(name, None) or rename.pop(folder.name, None) or name
        if not _NAME.match(new):
            raise InputError(f"modality name must use letters, digits, '_' or '-', got {new!r} (folder {str(folder)!r})")
        if new in out:
            raise InputError(f"two feature folders become modality {new!r} ({str(out[new])!r}, {str(folder)!r})")
        out[new] = folder
    if not out:
        raise InputError(f"{str(src)!r} holds no features/ or features_<name>/ folder")
    if rename:
        raise InputError(f"--rename {next(iter(rename))!r}: no such feature folder in {str(src)!r}; modalities: {sorted(out)}")
    return out


def find_mapping(src: Path, mapping: str | None = None) -> Path:
    """The mapping file of ``src``: ``mapping`` (a name in ``src``) or the only ``mapping*.txt``."""
    if mapping is not None:
        path = src / mapping
        if not path.is_file():
            raise InputError(f"mapping file {str(path)!r} does not exist")
        return path
    found = sorted(src.glob("mapping*.txt"))
    if not found:
        raise InputError(f"{str(src)!r} holds no mapping*.txt file")
    if len(found) > 1:
        raise InputError(f"{str(src)!r} holds several mapping files {[p.name for p in found]}; choose one with --mapping")
    return found[0]


def _key(name: str) -> str:
    # the official code looks labels up with their spaces removed
    return name.replace(" ", "")


def read_official_mapping(path: Path) -> tuple[list[str], dict, list[int]]:
    """Read the official code's mapping: ``"<index> <action name>"`` per line, any distinct integers.

    Returns
    -------
    classes : list of str
        Action names ordered by their index (rankfusion's label ids are their positions).
    lookup : dict
        ``{name without spaces: position}``, how ground-truth labels are matched.
    indices : list of int
        The file's index of each class (NTU's mapping uses the action number A001 -> 1).
    """
    entries = {}
    for lineno, raw in enumerate(read_text(path, "mapping file").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        parts = line.split(maxsplit=1)
        if len(parts) != 2 or not re.fullmatch(r"-?[0-9]+", parts[0]):
            raise InputError(f"{str(path)!r} line {lineno}: expected '<index> <action name>', got {raw!r}")
        idx, name = int(parts[0]), parts[1].strip()
        if idx in entries:
            raise InputError(f"{str(path)!r} line {lineno}: index {idx} appears twice")
        if any(_key(n) == _key(name) for n in entries.values()):
            raise InputError(f"{str(path)!r} line {lineno}: action name {name!r} appears twice")
        entries[idx] = name
    if not entries:
        raise InputError(f"mapping file {str(path)!r} is empty")
    indices = sorted(entries)
    classes = [entries[i] for i in indices]
    return classes, {_key(c): i for i, c in enumerate(classes)}, indices


def read_split_files(src: Path) -> dict:
    """``{split: [video, ...]}`` from ``splits/<split>_split.txt`` (train, val and test required:
    ``train`` chooses its best epoch on val)."""
    sdir = src / "splits"
    splits = {}
    for name in SPLIT_NAMES:
        path = sdir / f"{name}_split.txt"
        if not path.exists():
            if name == "val":
                raise InputError(f"split file {str(path)!r} does not exist: train chooses its best epoch on val; "
                                 "move some videos of train_split.txt into it")
            raise InputError(f"split file {str(path)!r} does not exist (train, val and test are required)")
        videos = []
        for lineno, line in enumerate(read_text(path, "split file").splitlines(), 1):
            if line.strip():
                videos.append(_video_id(Path(line.strip()).name))
                check_video_name(videos[-1], f" (line {lineno} of {str(path)!r})")
        if not videos:
            raise InputError(f"split file {str(path)!r} lists no videos")
        dup = sorted(v for v, n in Counter(videos).items() if n > 1)
        if dup:
            raise InputError(f"split file {str(path)!r} lists video {dup[0]!r} twice")
        splits[name] = videos
    owner = {}
    for name, videos in splits.items():
        for v in videos:
            if v in owner:
                raise InputError(f"video {v!r} is listed in two split files, {owner[v]!r} and {name!r}")
            owner[v] = name
    return splits


def read_ground_truth(path: Path, lookup: dict) -> list[int]:
    """Per-frame label ids of one label file, in either of the official code's line formats.

    A file is either one action name per line (MS-TCN / FUTR) or ``frame_path,label,UNDEFINED``
    per line (the official NTU loader: the second field is the label); mixing both is refused.
    Names are matched to ``lookup`` with their spaces removed, as the official code does.
    """
    lines = read_text(path, "label file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise InputError(f"label file {str(path)!r} is empty")
    csv = "," in lines[0]
    out = []
    for i, raw in enumerate(lines, 1):
        line = raw.strip()
        if ("," in line) != csv:
            raise InputError(f"{str(path)!r} line {i}: mixes 'label' and 'frame_path,label,UNDEFINED' lines: {raw!r}")
        if csv:
            fields = [f.strip() for f in line.split(",")]
            if len(fields) != 3 or not fields[1]:
                raise InputError(f"{str(path)!r} line {i}: expected 'frame_path,label,UNDEFINED', got {raw!r}")
            name = fields[1]
        else:
            name = line
        if _key(name) not in lookup:
            what = "an empty line" if not name else f"label {name!r}"
            raise InputError(f"{str(path)!r} line {i}: {what} is not in the mapping file")
        out.append(lookup[_key(name)])
    return out


def _frames_axis(shape, n_labels, path, axis, video, modality) -> int:
    """Which axis of a 2-D feature array counts frames (0 or 1)."""
    if len(shape) != 2:
        hint = (" (per-frame images, not features: encode the frames with `rankfusion data featurize`)"
                if len(shape) >= 3 and n_labels in shape[:1] else "")
        raise InputError(f"video {video!r}: modality {modality!r} ({str(path)!r}) must hold a 2-D array "
                         f"(frames, channels), got shape {shape}{hint}")
    if axis == "frames-first":
        return 0
    if axis == "channels-first":
        return 1
    matches = [a for a in (0, 1) if shape[a] == n_labels]
    if len(matches) == 2:
        raise InputError(
            f"{str(path)!r} has shape {shape}: both axes equal the {n_labels} labels; "
            "say which axis counts frames with --feature-axis frames-first|channels-first"
        )
    if not matches:
        raise InputError(
            f"video {video!r}: modality {modality!r} ({str(path)!r}) has shape {shape}; neither axis "
            f"matches the {n_labels} frames of its label file"
        )
    return matches[0]


class _LazyFeatures(Mapping):
    """``{video: (frames, channels) array}`` read from the source one video at a time."""

    def __init__(self, folder: Path, axes: dict):
        self.folder, self.axes = folder, axes

    def __getitem__(self, video):
        path = self.folder / f"{video}.npy"
        try:
            x = np.load(path, allow_pickle=False)
        except NUMPY_READ_ERRORS as exc:
            raise InputError(f"video {video!r}: cannot read {str(path)!r}: {exc}") from None
        x = x if self.axes[video] == 0 else x.T
        if x.dtype.kind == "f" and x.dtype.itemsize > 4:
            # the dataset stores float32: a finite value beyond its range would become inf
            with np.errstate(invalid="ignore"):
                big = np.isfinite(x) & (np.abs(x) > np.finfo(np.float32).max)
            if big.any():
                t, c = np.argwhere(big)[0]
                raise InputError(f"video {video!r}: {str(path)!r} has a value ({x[t, c]:g}) beyond the float32 range "
                                 f"(|x| <= 3.4e38) at frame {t}, channel {c}; features are stored as float32")
        return x

    def __iter__(self):
        return iter(self.axes)

    def __len__(self):
        return len(self.axes)


def _inspect_video(src, video, folders, lookup, axis, channels):
    """Labels of ``video`` and, per modality, which axis counts frames (headers only)."""
    labels = read_ground_truth(src / "groundTruth" / f"{video}.txt", lookup)
    axes = {}
    for m, folder in folders.items():
        path = folder / f"{video}.npy"
        if not path.is_file():
            raise InputError(f"video {video!r}: modality {m!r} is missing ({str(path)!r} does not exist)")
        shape, dtype = _npy_shape(path)
        if dtype.kind not in "fiu":
            raise InputError(f"video {video!r}: {str(path)!r} is not numeric (dtype {dtype})")
        a = _frames_axis(shape, len(labels), path, axis, video, m)
        if shape[a] != len(labels):
            raise InputError(
                f"video {video!r}: modality {m!r} has {shape[a]} frames ({str(path)!r}) but its label file "
                f"has {len(labels)}"
            )
        c = channels.setdefault(m, shape[1 - a])
        if shape[1 - a] != c:
            raise InputError(f"video {video!r}: modality {m!r} has {shape[1 - a]} channels ({str(path)!r}), "
                             f"earlier videos {c}")
        axes[m] = a
    return labels, axes


def import_r3d(src, out_dir, *, mapping=None, rename=None, feature_axis="auto", split_set="split1",
               overwrite=False) -> Path:
    """Convert the official R3D code's folder ``src`` into the standard layout at ``out_dir``.

    Parameters
    ----------
    src : path-like
        The official code's data folder (``mapping*.txt``, ``splits/``, ``groundTruth/``,
        ``features*/``).
    out_dir : path-like
        Destination dataset folder; must not exist unless ``overwrite``.
    mapping : str, optional
        File name of the mapping in ``src`` when there are several ``mapping*.txt``.
    rename : dict, optional
        ``{derived name or folder name: new modality name}``.
    feature_axis : {"auto", "frames-first", "channels-first"}
        Orientation of the source arrays; ``"auto"`` takes the axis whose length is the
        video's label count (refusing a square array).
    split_set : str
        Split-set name of the written bundles (``train.<split_set>.bundle``).
    overwrite : bool
        Replace ``out_dir`` when it exists.

    Returns
    -------
    pathlib.Path
        ``out_dir``; ``import.json`` there records the source and the modality folders.

    The mapping's indices may be any distinct integers (NTU's official mapping numbers actions
    from 1); the classes keep their order and are renumbered 0..K-1 (``import.json`` keeps the
    original indices). Labels match mapping names with spaces removed, as in the official code.

    Raises
    ------
    InputError
        Naming the file (and line) or video: a missing video or modality, a frame count that
        differs from the label count, a label not in the mapping, a malformed line.
    """
    check_split_set_name(split_set)
    src = Path(src)
    check_not_source(out_dir, [src])  # before reading: write_dataset checks again, with every source
    check_choice(feature_axis, "feature_axis", FEATURE_AXES)
    check_folder(src, "source folder")
    mapping_path = find_mapping(src, mapping)
    classes, lookup, indices = read_official_mapping(mapping_path)
    folders = modality_folders(src, rename)
    splits = read_split_files(src)
    labels, axes, channels = {}, {m: {} for m in folders}, {}
    for videos in splits.values():
        for video in videos:
            labels[video], per_mod = _inspect_video(src, video, folders, lookup, feature_axis, channels)
            for m, a in per_mod.items():
                axes[m][video] = a
    feats = {m: _LazyFeatures(folders[m], axes[m]) for m in folders}
    meta = {"generator": "rankfusion.data.r3d_folder", "source": str(src.resolve()),
            "mapping": mapping_path.name, "mapping_indices": dict(zip(classes, indices)), "modalities": {m: f.name for m, f in folders.items()},
            "splits": {k: len(v) for k, v in splits.items()}}
    return write_dataset(out_dir, classes, labels, feats, splits, split_set=split_set, overwrite=overwrite,
                         extra_files={"import.json": json.dumps(meta, indent=2) + "\n"}, validate=True,
                         sources=[src, mapping_path, src / "splits", src / "groundTruth", *folders.values()])
