"""``rankfusion spectrum``: spectrum, numerical rank and effective rank of saved features."""

from __future__ import annotations

import json
import os
from pathlib import Path

import click
import numpy as np

from .. import spectral
from .._validation import InputError
from .._backend import CHUNK_BYTES, chunk_rows_for, get_ops
from ..files import META_KEY, NUMPY_READ_ERRORS, ObjectArrayError, array_file_kind, load_arrays
from . import main

#: A memory-mapped .npy array whose float64 copy would exceed this many bytes is streamed
#: (Gram-accurate) instead of read whole, when --chunk-rows is not given. The chunks themselves
#: are the backend's (:data:`rankfusion._backend.CHUNK_BYTES`).
MEMMAP_IN_MEMORY_BYTES = 256 * 2**20


def _list_keys(path: Path) -> list[str]:
    if array_file_kind(path) == "npy":
        return [path.stem]  # the one array of a .npy file is named by the file's stem
    try:
        with np.load(path, allow_pickle=False) as z:
            return [k for k in z.files if k != META_KEY]
    except NUMPY_READ_ERRORS as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc}") from None


def _as_matrix(arr, key: str, path: Path):
    """(..., D) -> (prod(...), D): token features (B, T, D) become the (B*T, D) matrix of Sec. 4.2."""
    if arr.ndim < 2:
        raise InputError(f"array {key!r} in {str(path)!r} has shape {arr.shape}; need at least 2 dimensions")
    if arr.size == 0:
        raise InputError(f"array {key!r} in {str(path)!r} is empty (shape {arr.shape})")
    if arr.ndim == 2:
        return arr, False
    return arr.reshape(-1, arr.shape[-1]), True


def _prepare(mat, label, path, *, convention: str, standardize: bool, center: bool):
    """In-memory (N, D) matrix -> (matrix for the spectrum, centre it?, constant columns or None).

    ``--standardize`` z-scores the columns first (constant columns become zero and are
    reported); the convention then picks the matrix and the centring (``--center`` is the
    ``paper`` convention's option).
    """
    constant = None
    try:
        if standardize:
            mat, constant = spectral.standardize_columns(np.asarray(mat))
        if convention == "paper":
            return mat, center, constant
        z, centre = spectral.convention_matrix(np.asarray(mat), convention)
    except ValueError as exc:
        raise InputError(f"array {label!r} in {str(path)!r}: {exc}") from None
    return z, centre, constant


def _convention_fields(sigma, convention, shape, standardize, constant) -> dict:
    erank = float(spectral.rank_of_spectrum(sigma, convention, shape=shape)) if sigma.size else 0.0
    fields = {"convention": convention, "effective_rank": erank, "standardize": bool(standardize)}
    if standardize:
        fields["constant_columns"] = [int(c) for c in constant]
    return fields


def _streamed(mat, key, path, center, chunk_rows):
    acc = spectral.GramAccumulator(center=center)
    from tqdm import tqdm

    starts = range(0, mat.shape[0], chunk_rows)
    for start in tqdm(starts, desc=f"{key}", unit="chunk", disable=None, leave=False):
        chunk = mat[start : start + chunk_rows]
        try:
            acc.update(chunk)
        except ValueError as exc:
            bad = np.argwhere(~np.isfinite(chunk)) if chunk.dtype.kind == "f" else ()
            if len(bad):
                i, j = (int(v) for v in bad[0])
                raise InputError(f"array {key!r} in {str(path)!r} holds a non-finite value ({chunk[i, j]}) at row "
                                 f"{start + i}, column {j}") from None
            raise InputError(f"array {key!r} in {str(path)!r}: rows {start}..{start + chunk_rows}: {exc}") from None
    sigma = acc.singular_values()
    return sigma, acc.n_ambiguous()


