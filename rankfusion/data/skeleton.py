"""Importing skeleton streams (NTU RGB+D ``.skeleton`` files, UTKinect joint files) as a ``skeleton`` modality.

Both importers write per-frame joint coordinates of one body, ``(frames, 3 * joints)`` with the
channels ordered joint by joint (``x1, y1, z1, x2, ...``), in metres of the camera's space,
translated so that joint 1 (NTU's spine base, UTKinect's hip centre) of the first frame is the
origin; no scaling, no rotation (docs/datasets.md, "Using the paper's datasets").

* NTU: a clip holds one action; every frame gets the clip's action ``A001``..``A120``. The
  frame's main body is the tracked body (body ID) present in the most frames (ties: the one
  whose joints move most); a frame without it repeats the nearest earlier pose (the first pose
  for leading frames). Splits follow the dataset's cross-subject, cross-view or cross-setup
  protocol, read from the ``SsssCcccPpppRrrrAaaa`` file name.
* UTKinect: a sequence holds ten actions; each frame whose number lies in an action's
  ``start end`` range (inclusive) gets that action, every other frame ``UNDEFINED``.
  Splits: subjects 1, 3, 5, 7, 9 train, the others test.

In both, validation takes whole subjects out of the training split (seeded). Every file is
parsed and checked first (a malformed one is refused naming the file and line); the dataset is
then written atomically and checked (``rankfusion data check``) before it replaces anything.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from .._validation import InputError, check_choice, check_folder, check_int, option_name
from ..files import check_not_source, read_text
from .layout import check_split_set_name, write_dataset

#: Modality name of the imported joints.
SKELETON_MODALITY = "skeleton"
#: Joints of a Kinect v2 body (NTU) and a Kinect v1 body (UTKinect).
NTU_JOINTS = 25
UTK_JOINTS = 20
#: Values on an NTU body line and on an NTU joint line.
NTU_BODY_FIELDS = 10
NTU_JOINT_FIELDS = 12
#: NTU's cross-subject training subjects (NTU RGB+D 60: 1..40; NTU RGB+D 120 adds 41..106).
NTU_XSUB_TRAIN = frozenset({
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38, 45, 46, 47, 49, 50, 52, 53, 54,
    55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89, 91, 92, 93, 94, 95, 97, 98, 100, 103,
})
#: NTU's cross-view training cameras (camera 1 is the test view).
NTU_XVIEW_TRAIN = frozenset({2, 3})
NTU_PROTOCOLS = ("xsub", "xview", "xset")
#: Label of UTKinect frames outside every action range (as in the official code's ground truth).
BACKGROUND = "UNDEFINED"

_NTU_NAME = re.compile(r"^S([0-9]{3})C([0-9]{3})P([0-9]{3})R([0-9]{3})A([0-9]{3})$")
_UTK_NAME = re.compile(r"^joints_(s([0-9]+)_e([0-9]+))$")


class _Lines:
    """Numbered, stripped, non-empty lines of a text file, read one at a time."""

    def __init__(self, path: Path):
        self.path = path
        text = read_text(path, "skeleton file")
        self.lines = [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]
        self.pos = 0

    def where(self) -> str:
        if self.pos < len(self.lines):
            return f"{str(self.path)!r} line {self.lines[self.pos][0]}"
        return f"{str(self.path)!r} (end of file)"

    def next_fields(self, n: int, what: str) -> list[str]:
        if self.pos >= len(self.lines):
            raise InputError(f"{self.where()}: file ends where {what} was expected")
        fields = self.lines[self.pos][1].split()
        if len(fields) != n:
            raise InputError(f"{self.where()}: expected {what} ({n} values), got {len(fields)}: {self.lines[self.pos][1]!r}")
        self.pos += 1
        return fields

    def next_int(self, what: str, low: int = 0) -> int:
        (field,) = self.next_fields(1, what)
        self.pos -= 1
        if not re.fullmatch(r"[0-9]+", field) or int(field) < low:
            raise InputError(f"{self.where()}: expected {what} (an integer >= {low}), got {field!r}")
        self.pos += 1
        return int(field)

    def floats(self, fields, what: str) -> np.ndarray:
        try:
            x = np.array([float(f) for f in fields])
        except ValueError:
            self.pos -= 1
            raise InputError(f"{self.where()}: {what} holds a non-number: {' '.join(fields)!r}") from None
        if not np.isfinite(x).all():
            self.pos -= 1
            raise InputError(f"{self.where()}: {what} holds a non-finite value: {' '.join(fields)!r}")
        return x


def read_ntu_skeleton(path) -> list[dict]:
    """Parse one NTU RGB+D ``.skeleton`` file.

    Format: the frame count; per frame the body count; per body a line of 10 values (body ID,
    clipped edges, hand confidences and states, restricted flag, lean x/y, tracking state), the
    joint count (25) and 25 lines of 12 values (x, y, z in metres, depth and colour pixel
    coordinates, orientation w/x/y/z, tracking state).

    Returns
    -------
    list of dict
        One ``{body ID: float64 array (25, 3)}`` per frame.
    """
    path = Path(path)
    lines = _Lines(path)
    n_frames = lines.next_int("the frame count", low=1)
    frames = []
    for _ in range(n_frames):
        bodies = {}
        for _ in range(lines.next_int("a body count")):
            body_id = lines.next_fields(NTU_BODY_FIELDS, "a body line")[0]
            n_joints = lines.next_int("the joint count")
            if n_joints != NTU_JOINTS:
                lines.pos -= 1
                raise InputError(f"{lines.where()}: expected {NTU_JOINTS} joints, got {n_joints}")
            joints = np.empty((NTU_JOINTS, 3))
            for j in range(NTU_JOINTS):
                joints[j] = lines.floats(lines.next_fields(NTU_JOINT_FIELDS, "a joint line"), "a joint line")[:3]
            bodies[body_id] = joints
        frames.append(bodies)
    if lines.pos < len(lines.lines):
        raise InputError(f"{lines.where()}: unexpected content after the {n_frames} frames the file announces")
    return frames


def main_body_track(frames: list[dict], path) -> tuple[np.ndarray, int]:
    """The main body's joints per frame, ``(frames, joints, 3)``, and how many frames were filled.

    The main body is the body ID present in the most frames (ties: the largest summed variance
    of its joint coordinates over time); frames without it repeat the nearest earlier pose, or
    the first pose for frames before it appears.
    """
    seen: dict[str, list[np.ndarray]] = {}
    for bodies in frames:
        for bid, joints in bodies.items():
            seen.setdefault(bid, []).append(joints)
    if not seen:
        raise InputError(f"{str(path)!r}: no body in any of its {len(frames)} frames")
    main = max(seen, key=lambda b: (len(seen[b]), float(np.stack(seen[b]).var(axis=0).sum())))
    first = next(bodies[main] for bodies in frames if main in bodies)
    out, last, filled = [], first, 0
    for bodies in frames:
        if main in bodies:
            last = bodies[main]
        else:
            filled += 1
        out.append(last)
    return np.stack(out), filled


def center_joints(track: np.ndarray) -> np.ndarray:
    """``(frames, joints, 3)`` -> ``(frames, 3 * joints)`` float32, joint 1 of frame 0 at the origin."""
    return (track - track[0, 0]).reshape(len(track), -1).astype(np.float32)


def check_val_fraction(fraction: float) -> float:
    """The share of training subjects held out as val: a number in (0, 1) (checked before any file is read)."""
    if not 0 < fraction < 1:
        raise InputError(f"{option_name('val_fraction', '--val-fraction')} must be in (0, 1), got {fraction!r}")
    return fraction


def hold_out_subjects(train: list, subject_of: dict, fraction: float, seed: int) -> tuple[list, list]:
    """Split ``train`` videos into (train, val) by whole subjects: ``round(fraction * subjects)``, at least 1."""
    check_val_fraction(fraction)
    subjects = sorted({subject_of[v] for v in train})
    if len(subjects) < 2:
        raise InputError(f"the training split has {len(subjects)} subject(s); at least 2 are needed to hold one out for val")
    k = min(len(subjects) - 1, max(1, round(fraction * len(subjects))))
    rng = np.random.default_rng(seed)
    held = {subjects[i] for i in rng.choice(len(subjects), size=k, replace=False)}
    return [v for v in train if subject_of[v] not in held], [v for v in train if subject_of[v] in held]


def _ntu_split(fields: dict, protocol: str) -> str:
    setup, camera, subject = fields["S"], fields["C"], fields["P"]
    if protocol == "xsub":
        return "train" if subject in NTU_XSUB_TRAIN else "test"
    if protocol == "xview":
        return "train" if camera in NTU_XVIEW_TRAIN else "test"
    return "train" if setup % 2 == 0 else "test"


def _read_ntu_files(src: Path, skip_empty: bool):
    files = sorted(src.glob("*.skeleton"))
    if not files:
        raise InputError(f"{str(src)!r} holds no .skeleton files")
    feats, fields, filled, skipped = {}, {}, {}, []
    for path in files:
        m = _NTU_NAME.match(path.stem)
        if not m:
            raise InputError(f"{str(path)!r}: file name must be SsssCcccPpppRrrrAaaa.skeleton (e.g. S001C002P003R002A013)")
        frames = read_ntu_skeleton(path)
        if skip_empty and not any(frames):
            skipped.append(path.name)
            continue
        track, filled[path.stem] = main_body_track(frames, path)
        feats[path.stem] = center_joints(track)
        fields[path.stem] = dict(zip("SCPRA", (int(g) for g in m.groups())))
    if not feats:
        raise InputError(f"every .skeleton file of {str(src)!r} is empty")
    return feats, fields, filled, skipped


def import_ntu_skeleton(src, out_dir, *, protocol="xsub", val_fraction=0.1, seed=0, skip_empty=False,
                        split_set=None, overwrite=False) -> Path:
    """Import a folder of NTU RGB+D ``.skeleton`` files as a ``skeleton`` modality.

    Parameters
    ----------
    src : path-like
        Folder of ``SsssCcccPpppRrrrAaaa.skeleton`` files.
    out_dir : path-like
        Destination dataset folder; must not exist unless ``overwrite``.
    protocol : {"xsub", "xview", "xset"}
        Cross-subject (training subjects :data:`NTU_XSUB_TRAIN`), cross-view (cameras 2 and 3
        train, camera 1 test) or cross-setup (even setups train; NTU RGB+D 120).
    val_fraction : float
        Share of the training subjects held out as ``val`` (at least one subject).
    seed : int
        Seed of the held-out subjects.
    skip_empty : bool
        Leave out files without any body (NTU lists such samples as missing skeletons) instead
        of refusing them; ``import.json`` lists them.
    split_set : str, optional
        Bundle name; default the protocol's name.
    overwrite : bool
        Replace ``out_dir`` when it exists.

    Returns
    -------
    pathlib.Path
        ``out_dir``; features ``skeleton`` of shape (frames, 75) per clip, one action per clip.
    """
    if split_set is not None:
        check_split_set_name(split_set)
    check_choice(protocol, "protocol", NTU_PROTOCOLS)
    seed = check_int(seed, option_name("seed", "--seed"), low=0)
    check_val_fraction(val_fraction)
    src = Path(src)
    check_not_source(out_dir, [src])  # before reading: write_dataset checks again, with every source
    check_folder(src, "source folder")
    feats, fields, filled, skipped = _read_ntu_files(src, skip_empty)
    actions = sorted({f["A"] for f in fields.values()})
    classes = [f"A{a:03d}" for a in actions]
    labels = {v: [f"A{fields[v]['A']:03d}"] * len(x) for v, x in feats.items()}
    train = [v for v in feats if _ntu_split(fields[v], protocol) == "train"]
    test = [v for v in feats if _ntu_split(fields[v], protocol) == "test"]
    if not train or not test:
        raise InputError(f"protocol {protocol!r} leaves the {'train' if not train else 'test'} split of {str(src)!r} empty")
    train, val = hold_out_subjects(train, {v: fields[v]["P"] for v in feats}, val_fraction, seed)
    meta = {"generator": "rankfusion.data.skeleton", "format": "ntu", "source": str(src.resolve()),
            "protocol": protocol, "val_fraction": val_fraction, "seed": seed, "skipped_empty": skipped,
            "frames_filled": {v: n for v, n in filled.items() if n}}
    return write_dataset(out_dir, classes, labels, {SKELETON_MODALITY: feats},
                         {"train": train, "val": val, "test": test}, split_set=split_set or protocol,
                         overwrite=overwrite, extra_files={"import.json": json.dumps(meta, indent=2) + "\n"},
                         validate=True, sources=[src, *(src / f"{v}.skeleton" for v in feats)])


def read_utkinect_joints(path) -> tuple[np.ndarray, np.ndarray, int]:
    """Parse one UTKinect-Action3D joint file: per line a frame number, then 20 joints x (x, y, z).

    Returns
    -------
    frame_numbers : int64 array (frames,)
    joints : float64 array (frames, 20, 3)
    duplicates : int
        Lines repeating the previous line's frame number (the first is kept).
    """
    path = Path(path)
    lines = _Lines(path)
    numbers, joints, dup = [], [], 0
    while lines.pos < len(lines.lines):
        fields = lines.next_fields(1 + 3 * UTK_JOINTS, "a frame number and 20 joints x (x, y, z)")
        if not re.fullmatch(r"[0-9]+", fields[0]):
            lines.pos -= 1
            raise InputError(f"{lines.where()}: the frame number must be a non-negative integer, got {fields[0]!r}")
        n = int(fields[0])
        xyz = lines.floats(fields[1:], "a joint line").reshape(UTK_JOINTS, 3)
        if numbers and n <= numbers[-1]:
            if n == numbers[-1]:
                dup += 1
                continue
            lines.pos -= 1
            raise InputError(f"{lines.where()}: frame number {n} follows {numbers[-1]}; frame numbers must increase")
        numbers.append(n)
        joints.append(xyz)
    if not numbers:
        raise InputError(f"{str(path)!r} holds no frames")
    return np.asarray(numbers, dtype=np.int64), np.stack(joints), dup


def _range_bound(text: str, where: str):
    if text.lower() == "nan":
        return None
    if not re.fullmatch(r"[0-9]+", text):
        raise InputError(f"{where}: a frame range bound must be an integer or NaN, got {text!r}")
    return int(text)


def read_utkinect_labels(path) -> dict:
    """Parse UTKinect's action-label file: a sequence name (``s01_e01``), then ``action: start end`` lines.

    Returns
    -------
    dict
        ``{sequence: [(action, start, end), ...]}`` in file order; ``start``/``end`` are frame
        numbers (inclusive), both None for an action written ``NaN NaN`` (not performed).
    """
    path = Path(path)
    out: dict[str, list] = {}
    current = None
    for lineno, raw in enumerate(read_text(path, "action label file").splitlines(), 1):
        line = raw.strip()
        where = f"{str(path)!r} line {lineno}"
        if not line:
            continue
        if ":" not in line:
            if not re.fullmatch(r"s[0-9]+_e[0-9]+", line):
                raise InputError(f"{where}: expected a sequence name like 's01_e01' or 'action: start end', got {raw!r}")
            if line in out:
                raise InputError(f"{where}: sequence {line!r} appears twice")
            current = out[line] = []
            continue
        action, _, rng = (p.strip() for p in line.partition(":"))
        parts = rng.split()
        if current is None or not action or len(parts) != 2:
            raise InputError(f"{where}: expected 'action: start end' after a sequence name, got {raw!r}")
        if action == BACKGROUND:
            raise InputError(f"{where}: action name {action!r} is reserved for the frames outside every action range; "
                             "rename the action")
        start, end = (_range_bound(p, where) for p in parts)
        if (start is None) != (end is None) or (start is not None and start > end):
            raise InputError(f"{where}: bad frame range {rng!r} for action {action!r}")
        current.append((action, start, end))
    if not out:
        raise InputError(f"label file {str(path)!r} names no sequence")
    return out


def _utk_frame_labels(seq, numbers, ranges, label_path) -> list[str]:
    lab = np.full(len(numbers), BACKGROUND, dtype=object)
    for action, start, end in ranges:
        if start is None:
            continue
        inside = (numbers >= start) & (numbers <= end)
        clash = inside & (lab != BACKGROUND)
        if clash.any():
            raise InputError(f"{str(label_path)!r}: sequence {seq!r}: the range of {action!r} overlaps "
                             f"{lab[clash][0]!r} at frame {numbers[clash][0]}")
        lab[inside] = action
    return list(lab)


def import_utkinect_joints(src, labels_file, out_dir, *, val_fraction=0.2, seed=0, split_set="xsub",
                           overwrite=False) -> Path:
    """Import UTKinect-Action3D joint files and their action ranges as a ``skeleton`` modality.

    Parameters
    ----------
    src : path-like
        Folder of ``joints_sXX_eYY.txt`` files.
    labels_file : path-like
        The dataset's ``actionLabel.txt``.
    out_dir : path-like
        Destination dataset folder; must not exist unless ``overwrite``.
    val_fraction : float
        Share of the training subjects held out as ``val`` (at least one).
    seed : int
        Seed of the held-out subjects.
    split_set : str
        Bundle name.
    overwrite : bool
        Replace ``out_dir`` when it exists.

    Returns
    -------
    pathlib.Path
        ``out_dir``; features ``skeleton`` (frames, 60) per sequence, the frames being the joint
        file's lines (``import.json`` keeps their frame numbers).
    """
    check_split_set_name(split_set)
    seed = check_int(seed, option_name("seed", "--seed"), low=0)
    check_val_fraction(val_fraction)
    src = Path(src)
    check_not_source(out_dir, [src, labels_file])  # before reading; write_dataset checks again
    check_folder(src, "source folder")
    ranges = read_utkinect_labels(labels_file)
    files = sorted(src.glob("joints_*.txt"))
    if not files:
        raise InputError(f"{str(src)!r} holds no joints_sXX_eYY.txt files")
    feats, labels, subject, meta_frames, dups = {}, {}, {}, {}, {}
    for path in files:
        m = _UTK_NAME.match(path.stem)
        if not m:
            raise InputError(f"{str(path)!r}: file name must be joints_sXX_eYY.txt")
        seq = m.group(1)
        if seq not in ranges:
            raise InputError(f"{str(path)!r}: sequence {seq!r} has no block in {str(labels_file)!r}")
        numbers, joints, dups[seq] = read_utkinect_joints(path)
        feats[seq] = center_joints(joints)
        labels[seq] = _utk_frame_labels(seq, numbers, ranges[seq], labels_file)
        subject[seq] = int(m.group(2))
        meta_frames[seq] = numbers.tolist()
    actions = list(dict.fromkeys(a for seq in feats for a, _, _ in ranges[seq]))
    classes = [BACKGROUND, *actions]
    train = [v for v in feats if subject[v] % 2 == 1]
    test = [v for v in feats if subject[v] % 2 == 0]
    if not train or not test:
        raise InputError(f"subjects of {str(src)!r} leave the {'train' if not train else 'test'} split empty "
                         "(odd subjects train, even subjects test)")
    train, val = hold_out_subjects(train, subject, val_fraction, seed)
    meta = {"generator": "rankfusion.data.skeleton", "format": "utkinect", "source": str(src.resolve()),
            "labels": str(Path(labels_file).resolve()), "val_fraction": val_fraction, "seed": seed,
            "duplicate_frame_lines": {k: v for k, v in dups.items() if v}, "frame_numbers": meta_frames}
    return write_dataset(out_dir, classes, labels, {SKELETON_MODALITY: feats},
                         {"train": train, "val": val, "test": test}, split_set=split_set, overwrite=overwrite,
                         extra_files={"import.json": json.dumps(meta) + "\n"}, validate=True,
                         sources=[src, labels_file, *files])
