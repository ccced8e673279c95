"""The demo's process pool: independent runs trained in worker processes give the serial results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")

from rankfusion import profiles, runcache, threads  # noqa: E402
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
    threads.set_threads(1)  # the workers run one torch thread each: the serial run must too
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
        assert (b / "reliance-test-r0.csv").exists() == (len(job.modalities) > 1 and job.seed == 1
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
    threads.set_threads(1)

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


def _fake_family(name, runsets, log, fail=False):
    """A figure family reading ``runsets``; ``make`` logs which of its runs it found finished."""
    from types import SimpleNamespace

    from rankfusion.figures import FigureResult

    def make(ctx):
        sets = runsets(ctx)
        dirs = [j.run_dir() for s in sets for j in s.jobs()]
        log.append((name, [(d / "checkpoints" / "best.pt").exists() for d in dirs]))
        if fail:
            raise RuntimeError(f"family {name} failed")
        return FigureResult(name)

    return SimpleNamespace(jobs=runsets, make=make, __doc__=name)


@pytest.mark.slow
def test_families_are_made_as_their_runs_land_while_the_pool_trains(data, tmp_path, monkeypatch):
    import time

    from rankfusion import figures
    from rankfusion.figures import FigureContext, RunSet

    ctx = FigureContext.open(data, out=tmp_path / "figs", cache_dir=tmp_path / "cache", profile="quick",
                             progress=False)

    def first(c):
        return [RunSet("a", ("rgb",), seeds=(1,), cache=c.cache)]

    def second(c):
        return [RunSet("b", ("rgb", "depth"), seeds=(1, 10), cache=c.cache),
                RunSet("c", ("depth",), seeds=(1,), cache=c.cache)]

    log, landed = [], []
    prefetch = runcache.RunCache.prefetch

    def record_landing(self, jobs, **kw):
        done = kw.pop("on_done")
        return prefetch(self, jobs, on_done=lambda d: (landed.append((d, time.monotonic())), done(d)), **kw)

    monkeypatch.setattr(runcache.RunCache, "prefetch", record_landing)
    monkeypatch.setattr(figures, "FAMILIES", {"first": _fake_family("first", first, log),
                                              "second": _fake_family("second", second, log)})
    import torch
    from threadpoolctl import threadpool_info

    torch.set_num_threads(2)
    blas = [i["num_threads"] for i in threadpool_info()]
    made = {}
    real_make = figures.FAMILIES["first"].make
    # the second family's batched run "b" waits for its run folder's lock, held here until the first
    # family is made: so "made before the pool finished" does not depend on how fast this machine
    # trains "b" (a timer releases it after 120 s, so that a pool that made no family before its
    # runs had all landed fails the assertion below instead of hanging)
    import contextlib
    import threading

    from rankfusion.files import entry_lock

    held, release_once = contextlib.ExitStack(), threading.Lock()
    for d in [j.run_dir() for j in second(ctx)[0].jobs()]:
        held.enter_context(entry_lock(d))

    def release():
        with release_once:
            held.close()

    timer = threading.Timer(120, release)
    timer.start()

    def make_first(c):
        made.setdefault("first", time.monotonic())
        release()
        return real_make(c)

    figures.FAMILIES["first"].make = make_first
    try:
        results = figures.make_figures(ctx, workers=2, progress=False)
    finally:
        timer.cancel()
        release()
    assert list(results) == ["first", "second"]
    # each family found every one of its runs finished when it was made
    assert log == [("first", [True]), ("second", [True, True, True])]
    # ... and the first was made before the pool had finished the second family's runs
    assert made["first"] < max(t for _, t in landed)
    assert len(ctx.cache.trained_now) == 4
    # the caller's thread settings are back (one thread each while the pool ran)
    assert torch.get_num_threads() == 2 and [i["num_threads"] for i in threadpool_info()] == blas


@pytest.mark.slow
def test_a_family_error_stops_the_pool_and_is_raised(data, tmp_path, monkeypatch):
    from rankfusion import figures
    from rankfusion.figures import FigureContext, RunSet

    ctx = FigureContext.open(data, out=tmp_path / "figs", cache_dir=tmp_path / "cache", profile="quick",
                             progress=False)
    log = []

    def first(c):
        return [RunSet("a", ("rgb",), seeds=(1,), cache=c.cache)]

    def later(c):  # more groups than the two workers start at once
        return [RunSet(f"x{s}", ("rgb", "depth"), overrides=(("exchange_ratio", r),), seeds=(1,), cache=c.cache)
                for s, r in enumerate(np.linspace(0.15, 0.6, 10).round(2).tolist())]

    monkeypatch.setattr(figures, "FAMILIES", {"first": _fake_family("first", first, log, fail=True),
                                              "later": _fake_family("later", later, log)})
    with pytest.raises(RuntimeError, match="family first failed"):
        figures.make_figures(ctx, workers=2, progress=False)
    # the groups not yet started when it failed were cancelled
    trained = [d for d in (tmp_path / "cache" / "runs").iterdir() if (d / "checkpoints" / "best.pt").exists()]
    assert len(trained) < 11


@pytest.mark.slow
def test_a_worker_error_stops_the_pool_and_is_raised(data, tmp_path, monkeypatch):
    from rankfusion import figures
    from rankfusion.figures import FigureContext, RunSet

    ctx = FigureContext.open(data, out=tmp_path / "figs", cache_dir=tmp_path / "cache", profile="quick",
                             progress=False)
    log = []

    def broken(c):  # fails in the worker, when the dataset is opened for training
        return [RunSet("bad", ("no-such-modality",), seeds=(1,), cache=c.cache)]

    def later(c):
        return [RunSet(f"x{s}", ("rgb", "depth"), overrides=(("exchange_ratio", r),), seeds=(1,), cache=c.cache)
                for s, r in enumerate(np.linspace(0.15, 0.6, 10).round(2).tolist())]

    monkeypatch.setattr(figures, "FAMILIES", {"broken": _fake_family("broken", broken, log),
                                              "later": _fake_family("later", later, log)})
    with pytest.raises(Exception, match="no-such-modality"):
        figures.make_figures(ctx, workers=2, progress=False)
    assert log == []  # no family was made
    runs = tmp_path / "cache" / "runs"
    trained = [d for d in runs.iterdir() if (d / "checkpoints" / "best.pt").exists()] if runs.exists() else []
    assert len(trained) < 10  # the groups not yet started were cancelled


def test_run_jobs_progress_lines_go_to_stderr(monkeypatch, capsys):
    # off a terminal each run gets one plain line: progress, on stderr like the bar and the serial
    # route's "trained ..." lines, so that stdout holds only the command's results
    monkeypatch.setattr(runcache, "group_jobs", lambda jobs: [[j] for j in jobs])
    monkeypatch.setattr(runcache, "_do_group", lambda g: [(f"/cache/runs/{g[0]}", True)])
    assert runcache.run_jobs(["a", "b"], workers=1, progress=True) == {"/cache/runs/a": True,
                                                                      "/cache/runs/b": True}
    out, err = capsys.readouterr()
    assert out == ""
    assert "run 1/2 trained: a" in err and "run 2/2 trained: b" in err
