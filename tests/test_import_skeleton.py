"""NTU `.skeleton` and UTKinect joint importers on files written here from the published formats."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion.cli import main
from rankfusion.data import open_dataset
from rankfusion.data.skeleton import NTU_XSUB_TRAIN, read_ntu_skeleton


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _fmt(x):
    return " ".join(f"{v:.7g}" for v in x)


def _ntu_text(frames):
    """``frames``: list of {body id: (25, 3) xyz}. Written as the Kinect v2 toolbox does."""
    out = [str(len(frames))]
    for bodies in frames:
        out.append(str(len(bodies)))
        for bid, xyz in bodies.items():
            out.append(f"{bid} 0 1 1 1 1 0 0.1182 -0.2456 2")
            out.append("25")
            for j, (x, y, z) in enumerate(xyz):
                out.append(f"{x:.7g} {y:.7g} {z:.7g} 271.4 217.9 1024.6 533.2 0.2351 -0.0172 0.9709 -0.0416 {2 if j else 1}")
    return "\n".join(out) + "\n"


def _parsed(text_value):
    return float(f"{text_value:.7g}")


MAIN, OTHER = "72057594037931101", "72057594037931117"


def _ntu_frames(rng, n, *, missing=(), second=()):
    frames = []
    for t in range(n):
        bodies = {}
        if t not in missing:
            bodies[MAIN] = rng.normal([0, 0, 3], 0.3, size=(25, 3))
        if t in second:
            bodies[OTHER] = rng.normal([1, 0, 4], 0.3, size=(25, 3))
        frames.append(bodies)
    return frames


def _ntu_src(root, names=("S001C001P001R001A001", "S001C002P002R001A002", "S001C001P003R001A002",
                          "S002C003P004R002A001", "S001C001P005R002A002")):
    rng = np.random.default_rng(1)
    root.mkdir()
    written = {}
    for k, name in enumerate(names):
        frames = _ntu_frames(rng, 6 + k, missing=(2,) if k == 0 else (), second=(1, 2, 3) if k == 0 else ())
        (root / f"{name}.skeleton").write_text(_ntu_text(frames))
        written[name] = frames
    return written


def test_ntu_skeleton_main_body_fill_and_centering(tmp_path):
    written = _ntu_src(tmp_path / "src")
    out = tmp_path / "out"
    res = _run("data", "import-ntu-skeleton", tmp_path / "src", out)
    assert res.exit_code == 0, res.output
    ds = open_dataset(out)
    assert ds.modalities == ["skeleton"] and ds.channels("skeleton") == 75 and ds.classes == ["A001", "A002"]
    v = "S001C001P001R001A001"
    frames = written[v]
    # main body: present in 5 of 6 frames (the other only in 3); frame 2 repeats frame 1's pose
    track = [frames[t][MAIN] if MAIN in frames[t] else frames[t - 1][MAIN] for t in range(len(frames))]
    track = np.vectorize(_parsed)(np.stack(track))
    want = (track - track[0, 0]).reshape(len(track), -1).astype(np.float32)
    np.testing.assert_array_equal(ds.features(v, "skeleton"), want)
    assert (ds.labels(v) == 0).all() and (ds.labels("S001C002P002R001A002") == 1).all()
    # cross-subject: subjects 1, 2, 4, 5 train (one held out as val), subject 3 test
    assert ds.split("test") == ["S001C001P003R001A002"]
    assert sorted(ds.split("train") + ds.split("val")) == sorted(
        n for n in written if int(n[9:12]) in NTU_XSUB_TRAIN)
    assert len(ds.split("val")) == 1
    assert json.loads((out / "import.json").read_text())["frames_filled"] == {v: 1}


def test_ntu_skeleton_cross_view(tmp_path):
    _ntu_src(tmp_path / "src")
    res = _run("data", "import-ntu-skeleton", tmp_path / "src", tmp_path / "out", "--protocol", "xview")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "out", split_set="xview")
    assert all(v[5:8] == "001" for v in ds.split("test"))
    assert all(v[5:8] != "001" for v in ds.split("train") + ds.split("val"))
    res = _run("data", "import-ntu-skeleton", tmp_path / "src", tmp_path / "o2", "--val-fraction", "1.5")
    assert res.exit_code == 2 and res.output.strip() == "Error: --val-fraction must be in (0, 1), got 1.5", res.output
    assert not (tmp_path / "o2").exists()


@pytest.mark.parametrize("how", ["joint_count", "short_joint", "nonnumber", "truncated", "trailing", "frame_count"])
def test_ntu_skeleton_malformed_file_names_file_and_line(tmp_path, how):
    _ntu_src(tmp_path / "src")
    bad = tmp_path / "src" / "S001C002P002R001A002.skeleton"
    where = _corrupt_lines(bad, how)
    res = _run("data", "import-ntu-skeleton", tmp_path / "src", tmp_path / "out")
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("Error:") and bad.name in line and where in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def _corrupt_lines(path, how):
    lines = path.read_text().splitlines()
    where = _edit(lines, how)
    path.write_text("\n".join(lines) + "\n")
    return where


def _edit(lines, how):
    if how == "joint_count":
        lines[3] = "24"
        return "line 4"
    if how == "short_joint":
        lines[7] = " ".join(lines[7].split()[:11])
        return "line 8"
    if how == "nonnumber":
        f = lines[9].split()
        f[1] = "abc"
        lines[9] = " ".join(f)
        return "line 10"
    if how == "truncated":
        del lines[-5:]
        return "end of file"
    if how == "trailing":
        lines.append("1")
        return "unexpected content"
    if how == "frame_count":
        lines[0] = "-3"
        return "line 1"
    raise AssertionError(how)


def test_ntu_skeleton_empty_file_and_bad_name(tmp_path):
    _ntu_src(tmp_path / "src")
    empty = tmp_path / "src" / "S001C001P004R002A001.skeleton"
    empty.write_text("3\n0\n0\n0\n")
    res = _run("data", "import-ntu-skeleton", tmp_path / "src", tmp_path / "out")
    assert res.exit_code == 2 and empty.name in res.output and "no body" in res.output
    res = _run("data", "import-ntu-skeleton", tmp_path / "src", tmp_path / "out", "--skip-empty")
    assert res.exit_code == 0, res.output
    assert json.loads((tmp_path / "out" / "import.json").read_text())["skipped_empty"] == [empty.name]
    empty.unlink()
    (tmp_path / "src" / "clip7.skeleton").write_text("1\n0\n")
    res = _run("data", "import-ntu-skeleton", tmp_path / "src", tmp_path / "o2")
    assert res.exit_code == 2 and "clip7.skeleton" in res.output and not (tmp_path / "o2").exists()


def test_read_ntu_skeleton_keeps_every_body(tmp_path):
    frames = _ntu_frames(np.random.default_rng(3), 3, second=(0, 2))
    p = tmp_path / "S001C001P001R001A001.skeleton"
    p.write_text(_ntu_text(frames))
    got = read_ntu_skeleton(p)
    assert [sorted(b) for b in got] == [sorted(b) for b in frames]
    np.testing.assert_array_equal(got[2][OTHER], np.vectorize(_parsed)(frames[2][OTHER]))


# ---------------------------------------------------------------- UTKinect

UTK_ACTIONS = ["walk", "sitDown", "standUp"]


def _utk_src(root):
    """Joint files of s01_e01, s03_e01 (train subjects) and s02_e01 (test), and actionLabel.txt."""
    rng = np.random.default_rng(2)
    (root / "joints").mkdir(parents=True)
    label_lines, written = [], {}
    for seq, first in (("s01_e01", 100), ("s02_e01", 40), ("s03_e01", 7)):
        numbers = list(range(first, first + 30, 2))
        xyz = rng.normal([0, 0, 2.5], 0.2, size=(len(numbers), 20, 3))
        rows = [f"{n} " + _fmt(x.ravel()) for n, x in zip(numbers, xyz)]
        rows.insert(4, rows[3])  # a repeated frame line, kept once
        (root / "joints" / f"joints_{seq}.txt").write_text("\n".join(rows) + "\n")
        label_lines += [seq, f"walk: {first + 2} {first + 10}", f"sitDown: {first + 14} {first + 20}",
                        "standUp: NaN NaN" if seq == "s02_e01" else f"standUp: {first + 22} {first + 26}"]
        written[seq] = (np.asarray(numbers), xyz)
    (root / "actionLabel.txt").write_text("\n".join(label_lines) + "\n")
    return written


def test_utkinect_joints_labels_ranges_and_splits(tmp_path):
    written = _utk_src(tmp_path)
    out = tmp_path / "out"
    res = _run("data", "import-utkinect-joints", tmp_path / "joints", tmp_path / "actionLabel.txt", out)
    assert res.exit_code == 0, res.output
    ds = open_dataset(out, split_set="xsub")
    assert ds.classes == ["UNDEFINED", *UTK_ACTIONS] and ds.channels("skeleton") == 60
    assert ds.split("test") == ["s02_e01"] and sorted(ds.split("train") + ds.split("val")) == ["s01_e01", "s03_e01"]
    for seq, (numbers, xyz) in written.items():
        first = numbers[0]
        want = np.where((numbers >= first + 2) & (numbers <= first + 10), 1,
                        np.where((numbers >= first + 14) & (numbers <= first + 20), 2,
                                 np.where((numbers >= first + 22) & (numbers <= first + 26) & (seq != "s02_e01"), 3, 0)))
        np.testing.assert_array_equal(ds.labels(seq), want)
        p = np.vectorize(_parsed)(xyz)
        np.testing.assert_array_equal(ds.features(seq, "skeleton"), (p - p[0, 0]).reshape(len(p), -1).astype(np.float32))
    meta = json.loads((out / "import.json").read_text())
    assert meta["duplicate_frame_lines"] == {s: 1 for s in written}


def _utk_break(root, how):
    joints = root / "joints" / "joints_s03_e01.txt"
    labels = root / "actionLabel.txt"
    if how == "short_line":
        lines = joints.read_text().splitlines()
        lines[2] = " ".join(lines[2].split()[:50])
        joints.write_text("\n".join(lines) + "\n")
        return joints.name, "line 3"
    if how == "decreasing":
        lines = joints.read_text().splitlines()
        lines[6], lines[7] = lines[7], lines[6]
        joints.write_text("\n".join(lines) + "\n")
        return joints.name, "line 8"
    if how == "range":
        labels.write_text(labels.read_text().replace("walk: 9 17", "walk: 17 9"))
        return labels.name, "line 10"
    if how == "overlap":
        labels.write_text(labels.read_text().replace("sitDown: 21 27", "sitDown: 15 27"))
        return labels.name, "overlaps"
    if how == "orphan_action":
        labels.write_text("walk: 1 2\n" + labels.read_text())
        return labels.name, "line 1"
    if how == "no_block":
        (root / "joints" / "joints_s04_e01.txt").write_text(joints.read_text())
        return "joints_s04_e01.txt", "s04_e01"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["short_line", "decreasing", "range", "overlap", "orphan_action", "no_block"])
def test_utkinect_refuses_malformed_input(tmp_path, how):
    _utk_src(tmp_path)
    name, where = _utk_break(tmp_path, how)
    out = tmp_path / "out"
    res = _run("data", "import-utkinect-joints", tmp_path / "joints", tmp_path / "actionLabel.txt", out)
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("Error:") and name in line and where in line, line
    assert not out.exists()


@pytest.mark.parametrize("command", ["import-ntu-skeleton", "import-utkinect-joints"])
def test_a_negative_seed_is_one_line(tmp_path, command):
    (tmp_path / "src").mkdir()
    labels = [tmp_path / "labels.txt"] if command == "import-utkinect-joints" else []
    res = _run("data", command, tmp_path / "src", *labels, tmp_path / "out", "--seed", "-1")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == ["Error: --seed must be at least 0, got -1"]


def test_skeleton_imports_refuse_an_out_that_is_their_input(tmp_path):
    # `import-ntu-skeleton n2 n2 --force` deleted the .skeleton files
    _ntu_src(tmp_path / "n2")
    before = sorted(p.name for p in (tmp_path / "n2").iterdir())
    res = _run("data", "import-ntu-skeleton", tmp_path / "n2", tmp_path / "n2", "--force")
    assert res.exit_code == 2
    assert res.output == (f"Error: cannot write {str(tmp_path / 'n2')!r}: it is the input, which replacing it would "
                          "delete; write to another folder\n")
    assert sorted(p.name for p in (tmp_path / "n2").iterdir()) == before
    _utk_src(tmp_path / "u")
    labels = tmp_path / "u" / "actionLabel.txt"
    res = _run("data", "import-utkinect-joints", tmp_path / "u" / "joints", labels, tmp_path / "u", "--force")
    assert res.exit_code == 2
    assert res.output == (f"Error: cannot write {str(tmp_path / 'u')!r}: it holds the input "
                          f"{str(tmp_path / 'u' / 'joints')!r}, which replacing it would delete; write to another "
                          "folder\n")
    assert labels.is_file() and len(list((tmp_path / "u" / "joints").iterdir())) == 3


def test_utkinect_refuses_an_action_named_like_the_background(tmp_path):
    # 'UNDEFINED' was reported as a name appearing twice in OUT/mapping.txt, a file that never existed
    _utk_src(tmp_path)
    labels = tmp_path / "actionLabel.txt"
    labels.write_text(labels.read_text().replace("sitDown:", "UNDEFINED:", 1))
    res = _run("data", "import-utkinect-joints", tmp_path / "joints", labels, tmp_path / "out")
    assert res.exit_code == 2
    assert res.output == (f"Error: {str(labels)!r} line 3: action name 'UNDEFINED' is reserved for the frames outside "
                          "every action range; rename the action\n")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command,extra", [("import-ntu-skeleton", ()), ("import-utkinect-joints", ("labels.txt",))])
@pytest.mark.parametrize("fraction", ["1.5", "0", "nan"])
def test_a_bad_val_fraction_is_refused_before_any_file_is_read(tmp_path, command, extra, fraction):
    # it was refused only after every source file had been parsed (a whole NTU folder: minutes)
    src = tmp_path / "src"
    src.mkdir()
    (src / "S001C001P001R001A001.skeleton").write_text("garbage\n")
    (src / "joints_s01_e01.txt").write_text("garbage\n")
    (tmp_path / "labels.txt").write_text("garbage\n")
    res = _run("data", command, src, *(tmp_path / e for e in extra), tmp_path / "out", "--val-fraction", fraction)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [f"Error: --val-fraction must be in (0, 1), got {float(fraction)!r}"]
