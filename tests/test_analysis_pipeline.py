"""Run cache keys, dataset fingerprints, profiles and the demo's dataset reuse (no training)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from rankfusion import pipeline
from rankfusion.report import prepare_dataset


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rankfusion.data import synthesize

    return synthesize(tmp_path_factory.mktemp("pipe") / "data", seed=5, n_videos=4, min_frames=30, max_frames=40,
                      channels={"rgb": 6, "depth": 6})


def test_fingerprint_follows_content_not_timestamps(data, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(data, copy)  # new timestamps, same bytes
    assert pipeline.dataset_fingerprint(copy) == pipeline.dataset_fingerprint(data)
    f = next((copy / "features" / "rgb").glob("*.npy"))
    x = np.load(f)
    x[0, 0] += 1.0
    np.save(f, x)
    assert pipeline.dataset_fingerprint(copy) != pipeline.dataset_fingerprint(data)
    with pytest.raises(ValueError, match="nowhere"):
        pipeline.dataset_fingerprint(tmp_path / "nowhere")


def test_expected_complementary(data, tmp_path):
    assert pipeline.expected_complementary(data) == "depth"
    assert pipeline.expected_complementary(tmp_path) is None


def test_run_cache_configs(data, tmp_path):
    cache = pipeline.RunCache(data, tmp_path / "cache", pipeline.get_profile("quick"), progress=False)
    a = cache.config(["rgb", "depth"])
    assert a.config_hash() == cache.config(["rgb", "depth"]).config_hash()
    assert a.config_hash() != cache.config(["rgb", "depth"], rtf=False).config_hash()
    assert a.model.d_model == 16 and a.train.epochs == 1
    # heads are reduced until they divide the stacked width
    odd = pipeline.RunCache(data, tmp_path / "c2", pipeline.Profile(model=dict(d_model=6, n_heads=4)), progress=False)
    assert odd.config(["rgb"]).model.n_heads == 3
    assert cache.manifest_runs() == []


def test_profiles_and_threads():
    assert set(pipeline.PROFILES) == {"quick", "full"}
    assert pipeline.get_profile("full").seeds == (1, 10, 13452)
    with pytest.raises(ValueError, match="profile must be one of"):
        pipeline.get_profile("huge")
    with pytest.raises(ValueError, match="threads"):
        pipeline.set_threads(0)


def test_prepare_dataset_reuses_same_settings(tmp_path):
    kw = dict(n_videos=3, min_frames=20, max_frames=25, channels={"rgb": 4, "depth": 4})
    out = prepare_dataset(tmp_path / "d", kw, seed=2)
    stamp = (out / "synth.json").stat().st_mtime_ns
    assert prepare_dataset(tmp_path / "d", kw, seed=2) == out
    assert (out / "synth.json").stat().st_mtime_ns == stamp  # reused, not regenerated
    prepare_dataset(tmp_path / "d", kw, seed=3)
    assert (out / "synth.json").stat().st_mtime_ns != stamp
