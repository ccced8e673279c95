"""File helpers shared by the CLI and the library: atomic writes and array loading.

Every file rankfusion writes goes through :func:`atomic_path` so that an interrupted or
failed command never leaves a half-written output behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from ._validation import InputError

#: Key of the JSON metadata string stored in feature files (docs/formats.md).
META_KEY = "meta"


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched.
    ``suffix`` defaults to the target's own suffix, so writers that dispatch on the
    extension (matplotlib, numpy) behave as for the final name.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.", suffix=path.suffix if suffix is None else suffix, dir=path.parent
        )
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path):
    """Yield an empty temporary folder next to ``path``; move it onto ``path`` on success.

    An existing ``path`` is swapped out in two renames and only then deleted, so readers
    see either the old folder or the complete new one; on any exception the temporary
    folder is removed and ``path`` is left as it was. Callers decide about overwriting.
    """
    import shutil

    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    except OSError as exc:
        raise InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}") from None
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.old.", dir=path.parent))
            os.replace(path, old / path.name)
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_text(path, text: str) -> None:
    """Atomically write ``text`` to ``path``."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path, obj) -> None:
    """Atomically write ``obj`` as indented JSON."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def save_npz(path, arrays: dict, meta: dict | None = None, compressed: bool = False) -> None:
    """Atomically write ``arrays`` (and ``meta`` as a JSON string under ``"meta"``) to ``path``."""
    payload = dict(arrays)
    if meta is not None:
        payload[META_KEY] = np.array(json.dumps(meta, sort_keys=True, default=str))
    with atomic_path(path, suffix=".npz") as tmp:
        with open(tmp, "wb") as fh:
            (np.savez_compressed if compressed else np.savez)(fh, **payload)


def load_arrays(path, keys=None, *, mmap: bool = True) -> dict:
    """Load the arrays of a ``.npy`` or ``.npz`` file as a ``{key: array}`` dict.

    ``.npy`` files are memory-mapped (``mmap=True``) and appear under the key ``"array"``
    (or their file stem if ``keys`` asks for it). Uncompressed ``.npz`` members are read
    lazily by NumPy. The ``"meta"`` entry of a feature file is never returned; use
    :func:`load_meta`. Raises :class:`InputError` naming the file or key on any problem.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"file {str(path)!r} is a directory, expected a .npy or .npz file")
    try:
        if path.suffix == ".npy":
            arr = np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
            out = {"array": arr}
        else:
            if not zipfile.is_zipfile(path):
                raise InputError(f"cannot read {str(path)!r}: not a .npz archive (no zip structure)")
            with np.load(path, allow_pickle=False) as z:
                names = [k for k in z.files if k != META_KEY]
                wanted = names if keys is None else list(keys)
                for k in wanted:
                    if k not in z.files or k == META_KEY:
                        raise InputError(
                            f"key {k!r} not found in {str(path)!r}; available keys: {names}"
                        )
                out = {k: z[k] for k in wanted}
    except InputError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc}") from None
    if keys is not None and path.suffix == ".npy":
        keys = list(keys)
        if keys not in (["array"], [path.stem]):
            raise InputError(f"key {keys[0]!r} not found in {str(path)!r}; a .npy file holds one array, 'array'")
        out = {keys[0]: out["array"]}
    for k, v in out.items():
        if v.dtype.kind not in "fiub":
            raise InputError(f"array {k!r} in {str(path)!r} is not numeric (dtype {v.dtype})")
    return out


def load_meta(path) -> dict:
    """Return the JSON metadata of a feature file (empty dict if it has none)."""
    path = Path(path)
    if path.suffix == ".npy":
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if META_KEY not in z.files:
                return {}
            return json.loads(str(z[META_KEY][()]))
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise InputError(f"cannot read metadata of {str(path)!r}: {exc}") from None
