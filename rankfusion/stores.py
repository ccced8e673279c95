"""Chunked stores as dask arrays: zarr and HDF5 files, and a Dask scheduler (the ``[scale]`` extra).

:func:`open_store` opens the 2-D array of a zarr store or HDF5 file lazily as a dask array chunked
by rows, and :func:`connect` attaches to a running Dask scheduler. :mod:`rankfusion.spectral` then
computes on the dask array without gathering it (:class:`rankfusion._backend.DaskOps`: every
reduction over N runs on dask; its small results come back as NumPy). The computation runs on
whatever scheduler dask uses at the time of the call: the active ``distributed.Client`` if there is
one (see :func:`connect`), else the local threaded scheduler.
"""

from __future__ import annotations

import uuid
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


#: The metadata files one of which a zarr store's root holds (format 3, then format 2).
ZARR_METADATA = ("zarr.json", ".zarray", ".zgroup")


def is_store(path: Path) -> bool:
    """True when ``path`` names a chunked store (a zarr directory or an HDF5 file)."""
    return path.is_dir() or path.suffix.lower() in HDF5_SUFFIXES + (".zarr",)


def _hdf5_arrays(f) -> dict:
    """Every dataset of an HDF5 file, by its path inside the file (``group/name``)."""
    out = {}

    def visit(name, obj):
        # h5py stops visiting at the first callback that returns anything but None
        if hasattr(obj, "shape"):
            out[name] = obj

    f.visititems(visit)
    return out


class _Hdf5Dataset:
    """A dataset of an HDF5 file that opens the file for each read and closes it after.

    An open ``h5py.File`` is closed only when its last reference goes (a lazy array, or the
    frame of a traceback, keeps it), and until then the file cannot be rewritten or removed."""

    def __init__(self, path: Path, name: str, ds):
        self.path, self.name = str(path), name
        self.shape, self.dtype, self.chunks = tuple(ds.shape), ds.dtype, ds.chunks

    def __getitem__(self, index):
        import h5py

        with h5py.File(self.path, "r") as f:
            return f[self.name][index]


def _zarr_arrays(node) -> dict:
    """Every array of a zarr store, by its path inside the store (``group/name``), as for HDF5."""
    if hasattr(node, "shape"):
        return {"": node}
    return {name: obj for name, obj in node.members(max_depth=None) if hasattr(obj, "shape")}


class StoreReadError(InputError):
    """A block of a store could not be read (the message names the store, the array, the rows)."""


class _StoreRows:
    """An array of a store, read by rows for dask; a block that cannot be read names the store.

    A damaged chunk surfaces only when dask reads it (zarr's codecs and h5py's filters raise
    their own exception types: RuntimeError, ValueError, OSError, ...), far from the file; here
    the read is the one place that knows the store, the array and the rows.
    """

    def __init__(self, arr, label: str, path: Path):
        self.arr, self.label, self.path = arr, label, str(path)
        self.shape, self.dtype, self.ndim = tuple(arr.shape), np.dtype(arr.dtype), len(arr.shape)

    def __getitem__(self, index):
        try:
            return np.asarray(self.arr[index])
        except MemoryError:
            raise
        except Exception as exc:  # the codec's or the filter's own error for damaged bytes
            rows = index[0] if isinstance(index, tuple) and index else index
            where = f"rows {rows.start}..{rows.stop}" if isinstance(rows, slice) else f"block {index}"
            raise StoreReadError(
                f"cannot read {where} of array {self.label!r} in store {self.path!r} (damaged chunk?): "
                f"{type(exc).__name__}: {_first_line(exc)}"
            ) from None


def _first_line(exc) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else ""


def _refuse_missing_chunks(arr, label: str, path: Path) -> None:
    """Refuse a zarr array some of whose chunks are not stored: zarr reads them as the fill value,
    so the spectrum would silently be that of rows the store never held (h5py datasets: not checked)."""
    try:
        total, stored = int(arr.nchunks), int(arr.nchunks_initialized)
    except AttributeError:  # not a zarr array
        return
    if stored < total:
        fill = np.asarray(arr.fill_value).item()  # 0.0, nan: not np.float32(0.0)
        raise InputError(
            f"array {label!r} in store {str(path)!r}: {total - stored} of {total} chunks are missing and would "
            f"read as the fill value {fill!r} (zarr also leaves out a chunk written entirely of the fill "
            "value when write_empty_chunks=False, zarr 3's default: if so, rewrite the store with write_empty_chunks=True)"
        )


