"""Runs behind the analyses: a run cache keyed by config hash, feature export, noisy test sets.

:class:`RunCache` trains R3D runs (:func:`rankfusion.train.train`) only when no finished run with
the same resolved configuration, seed and dataset fingerprint exists, exports their features
(:func:`rankfusion.extract.extract_features`) and evaluates them
(:func:`rankfusion.evaluate.evaluate_run`), each result cached next to the run. Every run used is
recorded, so a figure's manifest can say exactly which runs, seeds and config hashes made it.

Noise robustness (Figs. 6-7) perturbs one modality of the *test split* only: :func:`noisy_dataset`
writes a copy of the dataset (other files symlinked) whose noisy modality carries seeded Gaussian
noise of standard deviation ``sigma * RMS`` (RMS of that modality's test features), so the
trained model, the feature export and the MoC evaluation all see the same perturbed inputs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import shutil
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ._progress import bar_disabled
from ._validation import InputError, check_float, check_int
from .config import load_config, PAPER_SEEDS
from .io import atomic_dir, atomic_path, write_json
from .data import open_dataset, synth
from . import train as train_mod
from .batched import serial_reason, train_batched
from .extract import extract_features
from .evaluate import moc_grid, modality_reliance
from .runs import load_run, resolve_device

#: Marker a run folder gets once training finished; a folder without it is retrained.
DONE = "rankfusion-run.json"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class Profile:
    """How big the demo / figure runs are.

    Attributes
    ----------
    synth : dict
        Keyword arguments of :func:`rankfusion.data.synthesize` (the demo's dataset).
    preset : str or None
        Bundled config preset (``rankfusion/configs/<preset>.toml``) every run starts from.
    model, train : dict
        Overrides of :class:`rankfusion.config.R3DConfig` / ``TrainConfig`` applied on the preset.
    seeds : tuple of int
        Seeds of each configuration (results are averaged over them).
    obs_ratios : tuple of float
        Observation ratios at which features are exported and analysed.
    noise_targets : tuple of float
        Relative representation changes of the "small" and "large" noise levels.
    dose : dict
        Settings of the dose-response family (:func:`rankfusion.figures.dose.make`; empty: none):
        ``complementarity`` and ``imbalance`` (the levels of each sweep), ``base`` (the generator
        dials every point starts from), ``synth`` (:func:`rankfusion.data.synthesize` arguments of
        the dose datasets; default the profile's ``synth``, so the point at the base dials is the
        demo's own dataset and shares its runs) and ``data_seed``.
    """

    synth: dict = field(default_factory=dict)
    preset: str | None = "synthetic-small"
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    seeds: tuple = (1,)
    obs_ratios: tuple = (0.2, 0.3)
    noise_targets: tuple = (0.25, 0.75)
    dose: dict = field(default_factory=dict)


#: ``quick``: about a minute end to end on 2 CPU cores (tests; its models barely train).
#: ``full``: the demo, sized for < 15 minutes on 2 CPU cores for its 29 configurations x 5 seeds
#: (:data:`DEMO_SEEDS`; 145 runs over the demo's dataset and the five other dose-sweep datasets, the
#: seeds of one configuration trained as one batched model):
#: the ``synthetic-small`` preset (sample_rate 4, one temporal-fuser layer) made narrower
#: (d_model 32) and shorter (24 epochs at twice the learning rate), 64 videos (README.md gives
#: the measured wall time).
#: The demo's seeds: the paper's three and two more. With 5 seeds per arm Welch's test finds a
#: true 2-sd difference with power ~0.77, with the paper's 3 only ~0.38 (docs/analysis.md, "How
#: findings are judged").
DEMO_SEEDS = PAPER_SEEDS + (7, 42)

PROFILES = {
    "quick": Profile(
        synth=dict(n_videos=10, min_frames=50, max_frames=110, complementarity=1.0, imbalance=1.0,
                   split_fractions=(0.7, 0.15, 0.15),
                   channels={"rgb": 16, "depth": 16, "mvrgb": 16, "noise": 16, "imu": 8, "text": 8}),
        model=dict(d_model=16, n_layers=1, n_heads=2, mlp_ratio=1, dropout=0.0),
        train=dict(epochs=1, warmup_epochs=0, batch_size=8, sample_rate=2),
        seeds=(1,), obs_ratios=(0.3,),
        dose=dict(complementarity=(0.0, 1.0), imbalance=(1.0, 4.0), base=dict(complementarity=1.0, imbalance=1.0),
                  data_seed=0),
    ),
    "full": Profile(
        synth=dict(n_videos=64, min_frames=150, max_frames=450, complementarity=1.0, imbalance=1.0,
                   split_fractions=(0.7, 0.15, 0.15)),
        model=dict(d_model=32, n_layers=1, n_heads=4, mlp_ratio=2),
        train=dict(epochs=24, warmup_epochs=2, batch_size=8, sample_rate=4, lr=2e-3),
        seeds=DEMO_SEEDS, obs_ratios=(0.2, 0.3, 0.5),
        dose=dict(complementarity=(0.0, 1 / 3, 2 / 3, 1.0), imbalance=(1.0, 4.0, 16.0),
                  base=dict(complementarity=1.0, imbalance=1.0), data_seed=0),
    ),
}


def set_threads(n: int | None) -> None:
    """Use ``n`` torch (intra-op) threads; None leaves torch's default.

    The demo's models are small (D = 32, a few hundred steps per batch): one thread runs them
    about as fast as two on an idle machine and several times faster on a shared one, where
    multi-threaded kernels on small matrices spin-wait for a busy core (measured 4.5 s vs 9.7-18 s
    for the same run on this 2-core machine under load).
    """
    if n is None:
        return
    n = check_int(n, "threads", low=1)
    import torch

    torch.set_num_threads(n)


def get_profile(name: str) -> Profile:
    """Return a named :class:`Profile`; ValueError naming the profile otherwise."""
    if name not in PROFILES:
        raise InputError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return PROFILES[name]


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


def dataset_fingerprint(root) -> str:
    """A 12-hex hash of a dataset's files: names, sizes and their first and last 64 KiB.

    Part of every cache key, so a regenerated or edited dataset retrains its runs while an
    unchanged one (even re-created with new timestamps) reuses them. Reading only the ends of
    large feature files keeps this fast on real datasets.
    """
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {str(root)!r} does not exist")
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        rel = path.relative_to(root).as_posix()
        if rel.startswith("factors/"):
            continue  # hidden factors are never read by the model
        size = path.stat().st_size
        h.update(f"{rel}\0{size}\0".encode())
        with open(path, "rb") as fh:
            h.update(fh.read(65536))
            if size > 131072:
                fh.seek(-65536, os.SEEK_END)
                h.update(fh.read(65536))
    return h.hexdigest()[:12]


def expected_complementary(root) -> str | None:
    """The candidate most complementary to RGB by construction, for a synthetic dataset; else None.

    Read from the dataset's ``synth.json`` (key ``most_complementary`` when the generator writes
    it). The bundled generator documents RGB + depth as its most complementary pair
    (docs/datasets.md, ``rankfusion.data.synth``), which is the fallback for its datasets.
    """
    meta_path = Path(root) / "synth.json"
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        return None
    if meta.get("most_complementary"):
        return str(meta["most_complementary"])
    if meta.get("generator") == "rankfusion.data.synth":
        return str(getattr(synth, "MOST_COMPLEMENTARY", "depth"))
    return None


def _tag(value: float) -> str:
    return f"{value:g}".replace(".", "p")


@contextlib.contextmanager
def entry_lock(path, *, progress: bool = False):
    """Hold the lock of one cache entry (a run folder, a noisy dataset, a feature or MoC file).

    Processes sharing a cache build each entry once: the first takes the lock (a file
    ``.<name>.lock`` beside the entry) and builds it, the others wait, then find it built. The
    lock is released when the holder exits, even if it is killed (an OS file lock).
    """
    from filelock import FileLock, Timeout

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(path.parent / f".{path.name}.lock"))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        if progress:
            print(f"waiting for another process building {path}", file=sys.stderr, flush=True)
        lock.acquire()
    try:
        yield
    finally:
        lock.release()


# --------------------------------------------------------------------------- noisy datasets


def modality_rms(root, modality: str, split: str = "test") -> float:
    """Root-mean-square of a modality's input features over a split (the noise unit)."""
    ds = open_dataset(root, modalities=[modality])
    total, count = 0.0, 0
    for vid in ds.split(split):
        x = np.asarray(ds.features(vid, modality), dtype=np.float64)
        total += float((x * x).sum())
        count += x.size
    if count == 0:
        raise InputError(f"split {split!r} of {str(root)!r} has no {modality!r} features")
    return float(np.sqrt(total / count))


def noisy_dataset(root, out, modality: str, sigma: float, *, seed: int = 0, split: str = "test",
                  rms: float | None = None) -> Path:
    """Write a copy of a dataset with Gaussian noise on one modality of one split.

    Parameters
    ----------
    root : path-like
        The clean dataset (standard layout).
    out : path-like
        Destination; everything except ``features/<modality>/<video>.npy`` of the split's videos
        is a symlink to ``root``. Reused when it already holds the same settings (``noise.json``).
    modality : str
        The modality to perturb.
    sigma : float
        Noise std in units of the modality's RMS over the split (0 gives a clean copy).
    seed : int
        Base seed; each video's noise is drawn from ``(seed, crc32(video))`` so it does not depend
        on the order videos are written.
    split : str
        Split whose videos are perturbed (the test split: the model is trained on clean data).
    rms : float, optional
        The RMS unit, computed when not given.

    Returns
    -------
    Path
        ``out``. ``out/noise.json`` records modality, sigma, rms, absolute std, seed, split.
    """
    root, out = Path(root).resolve(), Path(out)
    sigma = check_float(sigma, "sigma", low=0.0)
    seed = check_int(seed, "seed", low=0)
    ds = open_dataset(root)
    if modality not in ds.modalities:
        raise InputError(f"modality {modality!r} not in dataset {str(root)!r}; modalities: {ds.modalities}")
    rms = modality_rms(root, modality, split) if rms is None else float(rms)
    record = {"clean_root": str(root), "modality": modality, "sigma": sigma, "rms": rms, "std": sigma * rms,
              "seed": seed, "split": split}
    with entry_lock(out):
        if (out / "noise.json").exists():
            try:
                if json.loads((out / "noise.json").read_text()) == record:
                    return out
            except (OSError, ValueError):
                pass
        with atomic_dir(out) as tmp:  # a unique temporary name, renamed over any older copy
            _write_noisy(tmp, root, ds, modality, split, rms * sigma, seed, record)
    return out


def _write_noisy(tmp: Path, root: Path, ds, modality: str, split: str, std: float, seed: int, record: dict):
    for entry in root.iterdir():
        if entry.name != "features":
            os.symlink(entry, tmp / entry.name)
    (tmp / "features").mkdir()
    for mdir in (root / "features").iterdir():
        if mdir.name != modality:
            os.symlink(mdir, tmp / "features" / mdir.name)
    noisy_dir = tmp / "features" / modality
    noisy_dir.mkdir()
    videos = set(ds.split(split))
    for f in (root / "features" / modality).iterdir():
        if f.stem in videos and f.suffix == ".npy":
            x = np.load(f)
            rng = np.random.default_rng([seed, zlib.crc32(f.stem.encode())])
            noise = rng.standard_normal(x.shape) * std
            np.save(noisy_dir / f.name, (x + noise).astype(x.dtype))
        else:
            os.symlink(f, noisy_dir / f.name)
    (tmp / "noise.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


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
        self.data_root = Path(data_root).resolve()
        if not self.data_root.is_dir():
            raise InputError(f"dataset folder {str(data_root)!r} does not exist")
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

    def prefetch(self, jobs, *, workers: int = 1, progress: bool | None = None) -> None:
        """Train / evaluate / export ``jobs`` (of this cache) in ``workers`` processes (:func:`run_jobs`)."""
        done = run_jobs(jobs, workers=workers, progress=self.progress if progress is None else progress)
        self.trained_now |= {d for d, trained in done.items() if trained}

    # -- configs
    def config(self, modalities, **model_overrides):
        """The resolved :class:`rankfusion.config.RunConfig` of a run with these options."""
        model = dict(self.profile.model)
        model.update(model_overrides)
        model["modalities"] = tuple(modalities)
        # n_heads must divide the stacked width M * d_model; fewer modalities may need fewer heads.
        # (Profiles set both d_model and n_heads, so the preset's values never matter here.)
        d_model = int(model.get("d_model", 128))
        heads = int(model.get("n_heads", 8))
        while (len(model["modalities"]) * d_model) % heads:
            heads -= 1
        model["n_heads"] = heads
        return load_config(preset=self.profile.preset, model=model, train=dict(self.profile.train))

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
            if done.exists():
                rec = RunRecord(name, run_dir, chash, seed, overrides, reused=str(run_dir) not in self.trained_now,
                                seconds=json.loads(done.read_text()).get("seconds", 0.0))
            else:
                if run_dir.exists():
                    shutil.rmtree(run_dir)  # an unfinished run (its builder died): start over
                t0 = time.perf_counter()
                train_mod.train(cfg, self.data_root, run_dir, seed=seed, device=self.device,
                                progress=self.progress)
                secs = round(time.perf_counter() - t0, 2)
                write_json(done, self._done(name, cfg, seed, overrides, secs))
                rec = RunRecord(name, run_dir, chash, seed, overrides, reused=False, seconds=secs)
        self.used[key] = rec
        return rec

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
            todo = [s for s in seeds if not (dirs[s] / DONE).exists()]
            if len(todo) < 2:
                return []
            for s in todo:
                if dirs[s].exists():
                    shutil.rmtree(dirs[s])  # an unfinished run (its builder died): start over
            t0 = time.perf_counter()
            train_batched(cfg, self.data_root, {s: dirs[s] for s in todo}, device=self.device,
                          progress=self.progress)
            secs = round((time.perf_counter() - t0) / len(todo), 2)
            for s in todo:
                write_json(dirs[s] / DONE, self._done("seeds", cfg, s, overrides, secs, batched_seeds=todo))
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
        """Feature file of a run at one observation ratio (``noise=(modality, sigma, seed)``)."""
        tag = "clean" if not noise or noise[1] == 0 else f"{noise[0]}-{_tag(noise[1])}-n{noise[2]}"
        out = rec.run_dir / "features" / f"{split}-obs{_tag(obs_ratio)}-{tag}.npz"
        with entry_lock(out):
            if not out.exists():
                root = self.data_root if not noise else self.noisy_root(*noise)
                extract_features(rec.run_dir, split, obs_ratio, out, device=self.device, data_root=root,
                                 progress=False)
        return out

    def evaluate(self, rec: RunRecord, *, split: str = "test", noise: tuple | None = None) -> pd.DataFrame:
        """MoC grid of a run's best checkpoint as ``obs_ratio, beta, moc`` (%), cached as CSV in the run.

        Only the anticipation protocol is run (:func:`rankfusion.evaluate.moc_grid`), not
        the segmentation metrics of ``rankfusion evaluate``: the figures need MoC alone.
        """
        tag = "clean" if not noise or noise[1] == 0 else f"{noise[0]}-{_tag(noise[1])}-n{noise[2]}"
        out = rec.run_dir / f"moc-{split}-{tag}.csv"
        with entry_lock(out):
            if out.exists():
                return pd.read_csv(out)
            root = self.data_root if not noise else self.noisy_root(*noise)
            dev = resolve_device(self.device)
            model, config, _ = load_run(rec.run_dir, device=dev)
            ds = open_dataset(root, modalities=list(config.model.modalities))
            grid = moc_grid(model, ds, split, config, dev)
            df = pd.DataFrame([{"obs_ratio": float(o), "beta": float(b), "moc": float(v)}
                               for (o, b), v in grid.items()])
            with atomic_path(out) as tmp:
                df.to_csv(tmp, index=False)
        return df

    def reliance(self, rec: RunRecord, *, split: str = "test", seed: int = 0) -> pd.DataFrame:
        """Modality reliance of a run (:func:`rankfusion.evaluate.modality_reliance`) as
        ``modality, moc, moc_swapped, drop`` (grid means, MoC points), cached as CSV in the run."""
        # "m": length-matched donors, 3 draws (an older file, from one derangement, is not reused)
        out = rec.run_dir / f"reliance-{split}-d{seed}-m.csv"
        if out.exists():
            return pd.read_csv(out)
        dev = resolve_device(self.device)
        model, config, _ = load_run(rec.run_dir, device=dev)
        ds = open_dataset(self.data_root, modalities=list(config.model.modalities))
        clean = self.evaluate(rec, split=split)
        grid = {(float(r.obs_ratio), float(r.beta)): float(r.moc) for r in clean.itertuples()}
        rows = [{"modality": r.modality, "moc": r.moc, "moc_swapped": r.moc_swapped, "drop": r.drop}
                for r in modality_reliance(model, ds, split, config, dev, seed=seed, clean=grid)]
        df = pd.DataFrame(rows, columns=["modality", "moc", "moc_swapped", "drop"])
        with atomic_path(out) as tmp:
            df.to_csv(tmp, index=False)
        return df

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
    """:func:`merge_jobs`, then the jobs of one configuration (all but the seed equal) in one group."""
    groups: dict[tuple, list[RunJob]] = {}
    for j in merge_jobs(jobs):
        key = (j.data_root, j.cache_dir, repr(j.profile), j.fingerprint, j.modalities, j.overrides, j.device)
        groups.setdefault(key, []).append(j)
    return list(groups.values())


def _init_worker() -> None:
    # one torch thread per process: the runs are small, and two processes on two cores must not
    # each spin up a thread pool of their own (pipeline.set_threads explains the cost)
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


def run_jobs(jobs, *, workers: int = 1, progress: bool = True) -> dict[str, bool]:
    """Run independent :class:`RunJob` s, in ``workers`` processes when > 1.

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
    from concurrent.futures import ProcessPoolExecutor, as_completed

    from tqdm.auto import tqdm

    workers = check_int(workers, "workers", low=1)
    groups = group_jobs(jobs)
    out: dict[str, bool] = {}
    n_jobs = sum(map(len, groups))
    bar = tqdm(total=n_jobs, desc="runs", unit="run", disable=bar_disabled(progress))

    def done(d, trained):
        out[d] = trained
        bar.update()
        if progress and bar.disable:  # not a terminal: one plain line per run instead of the bar
            print(f"run {len(out)}/{n_jobs} {'trained' if trained else 'reused'}: {Path(d).name}", flush=True)

    if workers == 1 or len(groups) <= 1:
        for g in groups:
            for result in _do_group(g):
                done(*result)
        bar.close()
        return out
    with ProcessPoolExecutor(max_workers=min(workers, len(groups)), mp_context=mp.get_context("spawn"),
                             initializer=_init_worker) as pool:
        futures = [pool.submit(_do_group, g) for g in groups]
        for f in as_completed(futures):
            for result in f.result():
                done(*result)
    bar.close()
    return out
