"""Run cache keys, dataset fingerprints, profiles and the demo's dataset reuse (no training)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rankfusion import profiles, runcache, threads
from rankfusion.data.synth import prepare_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rankfusion.data import synthesize

    return synthesize(tmp_path_factory.mktemp("pipe") / "data", seed=5, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=4, min_frames=30, max_frames=40,
                      channels={"rgb": 6, "depth": 6})


def test_fingerprint_follows_content_not_timestamps(data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)  # new timestamps, same bytes
    assert runcache.dataset_fingerprint(copy) == runcache.dataset_fingerprint(data)
    f = next((copy / "features" / "rgb").glob("*.npy"))
    x = np.load(f)
    x[0, 0] += 1.0
    np.save(f, x)
    assert runcache.dataset_fingerprint(copy) != runcache.dataset_fingerprint(data)
    with pytest.raises(ValueError, match="nowhere"):
        runcache.dataset_fingerprint(tmp_path / "nowhere")


def test_expected_complementary(data, tmp_path):
    assert runcache.expected_complementary(data) == "depth"
    assert runcache.expected_complementary(tmp_path) is None


def test_run_cache_configs(data, tmp_path):
    cache = runcache.RunCache(data, tmp_path / "cache", profiles.get_profile("quick"), progress=False)
    a = cache.config(["rgb", "depth"])
    assert a.config_hash() == cache.config(["rgb", "depth"]).config_hash()
    assert a.config_hash() != cache.config(["rgb", "depth"], rtf=False).config_hash()
    assert a.model.d_model == 16 and a.train.epochs == 1
    # heads are reduced until they divide the stacked width
    odd = runcache.RunCache(data, tmp_path / "c2", profiles.Profile(model=dict(d_model=6, n_heads=4)), progress=False)
    assert odd.config(["rgb"]).model.n_heads == 3
    assert cache.manifest_runs() == []


def test_profiles_and_threads():
    assert set(profiles.PROFILES) == {"quick", "full"}
    assert profiles.get_profile("full").seeds == (1, 10, 13452, 7, 42)
    with pytest.raises(ValueError, match="profile must be one of"):
        profiles.get_profile("huge")
    with pytest.raises(ValueError, match="threads"):
        threads.set_threads(0)


def test_prepare_dataset_reuses_same_settings(tmp_path):
    kw = dict(n_videos=3, min_frames=20, max_frames=25, channels={"rgb": 4, "depth": 4})
    out = prepare_dataset(tmp_path / "d", kw, seed=2)
    stamp = (out / "synth.json").stat().st_mtime_ns
    assert prepare_dataset(tmp_path / "d", kw, seed=2) == out
    assert (out / "synth.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    prepare_dataset(tmp_path / "d", kw, seed=3)
    assert (out / "synth.json").stat().st_mtime_ns != stamp


_BUILDER = r"""
import json, sys, time
from pathlib import Path
from rankfusion import profiles, runcache, threads

data, cache_dir, me = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
threads.set_threads(1)
cache = runcache.RunCache(data, cache_dir, profiles.get_profile("quick"), progress=False)
(cache_dir.parent / f"ready-{me}").touch()
while not (cache_dir.parent / "go").exists():  # start both builders at the same moment
    time.sleep(0.01)
rec = cache.run("pair", ["rgb", "depth"])
noise = ("depth", 0.5, 0)
feats = cache.features(rec, 0.3, noise=noise)
moc = cache.evaluate(rec, noise=noise)["moc"].tolist()
print(json.dumps({"reused": rec.reused, "features": str(feats), "moc": moc,
                  "noisy": str(cache.noisy_root("depth", 0.5))}))
