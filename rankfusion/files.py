"""Files: atomic writes, array loading, build locks and Markdown tables, shared by the CLI and the library.

Every file rankfusion writes goes through :func:`atomic_path` or :func:`atomic_dir` so that an
interrupted or failed command never leaves a half-written output behind. Their temporary names
carry the writer's host and process id (``.<name>.~<host>.<pid>.<random>``), so the next writer of
the same target removes what a killed writer left behind (:func:`sweep_stale`). Outputs get the
permissions of an ordinary ``open``/``mkdir``: ``0o666`` / ``0o777`` minus the umask.
Processes that share an output folder build each entry once under :func:`entry_lock`.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
import tokenize
import zipfile
from pathlib import Path

import numpy as np

from ._validation import InputError

#: Key of the JSON metadata string stored in feature files (docs/formats.md).
META_KEY = "meta"

#: A temporary file or folder whose owner cannot be checked (another host) is stale after this.
STALE_AFTER_S = 24 * 3600.0


def _host_tag() -> str:
    # a short, name-safe tag of this machine: a PID says nothing about a writer on another host
    return re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:12] or "host"


def _temp_name(target: str, kind: str = "") -> str:
    return f".{target}.~{kind}{_host_tag()}.{os.getpid()}.{secrets.token_hex(4)}"


def _temp_pattern(target: str) -> re.Pattern:
    return re.compile(rf"^\.{re.escape(target)}\.~(old)?([A-Za-z0-9]+)\.(\d+)\.[0-9a-f]{{8}}(\.[^/]*)?$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def sweep_stale(path, *, max_age_s: float = STALE_AFTER_S) -> list[Path]:
    """Remove the temporary files / folders that killed writers of ``path`` left behind.

    A temporary entry of ``path`` (named by :func:`atomic_path` / :func:`atomic_dir`) is stale
    when its writer ran on this host and that process is gone, or when it is older than
    ``max_age_s`` (a writer on another host, or a reused PID). A stale swap folder of
    :func:`atomic_dir` that still holds the only copy of ``path`` (a writer killed between its
    two renames) is moved back instead of deleted. Returns the entries removed or restored.

    Parameters
    ----------
    path : path-like
        The target whose temporary entries are looked for (in its parent folder).
    max_age_s : float
        Age (seconds since last modification) after which any temporary entry is stale.
    """
    path = Path(path)
    pattern, host, now, done = _temp_pattern(path.name), _host_tag(), time.time(), []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return done
    for entry in entries:
        m = pattern.match(entry.name)
        if m is None:
            continue
        is_old, owner_host, pid = m.group(1), m.group(2), int(m.group(3))
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if not ((owner_host == host and pid != os.getpid() and not _pid_alive(pid)) or age > max_age_s):
            continue
        stale = Path(entry.path)
        with contextlib.suppress(OSError):
            if is_old and (stale / path.name).exists() and not path.exists():
                os.replace(stale / path.name, path)  # the killed writer had moved the only copy aside
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(stale)
            else:
                os.unlink(stale)
            done.append(stale)
    return done


def cannot_write(path, exc) -> InputError:
    """The error of a failed write of ``path``, naming a file that stands where a folder must be."""
    path = Path(path)
    for parent in reversed(path.parents):
        if parent.exists() and not parent.is_dir():
            return InputError(f"cannot write {str(path)!r}: {str(parent)!r} is a file, not a folder")
    return InputError(f"cannot write {str(path)!r}: {exc.strerror or exc}")


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    On any exception the temporary file is removed and ``path`` is left untouched. Stale
    temporary files of earlier, killed writers of ``path`` are removed first
    (:func:`sweep_stale`). ``suffix`` defaults to the target's own suffix, so writers that
    dispatch on the extension (matplotlib, numpy) behave as for the final name. The file is
    created with mode ``0o666`` minus the umask, like any ``open``.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"cannot write {str(path)!r}: it is a folder")
    sfx = path.suffix if suffix is None else suffix
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(path)
        while True:
            tmp = path.parent / (_temp_name(path.name) + sfx)
            try:
                os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
                break
            except FileExistsError:
                continue
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as exc:  # e.g. a folder made at ``path`` meanwhile: name it, not the temporary file
            raise cannot_write(path, exc) from None
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _make_temp_dir(path: Path, kind: str = "") -> Path:
    while True:
        tmp = path.parent / _temp_name(path.name, kind)
        try:
            tmp.mkdir(0o777)  # minus the umask, like any mkdir
            return tmp
        except FileExistsError:
            continue


def check_not_source(path, sources=()) -> None:
    """Refuse to replace ``path`` when that would delete one of ``sources`` (the files and
    folders a command reads): :class:`InputError` when a source is ``path`` itself or lies inside
    it. Paths are compared resolved (``..`` and symbolic links followed), except that ``path``'s
    own last component is not followed: replacing a symbolic link removes the link, not its target.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):  # no last component of its own (``out/..``): the folder it names
        target = Path(os.path.realpath(path))
    else:
        target = Path(os.path.realpath(path.parent if str(path.parent) else ".")) / path.name
    for src in sources:
        real = Path(os.path.realpath(src))
        if real == target or real.is_relative_to(target):
            what = "is the input" if real == target else f"holds the input {str(src)!r}"
            raise InputError(f"cannot write {str(path)!r}: it {what}, which replacing it would delete; "
                             "write to another folder")


