"""Training and evaluation of R3D runs (App. D.2; DESIGN.md's anticipation protocol).

A run folder holds::

    RUN/config.json            resolved RunConfig + seed, config hash, dataset path
    RUN/metrics.csv            one row per epoch (losses, validation metrics, lr, throughput)
    RUN/checkpoints/last.pt    everything needed to resume (written atomically every epoch)
    RUN/checkpoints/best.pt    weights of the best epoch on the *validation* split
    RUN/eval_<split>.csv       written by :func:`evaluate_run`

Several seeds: ``RUN/seed-<s>/`` per seed, ``RUN/seeds.json``, and ``RUN/eval_<split>.csv``
with the mean and standard deviation over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validation import InputError, check_choice, check_float, check_int
from .config import RunConfig
from .io import atomic_path, write_json, write_text

#: Seeds of the paper's three runs (Sec. 5.3, App. D.2).
PAPER_SEEDS = (1, 10, 13452)
#: Overlap thresholds of the segmental F1 scores.
F1_OVERLAPS = (0.10, 0.25, 0.50)

_METRIC_FIELDS = ["epoch", "train_loss", "train_seg", "train_cls", "train_dur", "val_loss", "val_moc",
                  "lr", "epoch_s", "epoch_cpu_s", "frames_per_s"]


# ----------------------------------------------------------------------------- helpers
def resolve_device(device=None):
    """Return a ``torch.device``: ``None``/"cpu" -> CPU, "cuda[:N]" (must be available), "auto".

    Raises
    ------
    ValueError
        Naming ``device`` when it is unknown or CUDA is asked for but absent.
    """
    import torch

    if device is None:
        return torch.device("cpu")
    if isinstance(device, torch.device):
        device = str(device)
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {device!r}")
    return dev


def parse_seeds(seeds) -> list[int]:
    """``1,10,13452`` / int / sequence -> list of distinct non-negative ints."""
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise ValueError(f"seeds must be comma-separated integers, got {seeds!r}") from None
    elif isinstance(seeds, (int, np.integer)):
        seeds = [int(seeds)]
    seeds = [check_int(s, "seed", low=0, high=2**63 - 1) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list without repeats, got {seeds!r}")
    return seeds


def _seed_everything(seed: int):
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict:
    import torch

    # numpy's state holds an ndarray; stored as plain lists so checkpoints load with weights_only=True
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": list(map(_listify, random.getstate())),
             "numpy": [name, keys.tolist(), int(pos), int(has_gauss), float(cached)]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()  # dropout on the GPU draws from these
    return state


def _listify(x):
    return [_listify(v) for v in x] if isinstance(x, (tuple, list)) else x


def _tupleify(x):
    return tuple(_tupleify(v) for v in x) if isinstance(x, list) else x


def _set_rng_state(state: dict):
    import torch

    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    random.setstate(_tupleify(state["python"]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))


def _save_torch(obj, path: Path):
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def load_checkpoint(path, map_location="cpu") -> dict:
    """Load a checkpoint written by :func:`train` (``weights_only``: no arbitrary code)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt / foreign file: a user error, one line
        raise InputError(f"cannot read checkpoint {str(path)!r}: {exc}") from None


def _open(data_root, modalities):
    from .data import open_dataset

    return open_dataset(data_root, modalities=list(modalities))


def resolve_config(config: RunConfig, ds) -> RunConfig:
    """Fill ``input_dims`` and ``n_classes`` from the dataset (checking any values already set)."""
    dims = {m: int(ds.channels(m)) for m in config.model.modalities}
    n_classes = len(ds.classes)
    if config.model.input_dims is not None and dict(config.model.input_dims) != dims:
        raise InputError(f"config input_dims {config.model.input_dims} do not match the dataset's {dims}")
    if config.model.n_classes is not None and config.model.n_classes != n_classes:
        raise InputError(f"config n_classes {config.model.n_classes} does not match the dataset's {n_classes}")
    return config.replace(model={"input_dims": dims, "n_classes": n_classes})


def _to_device(batch, device):
    return ({m: v.to(device, non_blocking=True) for m, v in batch["features"].items()},
            batch["mask"].to(device))


