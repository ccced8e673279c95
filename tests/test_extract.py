"""Feature export: the docs/formats.md layout, metadata, noise, CLI."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from click.testing import CliRunner  # noqa: E402

from rankfusion.cli import main  # noqa: E402
from rankfusion.config import R3DConfig, RunConfig, TrainConfig  # noqa: E402
from rankfusion.extract import extract_features, parse_noise  # noqa: E402
from rankfusion.files import load_arrays, load_meta  # noqa: E402
from rankfusion.train import train  # noqa: E402


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from rankfusion.data import open_dataset, synthesize

    base = tmp_path_factory.mktemp("extract")
    data = synthesize(base / "syn", seed=5, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=8, min_frames=60, max_frames=100,
                      channels={"rgb": 8, "depth": 6})
    out = {}
    for name, rtf in (("rtf", True), ("nortf", False)):
        cfg = RunConfig(model=R3DConfig(d_model=8, n_heads=2, n_layers=1, exchange_ratio=0.25, rtf=rtf),
                        train=TrainConfig(epochs=1, warmup_epochs=0, batch_size=4, sample_rate=3,
                                          select_metric="val_loss"))
        out[name] = train(cfg, data, base / name, seed=1, progress=False)
    out["ds"] = open_dataset(data)
    return out


def _expected_rows(ds, obs, sr, split="test"):
    return [len(range(0, max(1, int(obs * ds.n_frames(v))), sr)) for v in ds.split(split)]


def test_file_layout_and_meta(runs, tmp_path):
    p = extract_features(runs["rtf"], "test", 0.3, tmp_path / "f.npz")
    arrays = load_arrays(p)
    assert sorted(arrays) == ["depth.after", "depth.before", "rgb.after", "rgb.before"]
    rows = _expected_rows(runs["ds"], 0.3, 3)
    for a in arrays.values():
        assert a.dtype == np.float32 and a.shape == (sum(rows), 8)
    meta = load_meta(p)
    for key in ("run", "split", "obs_ratio", "config_hash", "modalities", "rtf", "seed", "dataset"):
        assert key in meta
    assert meta["split"] == "test" and meta["obs_ratio"] == 0.3 and meta["modalities"] == ["rgb", "depth"]
    assert meta["rtf"] is True and meta["seed"] == 1 and meta["rows_per_video"] == rows
    # within one video, RTF changes at most k' = 2 channels of each modality
    start = 0
    for n in rows:
        for m in ("rgb", "depth"):
            diff = arrays[f"{m}.after"][start:start + n] != arrays[f"{m}.before"][start:start + n]
            assert diff.any(0).sum() <= 2
        start += n
    assert (arrays["rgb.before"] >= 0).all()  # Eq. 2 ends in a ReLU


def test_without_rtf_before_equals_after(runs, tmp_path):
    arrays = load_arrays(extract_features(runs["nortf"], "val", 0.5, tmp_path / "g.npz"))
    np.testing.assert_array_equal(arrays["rgb.before"], arrays["rgb.after"])


def test_noise_is_seeded_and_per_modality(runs, tmp_path):
    clean = load_arrays(extract_features(runs["rtf"], "test", 0.3, tmp_path / "c.npz"))
    a = load_arrays(extract_features(runs["rtf"], "test", 0.3, tmp_path / "a.npz", noise="depth=0.5"))
    b = load_arrays(extract_features(runs["rtf"], "test", 0.3, tmp_path / "b.npz", noise={"depth": 0.5}))
    c = load_arrays(extract_features(runs["rtf"], "test", 0.3, tmp_path / "d.npz", noise="depth=0.5",
                                     noise_seed=1))
    np.testing.assert_array_equal(a["depth.before"], b["depth.before"])
    assert not np.array_equal(a["depth.before"], c["depth.before"])
    assert not np.array_equal(a["depth.before"], clean["depth.before"])
    np.testing.assert_array_equal(a["rgb.before"], clean["rgb.before"])
    assert load_meta(tmp_path / "a.npz")["noise"] == {"depth": 0.5}


def test_parse_noise_errors():
    assert parse_noise(["rgb=0.1", "depth=0"]) == {"rgb": 0.1, "depth": 0.0}
    for bad, needle in (("rgb", "MODALITY=SIGMA"), ("rgb=x", "number"), ("rgb=-1", "sigma"),
                        (["rgb=1", "rgb=2"], "twice")):
        with pytest.raises(ValueError, match=needle):
            parse_noise(bad)


@pytest.mark.parametrize("args,needle", [
    (["--noise", "sonar=0.1"], "sonar"),
    (["--noise", "depth"], "Error: --noise must look like MODALITY=SIGMA, got 'depth'"),
    (["--noise", "depth=abc"], "Error: --noise sigma must be a number, got 'depth=abc'"),
    (["--obs", "0"], "Error: --obs must be > 0.0, got 0.0"),
    (["--obs", "1.5"], "Error: --obs must be <= 1.0, got 1.5"),
    (["--noise-seed", "-1"], "Error: --noise-seed must be at least 0, got -1"),
    (["--seed", "99"], "--seed 99 "),
    (["--out", "OUT/x.txt"], "must end in .npz"),
])
def test_cli_extract_bad_inputs_exit_2(runs, tmp_path, args, needle):
    args = [a.replace("OUT", str(tmp_path)) for a in args]
    r = CliRunner().invoke(main, ["extract", str(runs["rtf"]), "--out", str(tmp_path / "x.npz"), *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output
    assert r.output.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_cli_extract_writes_file(runs, tmp_path):
    r = CliRunner().invoke(main, ["extract", str(runs["rtf"]), "--split", "test", "--obs", "0.2",
                                  "--out", str(tmp_path / "f.npz"), "--noise", "rgb=0.1"])
    assert r.exit_code == 0, r.output
    assert load_meta(tmp_path / "f.npz")["obs_ratio"] == 0.2


def test_cli_extract_refuses_an_existing_file_unless_forced(runs, tmp_path):
    out = tmp_path / "f.npz"
    out.write_bytes(b"a user's own file")
    r = CliRunner().invoke(main, ["extract", str(runs["rtf"]), "--out", str(out)])
    assert r.exit_code == 2 and r.output.strip() == f"Error: output file {str(out)!r} exists; pass --force to replace it"
    assert out.read_bytes() == b"a user's own file"
    r = CliRunner().invoke(main, ["extract", str(runs["rtf"]), "--out", str(out), "--force"])
    assert r.exit_code == 0, r.output
    assert load_meta(out)["split"] == "test"


@pytest.mark.parametrize("name", ["rtf", "nortf"])
def test_videos_in_padded_passes_give_the_rows_each_gives_alone(runs, tmp_path, name):
    from rankfusion import extract as extract_mod
    from rankfusion.data.torchdata import video_inputs
    from rankfusion.runs import load_run

    p = extract_features(runs[name], "train", 0.6, tmp_path / "f.npz")
    arrays, rows = load_arrays(p), load_meta(p)["rows_per_video"]
    ds = runs["ds"]
    assert len(set(rows)) > 2 and rows == _expected_rows(ds, 0.6, 3, "train")  # padding is exercised
    model, _, _ = load_run(runs[name])
    assert model.videos_independent
    sizes = []
    handle = model.register_forward_pre_hook(lambda mod, args: sizes.append(args[1].shape[0]))
    try:
        extract_mod._fuser_features(model, ds, ds.split("train"), "train", 0.6, ["rgb", "depth"], 3,
                                    torch.device("cpu"), {}, None, False)
    finally:
        handle.remove()
    assert sum(sizes) == len(rows) and max(sizes) > 1
    start = 0
    for video, n in zip(ds.split("train"), rows):  # each video alone, in the file's order
        feats, mask = video_inputs(ds, video, ["rgb", "depth"], max(1, int(0.6 * ds.n_frames(video))), 3,
                                   torch.device("cpu"))
        with torch.no_grad():
            alone = model(feats, mask, return_features=True).features
        for m in ("rgb", "depth"):
            for s in ("before", "after"):
                want = alone[m][s][0].numpy()
                # the same rows through float32 layers, summed in another order (the batch's shape)
                assert np.abs(arrays[f"{m}.{s}"][start:start + n] - want).max() <= 1e-5 * max(1.0, np.abs(want).max())
        start += n
    assert start == len(arrays["rgb.before"])


@pytest.mark.parametrize("case", ["noise", "batch chooses"])
def test_one_video_per_pass_with_noise_or_when_the_batch_would_choose_the_channels(runs, case):
    from rankfusion import extract as extract_mod
    from rankfusion.runs import load_run

    ds = runs["ds"]
    model, _, _ = load_run(runs["rtf"])
    noise, rng = ({"depth": 0.1}, np.random.default_rng(0)) if case == "noise" else ({}, None)
    if case == "batch chooses":
        model.rtf.unfreeze()
        assert not model.videos_independent
    sizes = []
    handle = model.register_forward_pre_hook(lambda mod, args: sizes.append(args[1].shape[0]))
    try:
        extract_mod._fuser_features(model, ds, ds.split("train"), "train", 0.6, ["rgb", "depth"], 3,
                                    torch.device("cpu"), noise, rng, False)
    finally:
        handle.remove()
    # noise is drawn video by video, in order; a batch that chooses would shape its videos' rows
    assert sizes == [1] * len(ds.split("train"))


def test_the_file_records_the_channels_the_run_blended(runs, tmp_path):
    from rankfusion.featurefiles import load_features
    from rankfusion.runs import load_run

    p = extract_features(runs["rtf"], "test", 0.3, tmp_path / "f.npz")
    model, _, _ = load_run(runs["rtf"])
    assert model.rtf.frozen
    meta = load_meta(p)
    want = {m: sorted(int(c) for c in model.rtf.frozen_low[i]) for i, m in enumerate(["rgb", "depth"])}
    assert meta["blended_channels"] == want  # the choice made on the training rows, not on these rows
    arrays = load_arrays(p)
    for m in ("rgb", "depth"):  # RTF changed no channel outside the recorded set
        changed = np.flatnonzero((arrays[f"{m}.after"] != arrays[f"{m}.before"]).any(0))
        assert set(changed.tolist()) <= set(want[m])
    fs = load_features(p)
    np.testing.assert_array_equal(fs.blended("rgb"), want["rgb"])
    # without RTF nothing is blended: nothing recorded
    assert load_meta(extract_features(runs["nortf"], "test", 0.3, tmp_path / "g.npz"))["blended_channels"] == {}


def test_nothing_is_recorded_where_each_video_chose_its_own_channels(runs):
    from rankfusion import extract as extract_mod
    from rankfusion.data.torchdata import video_inputs
    from rankfusion.runs import load_run

    ds = runs["ds"]
    model, _, _ = load_run(runs["rtf"])
    model.rtf.unfreeze()  # the evaluated batch (here each video alone) chooses
    _, _, blended = extract_mod._fuser_features(model, ds, ds.split("train"), "train", 0.6, ["rgb", "depth"], 3,
                                                torch.device("cpu"), {}, None, False)
    per_video = {"rgb": set(), "depth": set()}
    for video in ds.split("train"):
        feats, mask = video_inputs(ds, video, ["rgb", "depth"], max(1, int(0.6 * ds.n_frames(video))), 3,
                                   torch.device("cpu"))
        with torch.no_grad():
            out = model(feats, mask, return_features=True).features
        for m in per_video:
            per_video[m].add(tuple(int(c) for c in out[m]["low"]))
    assert any(len(sets) > 1 for sets in per_video.values())  # the videos disagree somewhere
    # a modality is recorded exactly where every video blended the same channels
    assert blended == {m: list(next(iter(sets))) for m, sets in per_video.items() if len(sets) == 1}


def test_a_dataset_whose_class_names_differ_from_the_run_s_is_refused(runs, tmp_path):
    import shutil

    from rankfusion.evaluate import evaluate_run

    ds = runs["ds"]
    copy = tmp_path / "renamed"
    shutil.copytree(ds.root, copy)
    first = ds.classes[0]
    mapping = copy / "mapping.txt"
    mapping.write_text(mapping.read_text().replace(f" {first}\n", " renamed\n", 1))
    for gt in (copy / "groundTruth").glob("*.txt"):
        gt.write_text("".join("renamed\n" if line == first else line + "\n" for line in gt.read_text().splitlines()))
    from rankfusion.data import open_dataset

    assert open_dataset(copy).classes != ds.classes and len(open_dataset(copy).classes) == len(ds.classes)
    with pytest.raises(ValueError, match=r"class \d+ is '.*' in dataset '.*renamed' but '.*' in the run's training data"):
        extract_features(runs["rtf"], "test", 0.3, tmp_path / "f.npz", data_root=copy)
    with pytest.raises(ValueError, match=r"in the run's training data"):
        evaluate_run(runs["rtf"], "test", data_root=copy, reliance=False)
    assert not (tmp_path / "f.npz").exists()


def test_a_modality_nothing_is_blended_into_is_not_recorded(runs, tmp_path):
    cfg = RunConfig(model=R3DConfig(d_model=8, n_heads=2, n_layers=1, rtf=True, modalities=("rgb",)),
                    train=TrainConfig(epochs=1, warmup_epochs=0, batch_size=4, sample_rate=3, select_metric="val_loss"))
    run = train(cfg, runs["ds"].root, tmp_path / "uni", seed=1, progress=False)  # RTF has no partner to blend
    assert load_meta(extract_features(run, "test", 0.3, tmp_path / "f.npz"))["blended_channels"] == {}
