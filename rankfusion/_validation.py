"""Shared input checks for public entry points.

Every check raises :class:`InputError` (a ``ValueError``) or :class:`InputTypeError` (a
``TypeError`` and an ``InputError``) whose message names the parameter, the value received and
what is allowed. The CLI turns exactly these (and ``OSError``) into one line on stderr and
exit status 2; any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import contextvars
import importlib

import numbers
from pathlib import Path

import numpy as np


class InputError(ValueError):
    """Bad input a user can cause (a file, a key, a shape, a value)."""


class InputTypeError(InputError, TypeError):
    """Bad input of the wrong type (also a ``TypeError``, for callers that catch that)."""


#: True while a ``rankfusion`` command runs (set by the CLI): messages then name its options.
ON_CLI = contextvars.ContextVar("rankfusion_on_cli", default=False)


def option_name(python: str, cli: str) -> str:
    """``cli`` (the command-line spelling, e.g. ``--force``) under the CLI, else ``python`` (``overwrite=True``)."""
    return cli if ON_CLI.get() else python


def check_folder(path, what: str):
    """``path`` as a :class:`pathlib.Path` when it is a folder; else :class:`InputError` naming it as
    ``what`` ("... does not exist" or "... is a file, not a folder")."""
    path = Path(path)
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise InputError(f"{what} {str(path)!r} {state}")
    return path


def check_distinct_seeds(seeds, name: str = "seeds") -> None:
    """The one rule for a list of seeds: at least one, none repeated (a repeat would count the same
    run or replicate twice)."""
    if not seeds or len(set(seeds)) != len(seeds):
        raise InputError(f"{name} must be a non-empty list without repeats, got {list(seeds)!r}")


def is_torch(x) -> bool:
    """True when ``x`` is a torch tensor (without importing torch)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "device")


def is_dask(x) -> bool:
    """True when ``x`` is a dask array (without importing dask)."""
    return type(x).__module__.startswith("dask") and hasattr(x, "chunks")


def describe(x) -> str:
    """Short description of an array-like for error messages."""
    shape = getattr(x, "shape", None)
    dtype = getattr(x, "dtype", None)
    if shape is not None:
        return f"array of shape {tuple(shape)} and dtype {dtype}"
    return f"{type(x).__name__} {x!r}"[:120]


def check_structure(x, name: str, *, min_ndim: int = 2, allow_empty: bool = False):
    """:func:`check_matrix` without the finiteness scan (type, dimensions, emptiness only).

    For callers that establish finiteness from a reduction they compute anyway (e.g. the
    float64 diagonal of a Gram matrix is finite iff every entry is) and call
    :func:`check_matrix` for the message when it is not.
    """
    if is_torch(x):
        if x.is_complex() or not (x.is_floating_point() or x.dtype.is_signed or str(x.dtype) == "torch.uint8"):
            raise InputTypeError(f"{name} must be a real numeric tensor, got {describe(x)}")
        ndim, size = x.dim(), x.numel()
    elif is_dask(x):
        # Lazy: dtype and shape are known without reading (never np.asarray a chunked store).
        if x.dtype.kind not in "fiub":
            raise TypeError(f"{name} must be a real numeric array, got {describe(x)}")
        ndim, size = x.ndim, x.size
    else:
        if not isinstance(x, np.ndarray):
            x = np.asarray(x)
        if x.dtype.kind not in "fiub":
            raise InputTypeError(f"{name} must be a real numeric array, got {describe(x)}")
        ndim, size = x.ndim, x.size
    if ndim < min_ndim:
        raise InputError(f"{name} must have at least {min_ndim} dimensions, got {describe(x)}")
    if size == 0 and not allow_empty:
        raise InputError(f"{name} must not be empty, got {describe(x)}")
    return x


def check_matrix(x, name: str, *, min_ndim: int = 2, allow_empty: bool = False):
    """Check an array/tensor is numeric, at least ``min_ndim``-D, non-empty and finite."""
    x = check_structure(x, name, min_ndim=min_ndim, allow_empty=allow_empty)
    if is_torch(x):
        finite = bool(x.isfinite().all()) if x.is_floating_point() and x.numel() else True
    else:
        finite = bool(np.isfinite(x).all()) if x.dtype.kind == "f" and x.size else True
    if not finite:
        raise InputError(f"{name} contains NaN or Inf values ({describe(x)}{first_non_finite(x)})")
    return x


def first_non_finite(x) -> str:
    """``"; the first, nan, at row 12, column 3"`` (or ``at index (i, j, k)``) for an in-memory
    array, tensor or chunked (dask) array holding a NaN/Inf; ``""`` when there is none. Only on the
    error path: one more scan (of a dask array: one pass over its chunks, then the row found)."""
    if is_dask(x):
        if x.ndim != 2 or x.dtype.kind != "f":
            return ""
        import dask.array as da

        bad_rows = ~da.isfinite(x).all(axis=1)
        r = int(da.argmax(bad_rows).compute())
        row = np.asarray(x[r].compute())
        if np.isfinite(row).all():
            return ""
        c = int(np.argmax(~np.isfinite(row)))
        return f"; the first, {float(row[c])}, at row {r}, column {c}"
    if is_torch(x):  # torch's own ops: NumPy has no bfloat16
        if not x.is_floating_point() or x.dim() == 0:
            return ""
        bad = (~x.detach().isfinite()).nonzero()
        if not bad.shape[0]:
            return ""
        at = tuple(int(i) for i in bad[0])
        value = float(x[at])
    else:
        x = np.asarray(x)
        if x.dtype.kind != "f" or x.ndim == 0:
            return ""
        bad = np.argwhere(~np.isfinite(x))
        if not bad.size:
            return ""
        at = tuple(int(i) for i in bad[0])
        value = float(x[at])
    where = f"row {at[0]}, column {at[1]}" if len(at) == 2 else f"index {at}"
    return f"; the first, {value}, at {where}"


def check_int(value, name: str, *, low=None, high=None, allow_none: bool = False):
    """Check an integer in ``[low, high]`` (either bound may be None)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InputTypeError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        if high is None:
            raise InputError(f"{name} must be at least {low}, got {value}")
        if low is None:
            raise InputError(f"{name} must be at most {high}, got {value}")
        raise InputError(f"{name} must be in [{low}, {high}], got {value}")
    return value


def check_float(value, name: str, *, low=None, high=None, low_open=False, allow_none=False):
    """Check a finite real number in ``[low, high]`` (``(low, high]`` with ``low_open``)."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputTypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not np.isfinite(value):
        raise InputError(f"{name} must be finite, got {value}")
    if low is not None and (value < low or (low_open and value == low)):
        raise InputError(f"{name} must be {'>' if low_open else '>='} {low}, got {value}")
    if high is not None and value > high:
        raise InputError(f"{name} must be <= {high}, got {value}")
    return value


def check_choice(value, name: str, choices):
    """Check ``value`` is one of ``choices``."""
    if value not in choices:
        raise InputError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def require_extra(module: str, extra: str):
    """Import an optional engine, or raise ImportError in one line naming the extra that brings it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(
            f"{module.split('.')[0]} is not installed; it comes with the [{extra}] extra: "
            f"pip install 'rankfusion[{extra}]'"
        ) from None