def compute_losses(out, batch, device, *, transition_weight: float = 1.0) -> dict:
    """Segmentation CE + anticipation CE + duration regression for one batch.

    ``transition_weight`` multiplies the anticipation CE of the samples whose first future
    action differs from the last observed one (``TrainConfig.transition_weight``; the official
    code uses 10); the CE stays a mean over the target queries, so 1 is the plain mean.

    Duration regression: the predicted log-durations of the target's action queries are turned
    into fractions with a softmax over those queries (exactly how decoding turns them into frame
    counts, DESIGN.md: ``w = exp(d) / sum``) and regressed onto the target fractions (MSE).
    """
    import torch
    from torch.nn import functional as F

    K = out.seg_logits.shape[-1]
    seg_t = batch["seg_labels"].to(device)
    cls_t = batch["future_classes"].to(device)
    dur_t = batch["future_durations"].to(device)
    seg = F.cross_entropy(out.seg_logits.reshape(-1, K), seg_t.reshape(-1), ignore_index=-100)
    cls = _anticipation_ce(out.class_logits, cls_t, batch, device, transition_weight)
    act = (cls_t >= 0) & (cls_t < K)
    rows = act.any(1)
    if rows.any():
        d = out.durations[rows].masked_fill(~act[rows], float("-inf"))
        frac = torch.softmax(d, dim=-1)
        dur = F.mse_loss(frac[act[rows]], dur_t[rows][act[rows]])
    else:
        dur = out.durations.sum() * 0.0
    return {"seg": seg, "cls": cls, "dur": dur}


def _anticipation_ce(logits, cls_t, batch, device, transition_weight: float):
    import torch
    from torch.nn import functional as F

    flat = logits.reshape(-1, logits.shape[-1])
    if transition_weight == 1.0:
        return F.cross_entropy(flat, cls_t.reshape(-1), ignore_index=-100)
    ce = F.cross_entropy(flat, cls_t.reshape(-1), ignore_index=-100, reduction="none").view(cls_t.shape)
    changed = cls_t[:, 0] != batch["last_observed"].to(device)
    w = torch.where(changed, transition_weight, 1.0).to(ce.dtype)[:, None]
    valid = (cls_t != -100).to(ce.dtype)
    return (ce * w * valid).sum() / valid.sum().clamp(min=1.0)


def _lr_lambda(warmup_steps: int, total_steps: int, min_ratio: float):
    def f(step):
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


def _write_metrics(path: Path, history: list):
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=_METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({k: row.get(k, "") for k in _METRIC_FIELDS})
    write_text(path, buf.getvalue())


# ----------------------------------------------------------------------------- training
def train(config: RunConfig, data_root, run_dir, *, seed=1, device=None, resume: bool = False,
          progress: bool = True, on_epoch_end=None) -> Path:
    """Train R3D on ``data_root``'s train split; choose the best epoch on its val split.

    Parameters
    ----------
    config : RunConfig
        Model and training configuration (``input_dims``/``n_classes`` are filled from the data).
    data_root : str or Path
        Dataset in the standard layout (``rankfusion.data.open_dataset``).
    run_dir : str or Path
        Output folder (see the module docstring).
    seed : int or sequence of int or str
        One seed, or several (``[1, 10, 13452]`` or ``"1,10,13452"``): one sub-run per seed in
        ``run_dir/seed-<s>``.
    device : str or torch.device, optional
        ``"cpu"`` (default), ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
    resume : bool
        Continue from ``checkpoints/last.pt``; the result is identical to an uninterrupted run.
        Without it, a folder that already holds a run is an error.
    progress : bool
        Show a tqdm bar per epoch (stderr).
    on_epoch_end : callable, optional
        ``f(epoch, row)`` after each epoch's checkpoint is written (``row`` is the metrics dict).

    Returns
    -------
    pathlib.Path
        ``run_dir``.
    """
    if not isinstance(config, RunConfig):
        raise TypeError(f"config must be a RunConfig, got {type(config).__name__}")
    seeds = parse_seeds(seed)
    run_dir = Path(run_dir)
    if len(seeds) > 1:
        if (run_dir / "seeds.json").exists() and not resume:
            old = json.loads((run_dir / "seeds.json").read_text())["seeds"]
            if old != seeds:
                raise InputError(f"run folder {str(run_dir)!r} holds seeds {old}, not {seeds}")
        run_dir.mkdir(parents=True, exist_ok=True)
        write_json(run_dir / "seeds.json", {"seeds": seeds})
        for s in seeds:
            _train_one(config, data_root, run_dir / f"seed-{s}", seed=s, device=device, resume=resume,
                       progress=progress, on_epoch_end=on_epoch_end)
        return run_dir
    _train_one(config, data_root, run_dir, seed=seeds[0], device=device, resume=resume, progress=progress,
               on_epoch_end=on_epoch_end)
    return run_dir


