"""Import sensor recordings stored as tables (one row per time step) into the standard layout.

Each input file is one recording (or several, split by a video column or cut into chunks). A
label column gives the action of each row; modalities are sets of channel columns chosen by glob
patterns (``acc='acc_*'``). Optional non-overlapping windows average the channels and take the
majority label. Everything is checked before anything is written, and the dataset is written
atomically (docs/datasets.md).
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import numpy as np

from .._validation import InputError, check_int, option_name
from ..config import min_frames
from ..files import check_not_source
from .layout import check_split_set_name, check_video_name, write_dataset
from .synth import _split_counts

_NAME = re.compile(r"^[A-Za-z0-9_-]+$")

#: A label that is an integer written in ASCII digits (an optional sign): such labels sort by value.
INTEGER_TEXT = re.compile(r"[+-]?[0-9]+")


def parse_modality_spec(spec: str) -> tuple[str, list[str]]:
    """``"acc=acc_*,lin_*"`` -> ``("acc", ["acc_*", "lin_*"])``."""
    name, sep, patterns = spec.partition("=")
    name = name.strip()
    pats = [p.strip().strip("'\"") for p in patterns.split(",") if p.strip().strip("'\"")]
    if not sep or not name or not pats:
        raise InputError(f"--modality must be NAME=PATTERN[,PATTERN...], got {spec!r}")
    if not _NAME.match(name):
        raise InputError(f"--modality name must use letters, digits, '_' or '-', got {name!r}")
    return name, pats


def parse_modality_specs(specs) -> dict[str, list[str]]:
    """Repeated ``--modality NAME=PATTERN[,PATTERN]`` options -> ``{name: [patterns]}`` in order.

    Each spec is read by :func:`parse_modality_spec`; a name given twice is an error.
    """
    mods = {}
    for spec in specs:
        name, pats = parse_modality_spec(spec)
        if name in mods:
            raise InputError(f"--modality {name!r} given twice")
        mods[name] = pats
    return mods


def read_table(path, text_columns=()):
    """Read a CSV (``.csv``, ``.tsv``, optionally ``.gz``) or Parquet file into a DataFrame.

    The columns named in ``text_columns`` (labels, video ids) are read as text, exactly as
    written (``01`` stays ``01``); a Parquet column stored as numbers becomes the numbers' text.
    Missing cells stay missing (NaN).

    Raises
    ------
    InputError
        If the file is missing or unreadable, or Parquet support (pyarrow) is not installed.
    """
    import pandas as pd

    path = Path(path)
    if path.is_dir():
        raise InputError(f"input file {str(path)!r} is a folder, expected a CSV, TSV or Parquet file")
    if not path.is_file():
        raise InputError(f"input file {str(path)!r} does not exist")
    suffixes = [s.lower() for s in path.suffixes]
    kind = suffixes[-2] if suffixes[-1:] == [".gz"] and len(suffixes) > 1 else (suffixes[-1] if suffixes else "")
    if kind not in (".csv", ".tsv", ".parquet", ".pq") or (suffixes[-1] == ".gz" and kind not in (".csv", ".tsv")):
        raise InputError(f"input file {str(path)!r}: unknown table format {''.join(path.suffixes[-2:]) or '(no suffix)'!r}; "
                         "expected .csv or .tsv (optionally .gz), .parquet or .pq")
    try:
        if ".parquet" in suffixes or ".pq" in suffixes:
            try:
                return _text_columns(pd.read_parquet(path), text_columns)
            except ImportError:
                raise InputError(
                    f"reading {str(path)!r} needs pyarrow, which is not installed: "
                    "pip install 'rankfusion[parquet]' (or export the table to CSV)"
                ) from None
        sep = "\t" if ".tsv" in suffixes else ","
        # only an empty cell is missing: "NA", "null" or "nan" in a cell are what the file says
        # (an action may be called "null"; a "nan" feature is reported as such)
        df = pd.read_csv(path, sep=sep, skipinitialspace=True, keep_default_na=False, na_values=[""],
                         dtype={c: str for c in text_columns})
        _check_header(path, sep)
        return df
    except InputError:
        raise
    except Exception as exc:  # pandas raises a zoo of parser errors; all are the file's fault
        raise InputError(f"cannot read {str(path)!r}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None


def _text_columns(df, columns):
    """``df`` with each of ``columns`` it has as text (a Parquet table keeps its stored types)."""
    import pandas as pd

    def text(v):
        if isinstance(v, str) or (pd.api.types.is_scalar(v) and pd.isna(v)):
            return v
        return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)

    for c in columns:
        if c in df.columns:
            df[c] = df[c].map(text).astype(object)
    return df


def _check_header(path, sep: str) -> None:
    """Refuse a CSV/TSV header that names a column twice: pandas would rename the second
    (``x`` -> ``x.1``), a column the file does not have, and patterns would match it silently."""
    import pandas as pd

    names = pd.read_csv(path, sep=sep, skipinitialspace=True, header=None, nrows=1, dtype=str,
                        keep_default_na=False).iloc[0].tolist()
    seen = {}
    for j, name in enumerate(names):
        if not name.strip():
            continue  # an unnamed column (e.g. an exported index): pandas names each one apart
        if name in seen:
            raise InputError(f"{str(path)!r}: the header names column {name!r} twice (columns {seen[name] + 1} "
                             f"and {j + 1})")
        seen[name] = j


def _at_row(path, i: int) -> str:
    """``data row i+1 (line n)``: where data row ``i`` (0-based) of a table is, for an error message;
    rows are counted from 1, the first row after the header.

    The line is that of the row's first character in a CSV/TSV file, counted as pandas reads the
    file (blank lines, and lines of whitespace only, are skipped; a quoted cell may span lines);
    a Parquet file has no lines. The file is read again only here, when a message needs it.
    """
    import csv
    import gzip

    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes]
    if _is_parquet(path):
        return f"data row {i + 1}"
    opener = gzip.open if suffixes[-1:] == [".gz"] else open
    row = -2  # the first non-blank record is the header
    try:
        with opener(path, "rt", newline="", encoding="utf-8", errors="replace") as f:
            reader = csv.reader(f, delimiter="\t" if ".tsv" in suffixes else ",")
            first = 1
            for record in reader:
                if record and not (len(record) == 1 and not record[0].strip()):
                    row += 1
                    if row == i:
                        return f"data row {i + 1} (line {first})"
                first = reader.line_num + 1
    except (OSError, csv.Error, EOFError):
        pass
    return f"data row {i + 1}"


def _match_columns(df, path, modalities, reserved):
    out = {}
    owner = {}
    for name, patterns in modalities.items():
        cols = [c for c in df.columns if any(fnmatch.fnmatchcase(str(c), p) for p in patterns)]
        if not cols:
            raise InputError(
                f"modality {name!r}: pattern {','.join(patterns)!r} matches no column of {str(path)!r}; "
                f"columns: {[str(c) for c in df.columns][:20]}"
            )
        for c in cols:
            if c in reserved:
                raise InputError(f"modality {name!r}: pattern matches the {reserved[c]} column {str(c)!r} of {str(path)!r}")
            if c in owner:
                raise InputError(f"column {str(c)!r} of {str(path)!r} matches modalities {owner[c]!r} and {name!r}")
            owner[c] = name
        out[name] = cols
    return out


def _is_parquet(path) -> bool:
    return any(s.lower() in (".parquet", ".pq") for s in Path(path).suffixes)


def _numeric(df, cols, path):
    import pandas as pd

    block = np.empty((len(df), len(cols)), dtype=np.float64)
    for j, c in enumerate(cols):
        raw = df[c]
        num = pd.to_numeric(raw, errors="coerce") if raw.dtype.kind not in "fiub" else raw.astype(float)
        bad = num.isna() & raw.notna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            cell = raw.iloc[i]
            what = "a NaN cell" if str(cell).strip().lower() in ("nan", "+nan", "-nan") else "a non-numeric cell"
            raise InputError(f"{str(path)!r}: column {str(c)!r} has {what} {cell!r} at {_at_row(path, i)}")
        vals = num.to_numpy(dtype=np.float64)
        # features are stored as float32: a finite float64 beyond its range would become inf
        miss = ~(np.abs(vals) <= np.finfo(np.float32).max)
        if miss.any():
            i = int(np.flatnonzero(miss)[0])
            empty = "a NaN (missing) value" if _is_parquet(path) else "an empty cell"
            what = (empty if np.isnan(vals[i]) else f"a non-finite value ({vals[i]})" if np.isinf(vals[i])
                    else f"a value ({vals[i]:g}) beyond the float32 range (|x| <= 3.4e38)")
            raise InputError(f"{str(path)!r}: column {str(c)!r} has {what} at {_at_row(path, i)}")
        block[:, j] = vals
    return block


def _check_labels(lab, path, label_column):
    # groundTruth/ and mapping.txt hold one label per line: a label spanning lines (a quoted
    # cell with a newline) would be read back as several frames or a malformed mapping
    for i, x in enumerate(lab):
        if len(x.splitlines()) != 1:
            raise InputError(
                f"{str(path)!r}: label column {label_column!r} has a label with a line break {x!r} at {_at_row(path, i)}; "
                "labels must be one line"
            )


def _windows(feats: dict, labels: np.ndarray, window: int):
    n = (len(labels) // window) * window
    if window == 1:
        return feats, labels
    out = {m: x[:n].reshape(-1, window, x.shape[1]).mean(axis=1) for m, x in feats.items()}
    lab = labels[:n].reshape(-1, window)
    maj = []
    for row in lab:
        values, first, counts = np.unique(row, return_index=True, return_counts=True)
        best = counts.max()
        # majority label; on a tie the label that appears first in the window
        maj.append(values[first == min(first[counts == best])][0])
    return out, np.asarray(maj, dtype=object)


def _safe(s) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", str(s)).strip("._") or "video"


def import_csv(files, out_dir, *, modalities, label_column, video_column=None, window=1, chunk=None,
               split_fractions=(0.7, 0.15, 0.15), seed=0, split_set="split1", overwrite=False) -> Path:
    """Import tables of per-time-step sensor readings into the standard layout.

    Parameters
    ----------
    files : sequence of path-like
        CSV / TSV (optionally gzipped) files, or Parquet when pyarrow is installed. One
        recording per file unless ``video_column`` or ``chunk`` says otherwise.
    out_dir : path-like
        Destination dataset folder (written atomically; must not exist unless ``overwrite``).
    modalities : dict
        ``{modality: pattern or [patterns]}``: glob patterns (``fnmatch``, case-sensitive) on
        column names. Every pattern set must match at least one column of every file, and the
        matched columns must be the same in every file.
    label_column : str
        Column holding the action name of each row; an empty cell is an error (a gap).
    video_column : str, optional
        Column whose value splits a file into several recordings (rows keep their order).
    window : int
        Average the channels over non-overlapping windows of this many rows and take the
        majority label (ties: the label first seen in the window); trailing rows are dropped.
    chunk : int, optional
        Cut every recording into videos of this many rows (before windowing); a last shorter
        piece is kept when it holds at least one window.
    split_fractions : tuple of 3 float
        Train / val / test shares of the videos (shuffled with ``seed``; one video at least each).
    seed : int
        Seed of the split assignment.
    split_set : str
        Split-set name of the bundle files.
    overwrite : bool
        Replace ``out_dir`` when it exists.

    Returns
    -------
    pathlib.Path
        ``out_dir``; ``import.json`` there records the sources and options.
    """
    check_split_set_name(split_set)
    if video_column is not None and video_column == label_column:
        raise InputError(f"{option_name('video_column', '--video-column')} and {option_name('label_column', '--label-column')} "
                         f"name the same column {label_column!r}: the videos must come from another column")
    files, mods, window, chunk = _check_options(files, modalities, window, chunk, seed, split_fractions)
    check_not_source(out_dir, files)  # before reading them: write_dataset checks again
    labels, feats, sources, origins = {}, {m: {} for m in mods}, [], {}
    first_cols = None
    for path in files:
        df, cols, lab = _read_recordings_table(path, mods, label_column, video_column)
        if first_cols is None:
            first_cols = cols
        elif cols != first_cols:
            m = next(k for k in cols if cols[k] != first_cols[k])
            raise InputError(
                f"modality {m!r}: {str(path)!r} has columns {[str(c) for c in cols[m]]} but "
                f"{str(files[0])!r} has {[str(c) for c in first_cols[m]]}"
            )
        blocks = {m: _numeric(df, c, path) for m, c in cols.items()}
        for base, rows, source in _recordings(df, path, video_column, several_files=len(files) > 1):
            _add_videos(labels, feats, base, rows, blocks, lab, path, window, chunk, source, origins)
        sources.append({"file": str(path), "rows": int(len(df))})

    videos = list(labels)
    if len(videos) < 3:
        raise InputError(
            f"need at least 3 videos for train/val/test, got {len(videos)}; cut long recordings with "
            "--chunk ROWS or split them with --video-column"
        )
    classes = class_order({x for lab in labels.values() for x in lab})
    fr = tuple(split_fractions)
    splits = _assign_splits(videos, fr, seed)
    meta = {"generator": "rankfusion.data.importer", "sources": sources, "label_column": label_column,
            "video_column": video_column, "window": window, "chunk": chunk, "seed": seed,
            "modalities": {m: [str(c) for c in first_cols[m]] for m in mods},
            "split_fractions": list(fr)}
    # validate=True: every check of `data check` runs before the new folder replaces anything
    return write_dataset(out_dir, classes, labels, feats, splits, split_set=split_set, overwrite=overwrite,
                         extra_files={"import.json": json.dumps(meta, indent=2) + "\n"}, validate=True,
                         sources=files)


def _check_options(files, modalities, window, chunk, seed, split_fractions):
    """Validated ``(files, {modality: [patterns]}, window, chunk)`` of :func:`import_csv`."""
    files = [Path(f) for f in ([files] if isinstance(files, (str, Path)) else files)]
    if not files:
        raise InputError("files must name at least one input table")
    if not modalities:
        raise InputError("modalities must map at least one modality name to column patterns")
    mods = {}
    for name, pats in modalities.items():
        if not _NAME.match(str(name)):
            raise InputError(f"modality name must use letters, digits, '_' or '-', got {name!r}")
        mods[str(name)] = [pats] if isinstance(pats, str) else list(pats)
    window = check_int(window, option_name("window", "--window"), low=1)
    chunk = check_int(chunk, option_name("chunk", "--chunk"), low=1, allow_none=True)
    check_int(seed, option_name("seed", "--seed"), low=0)
    if chunk is not None and chunk < window:
        raise InputError(f"{option_name('chunk', '--chunk')} ({chunk}) must be at least "
                         f"{option_name('window', '--window')} ({window})")
    _check_fractions(split_fractions)
    return files, mods, window, chunk


def _check_fractions(fr):
    fr = tuple(fr)
    if len(fr) != 3 or any(not f >= 0 for f in fr) or not np.isclose(sum(fr), 1.0):
        raise InputError(f"{option_name('split_fractions', '--split')} must be 3 non-negative numbers summing to 1, "
                         f"got {fr!r}")


def _read_recordings_table(path, mods, label_column, video_column):
    """One input table, checked: ``(df, {modality: columns}, labels as an object array)``."""
    df = read_table(path, [c for c in (label_column, video_column) if c is not None])
    reserved = {label_column: "label"}
    if video_column is not None:
        reserved[video_column] = "video"
    for col, role in reserved.items():
        if col not in df.columns:
            raise InputError(f"{role} column {col!r} not found in {str(path)!r}; columns: {[str(c) for c in df.columns][:20]}")
    if len(df) == 0:
        raise InputError(f"{str(path)!r} has no data rows")
    cols = _match_columns(df, path, mods, reserved)
    lab = df[label_column]
    gap = lab.isna() | (lab.astype(str).str.strip() == "")
    if gap.any():
        i = int(np.flatnonzero(gap.to_numpy())[0])
        raise InputError(
            f"{str(path)!r}: label column {label_column!r} has a gap (empty cell) at {_at_row(path, i)}"
        )
    lab = lab.astype(str).str.strip().to_numpy(dtype=object)
    _check_labels(lab, path, label_column)
    return df, cols, lab


def _recordings(df, path, video_column, *, several_files: bool):
    """``[(name, row indices, source)]``: the whole file, or one recording per value of
    ``video_column``; ``source`` says where the name comes from, for messages."""
    if video_column is None:
        return [(_safe(path.stem), np.arange(len(df)), f"the name of {str(path)!r}")]
    keys = df[video_column]
    if keys.isna().any():
        i = int(np.flatnonzero(keys.isna().to_numpy())[0])
        raise InputError(f"{str(path)!r}: video column {video_column!r} is empty at {_at_row(path, i)}")
    # names must stay unique across files
    prefix = f"{_safe(path.stem)}_" if several_files else ""
    out = []
    for k in dict.fromkeys(keys.tolist()):
        rows = np.flatnonzero((keys == k).to_numpy())
        apart = np.flatnonzero(np.diff(rows) != 1)
        if apart.size:  # a recording's rows are one stretch of time: rows in between belong to another
            j = apart[0]
            raise InputError(f"{str(path)!r}: video column {video_column!r}: the rows of video {k!r} are not "
                             f"together ({_at_row(path, int(rows[j]))}, then {_at_row(path, int(rows[j + 1]))}); "
                             "keep each video's rows in one block")
        out.append((prefix + _safe(k), rows, f"{k!r} in video column {video_column!r} of {str(path)!r}"))
    return out


def _add_videos(labels, feats, base, rows, blocks, lab, path, window, chunk, source, origins):
    """Cut one recording into chunks, window each, and add them to ``labels`` / ``feats`` in place."""
    pieces = [rows] if chunk is None else [rows[i:i + chunk] for i in range(0, len(rows), chunk)]
    if len(pieces) > 1 and len(pieces[-1]) // window < min_frames():
        # a tail too short to train on (train would refuse the dataset) joins the chunk before it
        pieces[-2:] = [np.concatenate(pieces[-2:])]
    for k, idx in enumerate(pieces):
        if len(idx) < window:
            if chunk is not None and k > 0:
                continue  # a short tail chunk
            raise InputError(f"recording {base!r} of {str(path)!r} has {len(idx)} rows, fewer than window={window}")
        video = base if chunk is None else f"{base}_c{k:03d}"
        check_video_name(video, f" (from {source})")
        if video in labels:
            # names keep letters, digits, '_', '.', '-': 'a b' and 'a_b' meet
            fix = "the values of that column" if " in video column " in source else "the file names"
            raise InputError(f"video name {video!r} comes from two recordings, {origins[video]} and {source}; "
                             f"make {fix} differ in letters, digits, '_', '.' or '-' (other characters become '_')")
        origins[video] = source
        f, l = _windows({m: b[idx] for m, b in blocks.items()}, lab[idx], window)
        labels[video] = list(l)
        for m in feats:
            feats[m][video] = f[m].astype(np.float32)


def class_order(names) -> list:
    """The classes of ``mapping.txt`` in order: by value when every label is an integer written in
    ASCII digits (2 before 10, as the labels' numbers), else as text; equal values (``01``, ``1``)
    by their text."""
    names = set(names)
    if names and all(INTEGER_TEXT.fullmatch(n) for n in names):
        return sorted(names, key=lambda n: (int(n), n))
    return sorted(names)


def _assign_splits(videos, fr, seed) -> dict:
    """Seeded train/val/test assignment of ``videos`` by the shares ``fr``, each list in input order."""
    _check_fractions(fr)
    order = np.random.default_rng(seed).permutation(len(videos))
    n_train, n_val, _ = _split_counts(len(videos), fr)
    parts = {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}
    return {k: [videos[i] for i in sorted(v)] for k, v in parts.items()}
