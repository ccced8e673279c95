"""The synthetic dataset: layout, determinism, atomic writing, and the complementarity it promises."""

from __future__ import annotations

import json

import numpy as np
import pytest

from rankfusion._validation import InputError
from rankfusion.data import open_dataset, synthesize
from rankfusion.data.synth import ACTIONS, _noise_law
from rankfusion.spectral import GramAccumulator


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    out = tmp_path_factory.mktemp("s") / "synth"
    return synthesize(out, seed=3, n_videos=12, min_frames=150, max_frames=400)


def test_layout_and_check(small):
    ds = open_dataset(small)
    rep = ds.validate()
    assert rep.n_videos == 12 and len(ds.classes) == len(ACTIONS) == 12
    assert rep.splits == {"train": 6, "val": 1, "test": 5}  # DEFAULT_SPLIT 0.5 / 0.1 / 0.4
    assert rep.channels == {"depth": 64, "imu": 16, "mvrgb": 64, "noise": 64, "rgb": 64, "text": 32}
    assert 150 <= rep.frames_min and rep.frames_max <= 400
    meta = json.loads((small / "synth.json").read_text())
    assert meta["config"]["seed"] == 3 and meta["config"]["n_videos"] == 12
    assert meta["most_complementary"] == "depth" and meta["generator"] == "rankfusion.data.synth"
    assert (small / "factors" / f"{ds.videos[0]}.npz").is_file()