def _train_one(config, data_root, run_dir: Path, *, seed, device, resume, progress, on_epoch_end):
    import torch
    from tqdm.auto import tqdm

    from .data import AnticipationDataset, collate_anticipation
    from .model import R3D

    dev = resolve_device(device)
    data_root = Path(data_root)
    ds = _open(data_root, config.model.modalities)
    config = resolve_config(config, ds)
    tc = config.train
    last_path = run_dir / "checkpoints" / "last.pt"
    if last_path.exists() and not resume:
        raise InputError(f"run folder {str(run_dir)!r} already holds a run; pass resume=True (--resume) "
                         "or choose another output folder")
    info = {"config": config.to_dict(), "config_hash": config.config_hash(), "seed": seed,
            "dataset": str(data_root.resolve()), "modalities": list(config.model.modalities)}

    train_set = AnticipationDataset(ds, "train", obs_ratios=tc.obs_ratios, future_ratio=tc.future_ratio,
                                    sample_rate=tc.sample_rate, n_queries=config.model.n_queries)
    val_set = AnticipationDataset(ds, "val", obs_ratios=tc.eval_obs, future_ratio=tc.future_ratio,
                                  sample_rate=tc.sample_rate, n_queries=config.model.n_queries)

    _seed_everything(seed)
    model = R3D(config.model).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    # the loader's own generator makes the batch order a function of (seed, epoch) and resumable
    gen = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(train_set, batch_size=tc.batch_size, shuffle=True,
                                         collate_fn=collate_anticipation, generator=gen)
    steps = len(loader)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _lr_lambda(tc.warmup_epochs * steps, tc.epochs * steps, tc.min_lr_ratio))
    history, best, start = [], None, 1

    if resume and last_path.exists():
        # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to ``dev``
        ck = load_checkpoint(last_path, map_location="cpu")
        if ck["config_hash"] != info["config_hash"] or ck["seed"] != seed:
            raise InputError(f"--resume: run folder {str(run_dir)!r} was made with config {ck['config_hash']} "
                             f"seed {ck['seed']}, not config {info['config_hash']} seed {seed}")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        sched.load_state_dict(ck["scheduler"])
        gen.set_state(ck["loader_rng"])
        _set_rng_state(ck["rng"])
        history, best, start = ck["history"], ck["best"], ck["epoch"] + 1
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "config.json", info)

    higher = tc.select_metric == "val_moc"
    for epoch in range(start, tc.epochs + 1):
        model.train()
        t0, c0 = time.perf_counter(), time.process_time()
        sums = {"loss": 0.0, "seg": 0.0, "cls": 0.0, "dur": 0.0}
        n_batches = frames = 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{tc.epochs}", leave=False, disable=not progress,
                   unit="batch")
        for batch in bar:
            feats, mask = _to_device(batch, dev)
            out = model(feats, mask)
            parts = compute_losses(out, batch, dev, transition_weight=tc.transition_weight)
            loss = tc.loss_seg * parts["seg"] + tc.loss_cls * parts["cls"] + tc.loss_dur * parts["dur"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            sched.step()
            n_batches += 1
            frames += int(mask.sum())
            sums["loss"] += loss.item()
            for k in ("seg", "cls", "dur"):
                sums[k] += parts[k].item()
            bar.set_postfix(loss=f"{sums['loss'] / n_batches:.3f}",
                            fps=f"{frames / max(time.perf_counter() - t0, 1e-9):.0f}")
        bar.close()
        train_s = time.perf_counter() - t0
        val_loss = _validation_loss(model, val_set, tc, dev)
        val_moc = (_mean_moc(model, ds, "val", config, dev) if tc.select_metric == "val_moc" else float("nan"))
        row = {"epoch": epoch, "train_loss": sums["loss"] / n_batches, "train_seg": sums["seg"] / n_batches,
               "train_cls": sums["cls"] / n_batches, "train_dur": sums["dur"] / n_batches,
               "val_loss": val_loss, "val_moc": val_moc, "lr": opt.param_groups[0]["lr"],
               "epoch_s": time.perf_counter() - t0, "epoch_cpu_s": time.process_time() - c0,
               "frames_per_s": frames / train_s}
        history.append(row)
        score = val_moc if higher else val_loss
        # equal validation MoC (e.g. 0 for every early epoch) is broken by the lower validation loss
        improved = best is None or (
            (score > best["score"] or (score == best["score"] and val_loss < best["val_loss"])) if higher
            else score < best["score"])
        if improved:
            best = {"epoch": epoch, "score": score, "metric": tc.select_metric, "val_loss": val_loss}
            _save_torch({"model": model.state_dict(), **info, "epoch": epoch, "best": best},
                        run_dir / "checkpoints" / "best.pt")
        _save_torch({"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                     "loader_rng": gen.get_state(), "rng": _rng_state(), "epoch": epoch, "history": history,
                     "best": best, **info}, last_path)
        _write_metrics(run_dir / "metrics.csv", history)
        if progress:
            tqdm.write(f"epoch {epoch}/{tc.epochs}  loss {row['train_loss']:.4f}  val_loss {val_loss:.4f}  "
                       f"val_moc {val_moc:.2f}  {row['frames_per_s']:.0f} frames/s  {row['epoch_s']:.1f} s")
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    return run_dir


def _validation_loss(model, val_set, tc, dev) -> float:
    import torch

    from .data import collate_anticipation

    loader = torch.utils.data.DataLoader(val_set, batch_size=1, shuffle=False, collate_fn=collate_anticipation)
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        # batch of one video: spectral RTF selects channels per batch, so evaluation must not
        # depend on which other videos share a batch
        for batch in loader:
            feats, mask = _to_device(batch, dev)
            parts = compute_losses(model(feats, mask), batch, dev, transition_weight=tc.transition_weight)
            total += float(tc.loss_seg * parts["seg"] + tc.loss_cls * parts["cls"] + tc.loss_dur * parts["dur"])
            n += 1
    return total / max(n, 1)


# ----------------------------------------------------------------------------- evaluation
def _video_inputs(ds, video, modalities, stop, sample_rate, dev, noise=None, rng=None, donors=None):
    """One video's observed inputs as a batch of one; ``donors={modality: video}`` swaps a modality
    for another video's, read at the same relative times (modality reliance)."""
    import torch

    from .evaluate import relative_time_indices

    feats = {}
    for m in modalities:
        if donors and m in donors:
            src = ds.features(donors[m], m)
            idx = relative_time_indices(stop, ds.n_frames(video), len(src))[::sample_rate]
            x = np.ascontiguousarray(src[idx], dtype=np.float32)
        else:
            x = np.ascontiguousarray(ds.features(video, m)[:stop:sample_rate], dtype=np.float32)
        if noise and m in noise:
            x = x + rng.normal(0.0, noise[m], size=x.shape).astype(np.float32)
        feats[m] = torch.from_numpy(x)[None].to(dev)
    mask = torch.ones(1, next(iter(feats.values())).shape[1], dtype=torch.bool, device=dev)
    return feats, mask


def predict_future(model, ds, video, obs_ratio, config: RunConfig, dev):
    """Future frame labels of ``video`` observed up to ``int(obs_ratio * N)`` (DESIGN.md protocol).

    Returns
    -------
    gt : ndarray of int64 (N,)
    pred : ndarray of int64 (n_future_frames,)
    """
    import torch

    from .evaluate import decode_queries

    gt = ds.labels(video)
    N = len(gt)
    past, fut = int(obs_ratio * N), int(config.train.future_ratio * N)
    feats, mask = _video_inputs(ds, video, config.model.modalities, past, config.train.sample_rate, dev)
    with torch.no_grad():
        out = model(feats, mask)
    pred = decode_queries(out.class_logits[0].cpu().numpy(), out.durations[0].cpu().numpy(), fut,
                          model.none_index)
    return gt, np.asarray(pred)


def moc_grid(model, ds, split, config: RunConfig, dev, *, obs=None, betas=None, swap=None) -> dict:
    """MoC in percent for each (obs, beta): ``{(obs, beta): value}`` over ``split``'s videos.

    Each video is observed alone (batch of one) and decoded with
    :meth:`rankfusion.evaluate.MoCAccumulator.add_queries` (DESIGN.md protocol). ``swap``
    (``{modality: {video: donor video}}``) replaces that modality's input of each video by the
    donor's (:func:`modality_reliance`); labels and the other modalities stay the video's own.
    """
    import torch

    from .evaluate import MoCAccumulator

    obs = config.train.eval_obs if obs is None else obs
    betas = config.train.eval_betas if betas is None else betas
    model.eval()
    acc = MoCAccumulator(model.config.n_classes, betas=tuple(betas), future_ratio=config.train.future_ratio)
    for o in obs:
        for video in ds.split(split):
            gt = ds.labels(video)
            donors = {m: per_video[video] for m, per_video in swap.items()} if swap else None
            feats, mask = _video_inputs(ds, video, config.model.modalities, int(o * len(gt)),
                                        config.train.sample_rate, dev, donors=donors)
            with torch.no_grad():
                out = model(feats, mask)
            acc.add_queries(gt, o, out.class_logits[0].cpu().numpy(), out.durations[0].cpu().numpy())
    table = acc.result()
    return {(float(o), float(b)): 100.0 * float(table.loc[round(float(o), 6), b]) for o in obs for b in betas}


@dataclass(frozen=True)
class Reliance:
    """How much a trained model uses one modality (:func:`modality_reliance`).

    Attributes
    ----------
    modality : str
    moc : float
        Grid-mean MoC (%) with every input the video's own.
    moc_swapped : float
        Grid-mean MoC (%) with this modality's input taken from another video.
    drop : float
        ``moc - moc_swapped`` in MoC points: 0 for a modality the model ignores.
    grid : tuple of (obs, beta, drop)
        The drop per cell of the evaluation grid.
    seed : int
        Seed of the derangement of the split's videos.
    """

    modality: str
    moc: float
    moc_swapped: float
    drop: float
    grid: tuple
    seed: int


def _grid_mean(grid: dict) -> float:
    vals = [v for v in grid.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def modality_reliance(model, ds, split, config: RunConfig, dev, *, seed: int = 0, modalities=None,
                      clean: dict | None = None) -> list[Reliance]:
    """Modality reliance: the MoC drop when one modality's input comes from another video.

    For each modality m, every video of ``split`` is evaluated (the DESIGN.md protocol, as
    :func:`moc_grid`) with m's observed input replaced by m's input of another video of the split
    (a seeded derangement, :func:`rankfusion.evaluate.derangement`), read at the same relative
    times; the labels and the other modalities are the video's own. ``drop = MoC(clean) -
    MoC(swapped)``. A sample from another video keeps the input on the data distribution (right
    scale, spectrum and temporal structure), so the drop measures what the model takes from this
    video's m, not its reaction to an input it never saw (zeros would be off-distribution: for
    a ReLU projection with biases they are a constant token, and a model can fail on them even
    when it does not use m). A model that ignores m gets exactly the clean predictions, so its
    drop is exactly 0. Cost: one extra MoC grid per modality.

    Parameters
    ----------
    model, ds, split, config, dev
        As for :func:`moc_grid`.
    seed : int
        Seed of the derangement (the same for every modality).
    modalities : sequence of str, optional
        Default: every modality of the model.
    clean : dict, optional
        The clean :func:`moc_grid` result when already computed.

    Returns
    -------
    list of Reliance
        One per modality, in order.
    """
    from .evaluate import derangement

    videos = list(ds.split(split))
    if len(videos) < 2:
        raise InputError(f"modality reliance needs at least 2 videos in split {split!r}, got {len(videos)}")
    mods = list(config.model.modalities if modalities is None else modalities)
    for m in mods:
        if m not in config.model.modalities:
            raise ValueError(f"modalities must be among {list(config.model.modalities)}, got {m!r}")
    perm = derangement(len(videos), seed)
    donors = {v: videos[j] for v, j in zip(videos, perm)}
    clean = moc_grid(model, ds, split, config, dev) if clean is None else clean
    out = []
    for m in mods:
        swapped = moc_grid(model, ds, split, config, dev, swap={m: donors})
        grid = tuple((o, b, clean[(o, b)] - swapped[(o, b)]) for (o, b) in clean)
        c, s_ = _grid_mean(clean), _grid_mean(swapped)
        out.append(Reliance(m, c, s_, c - s_, grid, int(seed)))
    return out


def _mean_moc(model, ds, split, config, dev) -> float:
    vals = [v for v in moc_grid(model, ds, split, config, dev).values() if np.isfinite(v)]
    # NaN cells (no frame counted) are skipped; a grid with none left scores -inf, never "best"
    return float(np.mean(vals)) if vals else float("-inf")


def segmentation_scores(model, ds, split, config: RunConfig, dev, *, obs=None) -> dict:
    """Frame accuracy, edit and F1@{10,25,50} (percent) of the segmentation head, per observation ratio.

    For each ratio in ``obs`` (default ``eval_obs``) the head segments the observed part of every
    video, the inputs it is trained on (training never observes more than the largest training
    ratio, so whole videos would be out of distribution for the positional code and the
    attention span). Predictions are upsampled back to the ground truth's frame rate and pooled
    over videos as MS-TCN reports them (:func:`rankfusion.evaluate.segmentation_scores`).

    Returns
    -------
    dict
        ``{obs: {"accuracy", "edit", "f1@10", "f1@25", "f1@50"}}``.
    """
    import torch

    from . import evaluate as ev

    model.eval()
    sr = config.train.sample_rate
    out = {}
    for o in (config.train.eval_obs if obs is None else obs):
        preds, gts = [], []
        for video in ds.split(split):
            gt = np.asarray(ds.labels(video))
            stop = max(1, int(o * len(gt)))
            feats, mask = _video_inputs(ds, video, config.model.modalities, stop, sr, dev)
            with torch.no_grad():
                seg = model(feats, mask).seg_logits[0].argmax(-1).cpu().numpy()
            # each sampled step stands for the sample_rate frames that follow it
            preds.append(np.repeat(seg, sr)[:stop])
            gts.append(gt[:stop])
        out[float(o)] = _segmentation_metrics(ev, gts, preds)
    return out


def _segmentation_metrics(ev, gts, preds) -> dict:
    res = ev.segmentation_scores(list(zip(gts, preds)), overlaps=F1_OVERLAPS)
    return {k: 100.0 * float(v) for k, v in res.items() if k != "n_videos"}


def is_multi_seed(run_dir) -> bool:
    """True when ``run_dir`` holds several seeds (``seeds.json``)."""
    return (Path(run_dir) / "seeds.json").exists()


def seed_dirs(run_dir) -> list[Path]:
    """The single-seed run folders of ``run_dir`` (itself when it is a single-seed run)."""
    run_dir = Path(run_dir)
    if is_multi_seed(run_dir):
        return [run_dir / f"seed-{s}" for s in json.loads((run_dir / "seeds.json").read_text())["seeds"]]
    if not (run_dir / "config.json").exists():
        raise InputError(f"run folder {str(run_dir)!r} has no config.json (not a training run)")
    return [run_dir]


def load_run(run_dir, *, checkpoint: str = "best", device=None):
    """Load a single-seed run: ``(model in eval mode, RunConfig, info dict)``.

    ``info`` holds ``config_hash``, ``seed``, ``dataset``, ``epoch`` of the checkpoint.
    """
    from .model import R3D

    check_choice(checkpoint, "checkpoint", {"best", "last"})
    run_dir = Path(run_dir)
    if is_multi_seed(run_dir):
        raise InputError(f"run folder {str(run_dir)!r} holds several seeds; pass one of its seed-* folders")
    dev = resolve_device(device)
    ck = load_checkpoint(run_dir / "checkpoints" / f"{checkpoint}.pt", map_location=dev)
    config = RunConfig.from_dict(ck["config"], source=f"{run_dir}/checkpoints/{checkpoint}.pt")
    model = R3D(config.model).to(dev)
    model.load_state_dict(ck["model"])
    model.eval()
    info = {k: ck[k] for k in ("config_hash", "seed", "dataset", "epoch")}
    return model, config, info


def _evaluate_single(run_dir: Path, split, data_root, dev, checkpoint, reliance: bool = True,
                     reliance_seed: int = 0) -> dict:
    model, config, info = load_run(run_dir, checkpoint=checkpoint, device=dev)
    ds = _open(data_root or info["dataset"], config.model.modalities)
    grid = moc_grid(model, ds, split, config, dev)
    rows = [("moc", "", o, b, v) for (o, b), v in grid.items()]
    rows += [(k, "", o, float("nan"), v) for o, scores in segmentation_scores(model, ds, split, config, dev).items()
             for k, v in scores.items()]
    if reliance and len(ds.split(split)) >= 2:
        for r in modality_reliance(model, ds, split, config, dev, seed=reliance_seed, clean=grid):
            rows += [("reliance", r.modality, o, b, d) for o, b, d in r.grid]
    return {"rows": rows, "info": info}


def evaluate_run(run_dir, split: str = "test", *, device=None, data_root=None, checkpoint: str = "best",
                 reliance: bool = True, reliance_seed: int = 0):
    """Evaluate a run (one seed or several) on ``split``; write ``RUN/eval_<split>.csv``.

    Parameters
    ----------
    run_dir : str or Path
        A run folder made by :func:`train`.
    split : {"test", "val", "train"}
    device : str, optional
    data_root : str or Path, optional
        Dataset folder; default the one the run was trained on.
    checkpoint : {"best", "last"}
    reliance : bool, default True
        Also compute each modality's reliance (:func:`modality_reliance`; one extra MoC grid per
        modality, skipped when the split has fewer than 2 videos).
    reliance_seed : int
        Seed of the derangement of videos used by the reliance.

    Returns
    -------
    pandas.DataFrame
        Columns ``metric`` ("moc", "accuracy", "edit", "f1@10", "f1@25", "f1@50", "reliance"),
        ``modality`` (the swapped modality for "reliance", else empty), ``obs``, ``beta`` (NaN for
        the segmentation metrics, which score the observed part at ``obs``), ``mean``, ``std``
        (over seeds, ddof=1; NaN for one seed) and ``n_seeds``. All values are percentages
        (reliance: MoC points lost when the modality's input comes from another video).
    """
    import pandas as pd

    check_choice(split, "split", {"train", "val", "test"})
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    per_seed = []
    for d in seed_dirs(run_dir):
        res = _evaluate_single(d, split, data_root, dev, checkpoint, reliance, check_int(reliance_seed,
                                                                                      "reliance_seed", low=0))
        df = pd.DataFrame(res["rows"], columns=["metric", "modality", "obs", "beta", "value"])
        df.insert(0, "seed", res["info"]["seed"])
        if len(seed_dirs(run_dir)) > 1:
            _write_csv(d / f"eval_{split}.csv", _aggregate(df))
        per_seed.append(df)
    allv = pd.concat(per_seed, ignore_index=True)
    out = _aggregate(allv)
    _write_csv(run_dir / f"eval_{split}.csv", out)
    return out


def _aggregate(df):
    g = df.groupby(["metric", "modality", "obs", "beta"], dropna=False, sort=False)["value"]
    out = g.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"),
                n_seeds="count").reset_index()
    return out


def _write_csv(path, df):
    write_text(path, df.to_csv(index=False, float_format="%.4f"))


def format_eval_table(df) -> str:
    """Human-readable table of :func:`evaluate_run`'s result (mean +- std when several seeds)."""

    def cell(r):
        return f"{r['mean']:.2f}" if not (r["n_seeds"] > 1) else f"{r['mean']:.2f} +- {r['std']:.2f}"

    lines = []
    moc = df[df["metric"] == "moc"]
    betas = sorted(moc["beta"].unique())
    if len(moc):
        lines.append("MoC (%)      " + "".join(f"{'beta=' + format(b, 'g'):>18}" for b in betas))
        for o in sorted(moc["obs"].unique()):
            sub = moc[moc["obs"] == o].set_index("beta")
            lines.append(f"obs={o:<8g} " + "".join(f"{cell(sub.loc[b]):>18}" for b in betas))
    rel = df[df["metric"] == "reliance"]
    if len(rel):
        lines.append("reliance: MoC points lost when the modality's input comes from another video")
    for m in dict.fromkeys(rel["modality"]):
        for o in sorted(rel["obs"].unique()):
            sub = rel[(rel["modality"] == m) & (rel["obs"] == o)].set_index("beta")
            lines.append(f"{m[:8]:<8s} {o:<4g}" + "".join(f"{cell(sub.loc[b]):>18}" for b in betas if b in sub.index))
    seg = df[~df["metric"].isin(["moc", "reliance"])]
    for o in sorted(seg["obs"].unique()):
        rows = seg[seg["obs"] == o]
        lines.append(f"segmentation (%) of the observed {o:g}: "
                     + "  ".join(f"{r['metric']} {cell(r)}" for _, r in rows.iterrows()))
    n = int(df["n_seeds"].max()) if len(df) else 0
    lines.append(f"({n} seed{'s' if n != 1 else ''})")
    return "\n".join(lines)
