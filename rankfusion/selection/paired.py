"""Paired per-modality features with labels: reading them from .npz, CSV/TSV or Parquet, and validating them."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .._validation import InputError, is_torch
from ..data.importer import INTEGER_TEXT, read_table
from ..files import load_arrays
from .arrays import _as_numpy64


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
        raise InputError(f"labels{where} have a single class ({names[0].item()!r}): accuracy gains need at least two")
    if counts.max() < 2:
        raise InputError(f"labels{where} give every row its own class ({len(names)} classes over {n_rows} rows; "
                         "continuous values?): a probe cannot be tested on a class it was not trained on")
    return y.astype(np.int64), names


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
        Unvalidated beyond what reading needs (a table's feature cells must be finite numbers, each bad
        one named by its column and row); :func:`check_paired` validates.
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
    if not path.is_file():  # before calling it a table that needs --modality
        raise InputError(f"--paired {str(path)!r} " + ("is a folder, expected an .npz, CSV/TSV or Parquet file"
                                                        if path.is_dir() else "does not exist"))
    if not modalities:
        raise InputError(f"{str(path)!r} is a table: name its modalities with --modality NAME=PATTERN (repeat)")
    df = read_table(path, text_columns=(labels,))  # labels as written: "01" and "1" are two classes
    if labels not in df.columns:
        raise InputError(f"labels column {labels!r} not found in {str(path)!r}; columns: "
                         f"{[str(c) for c in df.columns][:20]}")
    out = {}
    for name, cols in _table_columns(df, path, modalities, labels).items():
        out[name] = _numeric_block(df, cols, name, path)
    return out, _table_labels(df[labels].to_numpy())


def _table_labels(text: np.ndarray) -> np.ndarray:
    """A table's labels, read as text: as integers when each is one written in ASCII digits and no
    two texts are the same number (so 2 comes before 10), else the texts (``01`` and ``1`` are two
    classes)."""
    texts = set(text.tolist())
    if not all(isinstance(t, str) and INTEGER_TEXT.fullmatch(t) for t in texts):
        return text
    values = {int(t) for t in texts}
    if len(values) < len(texts) or max(map(abs, values), default=0) >= 2 ** 63:
        return text
    return np.array([int(t) for t in text], dtype=np.int64)


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
                         f"{df[cols[j]].iloc[i]!r} at data row {i + 1} (rows counted from 1 after the header)")
    out = block.to_numpy(dtype=np.float64)
    missing = ~np.isfinite(out)
    if missing.any():  # named here by the table's column and row, not by check_paired's array indices
        i, j = np.argwhere(missing)[0]
        what = "an empty cell" if np.isnan(out[i, j]) else f"a non-finite cell ({out[i, j]})"
        raise InputError(f"modality {name!r}: column {str(cols[j])!r} of {str(path)!r} has {what} at data row "
                         f"{i + 1} (rows counted from 1 after the header)")
    return out
