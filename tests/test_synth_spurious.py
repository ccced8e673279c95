"""The synthetic dataset's spurious cue: right with probability (1 + S) / 2 in training, 1/2 at test.

The cue adds a signal to the anchors (rgb, mvrgb) and nothing else: labels, splits, depth and
every other draw are the same at every level S and without the cue, and what a model can attain on
held-out videos (the oracle, the partner-only cut points) does not depend on S. It combines with
the collapse dial.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from scipy.stats import binomtest

from rankfusion.cli import main as cli_main
from rankfusion.data import open_dataset, synthesize
from rankfusion.data.synth import A, _cue_draws, _sample_video, _trip_segments

SMALL = {"rgb": 8, "depth": 8, "noise": 8, "mvrgb": 8}
LEVELS = (0.0, 0.5, 1.0)
KW = dict(seed=5, n_videos=64, min_frames=100, max_frames=200, channels=SMALL)


@pytest.fixture(scope="module")
def sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("spurious")
    out = {s: synthesize(root / f"s{s:g}", spurious=s, **KW) for s in LEVELS}
    out[None] = synthesize(root / "off", **KW)
    out["collapse"] = synthesize(root / "k1", collapse=1.0, **KW)
    out["both"] = synthesize(root / "k1s1", collapse=1.0, spurious=1.0, **KW)
    return out


def _meta(root):
    return json.loads((root / "synth.json").read_text())


def _factors(root, video):
    with np.load(root / "factors" / f"{video}.npz") as f:
        return {k: f[k] for k in f.files}


def _feat(root, modality, video):
    return np.load(root / "features" / modality / f"{video}.npy").astype(np.float64)


def test_the_cue_keeps_labels_splits_depth_and_the_oracle(sets):
    metas = {k: _meta(r) for k, r in sets.items()}
    off = metas[None]
    assert off["spurious"] is None and "spurious" not in off["dials"] and off["config"]["spurious"] is None
    for s in LEVELS:
        m = metas[s]
        assert m["dials"]["spurious"] == s and m["spurious"]["level"] == s and m["config"]["spurious"] == s
        # the oracle is for held-out videos, where the cue says nothing: the same at every S
        for key in ("oracle", "oracle_test", "oracle_by_obs", "partner_only", "oracle_exact_share", "cut_obs"):
            assert m[key] == off[key], (s, key)
        assert m["measured"]["decision_bearing_share"] == off["measured"]["decision_bearing_share"]
    assert off["oracle_test"]["rgb"] == 0.5 and off["oracle_test"]["rgb+depth"] == 1.0
    videos = open_dataset(sets[None]).videos
    for split in ("train", "val", "test"):
        name = f"splits/{split}.split1.bundle"
        assert all((sets[s] / name).read_bytes() == (sets[None] / name).read_bytes() for s in LEVELS)
    for v in videos:
        base = _factors(sets[None], v)
        for s in LEVELS:
            assert (sets[s] / "groundTruth" / f"{v}.txt").read_bytes() == \
                (sets[None] / "groundTruth" / f"{v}.txt").read_bytes()
            f = _factors(sets[s], v)
            assert set(f) == set(base) | {"cue"}
            for key in base:
                assert np.array_equal(f[key], base[key]), (s, v, key)
            for m in ("depth", "noise"):  # depth keeps its code; the noise control copies depth
                assert (sets[s] / "features" / m / f"{v}.npy").read_bytes() == \
                    (sets[None] / "features" / m / f"{v}.npy").read_bytes(), (s, v, m)


def test_the_cue_follows_its_law_per_split(sets):
    train = set(open_dataset(sets[None]).split("train"))
    videos = open_dataset(sets[None]).videos
    cues = {s: {v: _factors(sets[s], v)["cue"] for v in videos} for s in LEVELS}
    for v in videos:
        f = _factors(sets[None], v)
        trip = cues[1.0][v] != 0  # the cue shows in pick/carry trips only
        assert np.array_equal(trip, np.isin(f["action"], (A["pick_dish"], A["carry_dish"])) & (f["direction"] != 0))
        if v in train:
            # one draw per trip, shared by every level: a cue right at S = 0 is right at S = 0.5,
            # and at S = 1 every training cue is the direction
            assert np.array_equal(cues[1.0][v][trip], f["direction"][trip])
            right0, right5 = ((cues[s][v] == f["direction"]) & trip for s in (0.0, 0.5))
            assert np.all(right5[right0])
        else:  # val and test: 1/2 at every level, the same draws
            assert all(np.array_equal(cues[s][v], cues[0.0][v]) for s in LEVELS)
    for s in LEVELS:
        rec = _meta(sets[s])["spurious"]
        # the counts are the trips of the factors (one per pick, and per carry not right after its pick)
        n_train = sum(sum(new for *_, new in _trip_segments(_segments(sets[None], v))) for v in train)
        n_all = sum(sum(new for *_, new in _trip_segments(_segments(sets[None], v))) for v in videos)
        assert rec["trips_train"] == n_train > 40 and rec["trips_eval"] == n_all - n_train > 40
        for part, law in (("train", (1 + s) / 2), ("eval", 0.5)):
            right, trips = rec[f"cue_right_{part}"], rec[f"trips_{part}"]
            assert rec[f"cue_accuracy_{part}"] == right / trips and rec["cue_accuracy_law"][part] == law
            if law < 1:
                lo, hi = binomtest(right, trips).proportion_ci(0.999)
                assert lo <= law <= hi, (s, part, right, trips)
            else:
                assert right == trips


def _segments(root, video):
    """``(action, frames, direction)`` runs of a video's factors (no two trip segments repeat in a row)."""
    f = _factors(root, video)
    a, d = f["action"].astype(np.int64), f["direction"].astype(np.int64)
    starts = np.flatnonzero(np.r_[True, (a[1:] != a[:-1]) | (d[1:] != d[:-1])])
    ends = np.r_[starts[1:], len(a)]
    return [(int(a[i]), int(e - i), int(d[i])) for i, e in zip(starts, ends)]


