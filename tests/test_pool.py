"""The demo's process pool: independent runs trained in worker processes give the serial results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from rankfusion import profiles, runcache  # noqa: E402
from rankfusion.files import load_arrays  # noqa: E402


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from rankfusion.data import synthesize

    return synthesize(tmp_path_factory.mktemp("pool") / "data", seed=5, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=14, min_frames=40, max_frames=70,
                      channels={"rgb": 6, "depth": 6})


def _jobs(cache):
    return [cache.job(["rgb", "depth"], 1, obs_ratios=(0.3,), reliance=True),
            cache.job(["rgb", "depth"], 10, rtf=False),
            cache.job(["rgb"], 1),
            # the same run asked for twice (by two figures): merged, trained once
            cache.job(["rgb", "depth"], 1, obs_ratios=(0.3,))]


@pytest.mark.slow
def test_pool_matches_serial(data, tmp_path):
    prof = profiles.get_profile("quick")
    serial = runcache.RunCache(data, tmp_path / "serial", prof, progress=False)
    pooled = runcache.RunCache(data, tmp_path / "pooled", prof, progress=False)
    runcache.set_threads(1)  # the workers run one torch thread each: the serial run must too
    s = runcache.run_jobs(_jobs(serial), workers=1, progress=False)
    pooled.prefetch(_jobs(pooled), workers=2, progress=False)
    assert len(s) == 3 and all(s.values()) and len(pooled.trained_now) == 3
    for job in runcache.merge_jobs(_jobs(serial)):
        a = job.run_dir()
        b = pooled.run_dir(job.modalities, job.seed, **dict(job.overrides))
        # Same computation (config, seed, data, one thread) on the same machine, so the recorded
        # MoC, reliance and exported features are bit-identical, not just close.
        for f in sorted(p.relative_to(a) for p in a.rglob("*") if p.suffix in (".csv", ".npz")
                        and p.name != "metrics.csv"):
            if f.suffix == ".csv":
                # ranks.csv records how long each measurement took (wall clock): compare the ranks
                drop = ["seconds"] if f.name == "ranks.csv" else []
                pd.testing.assert_frame_equal(pd.read_csv(a / f).drop(columns=drop),
                                              pd.read_csv(b / f).drop(columns=drop), check_exact=True)
            else:  # the arrays (the file's metadata records its own path)
                xa, xb = load_arrays(a / f), load_arrays(b / f)
                assert sorted(xa) == sorted(xb) and all(np.array_equal(xa[k], xb[k]) for k in xa), f
        assert (b / "reliance-test-d0-m.csv").exists() == (len(job.modalities) > 1 and job.seed == 1
                                                          and not job.overrides)
    # the families then find the runs finished; "reused" says whether this session trained them
    rec = pooled.run("rgb+depth", ["rgb", "depth"], seed=1)
    assert rec.reused is False
    again = runcache.RunCache(data, tmp_path / "pooled", prof, progress=False)
    assert again.run("rgb+depth", ["rgb", "depth"], seed=1).reused is True
    assert runcache.run_jobs(_jobs(again), workers=2, progress=False) == {str(j.run_dir()): False
                                                                         for j in runcache.merge_jobs(_jobs(again))}


def test_run_jobs_validates_workers(data, tmp_path):
    cache = runcache.RunCache(data, tmp_path / "c", profiles.get_profile("quick"), progress=False)
    with pytest.raises(ValueError, match="workers"):
        runcache.run_jobs([], workers=0)
    assert runcache.run_jobs([], workers=2, progress=False) == {}
    assert cache.trained_now == set()


@pytest.mark.slow
def test_seeds_of_one_configuration_train_together(data, tmp_path, monkeypatch):
    import json

    from rankfusion import batched

    prof = profiles.get_profile("quick")
    one = runcache.RunCache(data, tmp_path / "one", prof, progress=False)
    two = runcache.RunCache(data, tmp_path / "two", prof, progress=False)
    runcache.set_threads(1)

    def jobs(cache):
        return [cache.job(["rgb", "depth"], s, obs_ratios=(0.3,)) for s in (1, 10)] + \
            [cache.job(["rgb"], s) for s in (1, 10)]

    assert [len(g) for g in runcache.group_jobs(jobs(one))] == [2, 2]
    # a remedy's seeds train together too; seeds that cannot be batched (here: a field the batched
    # trainer is made not to know) are one task each, so the pool spreads them
    heads = [one.job(["rgb", "depth"], s, unimodal_heads=1.0) for s in (1, 10)]
    assert [len(g) for g in runcache.group_jobs(jobs(one) + heads)] == [2, 2, 2]
    monkeypatch.setitem(batched.BATCHED_FIELDS, "train", batched.BATCHED_FIELDS["train"] - {"unimodal_heads"})
    assert [len(g) for g in runcache.group_jobs(jobs(one) + heads)] == [2, 2, 1, 1]
    monkeypatch.undo()
    assert all(runcache.run_jobs(jobs(one), workers=1, progress=False).values())
    two.prefetch(jobs(two), workers=2, progress=False)
    assert len(two.trained_now) == 4
    for job in jobs(one):
        a, b = job.run_dir(), two.run_dir(job.modalities, job.seed)
        assert json.loads((a / runcache.DONE).read_text())["batched_seeds"] == [1, 10]
        # the same batched computation in a worker process: identical files
        for f in sorted(p.relative_to(a) for p in a.rglob("*.csv") if p.name not in ("metrics.csv", "ranks.csv")):
            pd.testing.assert_frame_equal(pd.read_csv(a / f), pd.read_csv(b / f), check_exact=True)
    assert runcache.run_jobs(jobs(two), workers=2, progress=False) == {str(j.run_dir()): False for j in jobs(two)}


def test_runs_of_a_family_train_their_seeds_together(data, tmp_path):
    import dataclasses
    import json

    prof = dataclasses.replace(profiles.get_profile("quick"), seeds=(1, 10))
    cache = runcache.RunCache(data, tmp_path / "c", prof, progress=False)
    recs = cache.runs("rgb", ["rgb"])
    assert [r.seed for r in recs] == [1, 10] and not any(r.reused for r in recs)
    assert all(json.loads((r.run_dir / runcache.DONE).read_text())["batched_seeds"] == [1, 10] for r in recs)
    again = runcache.RunCache(data, tmp_path / "c", prof, progress=False)
    assert all(r.reused for r in again.runs("rgb", ["rgb"]))
