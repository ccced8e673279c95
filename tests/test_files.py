"""Atomic writes, array loading and the CLI's one-line error convention."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion import files
from rankfusion._validation import InputError, check_float, check_int, check_matrix
from rankfusion.cli import main


def test_atomic_path_leaves_target_untouched_on_error(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_save_npz_roundtrip_with_meta(tmp_path):
    path = tmp_path / "f.npz"
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    files.save_npz(path, {"rgb.before": a}, meta={"run": "r1", "obs_ratio": 0.3})
    got = files.load_arrays(path)
    assert list(got) == ["rgb.before"]
    np.testing.assert_array_equal(got["rgb.before"], a)
    assert files.load_meta(path) == {"obs_ratio": 0.3, "run": "r1"}


def test_load_arrays_errors_name_file_and_key(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        files.load_arrays(tmp_path / "nope.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(InputError, match="bad.npz'.*not a .npz archive"):
        files.load_arrays(bad)
    good = tmp_path / "g.npz"
    np.savez(good, x=np.ones((2, 2)), s=np.array(["a", "b"]))
    with pytest.raises(InputError, match="'y' not found"):
        files.load_arrays(good, ["y"])
    with pytest.raises(InputError, match="'s' .* not numeric"):
        files.load_arrays(good, ["s"])


def test_load_npy_is_memory_mapped(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((4, 3), dtype=np.float32))
    arr = files.load_arrays(path)["array"]
    assert isinstance(arr, np.memmap)
    with pytest.raises(InputError, match=r"'b' not found .* one array, 'array' \(or 'a', the file's stem\)$"):
        files.load_arrays(path, ["b"])


def test_write_json_is_valid(tmp_path):
    files.write_json(tmp_path / "c.json", {"b": 1, "a": [1, 2]})
    assert json.loads((tmp_path / "c.json").read_text()) == {"a": [1, 2], "b": 1}


def test_validation_messages_name_the_argument():
    with pytest.raises(ValueError, match="X contains NaN"):
        check_matrix(np.array([[np.nan, 1.0]]), "X")
    with pytest.raises(ValueError, match="at least 2 dimensions"):
        check_matrix(np.ones(3), "X")
    with pytest.raises(ValueError, match="must not be empty"):
        check_matrix(np.ones((0, 3)), "X")
    with pytest.raises(TypeError, match="real numeric"):
        check_matrix(np.array([["a"]]), "X")
    with pytest.raises(ValueError, match=r"k must be in \[1, 5\], got 7"):
        check_int(7, "k", low=1, high=5)
    with pytest.raises(ValueError, match=r"^k must be at least 3, got 2$"):
        check_int(2, "k", low=3)
    with pytest.raises(ValueError, match=r"^k must be at most 5, got 7$"):
        check_int(7, "k", high=5)
    with pytest.raises(TypeError, match="k must be an integer"):
        check_int(1.5, "k")
    with pytest.raises(ValueError, match="alpha must be <= 1"):
        check_float(1.5, "alpha", low=0, high=1)


def _with_test_command(fn, *args):
    main.command("_raise-for-test", hidden=True)(fn)
    try:
        return CliRunner().invoke(main, ["_raise-for-test", *args])
    finally:
        main.commands.pop("_raise-for-test", None)


def test_cli_user_error_is_one_line_exit_2():
    def _raise():
        raise InputError("k must be in [1, 5], got 7\nsecond line")

    result = _with_test_command(_raise)
    assert result.exit_code == 2
    assert result.output == "Error: k must be in [1, 5], got 7\n"


def test_cli_os_error_is_one_line_exit_2(tmp_path):
    def _raise():
        open(tmp_path / "nope.txt").read()

    result = _with_test_command(_raise)
    assert result.exit_code == 2
    assert result.output == f"Error: No such file or directory: '{tmp_path / 'nope.txt'}'\n"


@pytest.mark.parametrize("exc", [KeyError("k"), TypeError("unsupported operand"), ValueError("broadcast")])
def test_cli_bugs_keep_their_traceback(exc):
    # only InputError / OSError are the user's; anything else is a bug and must stay visible
    def _raise():
        raise exc

    result = _with_test_command(_raise)
    assert result.exit_code == 1 and result.exception is exc


def test_cli_warnings_before_an_error_are_dropped():
    import warnings

    def _raise():
        warnings.warn("overflow encountered in cast", UserWarning)
        raise InputError("array 'x' contains NaN or Inf values")

    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        result = _with_test_command(_raise)
    assert result.exit_code == 2
    assert result.output == "Error: array 'x' contains NaN or Inf values\n"
    assert shown == []  # never printed before the Error line

    def _ok():
        warnings.warn("kept on success", UserWarning)

    with pytest.warns(UserWarning, match="kept on success"):  # shown again once the command succeeded
        result = _with_test_command(_ok)
    assert result.exit_code == 0


def test_cli_usage_errors_are_one_line(tmp_path):
    afile = tmp_path / "a.txt"
    afile.write_text("x")
    for args, expect in [
        (["spectrum", "f.npz", "--top", "-1"],
         "Error: Invalid value for '--top': -1 is not in the range x>=0. (see 'main spectrum --help')\n"),
        (["--bogus"], "Error: No such option '--bogus'. (see 'main --help')\n"),
        (["data", "import-csv", "f.csv", "--out", str(afile), "--label-column", "l", "--modality", "a=b"],
         f"Error: Invalid value for '--out': Directory '{afile}' is a file. (see 'main data import-csv --help')\n"),
    ]:
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 2
        assert result.output == expect


def test_atomic_dir_replaces_whole_folder_or_nothing(tmp_path):
    target = tmp_path / "data"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError):
        with files.atomic_dir(target) as tmp:
            (tmp / "new.txt").write_text("half")
            raise RuntimeError("boom")
    assert sorted(p.name for p in target.iterdir()) == ["old.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]
    with files.atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_unwritable_target_is_named(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(InputError, match=r"cannot write '.*file/out.txt'"):
        files.write_text(blocker / "out.txt", "y")
    with pytest.raises(InputError, match=r"cannot write '.*file/sub'"):
        with files.atomic_dir(blocker / "sub"):
            pass


def test_target_that_is_a_folder_or_below_a_file_is_named(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(InputError, match=r"^cannot write 'dir.png': it is a folder$"):
        files.write_text("dir.png", "y")
    for target in ("afile/x.png", "afile/deeper/x.png"):
        with pytest.raises(InputError, match=rf"^cannot write '{target}': 'afile' is a file, not a folder$"):
            files.write_text(target, "y")
    with pytest.raises(InputError, match=r"^cannot write 'afile/sub': 'afile' is a file, not a folder$"):
        with files.atomic_dir("afile/sub"):
            pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dir.png"] and not any((tmp_path / "dir.png").iterdir())


def test_cli_output_that_is_a_folder_names_the_users_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    np.save("feats.npy", np.random.default_rng(0).standard_normal((20, 4)))
    (tmp_path / "dir.png").mkdir()
    (tmp_path / "afile").write_text("x")
    res = CliRunner().invoke(main, ["spectrum", "feats.npy", "--plot", "dir.png"])
    assert res.exit_code == 2 and res.output == "Error: cannot write 'dir.png': it is a folder\n"
    res = CliRunner().invoke(main, ["spectrum", "feats.npy", "--plot", "afile/x.png"])
    assert res.exit_code == 2 and res.output == "Error: cannot write 'afile/x.png': 'afile' is a file, not a folder\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "dir.png", "feats.npy"]
    # a folder made without files.py (an output folder's mkdir) below a file: the CLI says the same
    rng = np.random.default_rng(0)
    np.savez("p.npz", a=rng.standard_normal((60, 4)), b=rng.standard_normal((60, 3)), labels=np.repeat([0, 1, 2], 20))
    res = CliRunner().invoke(main, ["modality-select", "--paired", "p.npz", "--anchor", "a", "--out", "afile/x"])
    assert res.exit_code == 2 and res.output == "Error: cannot write 'afile/x': 'afile' is a file, not a folder\n"


def _dead_pid() -> int:
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _fake_temp(folder, target, pid, *, kind="", suffix="", host=None, is_dir=False):
    name = f".{target}.~{kind}{host or files._host_tag()}.{pid}.0123abcd{suffix}"
    p = folder / name
    if is_dir:
        p.mkdir()
        (p / "x.npy").write_bytes(b"0" * 1024)
    else:
        p.write_bytes(b"0" * 1024)
    return p


def test_stale_temps_of_killed_writers_are_removed_on_the_next_write(tmp_path):
    import os

    dead = _dead_pid()
    stale_file = _fake_temp(tmp_path, "last.pt", dead, suffix=".pt")
    stale_dir = _fake_temp(tmp_path, "I", dead, is_dir=True)
    live = _fake_temp(tmp_path, "last.pt", os.getppid(), suffix=".pt")  # a concurrent writer: kept
    other_host = _fake_temp(tmp_path, "last.pt", dead, suffix=".pt", host="elsewhere")  # young: kept
    other_target = _fake_temp(tmp_path, "best.pt", dead, suffix=".pt")  # another target's writer
    with files.atomic_path(tmp_path / "last.pt") as tmp:
        tmp.write_text("new")
    assert not stale_file.exists()
    assert live.exists() and other_host.exists() and other_target.exists()
    assert (tmp_path / "last.pt").read_text() == "new"
    with files.atomic_dir(tmp_path / "I") as tmp:
        (tmp / "a.txt").write_text("a")
    assert not stale_dir.exists()
    # an entry older than the age limit is stale whoever wrote it
    old = _fake_temp(tmp_path, "last.pt", 1, suffix=".pt", host="elsewhere")
    os.utime(old, (0, 0))
    assert files.sweep_stale(tmp_path / "last.pt") == [old]
    assert other_host.exists()


def test_stale_swap_folder_holding_the_only_copy_is_restored(tmp_path):
    swap = _fake_temp(tmp_path, "S", _dead_pid(), kind="old", is_dir=True)
    (swap / "S").mkdir()
    (swap / "S" / "mapping.txt").write_text("0 a\n")  # killed between the two renames
    files.sweep_stale(tmp_path / "S")
    assert (tmp_path / "S" / "mapping.txt").read_text() == "0 a\n"
    assert not swap.exists()


def test_outputs_follow_the_umask(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        with files.atomic_path(tmp_path / "f.txt") as tmp:
            tmp.write_text("x")
        with files.atomic_dir(tmp_path / "d") as tmp:
            (tmp / "g.txt").write_text("y")
        files.save_npz(tmp_path / "h.npz", {"a": np.ones(2)})
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "f.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "h.npz").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o755
    assert stat.S_IMODE((tmp_path / "d" / "g.txt").stat().st_mode) == 0o644


def test_a_damaged_header_or_a_member_that_is_no_array_is_one_error_naming_the_file(tmp_path):
    import zipfile

    from rankfusion.files import load_arrays

    np.save(tmp_path / "h.npy", np.ones((20, 4), np.float32))
    raw = bytearray((tmp_path / "h.npy").read_bytes())
    raw[20] = ord("(")  # the header is no longer a Python literal: NumPy's tokenizer fails
    (tmp_path / "bad.npy").write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"cannot read '.*bad.npy'"):
        load_arrays(tmp_path / "bad.npy")
    with zipfile.ZipFile(tmp_path / "text.npz", "w") as z:
        z.writestr("rgb.npy", b"hello world")
    with pytest.raises(ValueError, match=r"cannot read '.*text.npz': member 'rgb' is not a NumPy array"):
        load_arrays(tmp_path / "text.npz")


def test_replacing_the_current_folder_is_refused_before_anything_is_made(tmp_path, monkeypatch):
    from rankfusion.files import atomic_dir

    here = tmp_path / "here"
    (here / "inner").mkdir(parents=True)
    for target, cwd in ((here, here), (here, here / "inner")):
        monkeypatch.chdir(cwd)
        with pytest.raises(ValueError, match=r"cannot replace '.*here': it is the current folder or holds it"):
            with atomic_dir(target):
                pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["here"]
    assert sorted(p.name for p in here.iterdir()) == ["inner"]


@pytest.mark.parametrize("mmap", [True, False])
def test_an_object_array_in_a_npy_file_is_named_as_in_a_npz(tmp_path, mmap):
    from rankfusion.files import ObjectArrayError, load_arrays

    np.save(tmp_path / "labels.npy", np.array(["a", "b"], dtype=object))
    with pytest.raises(ObjectArrayError, match=r"^array 'labels' in '.*labels\.npy' holds Python objects .* \.astype\(str\)"):
        load_arrays(tmp_path / "labels.npy", mmap=mmap)


def test_an_out_ending_in_dotdot_that_is_the_input_folder_is_refused(tmp_path):
    from rankfusion.files import check_not_source

    (tmp_path / "data" / "sub").mkdir(parents=True)
    src = tmp_path / "data" / "in.csv"
    src.write_text("x")
    with pytest.raises(InputError, match=r"it holds the input"):
        check_not_source(tmp_path / "data" / "sub" / "..", [src])
    check_not_source(tmp_path / "data" / "sub", [src])  # a folder beside the input: allowed
