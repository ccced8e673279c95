"""The synthetic dataset's collapse dial and the oracle as an upper bound.

The dial changes how the direction of a trip is coded (depth: linear -> XOR; rgb: a hint that gets
easier), never what each modality holds: labels, draws, the oracle and the partner-only cut points
are the same at every level. The oracle is checked against held-out predictors that see more
(previous action, timing) than its key.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion.cli import main as cli_main
from rankfusion.data import open_dataset, synthesize
from rankfusion.data.synth import (
    ACTIONS, CUT_OBS, HINT_ACCURACY, HINT_GAIN, XOR_GAIN, _dial_draws, _sample_video, cut_hints, cut_records,
    oracle_accuracy, partner_only, partner_only_cuts,
)

SMALL = {"rgb": 8, "depth": 8, "noise": 8, "mvrgb": 8}
LEVELS = (0.0, 0.5, 1.0)


@pytest.fixture(scope="module")
def levels(tmp_path_factory):
    root = tmp_path_factory.mktemp("collapse")
    kw = dict(seed=5, n_videos=24, min_frames=100, max_frames=200, channels=SMALL)
    sets = {k: synthesize(root / f"k{k:g}", collapse=k, **kw) for k in LEVELS}
    sets[None] = synthesize(root / "off", **kw)
    return sets


def _meta(root):
    return json.loads((root / "synth.json").read_text())


def test_the_dial_keeps_what_each_subset_knows(levels):
    metas = {k: _meta(r) for k, r in levels.items()}
    base = metas[0.0]
    for k in LEVELS:
        m = metas[k]
        assert m["dials"]["collapse"] == k and m["collapse"]["level"] == k
        # the same information at every K: oracle (all splits, test, per ratio) and partner-only cut points
        for key in ("oracle", "oracle_test", "oracle_by_obs", "partner_only", "oracle_exact_share"):
            assert m[key] == base[key], (k, key)
        g = m["collapse"]["gains"]
        assert g["linear_direction"] == pytest.approx(1.2 * (1 - k)) and g["xor"] == pytest.approx(XOR_GAIN * k)
        assert g["hint"] == pytest.approx(HINT_GAIN[0] + k * (HINT_GAIN[1] - HINT_GAIN[0]))
    # ... and the one the dial adds to rgb: its hint, right w.p. 0.9 in every trip's carry
    assert base["oracle"]["rgb"] == pytest.approx(HINT_ACCURACY, abs=0.02)  # a rare cut inside pick_dish counts 1
    assert base["oracle"]["rgb+depth"] == base["oracle"]["depth"] == 1.0
    assert metas[None]["oracle"]["rgb"] == pytest.approx(0.5, abs=0.01) and metas[None]["collapse"] is None
    # the labels, the splits and the factors other than the dial's are those of the dataset without the dial
    ds = open_dataset(levels[0.0])
    for v in ds.videos:
        for k in (0.5, 1.0, None):
            assert (levels[k] / "groundTruth" / f"{v}.txt").read_bytes() == \
                (levels[0.0] / "groundTruth" / f"{v}.txt").read_bytes()
        f0, f1, off = (np.load(levels[k] / "factors" / f"{v}.npz") for k in (0.0, 1.0, None))
        for key in ("hint", "xor_sign", "partner_only", "cuts"):
            assert np.array_equal(f0[key], f1[key]), key
        for key in off.files:
            if key != "partner_only":
                assert np.array_equal(off[key], f0[key]), key
        rec = cut_records(f0["action"], f0["direction"], obs=(0.2, 0.3, 0.5))
        assert np.array_equal(f0["partner_only"], partner_only(rec, cut_hints(f0["hint"], rec)))
    for split in ("train", "val", "test"):
        name = f"splits/{split}.split1.bundle"
        assert (levels[1.0] / name).read_bytes() == (levels[None] / name).read_bytes()


def test_the_dial_only_adds_its_codes_to_the_features(levels):
    # Same noise draws at every K: rgb(K) - rgb(off) is the hint's signal, zero outside trips and
    # growing with K as the hint's gain; depth differs (its direction code) only where there is a direction.
    ds = open_dataset(levels[None])
    hint_frames = 0
    for v in ds.videos[:8]:
        f = np.load(levels[0.0] / "factors" / f"{v}.npz")
        x = {k: np.load(levels[k] / "features" / "rgb" / f"{v}.npy").astype(np.float64) for k in (None, 0.0, 1.0)}
        d0, d1 = x[0.0] - x[None], x[1.0] - x[None]
        scale = np.abs(x[None]).max()
        outside = f["hint"] == 0
        assert np.abs(d0[:, outside]).max() <= 1e-6 * scale and np.abs(d1[:, outside]).max() <= 1e-6 * scale
        inside = ~outside
        hint_frames += int(inside.sum())
        if inside.any():
            # float32 features: relative rounding ~1e-7 of values of size ~scale
            np.testing.assert_allclose(d1[:, inside], d0[:, inside] * HINT_GAIN[1] / HINT_GAIN[0],
                                       atol=4e-7 * scale * (1 + HINT_GAIN[1] / HINT_GAIN[0]))
        dep = {k: np.load(levels[k] / "features" / "depth" / f"{v}.npy").astype(np.float64) for k in (None, 0.0, 1.0)}
        assert np.abs(dep[0.0] - dep[None]).max() <= 1e-6 * np.abs(dep[None]).max()  # K = 0: depth as without the dial
        gap = np.abs(dep[1.0] - dep[None]).max(0)
        no_dir = f["direction"] == 0
        assert np.all(gap[no_dir] <= 1e-6 * np.abs(dep[None]).max())
        assert np.all(gap[~no_dir] > 1e-4 * np.abs(dep[None]).max())
    assert hint_frames > 100


def _simulate(rng, n_videos, complementarity):
    """Cut records, hints and timing features of ``n_videos`` generated timelines (no rendering)."""
    rows = []
    for video in range(n_videos):
        n = int(rng.integers(150, 351))
        segs = _sample_video(rng, n, complementarity)
        act = np.concatenate([np.full(f, a) for a, f, _ in segs])
        dirn = np.concatenate([np.full(f, d) for _, f, d in segs])
        hint, _ = _dial_draws(rng, segs)
        rec = cut_records(act, dirn, CUT_OBS)
        starts = np.flatnonzero(np.r_[True, act[1:] != act[:-1]])
        for r, h in zip(rec, cut_hints(hint, rec)):
            j = r["cut"] - 1
            s = starts[starts <= j][-1]
            prev = int(act[s - 1]) if s > 0 else -1
            rows.append((r, int(h), prev, n // 25, min((j - s) // 8, 10), video))
    rec = np.array([r[0] for r in rows])
    hints = np.array([r[1] for r in rows])
    feats = np.array([(r[0]["obs"] == CUT_OBS[0], r[0]["current"], r[1], r[2], r[3], r[4]) for r in rows], np.int64)
    return rec, hints, feats, np.array([r[5] for r in rows])


def _se(p, videos):
    # Binomial standard error of an accuracy near p. The cut points of one video often lie in one
    # trip (one direction, one hint): count videos, not cut points (conservative).
    return np.sqrt(p * (1 - p) / len(np.unique(videos)))


def _lookup_fit(feats, target):
    """Most frequent target per full key, with the (current action, hint) key as a fallback."""
    full, short = {}, {}
    for f, t in zip(map(tuple, feats), target):
        full.setdefault(f, {}).setdefault(t, 0)
        full[f][t] += 1
        short.setdefault(f[1:3], {}).setdefault(t, 0)
        short[f[1:3]][t] += 1
    best = {k: max(v, key=v.get) for k, v in full.items()}
    fallback = {k: max(v, key=v.get) for k, v in short.items()}
    return lambda f: best.get(tuple(f), fallback.get(tuple(f[1:3]), 0))


@pytest.mark.parametrize("complementarity", [1.0, 0.5])
def test_the_oracle_is_not_beaten_by_held_out_predictors_that_see_more(complementarity):
    # A lookup table of the next action given what rgb sees (the current action, the hint) plus
    # what the oracle's key leaves out (the previous action, the video's length, the time spent
    # in the current segment, the ratio), fitted on one generated set and scored on another, must
    # not beat the oracle computed on the scoring set by more than its binomial sampling error
    # (3 se, one-sided). A predictor that also sees the direction must beat rgb's oracle: the
    # test can fail. (At complementarity 1 the table follows the hint and scores the share of right
    # hints in the scoring set, within sampling error of the bound HINT_ACCURACY.)
    rng = np.random.default_rng(2026)
    fit_rec, fit_h, fit_x, _ = _simulate(rng, 1500, complementarity)
    rec, hints, x, vid = _simulate(rng, 1500, complementarity)
    keep, fit_keep = rec["next"] >= 0, fit_rec["next"] >= 0
    for with_hint in (True, False):  # rgb with the collapse dial's hint, and without the dial
        xf, xs = fit_x.copy(), x.copy()
        if not with_hint:
            xf[:, 2] = xs[:, 2] = 0
        predict = _lookup_fit(xf[fit_keep], fit_rec["next"][fit_keep])
        right = np.array([predict(f) for f in xs]) == rec["next"]
        # over every cut point, and over the decision-bearing ones alone (where the bound is exact)
        for sel in (keep, keep & rec["bearing"]):
            bound = oracle_accuracy(rec[sel], "rgb", hints[sel] if with_hint else None)
            se = _se(bound, vid[sel])
            assert right[sel].mean() <= bound + 3 * se, (with_hint, right[sel].mean(), bound, se)
    # power, where the bound is exact: the direction is worth far more than the sampling error
    xd, xfd = x.copy(), fit_x.copy()
    xd[:, 2], xfd[:, 2] = rec["direction"], fit_rec["direction"]
    predict = _lookup_fit(xfd[fit_keep], fit_rec["next"][fit_keep])
    sel = keep & rec["bearing"]
    acc_d = float((np.array([predict(f) for f in xd[sel]]) == rec["next"][sel]).mean())
    bound = oracle_accuracy(rec[sel], "rgb", hints[sel])
    assert acc_d > bound + 5 * _se(bound, vid[sel])
    assert acc_d <= oracle_accuracy(rec[sel], "rgb+depth")


def test_partner_only_share_is_the_wrong_hints(levels):
    # Every decision-bearing carry is the partner's alone with probability 1 - 0.9, independently
    # per trip: over many simulated trips the share is within 4 binomial sd of 0.15.
    rng = np.random.default_rng(7)
    only = carries = 0
    for _ in range(800):
        n = int(rng.integers(150, 351))
        segs = _sample_video(rng, n, 1.0)
        act = np.concatenate([np.full(f, a) for a, f, _ in segs])
        dirn = np.concatenate([np.full(f, d) for _, f, d in segs])
        hint, _ = _dial_draws(rng, segs)
        rec = cut_records(act, dirn, (CUT_OBS[0],))  # one cut per video: independent trips
        only += int(partner_only(rec, cut_hints(hint, rec)).sum())
        carries += int(partner_only(rec).sum())
    p = 1 - HINT_ACCURACY
    assert abs(only / carries - p) <= 4 * np.sqrt(p * (1 - p) / carries), (only, carries)
    # the dataset's record of them
    found = partner_only_cuts(levels[1.0])
    meta = _meta(levels[1.0])
    assert sum(sum(o in CUT_OBS for o in obs) for obs in found.values()) == meta["partner_only"]["cuts"]
    test = open_dataset(levels[1.0]).split("test")
    assert sum(sum(o in CUT_OBS for o in found[v]) for v in test) == meta["partner_only"]["cuts_test"]
    carry = ACTIONS.index("carry_dish")
    for v, obs in found.items():
        f = np.load(levels[1.0] / "factors" / f"{v}.npz")
        for o in obs:
            j = int(o * len(f["action"])) - 1
            assert f["action"][j] == carry and f["hint"][j] == -f["direction"][j]


@pytest.mark.parametrize("value, message", [
    ("1.5", "Error: --collapse must be <= 1.0, got 1.5"),
    ("-0.1", "Error: --collapse must be >= 0.0, got -0.1"),
    ("nan", "Error: --collapse must be finite, got nan"),
])
def test_cli_collapse_range(tmp_path, value, message):
    res = CliRunner().invoke(cli_main, ["data", "synth", str(tmp_path / "o"), "--videos", "3", "--collapse", value])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), res.output
    assert list(tmp_path.iterdir()) == []


def test_cli_collapse_reaches_synth_json(tmp_path):
    res = CliRunner().invoke(cli_main, ["data", "synth", str(tmp_path / "o"), "--videos", "4", "--min-frames", "60",
                                        "--max-frames", "80", "--channels", "8", "--collapse", "0.25"])
    assert res.exit_code == 0, res.output
    meta = _meta(tmp_path / "o")
    assert meta["dials"]["collapse"] == 0.25 and meta["collapse"]["hint_accuracy"] == HINT_ACCURACY
    assert "partner-only" in res.output
    with pytest.raises(ValueError, match="collapse must be <= 1.0"):
        synthesize(tmp_path / "x", n_videos=3, collapse=2)
    with pytest.raises(TypeError, match="collapse must be a real number"):
        synthesize(tmp_path / "x", n_videos=3, collapse="high")


def test_partner_only_cuts_refuses_what_is_not_a_synthetic_dataset(levels, tmp_path):
    with pytest.raises(ValueError, match="video 'nope': no factors file"):
        partner_only_cuts(levels[1.0], ["nope"])
    (tmp_path / "factors").mkdir()
    np.savez(tmp_path / "factors" / "v.npz", action=np.zeros(10, np.int16), cuts=np.array([2, 3, 5]))
    with pytest.raises(ValueError, match="has no 'partner_only' array: regenerate the dataset"):
        partner_only_cuts(tmp_path)
    # dial off: every decision-bearing carry is the partner's
    off = partner_only_cuts(levels[None])
    assert sum(len(v) for v in off.values()) >= _meta(levels[None])["partner_only"]["cuts"] > 0


@pytest.mark.parametrize("seed, energy, snr", [(0, 8.30, 10.41), (4, 4.32, 4.78)])
def test_the_hint_is_the_easier_read_already_at_k0(seed, energy, snr):
    # docs/datasets.md, "Collapse": at K = 0 the hint has the gain of depth's linear code, but its
    # projection lacks the factor projections' decaying column scale, so it carries 4.3-8.3 times
    # the per-channel energy (4.8-10.4 times relative to each modality's noise; seeds 0-4)
    from rankfusion.data.synth import (
        MODALITY_GAINS, NOISE, SLICES, SynthConfig, _CollapseCode, _dial_seq, _signal_power, _World,
    )

    cfg = SynthConfig(seed=seed).validate()
    world_seq, _, pilot_seq, _ = np.random.SeedSequence(seed).spawn(4)
    world = _World(np.random.default_rng(world_seq), cfg.channels)
    world.set_amplitudes(_signal_power(np.random.default_rng(pilot_seq), world, cfg), cfg)
    code = _CollapseCode(np.random.default_rng(_dial_seq(world_seq)), cfg.channels, 0.0)

    def noise(m):  # per-channel energy of the nuisance and white noise (unit stationary variance each)
        nuis, white = (s * world.amplitude[m] for s in NOISE[m])
        return nuis**2 * np.sum(world.nuisance[m] ** 2) / world.nuisance[m].shape[1] + white**2

    e_dir = np.mean((MODALITY_GAINS["depth"]["direction"] * world.direction
                     @ world.proj["depth"][SLICES["direction"]]) ** 2)
    e_hint = np.mean((code.gains()["hint"] * code.hint_vec @ code.proj["rgb"]) ** 2)
    assert code.gains()["hint"] == MODALITY_GAINS["depth"]["direction"]
    # the documented ratios, to the two decimals they are given with
    assert e_hint / e_dir == pytest.approx(energy, abs=0.006)
    assert (e_hint / noise("rgb")) / (e_dir / noise("depth")) == pytest.approx(snr, abs=0.006)