def test_deterministic(small, tmp_path):
    again = synthesize(tmp_path / "again", seed=3, n_videos=12, min_frames=150, max_frames=400)
    files = sorted(p.relative_to(small) for p in small.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:  # every file, synth.json included: a regenerated dataset keeps its fingerprint
        assert (small / rel).read_bytes() == (again / rel).read_bytes(), rel
    from rankfusion.runcache import dataset_fingerprint

    assert dataset_fingerprint(small) == dataset_fingerprint(again)
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
    with pytest.raises(InputError, match=r"already exists; pass overwrite=True to replace it"):
        synthesize(tmp_path / "o", n_videos=3)
    with pytest.raises(InputError, match=r"^n_videos must be at least 3, got 2$"):
        synthesize(tmp_path / "n", n_videos=2)
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


# ----------------------------------------------------------------------------- dials and ground truth
from click.testing import CliRunner  # noqa: E402

from rankfusion.cli import main as cli_main  # noqa: E402
from rankfusion.data.synth import (  # noqa: E402
    CUT_DTYPE, CUT_OBS, HINT_ACCURACY, TRANSITIONS, _sample_video, cut_records, oracle_accuracy, oracle_table,
    partner_only, plugin_accuracy,
)

SMALL = {"rgb": 8, "depth": 8, "noise": 8, "mvrgb": 8}


def _frames(segments):
    act = np.concatenate([np.full(f, a) for a, f, _ in segments])
    dirn = np.concatenate([np.full(f, d) for _, f, d in segments])
    return act, dirn


@pytest.mark.parametrize("level", [0.0, 0.3, 0.8, 1.0])
def test_complementarity_sets_the_share_of_decision_bearing_cuts(level):
    # Each evaluation cut point is decision-bearing with probability C, independently: the share
    # measured from the labels (cut_records) is Binomial(n, C) / n; 4 sd covers it (exact at 0 and 1).
    rng = np.random.default_rng(11)
    bearing, n_cuts = 0, 0
    for _ in range(600):
        act, dirn = _frames(_sample_video(rng, int(rng.integers(20, 500)), level))
        rec = cut_records(act, dirn)
        bearing += int(rec["bearing"].sum())
        n_cuts += len(rec)
    share = bearing / n_cuts
    assert abs(share - level) <= 4 * np.sqrt(level * (1 - level) / n_cuts), share
    if level in (0.0, 1.0):
        assert share == level


def test_videos_follow_the_grammar_and_their_length():
    rng = np.random.default_rng(5)
    for level in (0.0, 0.5, 1.0):
        for _ in range(150):
            n = int(rng.integers(20, 600))
            segs = _sample_video(rng, n, level)
            assert sum(f for _, f, _ in segs) == n and min(f for _, f, _ in segs) >= 1
            for (a, _, d), (b, _, _) in zip(segs[:-1], segs[1:]):
                if ACTIONS[a] == "carry_dish":
                    assert ACTIONS[b] == ("load_dishwasher" if d > 0 else "place_on_shelf")
                else:
                    assert ACTIONS[b] in TRANSITIONS[ACTIONS[a]], (ACTIONS[a], ACTIONS[b])


def test_cut_records_by_hand():
    # 10 frames: walk x3, pick x2, carry x3 (toward), load x2; cuts int(0.2*10)=2, int(0.3*10)=3, 5, 7
    a = np.array([0, 0, 0, 2, 2, 3, 3, 3, 4, 4])
    d = np.array([1, 1, 1, 1, 1, 1, 1, 1, 1, 1])
    r = cut_records(a, d, obs=(0.2, 0.3, 0.5, 0.7))
    assert r["cut"].tolist() == [2, 3, 5, 7]
    assert r["current"].tolist() == [0, 0, 2, 3]
    assert r["next"].tolist() == [2, 2, 3, 4]
    assert r["bearing"].tolist() == [False, False, True, True]
    # a carry after unload_dishwasher is always "away": not decision-bearing; the video's end has no next
    a2 = np.array([5, 5, 3, 3, 3, 3, 3, 3, 3, 3])
    r2 = cut_records(a2, -np.ones(10, int), obs=(0.5,))
    assert not r2["bearing"][0] and r2["next"][0] == -1


def test_oracle_on_a_case_worked_by_hand():
    carry, load, place, walk, pick, take, drink = (ACTIONS.index(x) for x in (
        "carry_dish", "load_dishwasher", "place_on_shelf", "walk", "pick_dish", "take_cup", "drink"))
    rows = [(carry, 1, load, True), (carry, 1, load, True), (carry, -1, place, True),
            (walk, 1, pick, False), (walk, 1, pick, False), (walk, -1, take, False),
            (drink, 0, walk, False), (drink, 0, -1, False)]  # the last has no next action: skipped
    rec = np.array([(0.2, 1, c, d, nx, b) for c, d, nx, b in rows], CUT_DTYPE)
    # The bound: in a trip's carry the direction is a fair coin rgb cannot see (1/2 each); the
    # 4 cut points outside trips are bounded by 1: (3 / 2 + 4) / 7.
    assert oracle_accuracy(rec, "rgb") == pytest.approx(5.5 / 7, abs=1e-12)
    assert oracle_accuracy(rec, "rgb+depth") == oracle_accuracy(rec, ["depth"]) == 1.0
    assert oracle_accuracy(rec, "rgb+mvrgb") == oracle_accuracy(rec, "rgb+noise") == oracle_accuracy(rec, "rgb")
    # with the collapse dial's hint (right w.p. HINT_ACCURACY) rgb and mvrgb do that well in the carry,
    # whatever the hint says
    hints = np.array([1, -1, -1, 0, 0, 0, 0, 0])
    assert oracle_accuracy(rec, "rgb", hints) == pytest.approx((3 * HINT_ACCURACY + 4) / 7, abs=1e-12)
    assert oracle_accuracy(rec, "mvrgb", hints) == oracle_accuracy(rec, "rgb", hints)
    assert oracle_accuracy(rec, "noise", hints) == oracle_accuracy(rec, "rgb")
    assert oracle_accuracy(rec, "rgb+depth", hints) == 1.0
    # the partner alone decides the carries whose hint is wrong (the second)
    assert partner_only(rec, hints).tolist() == [False, True, False, False, False, False, False, False]
    assert partner_only(rec).tolist() == [True, True, True, False, False, False, False, False]
    # the plug-in rate (not a bound): rgb sees the action: carry -> load (2 of 3), walk -> pick
    # (2 of 3), drink -> walk (1): 5 of 7; + depth's direction inside the trip: 6 of 7.
    assert plugin_accuracy(rec, "rgb") == pytest.approx(5 / 7, abs=1e-12)
    assert plugin_accuracy(rec, "rgb+depth") == plugin_accuracy(rec, ["depth"]) == pytest.approx(6 / 7, abs=1e-12)
    # noise sees nothing: the most frequent next action overall (load or pick, 2 each): 2 of 7.
    assert plugin_accuracy(rec, "noise") == pytest.approx(2 / 7, abs=1e-12)
    table = oracle_table(rec, ["rgb", "depth", "mvrgb", "noise"])
    assert set(table) == {"rgb", "depth", "mvrgb", "noise", "rgb+depth", "rgb+mvrgb", "rgb+noise"}
    with pytest.raises(ValueError, match="modality: unknown 'lidar'"):
        oracle_accuracy(rec, "rgb+lidar")


@pytest.fixture(scope="module")
def dial_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("dials")
    kw = dict(seed=2, n_videos=20, min_frames=100, max_frames=200, channels=SMALL)
    return {name: synthesize(root / name, **kw, **extra) for name, extra in {
        "c1": dict(complementarity=1.0), "c0": dict(complementarity=0.0),
        "n0": dict(complementarity=1.0, nuisance=0.0, noise_scale=0.0),
        "n05": dict(complementarity=1.0, nuisance=0.5, noise_scale=0.0),
        "n2": dict(complementarity=1.0, nuisance=2.0, noise_scale=0.0),
        "r2": dict(complementarity=1.0, imbalance=2.0), "r3": dict(complementarity=1.0, imbalance=3.0),
    }.items()}


def _meta(root):
    return json.loads((root / "synth.json").read_text())


def test_synth_json_records_dials_and_oracle(dial_sets):
    m1, m0 = _meta(dial_sets["c1"]), _meta(dial_sets["c0"])
    assert m1["dials"] == {"complementarity": 1.0, "nuisance": 0.1, "imbalance": 1.0}
    assert m1["measured"]["decision_bearing_share"] == 1.0 and m0["measured"]["decision_bearing_share"] == 0.0
    assert m1["measured"]["cut_points"] == 20 * len(CUT_OBS)
    for key in ("rgb", "depth", "rgb+depth", "mvrgb", "noise", "rgb+mvrgb", "rgb+noise"):
        assert 0.0 <= m1["oracle"][key] <= 1.0 and key in m0["oracle"]
    # C = 1: the direction decides every next action; rgb can only guess it (the load/place split
    # of 20 trips, each covering both cut points of its video: Binomial(20, 1/2), 4 sd); C = 0:
    # depth adds nothing
    assert m1["oracle"]["rgb+depth"] == 1.0 and m1["oracle_exact_share"] == 1.0
    assert abs(m1["oracle"]["rgb"] - 0.5) <= 0.5 / np.sqrt(20) * 4 + 1e-12
    assert abs(m1["oracle_plugin"]["rgb"] - 0.5) <= 0.5 / np.sqrt(20) * 4 + 1e-12
    # C = 0: no cut point is decision-bearing, where the bound is exact; outside trips it is 1
    assert m0["oracle_exact_share"] == 0.0 and set(m0["oracle"].values()) == {1.0}
    assert m0["oracle_plugin"]["rgb+depth"] == m0["oracle_plugin"]["rgb"] == m0["oracle_plugin"]["rgb+mvrgb"]
    assert m0["oracle_plugin"]["noise"] < m0["oracle_plugin"]["rgb"]
    # dial off, C = 1: rgb is at 1/2 exactly on the partner-only cut points (the carries) and
    # credited 1 on the rest (a cut inside pick_dish, rare)
    assert m1["oracle"]["rgb"] == pytest.approx(1 - 0.5 * m1["partner_only"]["share"], abs=1e-12)
    assert m1["partner_only"]["share"] > 0.9
    assert m0["partner_only"]["cuts"] == 0 and m1["collapse"] is None and "collapse" not in m1["dials"]
    # the stored cut points are those of the labels
    ds = open_dataset(dial_sets["c1"])
    v = ds.videos[0]
    f = np.load(dial_sets["c1"] / "factors" / f"{v}.npz")
    rec = cut_records(f["action"], f["direction"], obs=(0.2, 0.3, 0.5))
    assert f["cuts"].tolist() == rec["cut"].tolist() and f["decision_bearing"].tolist() == rec["bearing"].tolist()


def test_nuisance_is_a_per_video_constant_of_the_set_energy(dial_sets):
    # Same seed, no noise: features differ only by the per-video constant, whose amplitude is
    # sqrt(N) times a fixed draw, so its energy ratio between N = 2 and N = 0.5 is 4 exactly.
    ds = open_dataset(dial_sets["n0"])
    e05 = e2 = 0.0
    for v in ds.videos:
        x0 = {m: np.load(dial_sets["n0"] / "features" / m / f"{v}.npy").astype(np.float64) for m in ("rgb", "depth")}
        for name in ("n05", "n2"):
            for m in ("rgb", "depth"):
                diff = np.load(dial_sets[name] / "features" / m / f"{v}.npy") - x0[m]
                # constant over frames (float32 rounding of features of size ~1)
                assert np.abs(diff - diff[:, :1]).max() < 1e-5
                if name == "n05":
                    e05 += float(np.sum(diff[:, 0] ** 2))
                else:
                    e2 += float(np.sum(diff[:, 0] ** 2))
    assert e2 / e05 == pytest.approx(4.0, rel=1e-4)
    # Latent energy ratio: N times a weighted mean of chi2_k / k draws (k = 4 appearance, 6
    # geometry), one per video: relative sd <= sqrt(2/k) * sqrt(sum w^2) / sum w <= sqrt(2/4/20)
    # for 20 equal-weight videos (lengths vary 2x: allow 1.5x); 4 sd.
    tol = 4 * 1.5 * np.sqrt(2 / 4 / 20)
    for name, level in (("n05", 0.5), ("n2", 2.0)):
        ratio = _meta(dial_sets[name])["measured"]["nuisance_ratio"]
        for m in ("rgb", "depth"):
            assert abs(ratio[m] / level - 1) <= tol, (name, m, ratio[m])
    assert all(v == 0 for v in _meta(dial_sets["n0"])["measured"]["nuisance_ratio"].values())


def test_imbalance_scales_the_partner_noise_only(dial_sets):
    c1, r2, r3 = dial_sets["c1"], dial_sets["r2"], dial_sets["r3"]
    v = open_dataset(c1).videos[3]
    # everything the anchor-only models see is byte-identical across imbalance levels (the dose
    # family trains them once, at the base imbalance): rgb of every video, labels and splits
    files = sorted(p.relative_to(c1) for p in c1.rglob("*") if p.is_file()
                   and (p.parts[-2] in ("rgb", "mvrgb", "groundTruth", "splits") or p.name == "mapping.txt"))
    n = len(open_dataset(c1).videos)
    assert len(files) >= 3 * n + 1  # rgb, mvrgb and labels of every video, the mapping
    for f in files:
        assert (c1 / f).read_bytes() == (r2 / f).read_bytes(), f
    d1, d2, d3 = (np.load(r / "features" / "depth" / f"{v}.npy").astype(np.float64) for r in (c1, r2, r3))
    # depth = signal + R * noise with the same draws: (d3 - d1) = 2 (d2 - d1)
    np.testing.assert_allclose(d3 - d1, 2 * (d2 - d1), atol=2e-5 * np.abs(d3).max())
    m1, m2, m3 = (_meta(r)["measured"] for r in (c1, r2, r3))
    # measured SNR ratio rgb/depth: R^2 times the balanced one, exactly (same signal, R x the noise)
    base = m1["snr"]["rgb"] / m1["snr"]["depth"]
    for m, r in ((m2, 2.0), (m3, 3.0)):
        assert m["snr"]["rgb"] / m["snr"]["depth"] == pytest.approx(r**2 * base, rel=1e-6)
        assert m["imbalance"] == pytest.approx(r * m1["imbalance"], rel=1e-6)
    # balanced: both SNRs set from a 24-video pilot estimate of the signal power, realised on 20
    # videos whose mean signal power varies with their content (~20% per video): ~5% each, 3 sd
    assert abs(m1["imbalance"] - 1) < 0.2


def _gram_eigs(root, modality):
    ds = open_dataset(root)
    x = np.concatenate([np.load(root / "features" / modality / f"{v}.npy").astype(np.float64).T
                        for v in ds.videos])
    return np.sort(np.linalg.eigvalsh(x.T @ x / len(x)))[::-1], len(x)


def test_noise_control_has_depth_spectrum(dial_sets):
    # The noise stream copies depth's column means and covariance; its uncentred second-moment
    # eigenvalues (the singular-value spectrum, squared) match depth's up to its own sampling error:
    # relative sd ~ sqrt(2 / n_eff) per eigenvalue with n_eff = n / 1.67 (AR(1), rho 0.5, for
    # products), plus a p / n_eff spread of the small ones; 5 sd.
    lam_d, n = _gram_eigs(dial_sets["c1"], "depth")
    lam_n, _ = _gram_eigs(dial_sets["c1"], "noise")
    n_eff = n / ((1 + 0.25) / (1 - 0.25))
    tol = 5 * np.sqrt(2 / n_eff) + 2 * len(lam_d) / n_eff
    np.testing.assert_allclose(lam_n, lam_d, rtol=tol)
    # ... and it is not depth: no relation to the frames' content
    ds = open_dataset(dial_sets["c1"])
    v = ds.videos[0]
    d, z = ds.features(v, "depth"), ds.features(v, "noise")
    dc, zc = d - d.mean(0), z - z.mean(0)
    corr = np.abs((dc * zc).sum(0) / np.sqrt((dc**2).sum(0) * (zc**2).sum(0)))
    assert corr.max() < 6 / np.sqrt(len(d))


def test_noise_control_covariance_survives_a_dominant_mean():
    # Columns with mean 1e6 and sd 0.5..2, streamed video by video as synthesize streams the twin.
    # G/n - mu mu^T subtracts two numbers of ~1e12 whose spacing is 2**-13 ~ 1.2e-4: the naive
    # covariance is off by ~1e-4. The data themselves are known to 1e6 * 2**-53 ~ 1.1e-10, so the
    # two-pass reference (centre, then multiply) and a cancellation-free stream agree to ~1e-9.
    rng = np.random.default_rng(7)
    sd = np.array([1.0, 2.0, 0.5, 1.0])
    videos = [1e6 + sd[:, None] * rng.standard_normal((4, int(rng.integers(200, 400)))) for _ in range(8)]
    twin = GramAccumulator(center=True)
    for v in videos:  # (channels, frames), as _render returns them
        twin.update(v.T)
    x = np.concatenate(videos, axis=1).T
    ref = np.cov(x, rowvar=False, bias=True)
    mean, root = _noise_law(twin)
    np.testing.assert_allclose(mean, x.mean(axis=0), rtol=1e-14)
    assert np.abs(root @ root.T - ref).max() < 1e-8
    # the naive formula the control no longer uses fails the same check
    naive = x.T @ x / len(x) - np.outer(x.mean(axis=0), x.mean(axis=0))
    assert np.abs(naive - ref).max() > 1e-6


@pytest.mark.parametrize("args, message", [
    (["--complementarity", "1.5"], "Error: --complementarity must be <= 1.0, got 1.5"),
    (["--complementarity", "-0.1"], "Error: --complementarity must be >= 0.0, got -0.1"),
    (["--complementarity", "nan"], "Error: --complementarity must be finite, got nan"),
    (["--nuisance", "-1"], "Error: --nuisance must be >= 0.0, got -1.0"),
    (["--imbalance", "0.5"], "Error: --imbalance must be >= 1.0, got 0.5"),
    (["--channels", "noise=8", "--channels", "depth=4"], "Error: --channels: modality 'noise' copies the spectrum"),
    (["--channels", "noise=8"], "Error: --channels: modality 'noise' copies the spectrum"),
])
def test_cli_dial_errors(tmp_path, args, message):
    res = CliRunner().invoke(cli_main, ["data", "synth", str(tmp_path / "o"), "--videos", "3", *args])
    assert res.exit_code == 2
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), res.output
    assert not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_cli_dials_reach_synth_json(tmp_path):
    res = CliRunner().invoke(cli_main, ["data", "synth", str(tmp_path / "o"), "--videos", "4", "--min-frames", "60",
                                        "--max-frames", "80", "--channels", "8", "--complementarity", "0.25",
                                        "--nuisance", "0.3", "--imbalance", "2"])
    assert res.exit_code == 0, res.output
    meta = _meta(tmp_path / "o")
    assert meta["dials"] == {"complementarity": 0.25, "nuisance": 0.3, "imbalance": 2.0}
    assert "decision-bearing cut points" in res.output and "next-action oracle rgb" in res.output


