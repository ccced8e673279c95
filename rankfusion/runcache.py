"""The run cache: R3D runs trained once per (config, seed, dataset), and a process pool to fill it.

:class:`RunCache` trains R3D runs (:func:`rankfusion.train.train`) only when no finished run with
the same resolved configuration, seed and dataset fingerprint exists, exports their features
(:func:`rankfusion.extract.extract_features`) and evaluates them
(:func:`rankfusion.evaluate.moc_grid`), each result cached next to the run. Every run used is
recorded, so a figure's manifest can say exactly which runs, seeds and config hashes made it.
:func:`run_jobs` fills the cache with independent :class:`RunJob` s in worker processes. Noisy
test sets come from :func:`rankfusion.data.noisy.noisy_dataset`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ._progress import bar_disabled
from ._validation import InputError, check_folder, check_int
from .config import load_config
from .files import atomic_path, entry_lock, load_meta, write_json
from .data import synth
from .data.fingerprint import dataset_fingerprint  # noqa: F401 (the cache's key; public here too)
from .data.noisy import modality_rms, noisy_dataset
from .data.torchdata import CachedFeatures
from . import train as train_mod
from .batched import serial_reason, train_batched
from .extract import extract_features
from .evaluate import DECIDABLE_DRAWS, decidable_cuts, moc_grid, modality_reliance
from .utilization import run_donor_seed
from .profiles import Profile
from .runs import load_run, open_data, resolve_device
from .threads import set_threads

#: Run options that are TrainConfig fields (the remedies of :mod:`rankfusion.remedies`); every
#: other option of :meth:`RunCache.config` is an R3DConfig field.
TRAIN_OVERRIDES = frozenset({"modality_dropout", "unimodal_heads", "ogm"})

#: Marker a run folder gets once training finished; a folder without it is retrained.
DONE = "rankfusion-run.json"


def default_workers() -> int:
    """Processes training independent runs by default (``--workers``): two, or one on a one-core
    machine, each with one torch thread."""
    return max(1, min(2, os.cpu_count() or 1))


def default_cache_dir(data_root) -> Path:
    """The run cache used when none is given: ``<DATA>/../rankfusion-cache``, beside the dataset.

    The one statement of the rule, shared by the ``figures`` / ``robustness`` /
    ``modality-select`` commands and the scripts in ``analysis/``.

    Parameters
    ----------
    data_root : path-like
        The dataset folder (relative paths are resolved against the working directory).

    Returns
    -------
    Path
        Absolute path of the cache folder (not created).
    """
    return Path(data_root).resolve().parent / "rankfusion-cache"


# --------------------------------------------------------------------------- helpers


def git_commit(cwd=None) -> str:
    """Commit of the working tree the package runs from ("unknown" outside git), "+dirty" if modified."""
    import subprocess

    cwd = Path(cwd) if cwd is not None else Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _cached_record(path: Path):
    """A JSON object the cache wrote (a run's record, a cached number) or ``synth.json``; None when
    it is missing or damaged (not JSON, or not an object): the entry is then made again."""
    try:
        value = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _feature_meta(path: Path) -> dict:
    """A cached feature file's metadata; empty when it cannot be read (the file is then made again)."""
    try:
        return load_meta(path)
    except InputError:
        return {}


def _cached_table(path: Path, columns):
    """A CSV table the cache wrote; None when it is missing, unreadable or lacks ``columns``: the
    entry is then made again (and replaced, atomically)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError):  # pandas' empty-file and parser errors are ValueErrors
        return None
    return df if set(columns) <= set(df.columns) else None


def expected_complementary(root) -> str | None:
    """The candidate most complementary to RGB by construction, for a synthetic dataset; else None.

    Read from the dataset's ``synth.json`` (key ``most_complementary`` when the generator writes
    it). The bundled generator documents RGB + depth as its most complementary pair
    (docs/datasets.md, ``rankfusion.data.synth``), which is the fallback for its datasets.
    """
    meta = _cached_record(Path(root) / "synth.json")
    if meta is None:
        return None
    if meta.get("most_complementary"):
        return str(meta["most_complementary"])
    if meta.get("generator") == "rankfusion.data.synth":
        return str(getattr(synth, "MOST_COMPLEMENTARY", "depth"))
    return None


def _tag(value: float) -> str:
    return f"{value:g}".replace(".", "p")


# --------------------------------------------------------------------------- run cache


@dataclass
class RunRecord:
    """A finished run: where it is and what made it."""

    name: str
    run_dir: Path
    config_hash: str
    seed: int
    overrides: dict
    reused: bool
    seconds: float = 0.0

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["run_dir"] = str(self.run_dir)
        return d


class RunCache:
    """Train, export and evaluate R3D runs once per (config, seed, dataset).

    Parameters
    ----------
    data_root : path-like
        The dataset (standard layout).
    cache_dir : path-like
        Folder of the cached runs (``runs/<config hash>-s<seed>-<data fingerprint>/``) and of the
        noisy test-set copies (``noisy/``).
    profile : Profile
        Size of the runs (model/train overrides applied before each run's own options).
    device : str
        Torch device for training, export and evaluation.
    progress : bool
        Show tqdm bars (stderr).
    """

    def __init__(self, data_root, cache_dir, profile: Profile, *, device: str = "cpu", progress: bool = True,
                 fingerprint: str | None = None):
        self.data_root = check_folder(data_root, "dataset folder").resolve()
        resolve_device(device)  # an unusable device fails here, before anything is written
        self.cache_dir = Path(cache_dir)
        self.profile = profile
        self.device = device
        self.progress = progress
        self.fingerprint = dataset_fingerprint(self.data_root) if fingerprint is None else fingerprint
        #: the runs this session used, by (run folder, label): the folder is named by config hash,
        #: seed and dataset fingerprint
        self.used: dict[tuple, RunRecord] = {}
        self._rms: dict[str, float] = {}
        #: run folders trained by this session's worker processes (:meth:`prefetch`)
        self.trained_now: set[str] = set()

    def run_dir(self, modalities, seed: int = 1, **model_overrides) -> Path:
        """The cache folder of a run with these options (trained or not)."""
        chash = self.config(modalities, **model_overrides).config_hash()
        return self.cache_dir / "runs" / f"{chash}-s{seed}-{self.fingerprint}"

    def job(self, modalities, seed: int = 1, *, obs_ratios=(), reliance: bool = False,
            **model_overrides) -> "RunJob":
        """A :class:`RunJob` for :func:`run_jobs`: train, evaluate and export this run in a worker."""
        return RunJob(data_root=str(self.data_root), cache_dir=str(self.cache_dir), profile=self.profile,
                      fingerprint=self.fingerprint, modalities=tuple(modalities), seed=int(seed),
                      overrides=tuple(sorted(model_overrides.items())), obs_ratios=tuple(obs_ratios),
                      reliance=bool(reliance), device=self.device)

    def prefetch(self, jobs, *, workers: int = 1, progress: bool | None = None, on_done=None, stop=None) -> None:
        """Train / evaluate / export ``jobs`` (of this cache) in ``workers`` processes (:func:`run_jobs`).

        ``on_done(run folder)`` is called as each run lands in the cache (after :attr:`trained_now`
        records it); ``stop`` as in :func:`run_jobs`.
        """

        def done(d, trained):
            if trained:
                self.trained_now.add(d)
            if on_done is not None:
                on_done(d)

        run_jobs(jobs, workers=workers, progress=self.progress if progress is None else progress, on_done=done,
                 stop=stop)

    # -- configs
    def config(self, modalities, **model_overrides):
        """The resolved :class:`rankfusion.config.RunConfig` of a run with these options.

        ``model_overrides`` are R3DConfig fields, except the remedies of :data:`TRAIN_OVERRIDES`,
        which go to TrainConfig; a per-modality ``modality_dropout`` is given as sorted
        ``(modality, p)`` pairs (comparable, so a job that carries it can be deduplicated; the
        lists of pairs a run's JSON record holds are read back the same way).
        """
        train = dict(self.profile.train)
        for k in TRAIN_OVERRIDES & model_overrides.keys():
            v = model_overrides[k]
            train[k] = dict(v) if isinstance(v, (tuple, list)) else v  # pairs; a list once through JSON
        model = dict(self.profile.model)
        model.update({k: v for k, v in model_overrides.items() if k not in TRAIN_OVERRIDES})
        model["modalities"] = tuple(modalities)
        # n_heads must divide the stacked width M * d_model; fewer modalities may need fewer heads.
        # (Profiles set both d_model and n_heads, so the preset's values never matter here.)
        d_model = int(model.get("d_model", 128))
        heads = int(model.get("n_heads", 8))
        while (len(model["modalities"]) * d_model) % heads:
            heads -= 1
        model["n_heads"] = heads
        return load_config(preset=self.profile.preset, model=model, train=train)

    # -- training
    def run(self, name: str, modalities, seed: int = 1, **model_overrides) -> RunRecord:
        """Return the finished run of this configuration and seed, training it if needed."""
        cfg = self.config(modalities, **model_overrides)
        chash = cfg.config_hash()
        run_dir = self.cache_dir / "runs" / f"{chash}-s{seed}-{self.fingerprint}"
        # keyed by what makes the run (its folder: config hash, seed, dataset) and the label it is
        # used under: a label reused with another config is another run, and each use is listed
        key = (run_dir, name)
        if key in self.used:
            return self.used[key]  # keep the first record: "reused" says whether this session trained it
        done = run_dir / DONE
        overrides = {"modalities": list(modalities), **model_overrides}
        # one builder per run folder: another process sharing the cache waits, then reuses it
        with entry_lock(run_dir, progress=self.progress):
            record = _cached_record(done)
            if record is not None:
                rec = RunRecord(name, run_dir, chash, seed, overrides, reused=str(run_dir) not in self.trained_now,
                                seconds=record.get("seconds", 0.0))
            else:
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # an unfinished run (its builder died): start over
                t0 = time.perf_counter()
                # one line per run, not one per epoch: a family trains many runs
                train_mod.train(cfg, self.data_root, run_dir, seed=seed, device=self.device, progress=False)
                secs = round(time.perf_counter() - t0, 2)
                write_json(done, self._done(name, cfg, seed, overrides, secs))
                self._trained_line(name, [seed], secs, run_dir)
                rec = RunRecord(name, run_dir, chash, seed, overrides, reused=False, seconds=secs)
        self.used[key] = rec
        return rec

    def _trained_line(self, name, seeds, seconds, run_dir) -> None:
        """With progress on, one line on stderr for runs just trained (their epochs are not listed)."""
        if self.progress:
            s = "s" if len(seeds) > 1 else ""
            print(f"trained {name} seed{s} {','.join(map(str, seeds))} in {seconds:.1f} s: {run_dir.name}",
                  file=sys.stderr, flush=True)

    def _done(self, name, cfg, seed, overrides, seconds, **extra) -> dict:
        """The record a finished run folder holds (``DONE``)."""
        return {"name": name, "config_hash": cfg.config_hash(), "seed": seed, "dataset": str(self.data_root),
                "fingerprint": self.fingerprint, "overrides": overrides, "seconds": seconds, "config": cfg.to_dict(),
                **extra}

    def train_seeds(self, modalities, seeds, **model_overrides) -> list[int]:
        """Train the unfinished runs of one configuration for ``seeds`` as one batched model.

        Each seed gets its own run folder, as :meth:`run` makes it (its ``seconds`` are the batched
        wall time divided by the seeds trained, and ``batched_seeds`` lists them); :meth:`run` then
        finds them finished. Where the seeds cannot be batched
        (:func:`rankfusion.batched.serial_reason`), or fewer than two are unfinished, nothing is
        trained here and :meth:`run` trains each on its own.

        Returns
        -------
        list of int
            The seeds trained by this call.
        """
        cfg = self.config(modalities, **model_overrides)
        seeds = sorted({int(s) for s in seeds})
        if len(seeds) < 2 or serial_reason(cfg, device=self.device) is not None:
            return []
        dirs = {s: self.run_dir(modalities, s, **model_overrides) for s in seeds}
        overrides = {"modalities": list(modalities), **model_overrides}
        # one builder per run folder (sorted, so that two processes never wait on each other)
        with contextlib.ExitStack() as locks:
            for s in seeds:
                locks.enter_context(entry_lock(dirs[s], progress=self.progress))
            todo = [s for s in seeds if _cached_record(dirs[s] / DONE) is None]
            if len(todo) < 2:
                return []
            for s in todo:
                if dirs[s].exists():
                    shutil.rmtree(dirs[s])  # an unfinished run (its builder died): start over
            t0 = time.perf_counter()
            train_batched(cfg, self.data_root, {s: dirs[s] for s in todo}, device=self.device, progress=False)
            secs = round((time.perf_counter() - t0) / len(todo), 2)
            for s in todo:
                write_json(dirs[s] / DONE, self._done("seeds", cfg, s, overrides, secs, batched_seeds=todo))
            label = " ".join(["+".join(modalities), *(f"{k}={v}" for k, v in sorted(model_overrides.items()))])
            self._trained_line(label, todo, secs * len(todo), dirs[todo[0]])
        self.trained_now |= {str(dirs[s]) for s in todo}
        return todo

    def runs(self, name: str, modalities, **model_overrides) -> list[RunRecord]:
        """The runs of one configuration for every seed of the profile (unfinished ones trained
        together, :meth:`train_seeds`)."""
        self.train_seeds(modalities, self.profile.seeds, **model_overrides)
        return [self.run(name, modalities, seed=s, **model_overrides) for s in self.profile.seeds]

    # -- noise
    def rms(self, modality: str) -> float:
        if modality not in self._rms:
            self._rms[modality] = modality_rms(self.data_root, modality, "test")
        return self._rms[modality]

    def noisy_root(self, modality: str | None, sigma: float, seed: int = 0) -> Path:
        """The dataset with noise ``sigma`` (RMS units) on ``modality``'s test split (clean if None/0)."""
        if modality is None or sigma == 0:
            return self.data_root
        out = self.cache_dir / "noisy" / f"{self.fingerprint}-{modality}-{_tag(sigma)}-n{seed}"
        return noisy_dataset(self.data_root, out, modality, sigma, seed=seed, rms=self.rms(modality))

    # -- exports
    def features(self, rec: RunRecord, obs_ratio: float, *, split: str = "test", noise: tuple | None = None) -> Path:
        """Feature file of a run at one observation ratio (``noise=(modality, sigma, seed)``); a
        cached file without the record of the channels RTF blended (written by older code) is made
        again, so that the angle and theorem analyses read the run's channels."""
        tag = "clean" if not noise or noise[1] == 0 else f"{noise[0]}-{_tag(noise[1])}-n{noise[2]}"
        out = rec.run_dir / "features" / f"{split}-obs{_tag(obs_ratio)}-{tag}.npz"
        with entry_lock(out):
            if not out.exists() or "blended_channels" not in _feature_meta(out):
                root = self.data_root if not noise else self.noisy_root(*noise)
                extract_features(rec.run_dir, split, obs_ratio, out, device=self.device, data_root=root,
                                 progress=False, overwrite=True)
        return out

    def evaluate(self, rec: RunRecord, *, split: str = "test", noise: tuple | None = None) -> pd.DataFrame:
        """MoC grid of a run's best checkpoint as ``obs_ratio, beta, moc`` (%), cached as CSV in the run.

        Only the anticipation protocol is run (:func:`rankfusion.evaluate.moc_grid`), not
        the segmentation metrics of ``rankfusion evaluate``: the figures need MoC alone.
        """
        tag = "clean" if not noise or noise[1] == 0 else f"{noise[0]}-{_tag(noise[1])}-n{noise[2]}"
        out = rec.run_dir / f"moc-{split}-{tag}.csv"
        with entry_lock(out):
            cached = _cached_table(out, ("obs_ratio", "beta", "moc"))
            if cached is not None:
                return cached
            root = self.data_root if not noise else self.noisy_root(*noise)
            dev = resolve_device(self.device)
            model, config, info = load_run(rec.run_dir, device=dev)
            ds = open_data(root, config, info)
            grid = moc_grid(model, ds, split, config, dev)
            df = pd.DataFrame([{"obs_ratio": float(o), "beta": float(b), "moc": float(v)}
                               for (o, b), v in grid.items()])
            with atomic_path(out) as tmp:
                df.to_csv(tmp, index=False)
        return df

    def reliance(self, rec: RunRecord, *, split: str = "test", seed: int = 0) -> pd.DataFrame:
        """Modality reliance of a run (:func:`rankfusion.evaluate.modality_reliance`) as
        ``modality, moc, moc_swapped, drop`` (grid means, MoC points), cached as CSV in the run.

        The donors are drawn from ``seed`` and the run's training seed
        (:func:`rankfusion.utilization.run_donor_seed`), as ``rankfusion evaluate`` draws them: the
        spread over seeds contains the donors' variance."""
        # "r": donors of the run's own stream, length-matched, 3 draws (older files, whose donors
        # every run shared, are not reused)
        out = rec.run_dir / f"reliance-{split}-r{seed}.csv"
        cached = _cached_table(out, ("modality", "moc", "moc_swapped", "drop"))
        if cached is not None:
            return cached
        dev = resolve_device(self.device)
        model, config, info = load_run(rec.run_dir, device=dev)
        ds = CachedFeatures(open_data(self.data_root, config, info))  # one read per video, not one per grid
        clean = self.evaluate(rec, split=split)
        grid = {(float(r.obs_ratio), float(r.beta)): float(r.moc) for r in clean.itertuples()}
        rows = [{"modality": r.modality, "moc": r.moc, "moc_swapped": r.moc_swapped, "drop": r.drop}
                for r in modality_reliance(model, ds, split, config, dev, seed=run_donor_seed(seed, rec.seed),
                                           clean=grid)]
        df = pd.DataFrame(rows, columns=["modality", "moc", "moc_swapped", "drop"])
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
        return df

    def decidable_gain(self, rec: RunRecord, modality: str, *, split: str = "test", seed: int = 0) -> float:
        """The run's reliance on ``modality`` counted only on the cut points only it can decide.

        :func:`rankfusion.evaluate.modality_reliance` restricted to
        :func:`rankfusion.evaluate.decidable_cuts` (a synthetic dataset's partner-only cut points),
        in MoC points; for a model of ``modality`` alone, what that modality's information is worth
        there. NaN when the split has no such cut point. Cached as JSON in the run. The donors come
        from the run's own stream (as in :meth:`reliance`), :data:`rankfusion.evaluate.DECIDABLE_DRAWS`
        draws of them.
        """
        out = rec.run_dir / f"decidable-{split}-{modality}-r{seed}-x{DECIDABLE_DRAWS}.json"
        cached = _cached_record(out)
        if cached is not None and "gain" in cached:
            v = cached["gain"]
            return float("nan") if v is None else float(v)
        dev = resolve_device(self.device)
        model, config, info = load_run(rec.run_dir, device=dev)
        ds = CachedFeatures(open_data(self.data_root, config, info))  # one read per video, not one per grid
        only = decidable_cuts(self.data_root, ds, split, config)
        gain = float("nan")
        if only:
            gain = float(modality_reliance(model, ds, split, config, dev, modalities=[modality],
                                           seed=run_donor_seed(seed, rec.seed), draws=DECIDABLE_DRAWS,
                                           only=only)[0].drop)
        write_json(out, {"gain": gain if only else None, "cuts": len(only), "modality": modality, "split": split})
        return gain

    def manifest_runs(self, keys=None) -> list[dict]:
        """JSON records of the runs used (all, or those whose ``(run folder, label)`` is in ``keys``)."""
        out = []
        for k, r in self.used.items():
            if keys is None or k in keys:
                d = r.to_json()
                # relative to the cache folder, so a committed manifest does not carry local paths
                d["run_dir"] = r.run_dir.relative_to(self.cache_dir).as_posix() if r.run_dir.is_relative_to(
                    self.cache_dir) else str(r.run_dir)
                out.append(d)
        return out


# --------------------------------------------------------------------------- process pool


@dataclass(frozen=True)
class RunJob:
    """One independent unit of the demo's work: train (or reuse) a run, evaluate it, export features.

    Built by :meth:`RunCache.job`; picklable, so it crosses to a worker process. ``overrides`` are
    the run's R3DConfig overrides as sorted ``(key, value)`` pairs.
    """

    data_root: str
    cache_dir: str
    profile: Profile
    fingerprint: str
    modalities: tuple
    seed: int
    overrides: tuple = ()
    obs_ratios: tuple = ()
    reliance: bool = False
    device: str = "cpu"

    def cache(self) -> RunCache:
        return RunCache(self.data_root, self.cache_dir, self.profile, device=self.device, progress=False,
                        fingerprint=self.fingerprint)

    def run_dir(self) -> Path:
        return self.cache().run_dir(self.modalities, self.seed, **dict(self.overrides))


def _do_job(job: RunJob, cache: RunCache | None = None) -> tuple[str, bool]:
    """Worker: the job's run, MoC grid, feature exports and reliance; ``(run folder, trained now)``."""
    cache = job.cache() if cache is None else cache
    rec = cache.run("job", job.modalities, seed=job.seed, **dict(job.overrides))
    cache.evaluate(rec)
    for obs in job.obs_ratios:
        cache.features(rec, obs)
    if job.reliance:
        cache.reliance(rec)
    return str(rec.run_dir), not rec.reused


def _do_group(jobs: list) -> list[tuple[str, bool]]:
    """Worker: the jobs of one configuration (its seeds), trained together (:meth:`RunCache.train_seeds`),
    then each evaluated and exported; ``[(run folder, trained now)]``."""
    cache = jobs[0].cache()
    cache.train_seeds(jobs[0].modalities, [j.seed for j in jobs], **dict(jobs[0].overrides))
    return [_do_job(j, cache) for j in jobs]


def group_jobs(jobs) -> list[list[RunJob]]:
    """:func:`merge_jobs`, then the jobs of one configuration (all but the seed equal) in one group.

    A configuration whose seeds cannot be batched (:func:`rankfusion.batched.serial_reason`, e.g.
    on a CUDA device) gives one group per seed instead: its seeds train one after another anyway,
    so the pool may as well spread them over its workers.
    """
    groups: dict[tuple, list[RunJob]] = {}
    for j in merge_jobs(jobs):
        key = (j.data_root, j.cache_dir, repr(j.profile), j.fingerprint, j.modalities, j.overrides, j.device)
        groups.setdefault(key, []).append(j)
    out = []
    for g in groups.values():
        cfg = g[0].cache().config(g[0].modalities, **dict(g[0].overrides))
        if len(g) > 1 and serial_reason(cfg, device=g[0].device) is not None:
            out += [[j] for j in g]
        else:
            out.append(g)
    return out


def _init_worker() -> None:
    # one torch and one BLAS thread per process: the runs are small, and two processes on two
    # cores must not each spin up thread pools of their own (rankfusion.threads explains the cost)
    set_threads(1)


def merge_jobs(jobs) -> list[RunJob]:
    """One job per run folder: duplicates (the same config, seed and dataset asked for by several
    figures) are merged, their exports united, so no two workers ever train the same run."""
    merged: dict[str, RunJob] = {}
    for j in jobs:
        key = str(j.run_dir())
        if key in merged:
            m = merged[key]
            merged[key] = dataclasses.replace(m, obs_ratios=tuple(sorted(set(m.obs_ratios) | set(j.obs_ratios))),
                                              reliance=m.reliance or j.reliance)
        else:
            merged[key] = j
    return list(merged.values())


def run_jobs(jobs, *, workers: int = 1, progress: bool = True, on_done=None, stop=None) -> dict[str, bool]:
    """Run independent :class:`RunJob` s, in ``workers`` processes when > 1.

    ``on_done(run folder, trained now)`` is called for each run as its group finishes (in the
    calling thread). ``stop`` (a :class:`threading.Event`): once set, groups not yet started are
    cancelled and the call returns after the running ones. A group's error cancels the groups not
    yet started and is raised once the running ones have finished.

    The jobs of one configuration (its seeds) form one task (:func:`group_jobs`): its worker trains
    those seeds as one batched model (:meth:`RunCache.train_seeds`), and the pool parallelises over
    configurations. The pool uses the ``spawn`` start method: a forked copy of a process that already ran torch
    can deadlock on its thread pools, and spawned workers are children of this process, so their
    CPU time is counted in its ``RUSAGE_CHILDREN`` once the pool is shut down. Each
    worker runs torch with one thread. Results land in the run cache (files), so the caller reads
    them back exactly as after a serial run; a run trained by a worker is the same computation as
    without the pool (same config, seeds, data, one thread), so its results are identical on the
    same machine.

    Returns
    -------
    dict
        ``{run folder: True if trained by this call}``.
    """
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    from tqdm.auto import tqdm

    workers = check_int(workers, "workers", low=1)
    groups = group_jobs(jobs)
    out: dict[str, bool] = {}
    n_jobs = sum(map(len, groups))
    bar = tqdm(total=n_jobs, desc="runs", unit="run", disable=bar_disabled(progress))

    def done(d, trained):
        out[d] = trained
        bar.update()
        if on_done is not None:
            on_done(d, trained)
        if progress and bar.disable:  # not a terminal: one plain line per run instead of the bar, on its stream
            print(f"run {len(out)}/{n_jobs} {'trained' if trained else 'reused'}: {Path(d).name}", file=sys.stderr,
                  flush=True)

    if workers == 1 or len(groups) <= 1:
        for g in groups:
            if stop is not None and stop.is_set():
                break
            for result in _do_group(g):
                done(*result)
        bar.close()
        return out
    with ProcessPoolExecutor(max_workers=min(workers, len(groups)), mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        pending = {pool.submit(_do_group, g) for g in groups}
        while pending:
            if stop is not None and stop.is_set():
                for f in pending:
                    f.cancel()  # those not started; the running ones finish before the pool closes
                break
            finished, pending = wait(pending, timeout=0.5, return_when=FIRST_COMPLETED)
            try:
                for f in finished:
                    for result in f.result():
                        done(*result)
            except BaseException:
                for f in pending:  # a failed group: the groups not yet started are not run
                    f.cancel()
                raise
    bar.close()
    return out
