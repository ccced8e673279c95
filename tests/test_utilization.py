"""Modality utilization (rankfusion.utilization and the evaluate passes) on toys with a known answer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rankfusion.config import load_config  # noqa: E402
from rankfusion.data import open_dataset  # noqa: E402
from rankfusion.data.layout import write_dataset  # noqa: E402
from rankfusion.evaluate import (  # noqa: E402
    donor_draws, modality_reliance, modality_shapley, moc_grid, utilization_rows)
from rankfusion.utilization import (  # noqa: E402
    collapse_index, conditional_utilization, matched_donors, shapley_values)

N_TEST = 6


# ----------------------------------------------------------------------------- pure arithmetic
def test_matched_donors_within_tolerance_else_nearest():
    lengths = [100, 105, 109, 200, 400]
    for seed in range(20):
        donors, gap = matched_donors(lengths, seed)
        assert not np.any(donors == np.arange(5))
        assert set(donors[:3]) <= {0, 1, 2}  # the three close ones pair among themselves
        assert donors[3] == 2 and donors[4] == 3  # nobody within 10 %: the nearest length
        np.testing.assert_allclose(gap, np.abs(np.asarray(lengths)[donors] - lengths) / np.asarray(lengths))
    # every eligible donor is drawn (uniform among them): video 1 has 0 and 2 within 10 %
    seen = {int(matched_donors(lengths, s)[0][1]) for s in range(40)}
    assert seen == {0, 2}
    with pytest.raises(ValueError, match="lengths"):
        matched_donors([10], 0)


def test_matched_donors_bound_is_the_tolerance_as_written():
    # 0.7 * 90 is 62.99999999999999 in doubles: a donor exactly 70 % (63 frames) longer is still
    # within 70 %, so video 0 (90 frames) draws from 100 and 153 alike, not from 100 alone
    lengths = [90, 100, 153, 400]
    seen = {int(matched_donors(lengths, s, tol=0.7)[0][0]) for s in range(40)}
    assert seen == {1, 2}
    # just outside the bound stays outside: 154 is 64 frames longer
    assert {int(matched_donors([90, 100, 154, 400], s, tol=0.7)[0][0]) for s in range(40)} == {1}
    # a tolerance of 0 pairs equal lengths only, else the nearest
    donors, _ = matched_donors([10, 10, 11, 30], 0, tol=0.0)
    assert donors[0] == 1 and donors[1] == 0 and donors[2] in (0, 1) and donors[3] == 2


def test_shapley_values_hand_worked():
    # v(S) for three players: a alone 6, b alone 0, c alone 0, ab 9, ac 6, bc 3, abc 12, empty 0
    v = {frozenset(): 0, frozenset("a"): 6, frozenset("b"): 0, frozenset("c"): 0, frozenset("ab"): 9,
         frozenset("ac"): 6, frozenset("bc"): 3, frozenset("abc"): 12}
    phi = shapley_values(v, ["a", "b", "c"])
    # a: (1/3)(6) + (1/6)(9) + (1/6)(6) + (1/3)(9) = 2 + 1.5 + 1 + 3 = 7.5
    # b: (1/3)(0) + (1/6)(3) + (1/6)(3) + (1/3)(6) = 0 + 0.5 + 0.5 + 2 = 3
    # c: (1/3)(0) + (1/6)(0) + (1/6)(3) + (1/3)(3) = 0 + 0 + 0.5 + 1 = 1.5
    assert phi == pytest.approx({"a": 7.5, "b": 3.0, "c": 1.5}, abs=1e-12)
    assert sum(phi.values()) == pytest.approx(v[frozenset("abc")] - v[frozenset()])
    with pytest.raises(ValueError, match="lacks"):
        shapley_values({frozenset(): 0}, ["a"])


def test_conditional_utilization_and_collapse_index_by_hand():
    assert conditional_utilization(50.0, 40.0) == pytest.approx(0.2)
    assert conditional_utilization(50.0, 55.0) == pytest.approx(-0.1)
    assert math.isnan(conditional_utilization(0.0, 0.0))
    assert collapse_index(2.0, 8.0) == pytest.approx(0.75)
    assert collapse_index(8.0, 8.0) == 0.0 and collapse_index(0.0, 8.0) == 1.0
    assert math.isnan(collapse_index(1.0, 0.0)) and math.isnan(collapse_index(1.0, -2.0))


# ----------------------------------------------------------------------------- toys
@pytest.fixture(scope="module")
def coded(tmp_path_factory):
    """Class 0 for the first 20 % of each video, then its own class c; ``cue`` is one-hot c on every
    frame, ``rgb`` noise. Test videos have distinct classes."""
    n_cls = N_TEST + 1
    rng = np.random.default_rng(0)
    labels, cue, rgb, splits = {}, {}, {}, {"train": [], "val": [], "test": []}
    for i in range(N_TEST + 2):
        v, n, c = f"v{i}", 60 + 5 * i, 1 + i % N_TEST
        lab = np.full(n, c)
        lab[: n // 5] = 0
        labels[v], cue[v], rgb[v] = lab, np.tile(np.eye(n_cls)[c], (n, 1)), rng.standard_normal((n, 4))
        splits["test" if i < N_TEST else ("train" if i == N_TEST else "val")].append(v)
    root = write_dataset(tmp_path_factory.mktemp("u") / "coded", [f"a{i}" for i in range(n_cls)], labels,
                         {"rgb": rgb, "cue": cue}, splits)
    return open_dataset(root)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory):
    """Every video follows one script: class 0 for its first 25 %, then class 1. ``now`` is the
    one-hot of the current class on each frame: information every video shares at the same
    relative time."""
    labels, now, splits = {}, {}, {"train": [], "val": [], "test": []}
    for i in range(N_TEST + 2):
        v, n = f"v{i}", 60 + 9 * i
        lab = (np.arange(n) >= n // 4).astype(int)
        labels[v], now[v] = lab, np.eye(2)[lab]
        splits["test" if i < N_TEST else ("train" if i == N_TEST else "val")].append(v)
    root = write_dataset(tmp_path_factory.mktemp("u") / "scripted", ["a0", "a1"], labels, {"now": now}, splits)
    return open_dataset(root)


class Cue(torch.nn.Module):
    """Predicts the class of the last ``cue`` frame, but only for classes in ``uses`` (else NONE)."""

    def __init__(self, n_classes, uses):
        super().__init__()
        self.config = SimpleNamespace(n_classes=n_classes)
        self.uses = set(uses)

    def forward(self, feats, mask):
        c = int(feats["cue"][0, -1].argmax())
        logits = torch.full((1, 2, self.config.n_classes + 1), -10.0)
        logits[0, 0, c if c in self.uses else -1] = 10.0
        logits[0, 1, -1] = 10.0
        return SimpleNamespace(class_logits=logits, durations=torch.zeros(1, 2))


class Script(torch.nn.Module):
    """Reads the current class off the last ``now`` frame (``use_input``): class 0 -> 0 for a
    tenth of the window, then 1; class 1 -> 1. Without its input it always predicts 1."""

    def __init__(self, use_input=True):
        super().__init__()
        self.config = SimpleNamespace(n_classes=2)
        self.use_input = use_input

    def forward(self, feats, mask):
        phase0 = self.use_input and int(feats["now"][0, -1].argmax()) == 0
        logits = torch.full((1, 2, 3), -10.0)
        if phase0:
            logits[0, 0, 0], logits[0, 1, 1] = 10.0, 10.0
            dur = torch.log(torch.tensor([[0.1, 0.9]]))
        else:
            logits[0, 0, 1], logits[0, 1, 2] = 10.0, 10.0
            dur = torch.zeros(1, 2)
        return SimpleNamespace(class_logits=logits, durations=dur)


def test_random_time_reliance_reflects_the_gain_over_an_input_free_baseline(scripted):
    cfg = load_config(model={"modalities": ("now",)}, train={"sample_rate": 1})
    model, blind = Script(True), Script(False)
    gain = np.mean(list(moc_grid(model, scripted, "test", cfg, "cpu").values())) - \
        np.mean(list(moc_grid(blind, scripted, "test", cfg, "cpu").values()))
    assert gain > 20  # the model's only input is worth this much over predicting without it
    aligned, = modality_reliance(model, scripted, "test", cfg, "cpu", seed=1, read="aligned")
    rand, = modality_reliance(model, scripted, "test", cfg, "cpu", seed=1, read="random")
    # a donor read at the same relative time is in the same phase of the shared script: the swap
    # changes no prediction, so the time-aligned reliance is exactly 0 in spite of the gain
    assert aligned.drop == 0.0 and all(d == 0.0 for _, _, d in aligned.grid)
    # read at a random time, the donor's last frame is in phase 0 with probability ~0.05 / 0.8,
    # so nearly every swapped prediction is the input-free one: the drop approaches the gain and
    # cannot exceed it (each swapped prediction is either the clean or the input-free one)
    assert 0.6 * gain <= rand.drop <= gain + 1e-9
    assert rand.n_draws == 3 and rand.read == "random" and np.isfinite(rand.sd)
    assert len(rand.drops) == 3 and np.mean(rand.drops) == pytest.approx(rand.drop, abs=1e-9)
    assert np.std(rand.drops, ddof=1) == pytest.approx(rand.sd)
    # a model that ignores its input has no reliance either way
    for read in ("aligned", "random"):
        assert modality_reliance(blind, scripted, "test", cfg, "cpu", read=read)[0].drop == 0.0


def test_collapse_index_on_decidable_cut_points(coded):
    # the cue decides every test video's future; the "fused" model uses it for classes 1-3 only
    cfg = load_config(model={"modalities": ("rgb", "cue")}, train={"sample_rate": 2})
    alone, fused = Cue(N_TEST + 1, range(1, N_TEST + 1)), Cue(N_TEST + 1, {1, 2, 3})
    videos = coded.split("test")
    cls = {v: int(coded.labels(v)[-1]) for v in videos}
    pts = {"used": {(v, o) for v in videos for o in (0.2, 0.3) if cls[v] in {1, 2, 3}},
           "ignored": {(v, o) for v in videos for o in (0.2, 0.3) if cls[v] not in {1, 2, 3}}}
    pts["all"] = pts["used"] | pts["ignored"]
    ci = {}
    for name, only in pts.items():
        gains = [modality_reliance(m, coded, "test", cfg, "cpu", modalities=["cue"], only=only, seed=2)[0].drop
                 for m in (fused, alone)]
        ci[name] = collapse_index(*gains)
    # the partner alone gets every decidable point right (MoC 100 -> 0 when swapped: classes differ)
    # the fused model gets all of them where it uses the cue (index 0), none where it does not
    # (index 1: 0 clean, 0 swapped), and half the classes over all points (MoC 50 -> 0: index 0.5)
    assert ci == {"used": 0.0, "ignored": 1.0, "all": 0.5}


def test_utilization_rows_and_shapley_of_a_three_modality_toy(coded, tmp_path):
    # three modalities, one used: its Shapley share is the whole gain, the others' exactly 0
    ds = coded
    cfg = load_config(model={"modalities": ("rgb", "cue")}, train={"sample_rate": 2})
    model = Cue(N_TEST + 1, range(1, N_TEST + 1))
    clean = moc_grid(model, ds, "test", cfg, "cpu")
    rows = utilization_rows(model, ds, "test", cfg, "cpu", seed=4, clean=clean)
    by = {(r[0], r[1]): r[4] for r in rows if math.isnan(r[2])}
    assert by[("cur", "cue")] == 100.0 and by[("cur", "rgb")] == 0.0
    assert by[("cur_random", "cue")] == 100.0
    assert by[("reliance_donor_sd", "cue")] == 0.0  # every draw gives 100 -> 0
    # draws without spread give no interval (stats.compare: untestable), not a zero-width one
    assert math.isnan(by[("reliance_donor_ci_low", "cue")]) and math.isnan(by[("reliance_donor_ci_high", "cue")])
    assert 0.0 <= by[("donor_matched", "")] <= 100.0 and by[("donor_mismatch", "")] >= 0.0
    assert not any(r[0] == "shapley" for r in rows)  # two modalities: no Shapley rows
    cfg3 = load_config(model={"modalities": ("rgb", "cue", "rgb2")}, train={"sample_rate": 2})
    ds3 = SimpleNamespace(split=ds.split, n_frames=ds.n_frames, labels=ds.labels,
                          features=lambda v, m: ds.features(v, "rgb" if m == "rgb2" else m))
    phi = modality_shapley(model, ds3, "test", cfg3, "cpu", seed=4)
    assert phi == pytest.approx({"rgb": 0.0, "cue": 100.0, "rgb2": 0.0}, abs=1e-9)


def test_donor_draws_report_the_achieved_mismatch(coded):
    d = donor_draws(coded, "test", seed=0, draws=4)
    assert len(d.donors) == 4 and all(set(x) == set(coded.split("test")) for x in d.donors)
    gaps = [abs(coded.n_frames(x[v]) - coded.n_frames(v)) / coded.n_frames(v) for x in d.donors for v in x]
    assert d.mismatch == pytest.approx(np.mean(gaps)) and d.matched == pytest.approx(np.mean(np.array(gaps) <= 0.1))
    assert all(0 <= u < 1 for x in d.shifts for u in x.values())


def _fused_and_alone(tmp_path, alone: str):
    """A small collapse-dial dataset (K = 0), one rgb+depth run on it and one run of ``alone`` alone:
    ``(data, fused run, alone run)``. The partner-only cut points are rare: 24 videos give 2 of them
    in the training split."""
    from rankfusion.config import R3DConfig, RunConfig, TrainConfig
    from rankfusion.data import synthesize
    from rankfusion.train import train

    data = synthesize(tmp_path / "d", seed=2, n_videos=24, min_frames=150, max_frames=300, collapse=0.0,
                      split_fractions=(0.6, 0.2, 0.2), channels={"rgb": 6, "depth": 5})
    tc = dict(epochs=1, warmup_epochs=0, batch_size=4, sample_rate=4, select_metric="val_loss")

    def cfg(mods):
        return RunConfig(model=R3DConfig(modalities=mods, d_model=8, n_heads=2, n_layers=1), train=TrainConfig(**tc))

    fused = train(cfg(("rgb", "depth")), data, tmp_path / "fused", seed=1, progress=False, monitor=False)
    return data, fused, train(cfg((alone,)), data, tmp_path / alone, seed=1, progress=False, monitor=False)


@pytest.mark.slow
def test_evaluate_writes_the_collapse_index_against_a_partner_alone_run(tmp_path):
    import pandas as pd
    from click.testing import CliRunner

    from rankfusion.cli import main
    from rankfusion.data.synth import partner_only_cuts

    data, fused, alone = _fused_and_alone(tmp_path, "depth")
    cuts = partner_only_cuts(data, open_dataset(data).split("train"))
    assert sum(o in (0.2, 0.3) for obs in cuts.values() for o in obs) > 0
    r = CliRunner().invoke(main, ["evaluate", str(fused), "--split", "train", "--partner-run", str(alone),
                                  "--reliance-draws", "1"])
    assert r.exit_code == 0, r.output
    df = pd.read_csv(fused / "eval_train.csv").set_index("metric")
    gain, att = df.loc["decidable_gain", "mean"], df.loc["decidable_attainable", "mean"]
    assert df.loc["decidable_cuts", "mean"] == sum(o in (0.2, 0.3) for obs in cuts.values() for o in obs)
    expected = 100 * collapse_index(gain, att)
    got = df.loc["collapse_index", "mean"]
    assert (math.isnan(expected) and math.isnan(got)) or got == pytest.approx(expected, abs=1e-3)
    # a NaN index says why (these 1-epoch runs gain nothing there: attainable 0.0)
    said = "note: collapse index NaN: the partner run alone gains" in r.output
    assert said == (not att > 0), (att, r.output)
    # a partner run of a modality the fused model does not have is refused in one line
    r = CliRunner().invoke(main, ["evaluate", str(fused), "--split", "train", "--partner-run", str(fused)])
    assert r.exit_code == 2 and "single-modality run" in r.output
    # a partner run that is not there is named as the partner run, not as the run evaluated
    missing = tmp_path / "nothere"
    r = CliRunner().invoke(main, ["evaluate", str(fused), "--split", "train", "--partner-run", str(missing)])
    assert r.exit_code == 2 and r.output.strip().splitlines() == [f"Error: partner run {str(missing)!r} does not exist"]


@pytest.mark.slow
def test_evaluate_refuses_a_partner_run_of_a_modality_that_does_not_decide_the_partner_only_cuts(tmp_path):
    from click.testing import CliRunner

    from rankfusion.cli import main

    _, fused, anchor = _fused_and_alone(tmp_path, "rgb")
    # only depth decides the partner-only cut points: a run of rgb alone is no reference for them
    r = CliRunner().invoke(main, ["evaluate", str(fused), "--split", "train", "--partner-run", str(anchor),
                                  "--reliance-draws", "1"])
    assert r.exit_code == 2, r.output
    assert "'rgb'" in r.output and "'depth'" in r.output and len(r.output.strip().splitlines()) == 1
    assert not (fused / "eval_train.csv").exists()


def test_evaluate_refuses_a_partner_run_without_the_reliance_passes(tmp_path):
    # the collapse index is a reliance pass: --no-reliance would silently drop what --partner-run asks for
    from click.testing import CliRunner

    from rankfusion.cli import main

    r = CliRunner().invoke(main, ["evaluate", str(tmp_path / "fused"), "--no-reliance", "--partner-run",
                                  str(tmp_path / "alone")])
    assert r.exit_code == 2, r.output
    assert "--partner-run" in r.output and "--no-reliance" in r.output and len(r.output.strip().splitlines()) == 1
    assert not any(tmp_path.iterdir())


def test_cached_reliance_draws_each_runs_own_donors(tmp_path, monkeypatch):
    """The figure families' reliance and decidable gain draw donors from the run's own stream, as
    evaluate does, so the spread over seeds holds the donors' variance (a seed shared by every run
    would leave it out)."""
    import pandas as pd

    from rankfusion import runcache
    from rankfusion.evaluate import DECIDABLE_DRAWS
    from rankfusion.utilization import run_donor_seed

    seen = []

    def spy(model, ds, split, config, dev, *, seed, **kw):
        seen.append((seed, kw.get("draws", "default")))
        return [SimpleNamespace(modality="depth", moc=50.0, moc_swapped=40.0, drop=10.0)]

    monkeypatch.setattr(runcache, "modality_reliance", spy)
    monkeypatch.setattr(runcache, "load_run", lambda *a, **k: (None, SimpleNamespace(model=SimpleNamespace(
        modalities=("rgb", "depth"))), {}))
    monkeypatch.setattr(runcache, "open_data", lambda *a, **k: None)
    monkeypatch.setattr(runcache, "decidable_cuts", lambda *a, **k: {("v", 0.2)})
    cache = runcache.RunCache.__new__(runcache.RunCache)
    cache.device, cache.data_root = "cpu", tmp_path
    monkeypatch.setattr(cache, "evaluate", lambda rec, split="test": pd.DataFrame(
        [{"obs_ratio": 0.2, "beta": 0.1, "moc": 50.0}]))
    for s in (1, 10):
        (tmp_path / f"s{s}").mkdir()
        rec = runcache.RunRecord("r", tmp_path / f"s{s}", "h", s, {}, reused=False)
        cache.reliance(rec)
        cache.decidable_gain(rec, "depth")
    # the decidable gain, on a handful of cut points, averages many donor draws
    assert seen == [(run_donor_seed(0, s), d) for s in (1, 10) for d in ("default", DECIDABLE_DRAWS)]
    assert run_donor_seed(0, 1) != run_donor_seed(0, 10) and run_donor_seed(0, 1) != run_donor_seed(1, 1)


@pytest.mark.slow
def test_evaluate_refuses_a_partner_run_of_another_split_set(tmp_path):
    """The partner-only cut points come from one split's videos: a partner trained on another split
    set would count them on other videos (it was accepted, and the index was wrong)."""
    from click.testing import CliRunner

    from rankfusion.cli import main
    from rankfusion.config import RunConfig
    from rankfusion.runs import load_run
    from rankfusion.train import train

    data, fused, alone = _fused_and_alone(tmp_path, "depth")
    videos = sorted(open_dataset(data).videos)
    for split, part in (("train", videos[:14]), ("val", videos[14:19]), ("test", videos[19:])):
        (data / "splits" / f"{split}.split2.bundle").write_text("".join(f"{v}.txt\n" for v in part))
    _, config, _ = load_run(fused)
    config = RunConfig.from_dict(config.to_dict()).replace(train={"split_set": "split2"})
    other = train(config, data, tmp_path / "fused2", seed=1, progress=False, monitor=False)
    r = CliRunner().invoke(main, ["evaluate", str(other), "--split", "train", "--partner-run", str(alone),
                                  "--reliance-draws", "1"])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    assert r.output.strip() == (f"Error: partner run {str(alone)!r} was trained on split set 'split1', the run on "
                                "'split2'; the collapse index compares them on one split's videos")
    assert not (other / "eval_train.csv").exists()