"""


@pytest.mark.slow  # two processes each importing torch and training: 20-90 s on 2 shared cores
def test_two_processes_share_one_cache(data, tmp_path):
    # two builders of the same run, noisy dataset, feature file and MoC table on one cache: each
    # entry is built once (the other waits on its lock and reuses it), both succeed, nothing is left
    import json
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    cache = tmp_path / "cache"
    env = dict(os.environ, PYTHONPATH=str(Path(runcache.__file__).parents[1]), OMP_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, "-c", _BUILDER, str(data), str(cache), str(i)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)):
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.05)
    (tmp_path / "go").touch()
    outs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    res = [json.loads(o[0].strip().splitlines()[-1]) for o in outs]
    assert sorted(r["reused"] for r in res) == [False, True]  # trained once
    assert res[0]["features"] == res[1]["features"] and Path(res[0]["features"]).is_file()
    assert res[0]["noisy"] == res[1]["noisy"] and (Path(res[0]["noisy"]) / "noise.json").is_file()
    np.testing.assert_array_equal(res[0]["moc"], res[1]["moc"])  # one table, read by both
    runs = list((cache / "runs").iterdir())
    assert len([r for r in runs if r.is_dir()]) == 1
    left = [p for p in cache.rglob("*") if ".~" in p.name]
    assert left == []  # no temporary file or folder of either builder remains


def test_default_cache_is_beside_the_dataset(tmp_path, monkeypatch):
    (tmp_path / "sets" / "d").mkdir(parents=True)
    assert runcache.default_cache_dir(tmp_path / "sets" / "d") == tmp_path / "sets" / "rankfusion-cache"
    monkeypatch.chdir(tmp_path / "sets")
    assert runcache.default_cache_dir("d") == (tmp_path / "sets" / "rankfusion-cache").resolve()
    assert runcache.default_cache_dir("d").is_absolute()


def test_default_cache_rule_is_written_once():
    # the figure context's one constructor asks runcache.default_cache_dir; the CLI, the analysis/
    # scripts and the demo go through that constructor; no other code spells the folder name or applies the rule
    import re
    from pathlib import Path

    root = Path(runcache.__file__).parents[1]
    spelled = [str(p.relative_to(root)) for p in sorted((root / "rankfusion").rglob("*.py")) + sorted(
        (root / "analysis").glob("*.py")) if re.search(r"""["']rankfusion-cache["']""", p.read_text())]
    assert spelled == ["rankfusion/runcache.py"]
    applying = [str(p.relative_to(root)) for p in sorted((root / "rankfusion").rglob("*.py")) + sorted(
        (root / "analysis").glob("*.py")) if "default_cache_dir(" in p.read_text()]
    assert applying == ["rankfusion/figures/context.py", "rankfusion/runcache.py"]
    for user in ("rankfusion/cli/experiments.py", "analysis/_common.py", "rankfusion/demo.py"):
        assert "FigureContext.open(" in (root / user).read_text(), user


def test_damaged_cache_entries_are_made_again(data, tmp_path):
    cache = runcache.RunCache(data, tmp_path / "cache", profiles.get_profile("quick"), progress=False)
    rec = cache.run("rgb", ["rgb"], 1)
    moc = cache.evaluate(rec)
    table = rec.run_dir / "moc-test-clean.csv"
    for damage in ("", "garbage\n"):  # an empty file, a table without the columns
        table.write_text(damage)
        np.testing.assert_array_equal(cache.evaluate(rec)["moc"], moc["moc"])  # the same model, evaluated again
    (rec.run_dir / runcache.DONE).write_text("[1]\n")  # a run record that is no JSON object: trained again
    again = runcache.RunCache(data, tmp_path / "cache", profiles.get_profile("quick"), progress=False)
    assert again.run("rgb", ["rgb"], 1).reused is False
    (tmp_path / "syn").mkdir()
    (tmp_path / "syn" / "synth.json").write_text("[1]\n")
    assert runcache.expected_complementary(tmp_path / "syn") is None


def test_a_cached_feature_file_without_the_blended_channels_is_made_again(data, tmp_path):
    from rankfusion.files import load_arrays, load_meta, save_npz

    cache = runcache.RunCache(data, tmp_path / "cache", profiles.get_profile("quick"), progress=False)
    rec = cache.run("pair", ["rgb", "depth"], 1)
    path = cache.features(rec, 0.3)
    meta = load_meta(path)
    assert "blended_channels" in meta
    old = {k: v for k, v in meta.items() if k != "blended_channels"}  # as older code wrote it
    save_npz(path, load_arrays(path), old)
    assert cache.features(rec, 0.3) == path and load_meta(path) == meta


def test_runs_trained_by_the_cache_print_one_line_each_not_their_epochs(data, tmp_path, capsys):
    quick = profiles.get_profile("quick")
    cache = runcache.RunCache(data, tmp_path / "cache", profiles.Profile(model=quick.model, train={**quick.train,
                              "epochs": 2}), progress=True)
    rec = cache.run("pair", ["rgb", "depth"], 1)
    assert cache.train_seeds(["rgb"], [1, 2], rtf=False) == [1, 2]
    err = capsys.readouterr().err
    assert "epoch" not in err  # neither trainer's per-epoch lines
    assert [ln.split(" in ")[0] for ln in err.splitlines()] == ["trained pair seed 1", "trained rgb rtf=False seeds 1,2"]
    assert err.splitlines()[0].endswith(": " + rec.run_dir.name)
    again = runcache.RunCache(data, tmp_path / "cache", quick, progress=True)
    again.run("pair", ["rgb"], 1)
    again.run("pair", ["rgb"], 1)  # trained once, then reused: one line
    assert len(capsys.readouterr().err.splitlines()) == 1
