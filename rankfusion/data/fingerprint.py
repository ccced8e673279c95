"""A dataset's fingerprint: a short hash of its files that changes when the data do.

Run caches key their entries by it, and a resumed training run compares it with the one it
started on, so that a run never continues on, or is reused for, data other than its own.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from .._validation import InputError

#: Bytes read from each end of a file (all of a file up to twice this size).
END_BYTES = 65536


def dataset_fingerprint(root, *, split_set: str | None = None, modalities=None) -> str:
    """A 12-hex hash of a dataset's files: names, sizes and their first and last 64 KiB.

    An unchanged dataset (even re-created with new timestamps) keeps its fingerprint; a
    regenerated or edited one changes it, unless the edit keeps every file's size and touches only
    bytes more than 64 KiB from both of its ends. Reading only the ends of large feature files
    keeps this fast on real datasets. Hidden files and folders (a name starting with ``.``) and the
    synthetic generator's ``factors/`` (never read by a model) are left out.

    With ``split_set`` and ``modalities``: only the files a run of them reads (``mapping.txt``,
    the ground truth, that split set's bundles, those modalities' features), so that a split set
    or a modality added to the dataset later leaves a run's fingerprint as it was.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {str(root)!r} does not exist")
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = path.relative_to(root).as_posix()
        if any(part.startswith(".") for part in rel.split("/")) or rel.startswith("factors/"):
            continue
        if split_set is not None and not _read_by_run(rel, split_set, modalities):
            continue
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with open(path, "rb") as fh:
            h.update(fh.read(END_BYTES))
            if size > 2 * END_BYTES:
                fh.seek(-END_BYTES, os.SEEK_END)
                h.update(fh.read(END_BYTES))
    return h.hexdigest()[:12]


def _read_by_run(rel: str, split_set: str, modalities) -> bool:
    """Whether a run of ``split_set`` and ``modalities`` reads the dataset file ``rel`` (a plain
    layout's ``features/<video>.npy`` is its one modality)."""
    parts = rel.split("/")
    if parts[0] == "features":
        return len(parts) == 2 or parts[1] in set(modalities or ())
    if parts[0] == "splits":
        return rel.endswith(f".{split_set}.bundle")
    return rel == "mapping.txt" or parts[0] == "groundTruth"
