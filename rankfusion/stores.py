"""Chunked stores as dask arrays: zarr and HDF5 files, and a Dask scheduler (the ``[scale]`` extra).

:func:`open_store` opens the 2-D array of a zarr store or HDF5 file lazily as a dask array chunked
by rows, and :func:`connect` attaches to a running Dask scheduler. :mod:`rankfusion.spectral` then
computes on the dask array without gathering it (:class:`rankfusion._backend.DaskOps`: every
reduction over N runs on dask; its small results come back as NumPy). The computation runs on
whatever scheduler dask uses at the time of the call: the active ``distributed.Client`` if there is
one (see :func:`connect`), else the local threaded scheduler.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._backend import DASK_EXTRA, chunk_rows_for
from ._validation import InputError, require_extra

#: The extra that carries the optional engines of this module.
EXTRA = DASK_EXTRA
#: Seconds to wait for a Dask scheduler before giving up (a wrong address fails fast).
CONNECT_TIMEOUT_S = 5


# --------------------------------------------------------------------------------------
# Stores and schedulers
# --------------------------------------------------------------------------------------

#: Suffixes read as HDF5 (via h5py); everything else that is a directory is read as zarr.
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")


def is_store(path: Path) -> bool:
    """True when ``path`` names a chunked store (a zarr directory or an HDF5 file)."""
    return path.is_dir() or path.suffix.lower() in HDF5_SUFFIXES + (".zarr",)


def _hdf5_arrays(f) -> dict:
    out = {}
    f.visititems(lambda name, obj: out.setdefault(name, obj) if hasattr(obj, "shape") else None)
    return out


def _zarr_arrays(node) -> dict:
    if hasattr(node, "shape"):
        return {"": node}
    return {name: arr for name, arr in node.arrays()}


def open_store(path: Path, key: str | None = None):
    """Lazily open the 2-D numeric array of a zarr store or HDF5 file as a dask array.

    Parameters
    ----------
    path : Path
        A zarr store (directory; an array or a group) or an HDF5 file.
    key : str, optional
        The array inside a group/file; required only when it holds more than one array.

    Returns
    -------
    (label, array) : (str, dask.array.Array of shape (N, D))
        Chunked by rows as stored (columns in one chunk).

    Raises
    ------
    InputError
        Missing path, unreadable store, no such key, several arrays and no key, or an array
        that is not 2-D numeric.
    """
    da = require_extra("dask.array", EXTRA)
    if not path.exists():
        raise InputError(f"store {str(path)!r} does not exist")
    try:
        if path.suffix.lower() in HDF5_SUFFIXES:
            h5py = require_extra("h5py", EXTRA)
            arrays = _hdf5_arrays(h5py.File(path, "r"))
        else:
            zarr = require_extra("zarr", EXTRA)
            arrays = _zarr_arrays(zarr.open(str(path), mode="r"))
    except ImportError:
        raise
    except Exception as exc:  # zarr/h5py raise many types for a file that is not a store
        raise InputError(f"cannot read store {str(path)!r}: {type(exc).__name__}: {exc}") from None
    if key is None:
        if len(arrays) != 1:
            raise InputError(f"store {str(path)!r} holds {len(arrays)} arrays {sorted(arrays)}; choose one with --key")
        key = next(iter(arrays))
    if key not in arrays:
        raise InputError(f"store {str(path)!r} has no array {key!r}; it has {sorted(arrays)}")
    arr = arrays[key]
    if len(arr.shape) != 2 or np.dtype(arr.dtype).kind not in "fiu":
        raise InputError(
            f"array {key or path.name!r} in {str(path)!r} has shape {tuple(arr.shape)} and dtype {arr.dtype}; "
            "need a 2-D numeric array (rows, channels)"
        )
    if 0 in arr.shape:
        raise InputError(f"array {key or path.name!r} in {str(path)!r} is empty (shape {tuple(arr.shape)})")
    rows = getattr(arr, "chunks", None)
    rows = rows[0] if rows else chunk_rows_for(arr.shape[1])
    x = da.from_array(arr, chunks=(max(int(rows), 1), arr.shape[1]))
    return (key or path.stem), x


def connect(address: str, timeout: float | None = None):
    """Connect to a running Dask scheduler (``tcp://host:8786``); it becomes dask's default.

    Raises
    ------
    InputError
        If the scheduler cannot be reached within ``timeout`` seconds.
    """
    distributed = require_extra("distributed", EXTRA)
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")) from None