@contextlib.contextmanager
def atomic_dir(path, *, sources=()):
    """Yield an empty temporary folder next to ``path``; move it onto ``path`` on success.

    An existing ``path`` is swapped out in two renames and only then deleted, so readers
    see either the old folder or the complete new one; on any exception the temporary
    folder is removed and ``path`` is left as it was. Stale temporary folders of earlier,
    killed writers of ``path`` are removed first (:func:`sweep_stale`). Callers decide about
    overwriting; a ``path`` that is or holds one of ``sources`` (the inputs the new folder is
    made from) is refused (:func:`check_not_source`).
    """
    path = Path(path)
    check_not_source(path, sources)
    if path.exists() and Path.cwd().resolve().is_relative_to(path.resolve()):
        raise InputError(f"cannot replace {str(path)!r}: it is the current folder or holds it; run the command from "
                         "another folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        sweep_stale(path)
        tmp = _make_temp_dir(path)
    except OSError as exc:
        raise cannot_write(path, exc) from None
    try:
        yield tmp
        if path.exists():
            old = _make_temp_dir(path, "old")
            try:
                os.replace(path, old / path.name)
            except BaseException:
                old.rmdir()
                raise
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def read_text(path, what: str = "file") -> str:
    """The contents of a UTF-8 text file, without a leading byte order mark; :class:`InputError`
    naming it (as ``what``) when it does not exist, is a folder, cannot be read or is not UTF-8."""
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{what} {str(path)!r} is a folder, not a file")
    if not path.exists():
        raise InputError(f"{what} {str(path)!r} does not exist")
    try:
        return path.read_text(encoding="utf-8-sig")  # a byte order mark (Windows editors) is no text
    except UnicodeDecodeError as exc:
        raise InputError(f"{what} {str(path)!r} is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset "
                         f"{exc.start}); save it as UTF-8") from None
    except OSError as exc:
        raise InputError(f"cannot read {what} {str(path)!r}: {exc.strerror or exc}") from None


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


_NPY_MAGIC = b"\x93NUMPY"


#: What NumPy raises on a damaged ``.npy`` / ``.npz`` file: besides I/O and format errors, a
#: header that is not a Python literal fails in the tokenizer or the parser.
NUMPY_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, SyntaxError, tokenize.TokenError)


