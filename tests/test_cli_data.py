"""`rankfusion data ...` through click's CliRunner: success paths and one-line errors with exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion.cli import main


def _run(*args):
    return CliRunner().invoke(main, list(args))


@pytest.fixture(scope="module")
def synth_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "syn"
    res = _run("data", "synth", str(out), "--videos", "6", "--min-frames", "100", "--max-frames", "200")
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output
    return out


def test_synth_then_check(synth_dir):
    res = _run("data", "check", str(synth_dir))
    assert res.exit_code == 0, res.output
    assert "videos    6" in res.output and "class balance" in res.output and res.output.strip().endswith("OK")
    res = _run("data", "check", str(synth_dir), "--json", "--modalities", "rgb,depth")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["channels"] == {"rgb": 64, "depth": 64}


def test_synth_channels_option(tmp_path):
    res = _run("data", "synth", str(tmp_path / "c"), "--videos", "3", "--min-frames", "60", "--max-frames", "70",
               "--channels", "rgb=5", "--channels", "depth=3")
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in (tmp_path / "c" / "features").iterdir()) == ["depth", "rgb"]
    res = _run("data", "synth", str(tmp_path / "d"), "--channels", "rgb=x")
    assert res.exit_code == 2 and "--channels rgb" in res.output


def test_synth_refuses_existing(synth_dir):
    res = _run("data", "synth", str(synth_dir))
    assert res.exit_code == 2
    assert "already exists" in res.output and str(synth_dir) in res.output
    assert "pass --force to replace it" in res.output and "overwrite" not in res.output


def test_check_of_a_file_says_it_is_not_a_folder(tmp_path):
    (tmp_path / "feats.npz").write_bytes(b"x")
    res = _run("data", "check", str(tmp_path / "feats.npz"))
    assert res.exit_code == 2 and res.output == f"Error: dataset folder '{tmp_path / 'feats.npz'}' is a file, not a folder\n"


def _cut_copy(synth_dir, tmp_path, frames: int):
    """A copy of the dataset whose first test video's imu file lacks its last ``frames`` frames:
    ``(folder, video, the full imu array)``."""
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(synth_dir, bad)
    video = (bad / "splits" / "test.split1.bundle").read_text().split()[0].removesuffix(".txt")
    x = np.load(bad / "features" / "imu" / f"{video}.npy")
    np.save(bad / "features" / "imu" / f"{video}.npy", x[:, :-frames])
    return bad, video, x


def test_check_errors_name_the_culprit(synth_dir, tmp_path):
    bad, video, x = _cut_copy(synth_dir, tmp_path, 4)
    res = _run("data", "check", str(bad))
    assert res.exit_code == 2
    assert f"video '{video}'" in res.output and "imu" in res.output and "(-4)" in res.output
    assert "Traceback" not in res.output
    res = _run("data", "check", str(bad), "--trim", "min")
    assert res.exit_code == 0 and "1 videos cut" in res.output

    x[0, 3] = np.inf
    np.save(bad / "features" / "imu" / f"{video}.npy", x)
    res = _run("data", "check", str(bad))
    assert res.exit_code == 2 and "non-finite" in res.output and video in res.output

    res = _run("data", "check", str(tmp_path / "nowhere"))
    assert res.exit_code == 2 and "nowhere" in res.output

    res = _run("data", "check", str(synth_dir), "--modalities", "lidar")
    assert res.exit_code == 2 and "'lidar'" in res.output


def test_frame_mismatch_hint_offers_what_the_command_has(synth_dir, tmp_path):
    bad, _, _ = _cut_copy(synth_dir, tmp_path, 3)
    res = _run("train", str(bad), "--out", str(tmp_path / "run"), "--preset", "synthetic-small", "--quiet")
    assert res.exit_code == 2 and "(-3)" in res.output and not (tmp_path / "run").exists()
    assert "--trim" not in res.output.replace("data check DATA --trim min", "")
    assert "fix the files" in res.output


def test_synth_split_option(tmp_path):
    from rankfusion.data import open_dataset

    res = _run("data", "synth", str(tmp_path / "s"), "--videos", "10", "--min-frames", "60", "--max-frames", "70",
               "--split", "0.6,0.2,0.2", "--channels", "rgb=4")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "s")
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [6, 2, 2]
    # the default split: half of the videos train, 40 % test (DEFAULT_SPLIT)
    res = _run("data", "synth", str(tmp_path / "d"), "--videos", "10", "--min-frames", "60", "--max-frames", "70",
               "--channels", "rgb=4")
    assert res.exit_code == 0, res.output
    ds = open_dataset(tmp_path / "d")
    assert [len(ds.split(s)) for s in ("train", "val", "test")] == [5, 1, 4]
    for bad in ("0.5,0.5", "a,b,c", "0.5,0.6,0.1"):
        res = _run("data", "synth", str(tmp_path / "x"), "--split", bad)
        assert res.exit_code == 2 and "split" in res.output, (bad, res.output)
    assert not (tmp_path / "x").exists()


def test_synth_bad_option_values(tmp_path):
    res = _run("data", "synth", str(tmp_path / "s"), "--videos", "2")
    assert res.exit_code == 2 and res.output == "Error: --videos must be at least 3, got 2\n"
    res = _run("data", "synth", str(tmp_path / "s"), "--min-frames", "300", "--max-frames", "100")
    assert res.exit_code == 2 and res.output == "Error: --max-frames must be at least 300, got 100\n"
    res = _run("data", "synth", str(tmp_path / "s"), "--seed", "-1")
    assert res.exit_code == 2 and res.output == "Error: --seed must be at least 0, got -1\n"
    res = _run("data", "synth", str(tmp_path / "s"), "--split", "0.5,0.5")
    assert res.exit_code == 2 and res.output.startswith("Error: --split must be 3 non-negative numbers summing to 1")
    assert not (tmp_path / "s").exists()


def test_video_in_two_splits_is_refused_by_check_and_train(synth_dir, tmp_path):
    import shutil

    bad = tmp_path / "leak"
    shutil.copytree(synth_dir, bad)
    video = (bad / "splits" / "train.split1.bundle").read_text().split()[0].removesuffix(".txt")
    with open(bad / "splits" / "test.split1.bundle", "a") as f:
        f.write(f"{video}.txt\n")
    for args in (("data", "check", str(bad)),
                 ("train", str(bad), "--out", str(tmp_path / "run"), "--preset", "synthetic-small", "--quiet")):
        res = _run(*args)
        assert res.exit_code == 2, res.output
        assert res.output.strip() == (f"Error: video '{video}' is listed in two splits, 'train' and 'test' "
                                      "(split1); each video must belong to one split")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("how", ["missing", "empty"])
def test_check_refuses_a_dataset_without_split_files(synth_dir, tmp_path, how):
    import shutil

    bad = tmp_path / "nosplits"
    shutil.copytree(synth_dir, bad)
    shutil.rmtree(bad / "splits")
    if how == "empty":
        (bad / "splits").mkdir()
    res = _run("data", "check", str(bad))
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "OK" not in res.output
    assert lines[0].startswith(f"Error: dataset '{bad}' has no split files") and "['train', 'test']" in lines[0]
    # what train says about the same folder
    res = _run("train", str(bad), "--out", str(tmp_path / "run"), "--preset", "synthetic-small", "--quiet")
    assert res.exit_code == 2 and "split" in res.output and "Traceback" not in res.output


def test_cli_check_float64_beyond_float32_is_one_line(tmp_path):
    from rankfusion.data import open_dataset, synthesize

    root = synthesize(tmp_path / "d", seed=1, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=3, min_frames=20, max_frames=25, channels={"rgb": 4})
    video = open_dataset(root).split("test")[0]
    f = root / "features" / "rgb" / f"{video}.npy"
    x = np.load(f).astype(np.float64)
    x[1, 2] = 1e300  # finite in the file, inf once read as float32
    np.save(f, x)
    res = CliRunner().invoke(main, ["data", "check", str(root)])
    assert res.exit_code == 2
    # what remains once the (self-erasing) progress bar is taken out: the Error line alone
    lines = [ln for ln in res.output.replace("\r", "\n").splitlines() if ln.strip() and not ln.startswith("check:")]
    assert lines == [f"Error: video {video!r}: modality 'rgb' has a non-finite value (inf) at frame 2, "
                     "channel 1 (1 in all)"]


def _one_error_line(res):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


@pytest.mark.parametrize("split,counts", [("0,0,1", "train without a video: val and test take 1 and 6 of the 6"),
                                          ("1e-300,0.5,0.5", "train without a video: val and test take 3 and 3 of the 6")])
def test_synth_split_without_a_video_of_its_own_is_refused_before_writing(tmp_path, split, counts):
    out = tmp_path / "s"
    line = _one_error_line(_run("data", "synth", str(out), "--videos", "6", "--split", split))
    assert f"--split {split} on 6 videos" in line and counts in line and "at least one video" in line
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing written, no temporary folder


@pytest.mark.parametrize("args,needle", [(("--videos", "3", "--max-frames", "2000000000"), "GiB of memory"),
                                         (("--videos", "1000000000"), "GiB of memory")])
def test_synth_sizes_beyond_memory_are_refused_with_an_estimate(tmp_path, args, needle):
    import re

    out = tmp_path / "s"
    line = _one_error_line(_run("data", "synth", str(out), *args))
    assert "--max-frames" in line and "--videos" in line and needle in line
    assert re.search(r"would need ~[0-9.e+]+ GiB", line), line
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_synth_huge_noise_scale_is_refused(tmp_path):
    line = _one_error_line(_run("data", "synth", str(tmp_path / "s"), "--videos", "3", "--noise-scale", "1e40"))
    assert "--noise-scale must be <= 1000000.0, got 1e+40" in line
    assert not (tmp_path / "s").exists()


def test_synth_channels_of_one_modality_twice_is_refused(tmp_path):
    line = _one_error_line(_run("data", "synth", str(tmp_path / "s"), "--channels", "rgb=8", "--channels", "rgb=16"))
    assert "--channels rgb given twice (rgb=8 and rgb=16)" in line
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("exc", [MemoryError(), RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. "
                                                             "DefaultCPUAllocator: can't allocate memory: you tried "
                                                             "to allocate 1920000000000 bytes")])
def test_a_failed_allocation_is_one_line_and_other_errors_are_not_swallowed(exc):
    import click

    from rankfusion.cli import RankfusionGroup

    @click.group(cls=RankfusionGroup)
    def group():
        pass

    @group.command()
    def boom():
        raise exc

    @group.command()
    def bug():
        raise RuntimeError("an unrelated failure")

    res = CliRunner().invoke(group, ["boom"])
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert line.startswith("Error: out of memory (") and "choose smaller sizes" in line
    res = CliRunner().invoke(group, ["bug"])
    assert isinstance(res.exception, RuntimeError) and res.exit_code == 1  # a bug keeps its traceback


def test_check_modalities_read_like_trains(synth_dir):
    # "rgb, depth" (a space after the comma) names rgb and depth, as it does for train --modalities
    res = _run("data", "check", str(synth_dir), "--json", "--modalities", "rgb, depth")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["channels"] == {"rgb": 64, "depth": 64}
    res = _run("data", "check", str(synth_dir), "--modalities", " , ")
    assert res.exit_code == 2 and res.output.startswith("Error: --modalities") and "' , '" in res.output


@pytest.mark.parametrize("channels,line", [
    (["rgb=0"], "Error: --channels rgb must be at least 1, got 0"),
    (["0"], "Error: --channels rgb must be at least 1, got 0"),
    (["lidar=4"], "Error: --channels: unknown modality 'lidar'; choose from ['depth', 'imu', 'mvrgb', 'noise', "
                  "'rgb', 'text']"),
])
def test_synth_bad_channels_name_the_option(tmp_path, channels, line):
    args = [a for c in channels for a in ("--channels", c)]
    res = _run("data", "synth", str(tmp_path / "s"), "--videos", "3", *args)
    assert res.exit_code == 2 and res.output == line + "\n"
    assert not (tmp_path / "s").exists()
