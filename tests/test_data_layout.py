"""Reading the standard layout: discovery, memory-mapped features, every validation message."""

from __future__ import annotations

import numpy as np
import pytest

from rankfusion._validation import InputError
from rankfusion.data import PLAIN_MODALITY, open_dataset, read_mapping, write_dataset

CLASSES = ["a", "b", "c"]


def _toy(tmp_path, *, n=(10, 12, 8), modalities=("rgb", "depth"), plain=False, name="toy"):
    rng = np.random.default_rng(0)
    videos = [f"v{i}" for i in range(len(n))]
    labels = {v: [CLASSES[(t // 3) % 3] for t in range(k)] for v, k in zip(videos, n)}
    feats = {m: {v: rng.standard_normal((k, 4 + j)).astype(np.float32) for v, k in zip(videos, n)}
             for j, m in enumerate(modalities)}
    splits = {"train": [videos[0]], "val": [videos[1]], "test": [videos[2]]}
    root = write_dataset(tmp_path / name, CLASSES, labels, feats, splits, plain=plain)
    return root, labels, feats


def test_reads_layout_and_mmaps(tmp_path):
    root, labels, feats = _toy(tmp_path)
    ds = open_dataset(root)
    assert ds.classes == CLASSES
    assert ds.modalities == ["depth", "rgb"]  # sorted folder names
    assert ds.split("train") == ["v0"] and ds.split("test") == ["v2"]
    assert ds.split_set == "split1"
    assert ds.n_frames("v1") == 12
    np.testing.assert_array_equal(ds.labels("v0"), [0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    x = ds.features("v1", "rgb")
    assert x.shape == (12, 4) and x.dtype == np.float32
    assert isinstance(x.base, np.memmap) or isinstance(x, np.memmap)  # not read into memory
    np.testing.assert_array_equal(np.asarray(x), feats["rgb"]["v1"])
    assert ds.channels("depth") == 5


def test_modality_subset_and_unknown(tmp_path):
    root, *_ = _toy(tmp_path)
    assert open_dataset(root, modalities="rgb").modalities == ["rgb"]
    with pytest.raises(InputError, match="modality 'imu' not found"):
        open_dataset(root, modalities=["imu"])


def test_plain_layout_is_one_modality(tmp_path):
    root, _, feats = _toy(tmp_path, modalities=("x",), plain=True)
    assert (root / "features" / "v0.npy").is_file()
    ds = open_dataset(root)
    assert ds.modalities == [PLAIN_MODALITY]
    np.testing.assert_array_equal(ds.features("v2", PLAIN_MODALITY), feats["x"]["v2"])


def test_missing_modality_names_video(tmp_path):
    root, *_ = _toy(tmp_path)
    (root / "features" / "depth" / "v1.npy").unlink()
    with pytest.raises(InputError, match=r"video 'v1': modality 'depth' is missing"):
        open_dataset(root)


def test_frame_mismatch_error_and_trim(tmp_path):
    root, *_ = _toy(tmp_path)
    x = np.load(root / "features" / "rgb" / "v1.npy")
    np.save(root / "features" / "rgb" / "v1.npy", x[:, :9])  # 3 frames short of the labels
    with pytest.raises(InputError, match=r"video 'v1': modality 'rgb' has 9 frames but groundTruth has 12 \(-3\)"):
        open_dataset(root)
    ds = open_dataset(root, trim="min")
    assert ds.n_frames("v1") == 9
    assert ds.labels("v1").shape == (9,) and ds.features("v1", "depth").shape == (9, 5)
    assert ds.validate().trimmed_videos == ["v1"]


def test_transposed_file_hint(tmp_path):
    root, *_ = _toy(tmp_path, n=(10, 4, 8))
    x = np.load(root / "features" / "rgb" / "v1.npy")  # (4 channels, 4 frames): fine
    np.save(root / "features" / "rgb" / "v2.npy", np.zeros((8, 4), np.float32))  # stored (frames, channels)
    with pytest.raises(InputError, match="v2"):
        open_dataset(root)
    assert x.shape == (4, 4)


def test_label_not_in_mapping(tmp_path):
    root, *_ = _toy(tmp_path)
    lines = (root / "groundTruth" / "v2.txt").read_text().splitlines()
    lines[5] = "zzz"
    (root / "groundTruth" / "v2.txt").write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"video 'v2': label 'zzz' at frame 5 .* not in mapping.txt"):
        open_dataset(root)


def test_empty_split(tmp_path):
    root, *_ = _toy(tmp_path)
    (root / "splits" / "val.split1.bundle").write_text("\n")
    with pytest.raises(InputError, match="split 'val' is empty"):
        open_dataset(root)


def test_missing_split_and_split_sets(tmp_path):
    root, *_ = _toy(tmp_path)
    (root / "splits" / "test.split1.bundle").rename(root / "splits" / "test.other.bundle")
    ds = open_dataset(root)
    with pytest.raises(InputError, match="split 'test'"):
        ds.split("test")
    with pytest.raises(InputError, match="split set 'nope' not found"):
        open_dataset(root, split_set="nope")


def test_non_finite_found_by_validate(tmp_path):
    root, *_ = _toy(tmp_path)
    x = np.load(root / "features" / "depth" / "v0.npy")
    x[2, 7] = np.nan
    np.save(root / "features" / "depth" / "v0.npy", x)
    ds = open_dataset(root)  # structural checks pass
    with pytest.raises(InputError, match=r"video 'v0': modality 'depth' has a non-finite value .* frame 7, channel 2"):
        ds.validate()


def test_channel_mismatch_between_videos(tmp_path):
    root, *_ = _toy(tmp_path)
    np.save(root / "features" / "rgb" / "v2.npy", np.zeros((6, 8), np.float32))
    with pytest.raises(InputError, match=r"video 'v2': modality 'rgb' has 6 channels .* but video 'v0', read "
                                         r"before it, has 4"):
        open_dataset(root)
    # the video read first is the odd one: both are named, so the message does not blame v1 alone
    np.save(root / "features" / "rgb" / "v2.npy", np.zeros((4, 8), np.float32))
    np.save(root / "features" / "rgb" / "v0.npy", np.zeros((6, 10), np.float32))  # (channels, frames)
    with pytest.raises(InputError, match=r"video 'v1': modality 'rgb' has 4 channels .* but video 'v0', read "
                                         r"before it, has 6"):
        open_dataset(root)


def test_bad_mapping(tmp_path):
    root, *_ = _toy(tmp_path)
    (root / "mapping.txt").write_text("0 a\n2 b\n")
    with pytest.raises(InputError, match="without gaps"):
        open_dataset(root)
    (root / "mapping.txt").write_text("0 a\n1 a\n")
    with pytest.raises(InputError, match="'a' appears twice"):
        open_dataset(root)


def test_validate_report(tmp_path):
    root, *_ = _toy(tmp_path)
    rep = open_dataset(root).validate()
    assert rep.n_videos == 3 and rep.n_frames == 30
    assert rep.splits == {"train": 1, "val": 1, "test": 1}
    # v0: 10 frames a a a b b b c c c a -> a4 b3 c3; v1: 12 -> a3 b3 c3 a3; v2: 8 -> a3 b3 c2
    assert rep.class_frames == [4 + 6 + 3, 3 + 3 + 3, 3 + 3 + 2]
    assert rep.channels == {"depth": 5, "rgb": 4}
    assert "class balance" in rep.format()


def test_write_dataset_refuses_existing(tmp_path):
    root, *_ = _toy(tmp_path)
    with pytest.raises(InputError, match="already exists"):
        _toy(tmp_path)
    assert open_dataset(root).n_frames("v0") == 10


def test_reading_does_not_import_torch():
    # `rankfusion data check` and the generator must not pay for importing torch.
    import subprocess
    import sys

    code = "import sys, rankfusion.data; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_no_val_split_is_a_note_not_an_error(tmp_path):
    # MS-TCN datasets ship train/test only: check passes and says so; a missing test fails.
    root, *_ = _toy(tmp_path)
    (root / "splits" / "val.split1.bundle").unlink()
    rep = open_dataset(root).validate()
    assert rep.splits == {"train": 1, "test": 1}
    assert any("no val split" in n for n in rep.notes) and "no val split" in rep.format()
    (root / "splits" / "test.split1.bundle").unlink()
    with pytest.raises(InputError, match="split 'test'"):
        open_dataset(root).validate()


def test_video_in_two_splits_names_video_and_splits(tmp_path):
    root, _, _ = _toy(tmp_path)
    (root / "splits" / "val.split1.bundle").write_text("v1.txt\nv0.txt\n")
    with pytest.raises(ValueError, match=r"video 'v0' is listed in two splits, 'train' and 'val'"):
        open_dataset(root)


def test_videos_too_short_for_the_protocol_are_a_note(tmp_path):
    """5 frames is the shortest video the default protocol cuts at 0.2 (int(0.2 * 5) = 1 observed
    frame); a 4-frame video has none there, and train refuses it: check says so beforehand."""
    root, *_ = _toy(tmp_path, n=(10, 5, 5), name="ok")
    assert not any("too short" in n for n in open_dataset(root).validate().notes)
    root, *_ = _toy(tmp_path, n=(10, 4, 5), name="short")
    rep = open_dataset(root).validate()
    (note,) = [n for n in rep.notes if "too short" in n]
    assert note.startswith("1 video(s) too short") and "'v1' (4 frames)" in note and "'v2'" not in note


def test_a_truncated_feature_file_is_refused_at_open_naming_it(tmp_path):
    root, *_ = _toy(tmp_path)
    path = root / "features" / "depth" / "v1.npy"
    data = path.read_bytes()
    path.write_bytes(data[:-1])  # one byte short of its header's (12, 5) float32
    with pytest.raises(InputError, match=r"'.*v1\.npy' is truncated: its header says \(5, 12\) float32 \(240 bytes"):
        open_dataset(root)
    path.write_bytes(data)
    assert open_dataset(root).features("v1", "depth").shape == (12, 5)


def test_a_label_file_that_is_not_utf8_is_refused_naming_it(tmp_path):
    from click.testing import CliRunner

    from rankfusion.cli import main

    root, *_ = _toy(tmp_path)
    gt = root / "groundTruth" / "v1.txt"
    gt.write_bytes(gt.read_bytes().replace(b"a\n", "\u00e4\n".encode("latin-1"), 1))
    with pytest.raises(InputError, match=r"video 'v1': label file '.*v1.txt' is not UTF-8 text \(byte 0xe4"):
        open_dataset(root)
    res = CliRunner().invoke(main, ["data", "check", str(root)])
    assert res.exit_code == 2 and len(res.output.strip().splitlines()) == 1 and "v1.txt" in res.output


def test_a_folder_in_place_of_a_bundle_or_mapping_is_named_as_such(tmp_path):
    root, *_ = _toy(tmp_path)
    bundle = root / "splits" / "val.split1.bundle"
    bundle.unlink()
    bundle.mkdir()
    with pytest.raises(InputError, match=r"split 'val': bundle '.*val.split1.bundle' is a folder, not a file"):
        open_dataset(root).split("val")
    (root / "mapping.txt").unlink()
    (root / "mapping.txt").mkdir()
    with pytest.raises(InputError, match=r"mapping file '.*mapping.txt' is a folder, not a file"):
        open_dataset(root)


def test_a_config_file_that_is_not_utf8_is_refused_naming_it(tmp_path):
    from rankfusion.config import load_config

    path = tmp_path / "c.toml"
    path.write_bytes(b"[train]\nepochs = 3 # \xff\n")
    with pytest.raises(InputError, match=r"config file '.*c.toml' is not valid TOML"):
        load_config(path)


def test_a_config_key_that_should_be_a_table_is_refused_naming_the_file(tmp_path):
    from rankfusion.config import load_config

    path = tmp_path / "m5.toml"
    path.write_text("model = 5\n")
    with pytest.raises(InputError, match=r"config file '.*m5.toml': model must be a table \(\[model\] with key = "
                                         r"value lines\), got int 5"):
        load_config(path, train={"epochs": 2})


@pytest.mark.parametrize("line", ["--0 a", "\u00b2 a", "\u0663 a", "+0 a", "0x1 a"])
def test_a_mapping_index_that_is_no_plain_integer_is_one_line(tmp_path, line):
    # '--0' and '²' passed an isdigit() test and crashed in int(); '٣' (Arabic-Indic 3) was read as 3
    path = tmp_path / "mapping.txt"
    path.write_text(line + "\n1 b\n", encoding="utf-8")
    with pytest.raises(InputError) as err:
        read_mapping(path)
    assert str(err.value) == f"{str(path)!r} line 1: expected '<index> <action name>', got {line!r}"


def test_write_dataset_names_an_invalid_result_as_such_not_a_file_in_root(tmp_path):
    # the check runs on the temporary folder: the message named root/mapping.txt, which was never written
    root = tmp_path / "out"
    x = np.zeros((4, 2), np.float32)
    with pytest.raises(InputError) as err:
        write_dataset(root, ["a", "a"], {v: [0] * 4 for v in "pqr"}, {"m": {v: x for v in "pqr"}},
                      {"train": ["p"], "val": ["q"], "test": ["r"]}, validate=True)
    assert str(err.value) == (f"the dataset for {str(root)!r} would be invalid, so nothing was written: 'mapping.txt': "
                              "action name 'a' appears twice")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("video, what", [("a/b", "holds '/'"), ("a\0b", "holds '\\x00'"), ("..", "is empty, '.' or '..'"),
                                         (" a", "begins or ends with white space, which the split files lose")])
def test_write_dataset_refuses_a_video_id_that_is_no_file_name(tmp_path, video, what):
    x = np.zeros((4, 2), np.float32)
    vids = ["p", "q", video]
    with pytest.raises(InputError) as err:
        write_dataset(tmp_path / "out", ["a"], {v: [0] * 4 for v in vids}, {"m": {v: x for v in vids}},
                      {"train": ["p"], "val": ["q"], "test": [video]})
    tail = what if what.startswith("begins") else f"{what}, which a file name cannot hold"
    assert str(err.value) == f"video id {video!r} {tail}"
    assert list(tmp_path.iterdir()) == []


def test_a_modality_without_channels_is_refused_naming_video_and_file(tmp_path):
    # (0, T) passed `data check`; train then failed with "input_dims['rgb'] must be at least 1, got 0"
    root, *_ = _toy(tmp_path)
    for v, n in (("v0", 10), ("v1", 12), ("v2", 8)):
        np.save(root / "features" / "rgb" / f"{v}.npy", np.zeros((0, n), np.float32))
    path = root / "features" / "rgb" / "v0.npy"
    with pytest.raises(InputError) as err:
        open_dataset(root)
    assert str(err.value) == (f"video 'v0': modality 'rgb' has 0 channels ({str(path)!r} holds shape (0, 10)); a "
                              "modality needs at least one")


def test_text_files_saved_with_a_byte_order_mark_read_as_their_text(tmp_path):
    # Windows editors start UTF-8 files with U+FEFF: it was read as part of '0 a' and of 'v0'
    root, labels, _ = _toy(tmp_path)
    for rel in ("mapping.txt", "splits/train.split1.bundle", "groundTruth/v0.txt"):
        path = root / rel
        path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    ds = open_dataset(root)
    assert ds.classes == CLASSES and ds.split("train") == ["v0"]
    assert [CLASSES[i] for i in ds.labels("v0")] == labels["v0"]


def test_a_config_that_does_not_fit_the_dataset_reads_cleanly(tmp_path):
    # "the dataset 'base_moved''s 3": a possessive after a quoted name
    import dataclasses

    from rankfusion.config import RunConfig
    from rankfusion.runs import check_config_data

    root, *_ = _toy(tmp_path)
    ds = open_dataset(root)
    cfg = RunConfig()
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, modalities=("rgb",), n_classes=5))
    with pytest.raises(InputError) as err:
        check_config_data(cfg, ds)
    assert str(err.value) == f"config n_classes 5 does not match the 3 classes of dataset {str(root)!r}"