def open_store(path, key: str | None = None):
    """Lazily open the 2-D numeric array of a zarr store or HDF5 file as a dask array.

    Parameters
    ----------
    path : str or Path
        A zarr store (directory; an array or a group) or an HDF5 file.
    key : str, optional
        The array inside a group/file; required only when it holds more than one array.

    Returns
    -------
    (label, array) : (str, dask.array.Array of shape (N, D))
        Chunked by rows as stored (columns in one chunk); an HDF5 dataset's blocks hold whole
        stored chunks, up to 32 MiB of float64, and each read opens the file and closes it
        again (the file is not held open between reads).

    Raises
    ------
    InputError
        Missing path, unreadable store, no such key, several arrays and no key, an array
        that is not 2-D numeric, or a zarr array with chunks missing from the store.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"store {str(path)!r} does not exist")
    if path.is_dir() and not any((path / m).exists() for m in ZARR_METADATA):
        raise InputError(f"folder {str(path)!r} is not a zarr store (it has no {', '.join(ZARR_METADATA)}); give a "
                         "zarr store, an HDF5 file or an array file (.npy, .npz, ...)")
    da = require_extra("dask.array", EXTRA)
    try:
        if path.suffix.lower() in HDF5_SUFFIXES:
            h5py = require_extra("h5py", EXTRA)
            with h5py.File(path, "r") as f:  # closed here: each read opens it again
                arrays = {name: _Hdf5Dataset(path, name, ds) for name, ds in _hdf5_arrays(f).items()}
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
    if key == path.stem and key not in arrays and "" in arrays:
        key = ""  # a store that is one array: it is labelled by the store's name
    if key not in arrays:
        names = sorted(k or path.stem for k in arrays)
        raise InputError(f"store {str(path)!r} has no array {key!r}; it has {names}")
    arr = arrays[key]
    if len(arr.shape) != 2 or np.dtype(arr.dtype).kind not in "fiu":
        raise InputError(
            f"array {key or path.name!r} in {str(path)!r} has shape {tuple(arr.shape)} and dtype {arr.dtype}; "
            "need a 2-D numeric array (rows, channels)"
        )
    if 0 in arr.shape:
        raise InputError(f"array {key or path.name!r} in {str(path)!r} is empty (shape {tuple(arr.shape)})")
    _refuse_missing_chunks(arr, key or path.name, path)
    rows = getattr(arr, "chunks", None)
    rows = rows[0] if rows else chunk_rows_for(arr.shape[1])
    if isinstance(arr, _Hdf5Dataset):  # whole stored chunks, up to 32 MiB of float64: one file opening each
        rows *= max(1, chunk_rows_for(arr.shape[1]) // rows)
    # a name of its own for each opening: dask (and a cluster's memory) keys blocks by it, and an id()
    # is reused once its object is freed, so a store rewritten and reopened could be served old blocks
    x = da.from_array(_StoreRows(arr, key or path.stem, path), chunks=(max(int(rows), 1), arr.shape[1]),
                      name=f"store-{path.name}-{key}-{uuid.uuid4().hex}")
    return (key or path.stem), x


async def _identity(address: str, timeout: float):
    from distributed.core import rpc

    async with rpc(address, timeout=timeout) as scheduler:
        return await scheduler.identity()


def _handshake(address: str, timeout: float) -> None:
    """Ask ``address`` who it is, the whole exchange bounded by ``timeout`` seconds.

    ``distributed.Client``'s own timeout covers opening the connection, not reading the answer:
    a server that accepts and then says nothing (an HTTP server waits for a request line) holds
    it indefinitely, and one that sends other bytes makes the comm decode a garbage frame length
    (a multi-EiB allocation). The exchange runs on its own event loop and thread, so that the
    wall-clock bound holds whatever the peer does.
    """
    import asyncio
    import concurrent.futures

    def ask():
        return asyncio.run(asyncio.wait_for(_identity(address, timeout), timeout))

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        try:
            reply = pool.submit(ask).result()
        except (OSError, TimeoutError, asyncio.TimeoutError) as exc:  # OSError: also CommClosedError
            raise InputError(f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s: "
                             f"{type(exc).__name__}: {_first_line(exc)}".rstrip(": ")) from None
        except Exception as exc:  # whatever the peer's bytes made the decoder raise
            raise InputError(f"{address!r} did not answer as a Dask scheduler: {type(exc).__name__}: "
                             f"{_first_line(exc)}".rstrip(": ")) from None
    if not isinstance(reply, dict) or reply.get("type") != "Scheduler":
        raise InputError(f"{address!r} did not answer as a Dask scheduler (it answered {str(reply)[:60]!r})")


def connect(address: str, timeout: float | None = None, *, source: str = "--scheduler"):
    """Connect to a running Dask scheduler (``tcp://host:8786``); it becomes dask's default.

    ``source`` names where the address came from (an option or an environment variable); every
    message names it when it is not ``--scheduler`` (a stale variable is a common cause).

    Raises
    ------
    InputError
        If the scheduler cannot be reached within ``timeout`` seconds.
    """
    distributed = require_extra("distributed", EXTRA)
    timeout = CONNECT_TIMEOUT_S if timeout is None else timeout
    try:
        require_extra("distributed.comm", EXTRA).get_address_host_port(address)
    except ValueError as exc:
        raise InputError(f"{source} {address!r} is not a Dask scheduler address: {_first_line(exc)}") from None
    where = "" if source == "--scheduler" else f" (the address comes from {source})"
    try:
        _handshake(address, timeout)
    except InputError as exc:
        raise InputError(f"{exc}{where}") from None
    try:
        return distributed.Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise InputError(f"cannot reach the Dask scheduler at {address!r} within {timeout:g} s: "
                         f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".rstrip(": ")
                         + where) from None