def array_file_kind(path) -> str:
    """``"npy"`` or ``"npz"`` from a file's first bytes (whatever the case of its suffix).

    Raises :class:`InputError` naming the file when it is missing, a folder, or neither a
    NumPy ``.npy`` file (magic ``\\x93NUMPY``) nor a zip archive (``.npz``). Deciding by
    content means NumPy never falls back to reading the file as a pickle.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"file {str(path)!r} does not exist")
    if path.is_dir():
        raise InputError(f"file {str(path)!r} is a directory, expected a .npy or .npz file")
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(_NPY_MAGIC))
    except OSError as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    if head == _NPY_MAGIC:
        return "npy"
    if zipfile.is_zipfile(path):
        return "npz"
    if path.suffix.lower() == ".npz":
        raise InputError(f"cannot read {str(path)!r}: not a .npz archive (no zip structure)")
    if path.suffix.lower() == ".npy":
        raise InputError(f"cannot read {str(path)!r}: not a valid .npy file (no NumPy header)")
    raise InputError(f"cannot read {str(path)!r}: not a .npy or .npz file (neither a NumPy header nor a zip archive)")


class ObjectArrayError(InputError):
    """A member of an array file holds Python objects (dtype ``object``), which is not read: loading
    it would unpickle, i.e. run, whatever the file holds."""


def _member(read, path: Path, key: str):
    """``read()``: member ``key`` of an open ``.npz``, or a ``.npy`` file's array; an object array is an
    :class:`ObjectArrayError` naming it (NumPy's words: "allow_pickle", or "Python objects" when
    memory-mapped)."""
    try:
        return read()
    except ValueError as exc:
        if "allow_pickle" not in str(exc) and "Python objects" not in str(exc):
            raise
        raise ObjectArrayError(
            f"array {key!r} in {str(path)!r} holds Python objects (dtype object, e.g. strings from a pandas "
            "column), which are not read (loading them would run pickled code): save it with .astype(str) "
            "for text or .astype(float) for numbers") from None


def load_arrays(path, keys=None, *, mmap: bool = True, text_keys=()) -> dict:
    """Load the arrays of a ``.npy`` or ``.npz`` file as a ``{key: array}`` dict.

    ``.npy`` files are memory-mapped (``mmap=True``) and appear under the key ``"array"``
    (or their file stem if ``keys`` asks for it). Uncompressed ``.npz`` members are read
    lazily by NumPy. The format is read from the file's first bytes, not its suffix
    (:func:`array_file_kind`). The ``"meta"`` entry of a feature file is never returned; use
    :func:`load_meta`. The arrays named in ``text_keys`` may also hold strings (e.g. class labels);
    every other array must be numeric. Raises :class:`InputError` naming the file or key on any problem
    (:class:`ObjectArrayError` for an array of Python objects).
    """
    path = Path(path)
    kind = array_file_kind(path)
    try:
        if kind == "npy":
            arr = _member(lambda: np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False), path, path.stem)
            out = {"array": arr}
        else:
            with np.load(path, allow_pickle=False) as z:
                names = [k for k in z.files if k != META_KEY]
                wanted = names if keys is None else list(keys)
                for k in wanted:
                    if k not in z.files or k == META_KEY:
                        raise InputError(
                            f"key {k!r} not found in {str(path)!r}; available keys: {names}"
                        )
                out = {k: _member(lambda k=k: z[k], path, k) for k in wanted}
    except InputError:
        raise
    except NUMPY_READ_ERRORS as exc:
        raise InputError(f"cannot read {str(path)!r}: {exc}") from None
    for k, v in out.items():
        if not isinstance(v, np.ndarray):  # a member that is not a .npy file comes back as its bytes
            raise InputError(f"cannot read {str(path)!r}: member {k!r} is not a NumPy array (.npy)")
    if keys is not None and kind == "npy":
        keys = list(keys)
        if keys not in (["array"], [path.stem]):
            raise InputError(f"key {keys[0]!r} not found in {str(path)!r}; a .npy file holds one array, 'array' "
                             f"(or {path.stem!r}, the file's stem)")
        out = {keys[0]: out["array"]}
    for k, v in out.items():
        if v.dtype.kind not in "fiub" and not (k in text_keys and v.dtype.kind in "US"):
            raise InputError(f"array {k!r} in {str(path)!r} is not numeric (dtype {v.dtype})")
    return out


def load_meta(path) -> dict:
    """Return the JSON metadata object of a feature file (empty dict if it has none).

    Raises :class:`InputError` naming the file when the entry is not valid JSON or not a JSON
    object (``{...}``): every reader looks keys up in it.
    """
    path = Path(path)
    if array_file_kind(path) == "npy":
        return {}
    try:
        with np.load(path, allow_pickle=False) as z:
            if META_KEY not in z.files:
                return {}
            meta = json.loads(str(z[META_KEY][()]))
    except (*NUMPY_READ_ERRORS, TypeError, IndexError) as exc:
        raise InputError(f"cannot read metadata of {str(path)!r}: {exc}") from None
    if not isinstance(meta, dict):
        raise InputError(
            f"metadata {META_KEY!r} of {str(path)!r} must be a JSON object ({{...}}), got {type(meta).__name__} "
            f"{json.dumps(meta)[:40]}"
        )
    return meta


@contextlib.contextmanager
def entry_lock(path, *, progress: bool = False):
    """Hold the lock of one cache entry (a run folder, a noisy dataset, a feature or MoC file).

    Processes sharing a cache build each entry once: the first takes the lock (a file
    ``.<name>.lock`` beside the entry) and builds it, the others wait, then find it built. The
    lock is released when the holder exits, even if it is killed (an OS file lock).
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.parent / f".{path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            print(f"waiting for another process building {path}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub-style Markdown table (no tabulate dependency)."""
    cols = [str(c) for c in df.columns]

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "NaN" if not np.isfinite(v) else format(float(v), floatfmt)
        return str(v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):  # itertuples keeps each column's dtype (ints stay ints)
        lines.append("| " + " | ".join(cell(v) for v in row) + " |")
    return "\n".join(lines)