def test_cue_draws_match_the_law_over_many_trips():
    # every trip draws its own cue, independently: the share of right cues is within 4 binomial sd
    rng = np.random.default_rng(11)
    for acc in (0.5, 0.75, 0.9):
        right = trips = 0
        for _ in range(700):
            segs = _sample_video(rng, int(rng.integers(150, 351)), 1.0)
            _, t, r = _cue_draws(rng, segs, acc)
            right, trips = right + r, trips + t
        assert trips > 800
        assert abs(right / trips - acc) <= 4 * np.sqrt(acc * (1 - acc) / trips), (acc, right, trips)


def test_the_cue_only_adds_its_signal_to_the_anchors(sets):
    # Same noise draws at every S: rgb(S) - rgb(off) is the cue's signal, zero outside trips, and
    # the signal of a trip flips sign with its cue (S = 0 against S = 1).
    videos = open_dataset(sets[None]).videos[:12]
    flips = 0
    for m in ("rgb", "mvrgb"):
        for v in videos:
            off = _feat(sets[None], m, v)
            scale = np.abs(off).max()
            d0, d1 = (_feat(sets[s], m, v) - off for s in (0.0, 1.0))
            c0, c1 = (_factors(sets[s], v)["cue"] for s in (0.0, 1.0))
            tol = 4e-7 * scale * 3  # float32 rounding of values of size ~scale
            assert np.abs(d0[:, c0 == 0]).max(initial=0) <= tol and np.abs(d1[:, c1 == 0]).max(initial=0) <= tol
            inside = c0 != 0
            if inside.any():
                assert np.all(np.abs(d1[:, inside]).max(0) > 100 * tol)
                np.testing.assert_allclose(d1[:, inside], d0[:, inside] * (c1 * c0)[inside], atol=tol)
                flips += int((c1 != c0)[inside].sum())
    assert flips > 50


def test_the_cue_combines_with_the_collapse_dial(sets):
    col, spur, both, off = (sets[k] for k in ("collapse", 1.0, "both", None))
    mb, mc = _meta(both), _meta(col)
    assert mb["dials"]["collapse"] == 1.0 and mb["dials"]["spurious"] == 1.0
    for key in ("oracle", "oracle_test", "partner_only", "collapse"):
        assert mb[key] == mc[key], key
    assert mb["spurious"] == _meta(spur)["spurious"]
    for v in open_dataset(off).videos[:12]:
        fb, fc, fs = _factors(both, v), _factors(col, v), _factors(spur, v)
        assert np.array_equal(fb["hint"], fc["hint"]) and np.array_equal(fb["xor_sign"], fc["xor_sign"])
        assert np.array_equal(fb["cue"], fs["cue"]) and np.array_equal(fb["partner_only"], fc["partner_only"])
        assert (both / "features" / "depth" / f"{v}.npy").read_bytes() == \
            (col / "features" / "depth" / f"{v}.npy").read_bytes()
        x0 = _feat(off, "rgb", v)
        tol = 4e-7 * np.abs(x0).max() * 8
        np.testing.assert_allclose(_feat(both, "rgb", v) - x0,
                                   (_feat(col, "rgb", v) - x0) + (_feat(spur, "rgb", v) - x0), atol=tol)


@pytest.mark.parametrize("value, message", [
    ("1.5", "Error: --spurious must be <= 1.0, got 1.5"),
    ("-0.1", "Error: --spurious must be >= 0.0, got -0.1"),
    ("nan", "Error: --spurious must be finite, got nan"),
])
def test_cli_spurious_range(tmp_path, value, message):
    res = CliRunner().invoke(cli_main, ["data", "synth", str(tmp_path / "o"), "--videos", "3", "--spurious", value])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_spurious_reaches_synth_json(tmp_path):
    res = CliRunner().invoke(cli_main, ["data", "synth", str(tmp_path / "o"), "--videos", "6", "--min-frames", "60",
                                        "--max-frames", "80", "--channels", "8", "--spurious", "0.25",
                                        "--collapse", "0.5"])
    assert res.exit_code == 0, res.output
    meta = _meta(tmp_path / "o")
    assert meta["dials"]["spurious"] == 0.25 and meta["spurious"]["cue_accuracy_law"] == {"train": 0.625, "eval": 0.5}
    assert meta["dials"]["collapse"] == 0.5 and "cue right" in res.output
    with pytest.raises(ValueError, match="spurious must be <= 1.0"):
        synthesize(tmp_path / "x", n_videos=3, spurious=2)
    with pytest.raises(TypeError, match="spurious must be a real number"):
        synthesize(tmp_path / "x", n_videos=3, spurious="high")
