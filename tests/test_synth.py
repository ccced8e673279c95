"""The synthetic dataset: layout, determinism, atomic writing, and the complementarity it promises."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rankfusion._validation import InputError
from rankfusion.data import open_dataset, synthesize
from rankfusion.data.synth import ACTIONS


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "synth"
    return synthesize(out, seed=3, n_videos=12, min_frames=150, max_frames=400)


def test_layout_and_check(small):
    ds = open_dataset(small)
    rep = ds.validate()
    assert rep.n_videos == 12 and len(ds.classes) == len(ACTIONS) == 12
    assert rep.splits == {"train": 8, "val": 2, "test": 2}
    assert rep.channels == {"depth": 64, "imu": 16, "mvrgb": 64, "noise": 64, "rgb": 64, "text": 32}
    assert 150 <= rep.frames_min and rep.frames_max <= 400
    meta = json.loads((small / "synth.json").read_text())
    assert meta["config"]["seed"] == 3 and meta["config"]["n_videos"] == 12
    assert meta["most_complementary"] == "depth" and meta["generator"] == "rankfusion.data.synth"
    assert (small / "factors" / f"{ds.videos[0]}.npz").is_file()


def test_deterministic(small, tmp_path):
    again = synthesize(tmp_path / "again", seed=3, n_videos=12, min_frames=150, max_frames=400)
    for rel in ["groundTruth/synth_004.txt", "features/depth/synth_004.npy", "splits/test.split1.bundle"]:
        assert (small / rel).read_bytes() == (again / rel).read_bytes()
    other = synthesize(tmp_path / "other", seed=4, n_videos=12, min_frames=150, max_frames=400)
    assert (small / "groundTruth/synth_004.txt").read_bytes() != (other / "groundTruth/synth_004.txt").read_bytes()


def test_grammar_direction_decides_next_action(small):
    # carry_dish toward (+1) is always followed by load_dishwasher, away (-1) by place_on_shelf.
    ds = open_dataset(small)
    carry, load, place = ACTIONS.index("carry_dish"), ACTIONS.index("load_dishwasher"), ACTIONS.index("place_on_shelf")
    seen = 0
    for v in ds.videos:
        f = np.load(small / "factors" / f"{v}.npz")
        a, d = f["action"], f["direction"]
        ends = np.flatnonzero((a[:-1] == carry) & (a[1:] != carry))
        for t in ends:
            assert a[t + 1] == (load if d[t] > 0 else place)
            seen += 1
    assert seen > 5


def test_direction_visible_to_depth_not_rgb(small):
    # Linear read-out of the direction during carry_dish: depth near perfect, rgb at chance.
    ds = open_dataset(small)
    carry = ACTIONS.index("carry_dish")
    xs, ys = {"rgb": [], "depth": []}, []
    for v in ds.videos:
        f = np.load(small / "factors" / f"{v}.npz")
        sel = f["action"] == carry
        for m in xs:
            xs[m].append(ds.features(v, m)[sel])
        ys.append(f["direction"][sel])
    y = np.concatenate(ys).astype(float)
    half = len(y) // 2
    acc = {}
    for m, parts in xs.items():
        x = np.c_[np.concatenate(parts), np.ones(len(y))]
        w = np.linalg.lstsq(x[:half], y[:half], rcond=None)[0]
        acc[m] = float((np.sign(x[half:] @ w) == y[half:]).mean())
    # small sample, 64 channels: the least-squares read-out overfits a little
    assert acc["depth"] > 0.8, acc
    assert acc["rgb"] < 0.7, acc


def test_options_and_errors(tmp_path):
    out = synthesize(tmp_path / "o", n_videos=3, min_frames=60, max_frames=80, channels={"rgb": 8, "depth": 4})
    ds = open_dataset(out)
    assert ds.modalities == ["depth", "rgb"] and ds.channels("depth") == 4
    with pytest.raises(InputError, match="already exists"):
        synthesize(tmp_path / "o", n_videos=3)
    synthesize(tmp_path / "o", n_videos=3, min_frames=60, max_frames=80, channels=8, overwrite=True)
    assert open_dataset(tmp_path / "o").modalities == ["depth", "imu", "mvrgb", "noise", "rgb", "text"]
    with pytest.raises(ValueError, match="channels: unknown modality 'lidar'"):
        synthesize(tmp_path / "x", channels={"lidar": 3})
    with pytest.raises(ValueError, match="n_videos"):
        synthesize(tmp_path / "x", n_videos=2)
    with pytest.raises(ValueError, match="max_frames"):
        synthesize(tmp_path / "x", min_frames=100, max_frames=50)
    assert not (tmp_path / "x").exists()
    # no temporary folders left behind
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o"]