def test_oracle_key_without_the_action_code():
    # A subset that sees location and motion but not the action code (e.g. depth without it)
    # cannot tell open from close (dishwasher, energy 0.3) nor take_cup from pour_water (table,
    # 0.2); the fixed directions of load (+1) and unload (-1) tell those two apart.
    from rankfusion.data.synth import _action_key

    key = _action_key(frozenset({"location", "motion", "direction"}))
    i = ACTIONS.index
    assert key[i("open_dishwasher")] == key[i("close_dishwasher")]
    assert key[i("take_cup")] == key[i("pour_water")]
    assert key[i("load_dishwasher")] != key[i("unload_dishwasher")]
    assert len(set(key.tolist())) == len(ACTIONS) - 2
    assert len(set(_action_key(frozenset({"location", "motion"})).tolist())) == len(ACTIONS) - 3
    assert set(_action_key(frozenset({"direction"})).tolist()) == {0}


@pytest.mark.parametrize("other", [{"collapse": 1.0}, {"spurious": 0.5}, {"nuisance": 0.7},
                                   {"channels": {"rgb": 4, "depth": 6}}])
def test_a_dataset_with_a_setting_left_unnamed_is_not_a_match(tmp_path, other):
    # prepare_dataset (the demo, the dose and collapse families) reuses a dataset whose synth.json
    # matches the settings asked for; a setting the caller leaves out means its default, so a dataset
    # made with another value of it (a collapse dial, another nuisance) is not reused
    from rankfusion.data.synth import dataset_matches, prepare_dataset

    kw = dict(n_videos=3, min_frames=20, max_frames=25, channels={"rgb": 4, "depth": 4})
    made = synthesize(tmp_path / "d", seed=2, **{**kw, **other})
    asked = {k: v for k, v in kw.items() if k not in other}
    assert dataset_matches(made, {**asked, **other}, seed=2)
    assert not dataset_matches(made, asked, seed=2)
    if "channels" not in other:
        out = prepare_dataset(made, asked, seed=2)  # regenerated with the defaults of what was left out
        cfg = json.loads((out / "synth.json").read_text())["config"]
        assert all(cfg[k] == (None if k in ("collapse", "spurious") else 0.1) for k in other)