def _analyse(path: Path, key: str, label: str, arr, *, center: bool, top: int, chunk_rows,
             convention: str = "paper", standardize: bool = False):
    mat, flattened = _as_matrix(arr, label, path)
    n, d = mat.shape
    limit = chunk_rows if chunk_rows is not None else max(1, MEMMAP_IN_MEMORY_BYTES // (8 * d))
    streamed = isinstance(arr, np.memmap) and n > limit
    constant = None
    centred = center if convention == "paper" else spectral.CONVENTIONS[convention].center
    if streamed and (standardize or spectral.CONVENTIONS[convention].unit_rows):
        what = "--standardize" if standardize else f"--convention {convention}"
        raise InputError(f"{what} needs array {label!r} of {str(path)!r} in memory ({n} rows is above the "
                         f"streaming threshold of {limit}; pass --chunk-rows {n} to read it whole)")
    if streamed and convention != "paper":
        center = spectral.CONVENTIONS[convention].center
    data_eps = get_ops(mat).eps(mat)  # the data's own precision, also for a float64 transform of it
    if not streamed:
        mat, center, constant = _prepare(mat, label, path, convention=convention, standardize=standardize,
                                         center=center)
    if streamed:
        # Bigger than the in-memory budget: never load it whole; Gram-accurate streaming.
        sigma, ambiguous = _streamed(mat, label, path, center, chunk_rows or chunk_rows_for(d))
        method = "streamed"
    else:
        try:
            sigma = spectral.singular_values(np.asarray(mat), center=center, data_eps=data_eps)
        except ValueError as exc:
            raise InputError(f"array {label!r} in {str(path)!r}: {exc}") from None
        ambiguous = 0
        method = "exact"
    return {
        "key": label,
        "shape": list(arr.shape),
        "matrix_shape": [int(n), int(d)],
        "flattened": flattened,
        "center": centred,
        "method": method,
        "numerical_rank": int(sigma.size),
        **_convention_fields(sigma, convention, (n, d), standardize, constant),
        "n_ambiguous": int(ambiguous),
        "top_singular_values": [float(s) for s in sigma[:top]],
        "singular_values": sigma,
    }


def _format_table(path: Path, results: list[dict], top: int) -> str:
    first = results[0] if results else {}
    extra = "".join([
        f", convention: {first['convention']}" if first.get("convention", "paper") != "paper" else "",
        ", standardized columns" if first.get("standardize") else "",
    ])
    lines = [f"{path}  (centred: {'yes' if first.get('center') else 'no'}{extra})"]
    kw = max(3, *(len(r["key"]) for r in results))
    header = f"{'key':<{kw}}  {'shape':<18} {'rank':>6} {'erank':>10}  top {top} singular values"
    lines += [header, "-" * len(header)]
    for r in results:
        shape = "x".join(str(s) for s in r["shape"])
        tops = " ".join(f"{s:.4g}" for s in r["top_singular_values"])
        lines.append(f"{r['key']:<{kw}}  {shape:<18} {r['numerical_rank']:>6d} {r['effective_rank']:>10.4f}  {tops}")
    notes = []
    for r in results:
        if r["flattened"]:
            m = r["matrix_shape"]
            notes.append(f"{r['key']}: {len(r['shape'])}-D array flattened over its leading dimensions to {m[0]}x{m[1]}")
        if r.get("constant_columns"):
            notes.append(f"{r['key']}: constant columns set to zero by --standardize: {r['constant_columns']}")
        if r["method"] == "streamed":
            notes.append(
                f"{r['key']}: streamed from the memory map (Gram-accurate: the numerical rank is within "
                f"{r['n_ambiguous']} of the exact one; values within the Gram error of 0 count as 0)"
            )
    if notes:
        lines.append("")
        lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


def _plot(results: list[dict], out: Path) -> None:
    from .. import plots

    fig = plots.plot_array_spectra([(r["key"], r["singular_values"], r["effective_rank"]) for r in results])
    try:
        plots.save_figure_as(fig, out, dpi=150, option="--plot")
    finally:
        plots.close(fig)


#: Stores up to this many bytes are read into memory when no Dask scheduler is given (faster
#: below ~1 GB on the measurements quoted in _store_results); larger ones go through dask.
IN_MEMORY_MAX_BYTES = 2**30

#: Environment variables that name a Dask scheduler when --scheduler is not given (in order).
SCHEDULER_ENV = ("RANKFUSION_SCHEDULER", "DASK_SCHEDULER_ADDRESS")


def _store_results(path: Path, keys, center: bool, top: int, scheduler: str | None,
                   convention: str = "paper", standardize: bool = False, scheduler_source: str = "--scheduler"):
    """Analyse arrays of a zarr/HDF5 store lazily, on the given Dask scheduler or locally
    (``scheduler_source``: the option or environment variable that named the scheduler)."""
    from .. import stores

    client = stores.connect(scheduler, source=scheduler_source) if scheduler else None
    try:
        results = []
        for key in list(keys) or [None]:
            label, x = stores.open_store(path, key)
            # Without a cluster, small stores are read into memory: measured (benchmarks/
            # bench_scale.py, docs/benchmarks.md "Scale") dask's threaded scheduler took 2.8x the
            # in-memory time on 50 MB and 1.08x on 0.6 GB, and 0.87x on 4.1 GB, where it also
            # needs ~0.5 GB instead of 4 GB. Both routes are exact.
            in_memory = client is None and x.nbytes <= IN_MEMORY_MAX_BYTES
            if standardize and not in_memory:
                raise InputError(f"--standardize needs array {label!r} of {str(path)!r} in memory; it is read "
                                 "through dask here (a scheduler is set, or it is above 1 GiB)")
            x_in, constant = (x.compute() if in_memory else x), None
            data_eps = get_ops(x_in).eps(x_in)  # the stored precision, also for a float64 transform of it
            if in_memory:
                x_in, centre, constant = _prepare(x_in, label, path, convention=convention,
                                                  standardize=standardize, center=center)
            else:
                centre = center if convention == "paper" else spectral.CONVENTIONS[convention].center
            try:
                if not in_memory and spectral.CONVENTIONS[convention].unit_rows:
                    # diff-erank's centred unit rows, formed lazily chunk by chunk
                    x_in, centre = spectral.convention_matrix(x_in, convention)
                info = spectral.spectrum_info(x_in, center=centre, data_eps=data_eps)
            except stores.StoreReadError:
                raise  # names the store, the array and the rows already
            except ValueError as exc:
                raise InputError(f"array {label!r} in {str(path)!r}: {exc}") from None
            sigma = info.sigma[: int(info.rank)]
            results.append({
                "key": label,
                "shape": list(x.shape),
                "matrix_shape": list(x.shape),
                "flattened": False,
                "center": center if convention == "paper" else spectral.CONVENTIONS[convention].center,
                "method": f"{'in memory' if in_memory else 'dask'} ({info.route})",
                "numerical_rank": int(info.rank),
                **_convention_fields(sigma, convention, tuple(x.shape), standardize, constant),
                "n_ambiguous": 0,
                "top_singular_values": [float(s) for s in sigma[:top]],
                "singular_values": sigma,
            })
        return results
    finally:
        if client is not None:
            client.close()


def _check_options(center: bool, convention: str, keys) -> None:
    """Refuse option combinations ``spectrum`` would otherwise misread (before any file is read)."""
    if center and convention != "paper":
        raise InputError(f"--center applies to --convention paper; {convention!r} fixes its own centring")
    repeated = sorted({k for k in keys if keys.count(k) > 1})
    if repeated:
        raise InputError(f"--key {repeated[0]!r} is given more than once; name each array once")


def _file_results(file, keys, skipped: list, **options) -> list:
    """The analyses of a .npz/.npy file's arrays: those named by ``keys``, else every numeric matrix
    (arrays that are text, not matrices or empty are noted in ``skipped``)."""
    explicit = bool(keys)
    is_npy = array_file_kind(file) == "npy"
    results = []
    for key in (list(keys) if explicit else _list_keys(file)):
        if is_npy and key != file.stem:
            raise InputError(f"key {key!r} not found in {str(file)!r}; a .npy file holds one array, named by "
                             f"the file's stem: {file.stem!r}")
        # every numeric array by default: a text array (e.g. class labels) is skipped, not an error
        try:
            arr = load_arrays(file, [key], text_keys=() if explicit else (key,))[key]
        except ObjectArrayError:
            if explicit:
                raise
            skipped.append(f"{key!r}: Python objects (dtype object; save it with .astype(str))")
            continue
        if not explicit and arr.dtype.kind in "US":
            skipped.append(f"{key!r}: not numeric (dtype {arr.dtype})")
            continue
        if not explicit and (arr.ndim < 2 or arr.size == 0):
            skipped.append(f"{key!r}: shape {arr.shape} is " + ("empty" if arr.ndim >= 2 else "not a matrix"))
            continue
        results.append(_analyse(file, key, key, arr, **options))
    return results


@main.command()
@click.argument("file", type=click.Path(path_type=Path))
@click.option("--key", "keys", multiple=True, help="Array to analyse (repeatable); default: every numeric array of an "
              "array file, the one array of a store (a store of several needs --key).")
@click.option("--center", is_flag=True, help="Subtract column means first (the paper does not centre).")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON instead of a table.")
@click.option("--plot", "plot", type=click.Path(path_type=Path), default=None,
              help="Write a log-scale normalised-spectrum plot (format from the suffix, e.g. .png, .pdf).")
@click.option("--top", type=click.IntRange(min=0), default=5, show_default=True,
              help="How many leading singular values to print.")
@click.option("--chunk-rows", type=click.IntRange(min=1), default=None,
              help="Rows per chunk for memory-mapped .npy files; larger arrays are streamed "
                   f"(default: streamed above {MEMMAP_IN_MEMORY_BYTES >> 20} MiB of float64, in "
                   f"{CHUNK_BYTES >> 20} MiB chunks).")
@click.option("--scheduler", default=None, metavar="ADDRESS",
              help="Dask scheduler (tcp://host:8786) for zarr/HDF5 stores; default: $RANKFUSION_SCHEDULER, "
                   "else $DASK_SCHEDULER_ADDRESS; with none, an array of up to "
                   f"{IN_MEMORY_MAX_BYTES >> 30} GiB is read into memory and a larger one goes through dask's local "
                   "threaded scheduler. Needs the [scale] extra.")
@click.option("--convention", type=click.Choice(list(spectral.CONVENTIONS)), default="paper", show_default=True,
              help="Effective-rank definition: the paper's Eq. 1, or another tool's (docs/spectral.md, "
                   "'Conventions'); all but paper/roy-vetterli/rankme centre the columns themselves.")
@click.option("--standardize", is_flag=True,
              help="Z-score every column (population std) before the spectrum; constant columns become zero.")
def spectrum(file, keys, center, as_json, plot, top, chunk_rows, scheduler, convention, standardize):
    """Spectrum, numerical rank and effective rank (Eq. 1) of each array in FILE.

    FILE is a .npz or .npy file, or a chunked store read lazily with Dask (a zarr directory,
    or an .h5/.hdf5 file; the [scale] extra). Arrays of shape (B, T, D) (or more leading
    dimensions) in .npz/.npy files are flattened to (B*T, D), as in Sec. 4.2 of the paper.
    The `meta` entry of feature files is skipped.
    """
    from ..stores import is_store

    _check_options(center, convention, keys)
    if chunk_rows is not None and (is_store(file) or array_file_kind(file) != "npy"):
        # by content, as the file is read (a .npy file under any name is memory-mapped)
        raise InputError(f"--chunk-rows applies to .npy files (read through a memory map), not to {str(file)!r}"
                         + (": a store is read in its own chunks" if is_store(file) else ""))
    results = []
    if is_store(file):
        source = "--scheduler" if scheduler else next((f"${v}" for v in SCHEDULER_ENV if os.environ.get(v)), None)
        scheduler = scheduler or (os.environ[source[1:]] if source else None)
        try:
            results = _store_results(file, keys, center, top, scheduler, convention, standardize, source)
        except ImportError as exc:  # the [scale] extra is missing: one line naming it
            raise InputError(str(exc)) from None
    elif scheduler is not None:
        raise InputError(f"--scheduler applies to zarr/HDF5 stores, not to {str(file)!r}")
    skipped = []  # shown once the command has succeeded: a failing one prints only its Error line
    if not results:
        results = _file_results(file, keys, skipped, center=center, top=top, chunk_rows=chunk_rows,
                                convention=convention, standardize=standardize)
    if not results:
        raise InputError(f"no 2-D (or higher), non-empty numeric array in {str(file)!r}"
                         + (f" ({'; '.join(skipped)})" if skipped else ""))
    if plot is not None:
        _plot(results, plot)
    for note in skipped:
        click.echo(f"skipping {note}", err=True)
    if as_json:
        payload = {
            "file": str(file),
            "convention": convention,
            "standardize": bool(standardize),
            "arrays": [{k: v for k, v in r.items() if k != "singular_values"} for r in results],
        }
        if plot is not None:
            payload["plot"] = str(plot)
        click.echo(json.dumps(payload, indent=2))
    else:
        click.echo(_format_table(file, results, top))
        if plot is not None:
            click.echo(f"wrote {plot}")
