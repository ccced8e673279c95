"""`rankfusion data import-r3d`: the official R3D code's folder, written here from its description."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion._validation import InputError
from rankfusion.cli import main
from rankfusion.data import open_dataset
from rankfusion.data.r3d_folder import read_official_mapping

CLASSES = ["walk", "sit", "drink"]


def _run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def _write_src(root, *, csv_videos=("v1",), channels_first=(), rgb_channels=2048):
    """A folder as the official code reads it: features/ is (frames, channels), one label per line
    or ``frame_path,label,UNDEFINED`` for the videos in ``csv_videos``."""
    rng = np.random.default_rng(0)
    (root / "groundTruth").mkdir(parents=True)
    (root / "features").mkdir()
    (root / "features_depth").mkdir()
    (root / "splits").mkdir()
    (root / "mapping.txt").write_text("".join(f"{i} {c}\n" for i, c in enumerate(CLASSES)))
    lengths = {"v0": 7, "v1": 5, "v2": 6, "v3": 9}
    arrays = {}
    for v, n in lengths.items():
        lab = [CLASSES[(i // 3) % 3] for i in range(n)]
        if v in csv_videos:
            # the official NTU ground truth has no spaces; its UTKinect one has ", " separators
            sep = ", " if v == "v3" else ","
            text = "".join(f"/data/ntu/{v}/img_{i:05d}.jpg{sep}{c}{sep}UNDEFINED\n" for i, c in enumerate(lab))
        else:
            text = "".join(c + "\n" for c in lab)
        (root / "groundTruth" / f"{v}.txt").write_text(text)
        rgb = rng.standard_normal((n, rgb_channels)).astype(np.float32)
        depth = rng.standard_normal((n, 4)).astype(np.float32)
        np.save(root / "features" / f"{v}.npy", rgb.T if v in channels_first else rgb)
        np.save(root / "features_depth" / f"{v}.npy", depth)
        arrays[v] = (lab, rgb, depth)
    (root / "splits" / "train_split.txt").write_text("v0.txt\nv1.txt\n")
    (root / "splits" / "val_split.txt").write_text("v2\n")
    (root / "splits" / "test_split.txt").write_text("v3.txt\n")
    return arrays


def test_import_r3d_reads_both_label_formats_and_orientations(tmp_path):
    src = tmp_path / "src"
    arrays = _write_src(src, csv_videos=("v1", "v3"), channels_first=("v2",))
    out = tmp_path / "out"
    res = _run("data", "import-r3d", src, out)
    assert res.exit_code == 0, res.output
    ds = open_dataset(out)
    assert ds.modalities == ["depth", "rgb"] and ds.classes == CLASSES
    assert ds.split("train") == ["v0", "v1"] and ds.split("val") == ["v2"] and ds.split("test") == ["v3"]
    assert ds.channels("rgb") == 2048 and ds.channels("depth") == 4
    for v, (lab, rgb, depth) in arrays.items():
        assert [CLASSES[i] for i in ds.labels(v)] == lab
        # float32 in, float32 out: the same numbers, whatever the source orientation
        np.testing.assert_array_equal(ds.features(v, "rgb"), rgb)
        np.testing.assert_array_equal(ds.features(v, "depth"), depth)
    meta = json.loads((out / "import.json").read_text())
    assert meta["modalities"] == {"depth": "features_depth", "rgb": "features"}
    assert _run("data", "check", out).exit_code == 0


def test_import_r3d_rename(tmp_path):
    src = tmp_path / "src"
    _write_src(src, rgb_channels=8)
    res = _run("data", "import-r3d", src, tmp_path / "out", "--rename", "rgb=video", "--rename", "features_depth=d")
    assert res.exit_code == 0, res.output
    assert open_dataset(tmp_path / "out").modalities == ["d", "video"]
    res = _run("data", "import-r3d", src, tmp_path / "o2", "--rename", "flow=x")
    assert res.exit_code == 2 and "'flow'" in res.output and not (tmp_path / "o2").exists()


def _break(src, how):
    if how == "frames":
        np.save(src / "features_depth" / "v2.npy", np.zeros((5, 4), np.float32))  # labels: 6 frames
        return "video 'v2'", "6 frames"
    if how == "missing":
        (src / "features" / "v3.npy").unlink()
        return "video 'v3'", "missing"
    if how == "unknown":
        (src / "groundTruth" / "v0.txt").write_text("walk\nwalk\nrun\nsit\nsit\nsit\ndrink\n")
        return "v0.txt", "line 3"
    if how == "csv":
        (src / "groundTruth" / "v1.txt").write_text("a.jpg,walk,UNDEFINED\na.jpg,walk\nb,c,d\nx,y,z\ne,f,g\n")
        return "v1.txt", "line 2"
    if how == "mixed":
        (src / "groundTruth" / "v1.txt").write_text("a.jpg,walk,UNDEFINED\nwalk\nwalk\nwalk\nwalk\n")
        return "v1.txt", "line 2"
    if how == "square":
        np.save(src / "features_depth" / "v1.npy", np.zeros((5, 5), np.float32))
        return "v1.npy", "--feature-axis"
    if how == "nan":
        x = np.zeros((9, 4), np.float32)
        x[4, 1] = np.nan
        np.save(src / "features_depth" / "v3.npy", x)
        return "video 'v3'", "non-finite"
    if how == "images":
        np.save(src / "features_depth" / "v2.npy", np.zeros((6, 12, 16), np.float32))
        return "video 'v2'", "featurize"
    if how == "no_test":
        (src / "splits" / "test_split.txt").unlink()
        return "test_split.txt", "does not exist"
    if how == "latin1":
        (src / "groundTruth" / "v1.txt").write_bytes("w\u00e4lk\n".encode("latin-1") * 5)
        return "v1.txt", "not UTF-8"
    if how == "utf16_split":
        (src / "splits" / "test_split.txt").write_text("v3\n", encoding="utf-16")
        return "test_split.txt", "not UTF-8"
    if how == "float32_range":
        x = np.zeros((9, 4))
        x[2, 3] = 1e39
        np.save(src / "features_depth" / "v3.npy", x)
        return "v3.npy", "(1e+39) beyond the float32 range (|x| <= 3.4e38) at frame 2, channel 3"
    if how == "modality_file":
        shutil.rmtree(src / "features_depth")
        (src / "features_depth").write_text("")
        return "features_depth", "is a file, not a folder of features"
    if how == "split_name":  # a split file's line that cannot be a file name is named by its line
        (src / "splits" / "val_split.txt").write_text("v2\n\n ..  \n")
        return "line 3 of", "val_split.txt"
    if how == "no_val":  # train chooses its best epoch on val: refused here, not at train
        (src / "splits" / "val_split.txt").unlink()
        return "val_split.txt", "train_split.txt"
    raise AssertionError(how)


@pytest.mark.parametrize("how", ["frames", "missing", "unknown", "csv", "mixed", "square", "nan", "images", "no_test",
                                 "no_val", "latin1", "utf16_split", "float32_range",
                                 "modality_file", "split_name"])
def test_import_r3d_refuses_bad_input_in_one_line_writing_nothing(tmp_path, how):
    src = tmp_path / "src"
    _write_src(src, rgb_channels=8)
    names, what = _break(src, how)
    out = tmp_path / "out"
    res = _run("data", "import-r3d", src, out)
    assert res.exit_code == 2, res.output
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and line.startswith("Error:") and names in line and what in line, line
    assert not out.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_import_r3d_force_keeps_old_dataset_on_bad_input(tmp_path):
    src = tmp_path / "src"
    _write_src(src, rgb_channels=8)
    out = tmp_path / "out"
    assert _run("data", "import-r3d", src, out).exit_code == 0
    before = (out / "features" / "rgb" / "v0.npy").read_bytes()
    _break(src, "frames")
    res = _run("data", "import-r3d", src, out, "--force")
    assert res.exit_code == 2
    assert (out / "features" / "rgb" / "v0.npy").read_bytes() == before


def test_import_r3d_several_mappings_need_a_choice(tmp_path):
    src = tmp_path / "src"
    _write_src(src, rgb_channels=8)
    (src / "mapping_l2_changed.txt").write_text("0 walk\n1 sit\n2 drink\n")
    res = _run("data", "import-r3d", src, tmp_path / "out")
    assert res.exit_code == 2 and "--mapping" in res.output
    assert _run("data", "import-r3d", src, tmp_path / "out", "--mapping", "mapping_l2_changed.txt").exit_code == 0


def test_import_r3d_official_mapping_indices_and_spaces(tmp_path):
    # NTU's official mapping numbers actions from 1 and the official loader drops spaces from labels
    src = tmp_path / "src"
    _write_src(src, rgb_channels=8)
    (src / "mapping.txt").write_text("3 walk\n7 sit down\n12 drink\n")
    for v in ("v0", "v1", "v2", "v3"):
        path = src / "groundTruth" / f"{v}.txt"
        path.write_text(path.read_text().replace(",sit,", ",sitdown,").replace("sit\n", "sit down\n")
                        .replace(", sit,", ", sitdown,"))
    res = _run("data", "import-r3d", src, tmp_path / "out")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "out")
    assert ds.classes == ["walk", "sit down", "drink"]
    assert [ds.classes[i] for i in ds.labels("v0")] == ["walk"] * 3 + ["sit down"] * 3 + ["drink"]
    meta = json.loads((tmp_path / "out" / "import.json").read_text())
    assert meta["mapping_indices"] == {"walk": 3, "sit down": 7, "drink": 12}
    (src / "mapping.txt").write_text("3 walk\n7 sit down\n7 drink\n")
    res = _run("data", "import-r3d", src, tmp_path / "o2")
    assert res.exit_code == 2 and "mapping.txt' line 3" in res.output


@pytest.mark.parametrize("command", ["import-r3d", "import-ntu-skeleton", "import-utkinect-joints"])
def test_a_file_given_as_the_source_folder_is_named_as_a_file(tmp_path, command):
    src = tmp_path / "mapping.txt"
    src.write_text("0 walk\n")
    labels = [tmp_path / "actionLabel.txt"] if command == "import-utkinect-joints" else []
    res = _run("data", command, src, *labels, tmp_path / "out")
    assert res.exit_code == 2
    assert res.output.strip().splitlines()[-1] == f"Error: source folder {str(src)!r} is a file, not a folder"


@pytest.mark.parametrize("out", ["wrap", "wrap/raw", "wrap/raw/features_depth"])
def test_import_r3d_force_refuses_an_out_that_is_or_holds_the_source(tmp_path, out):
    # `import-r3d wrap/raw wrap --force` deleted wrap/raw with the old wrap
    src = tmp_path / "wrap" / "raw"
    _write_src(src)
    before = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    res = _run("data", "import-r3d", src, tmp_path / out, "--force")
    assert res.exit_code == 2
    assert res.output.startswith(f"Error: cannot write {str(tmp_path / out)!r}: it ")
    assert res.output.endswith(", which replacing it would delete; write to another folder\n")
    assert len(res.output.splitlines()) == 1
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == before


def test_an_official_mapping_index_in_other_digits_is_refused(tmp_path):
    path = tmp_path / "mapping.txt"
    path.write_text("0 walk\n\u0661 sit\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_official_mapping(path)
    assert str(err.value) == f"{str(path)!r} line 2: expected '<index> <action name>', got '\u0661 sit'"


def test_import_r3d_rename_of_one_folder_twice_is_refused(tmp_path):
    # the second --rename of the same name silently won
    src = tmp_path / "src"
    _write_src(src, rgb_channels=8)
    res = _run("data", "import-r3d", src, tmp_path / "out", "--rename", "features=a", "--rename", "features=b")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == ["Error: --rename features given twice (features=a and features=b)"]
    assert not (tmp_path / "out").exists()
