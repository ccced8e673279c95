"""Training of R3D runs, with validation choosing the best epoch (App. D.2; the MoC protocol of docs/datasets.md).

A run folder holds::

    RUN/config.json            resolved RunConfig + seed, config hash, dataset path
    RUN/metrics.csv            one row per epoch (losses, validation metrics, lr, throughput)
    RUN/checkpoints/last.pt    everything needed to resume (written atomically every epoch)
    RUN/checkpoints/best.pt    weights of the best epoch on the *validation* split
    RUN/eval_<split>.csv       written by :func:`rankfusion.evaluate.evaluate_run`, with
    RUN/eval_<split>.json      the record of how it was made
    RUN/ranks.csv              per-epoch effective ranks on a validation subset (``monitor=True``)

Several seeds: ``RUN/seed-<s>/`` per seed, ``RUN/seeds.json``, and ``RUN/eval_<split>.csv``
with the mean and standard deviation over seeds.
"""

from __future__ import annotations

import csv
import io
import json
import math
import random
import sys
import time
from pathlib import Path

import numpy as np

from ._progress import bar_disabled
from ._validation import (InputError, InputTypeError, check_choice, check_distinct_seeds, check_int,
                          option_name)
from .config import RunConfig
from .distributed import agree, all_reduce_list, DistContext, gather, refuse, said_once, shard
from .evaluate import grid_mean as cells_mean, moc_grid
from .runs import CHECKPOINT_KEYS, RESUME_KEYS, check_config_data, check_run_folder, is_multi_seed, load_checkpoint, load_run, open_data, recorded_config_hash, refuse_non_empty, refuse_non_run, resolve_device, seed_dirs, settle_pending  # noqa: F401 (public here too)
from .files import atomic_path, write_json, write_text
from .monitor import EpochRanks
from .trainstate import optimizer_params, pack_optimizer, rng_state, set_rng_state, unpack_optimizer
from .data import AnticipationDataset, collate_anticipation
from .data.fingerprint import dataset_fingerprint
from .data.torchdata import length_batches, pad_videos
from .model import R3D, R3DOutput
from .remedies import attach_unimodal_heads, check_supported
from . import remedies

_METRIC_FIELDS = ["epoch", "train_loss", "train_seg", "train_cls", "train_dur", "val_loss", "val_moc",
                  "lr", "epoch_s", "epoch_cpu_s", "frames_per_s"]


# ----------------------------------------------------------------------------- helpers
def parse_seeds(seeds) -> list[int]:
    """``1,10,13452`` / int / sequence -> list of distinct non-negative ints."""
    name = option_name("seeds", "--seed/--seeds")
    if isinstance(seeds, str):
        try:
            seeds = [int(s) for s in seeds.split(",") if s.strip()]
        except ValueError:
            raise InputError(f"{name} must be comma-separated integers, got {seeds!r}") from None
    elif isinstance(seeds, (int, np.integer)):
        seeds = [int(seeds)]
    seeds = [check_int(check_int(s, name, low=0), name, high=2**63 - 1) for s in seeds]  # torch's seed range
    check_distinct_seeds(seeds, name)
    return seeds


def _seed_everything(seed: int):
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _save_torch(obj, path: Path):
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def resolve_config(config: RunConfig, ds) -> RunConfig:
    """Fill ``input_dims`` and ``n_classes`` from the dataset (checking any values already set)."""
    dims, n_classes = check_config_data(config, ds)
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
    counts, the MoC protocol: ``w = exp(d) / sum``) and regressed onto the target fractions (MSE).
    """
    return _loss_terms(out, batch, device, "mean", transition_weight)[0]


def _loss_terms(out, batch, device, reduction: str, transition_weight: float = 1.0):
    # "mean": the three losses of compute_losses; "sum": their sums and the counts they are
    # averaged over (tokens, queries, action queries), for a mean over a distributed batch.
    import torch
    from torch.nn import functional as F

    K = out.seg_logits.shape[-1]
    seg_t = batch["seg_labels"].to(device)
    cls_t = batch["future_classes"].to(device)
    dur_t = batch["future_durations"].to(device)
    seg = F.cross_entropy(out.seg_logits.reshape(-1, K), seg_t.reshape(-1), ignore_index=-100,
                          reduction=reduction)
    cls = _anticipation_ce(out.class_logits, cls_t, batch, device, transition_weight, reduction)
    act = (cls_t >= 0) & (cls_t < K)
    rows = act.any(1)
    if rows.any():
        d = out.durations[rows].masked_fill(~act[rows], float("-inf"))
        frac = torch.softmax(d, dim=-1)
        dur = F.mse_loss(frac[act[rows]], dur_t[rows][act[rows]], reduction=reduction)
    else:
        dur = out.durations.sum() * 0.0
    if reduction == "mean":
        return {"seg": seg, "cls": cls, "dur": dur}, None
    counts = [int((seg_t != -100).sum()), int((cls_t != -100).sum()), int(act.sum())]
    return {"seg": seg, "cls": cls, "dur": dur}, counts


def _anticipation_ce(logits, cls_t, batch, device, transition_weight: float, reduction: str = "mean"):
    # reduction "sum": the numerator of the mean over target queries (see _loss_terms)
    import torch
    from torch.nn import functional as F

    flat = logits.reshape(-1, logits.shape[-1])
    if transition_weight == 1.0:
        return F.cross_entropy(flat, cls_t.reshape(-1), ignore_index=-100, reduction=reduction)
    ce = F.cross_entropy(flat, cls_t.reshape(-1), ignore_index=-100, reduction="none").view(cls_t.shape)
    changed = cls_t[:, 0] != batch["last_observed"].to(device)
    w = torch.where(changed, transition_weight, 1.0).to(ce.dtype)[:, None]
    valid = (cls_t != -100).to(ce.dtype)
    total = (ce * w * valid).sum()
    return total if reduction == "sum" else total / valid.sum().clamp(min=1.0)


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
          progress: bool = True, on_epoch_end=None, distributed=None, monitor: bool = True, on_start=None) -> Path:
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
    on_start : callable, optional
        ``f()`` once the data, the configuration and the run folder are checked, before anything
        is written (the command line says which modalities it trains there: a refused run prints
        only its error).
    distributed : rankfusion.distributed.DistContext, optional
        Run data-parallel in a ``torchrun`` job (from :func:`rankfusion.distributed.setup`, which
        also gives ``device``). ``config.train.batch_size`` is then the batch of *each* process
        (the step's batch is ``world_size * batch_size``); rank 0 writes the run folder. See
        docs/scaling.md. ``None`` (default): the single-process path.
    monitor : bool
        Write ``RUN/ranks.csv``: effective rank of each modality's tokens before and after the
        token fuser and of the stacked tokens, at initialisation (epoch 0) and after every epoch,
        on a fixed validation subset (:class:`rankfusion.monitor.EpochRanks`; rank 0 only in a
        distributed run). It does not change the training (eval mode, no autograd, no random
        numbers drawn).

    Returns
    -------
    pathlib.Path
        ``run_dir``.
    """
    if not isinstance(config, RunConfig):
        raise InputTypeError(f"config must be a RunConfig, got {type(config).__name__}")
    if distributed is not None:
        if not isinstance(distributed, DistContext):
            raise InputTypeError(f"distributed must be a DistContext (rankfusion.distributed.setup) or None, "
                            f"got {type(distributed).__name__}")
    seeds = parse_seeds(seed)
    run_dir = Path(run_dir)
    ctx = distributed
    kw = dict(device=device, resume=resume, progress=progress, on_epoch_end=on_epoch_end, ctx=ctx,
              monitor=monitor)
    _on_main(ctx, device, lambda: check_run_folder(run_dir, seeds, resume))
    if resume and len(seeds) > 1:
        # a batched run killed while it committed an epoch: its seeds resume from one epoch here too
        _on_main(ctx, device, lambda: settle_pending([run_dir / f"seed-{s}" for s in seeds]))
    # the data, config and every seed's folder (resuming, its checkpoint too) are checked before
    # anything is written: a seed that cannot go on is named before the first one trains
    first_dir = run_dir / f"seed-{seeds[0]}" if len(seeds) > 1 else run_dir
    first = _prepare_run(config, data_root, first_dir, seed=seeds[0], device=device, resume=resume, ctx=ctx)
    runs = [first] + [_prepare_run(config, data_root, run_dir / f"seed-{s}", seed=s, device=device, resume=resume,
                                   ctx=ctx, ds=first.ds, check_data=False, fingerprint=first.info["data_fingerprint"])
                      for s in seeds[1:]]
    if on_start is not None:
        on_start()
    if len(seeds) > 1:
        _on_main(ctx, device, lambda: _write_seeds(run_dir, seeds))
        for r, s in zip(runs, seeds):
            _train_one(config, data_root, r.run_dir, seed=s, prepared=r, **kw)
        return run_dir
    _train_one(config, data_root, run_dir, seed=seeds[0], prepared=first, **kw)
    return run_dir


def _write_seeds(run_dir: Path, seeds):
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "seeds.json", {"seeds": seeds})


def _on_main(ctx, device, fn):
    """``fn()`` in a single process; on rank 0 with the verdict shared in a distributed run."""
    if ctx is None:
        return fn()

    return agree(fn, ctx, resolve_device(device))


class _Run:
    """The state of one training run (one seed), shared by the steps of :func:`_train_one`."""

    def __init__(self, **kw):
        self.__dict__.update(kw)


def _train_one(config, data_root, run_dir: Path, *, seed, device, resume, progress, on_epoch_end, ctx=None,
               monitor=True, prepared=None, fingerprint=None):
    """Train one seed; ``prepared``: its :func:`_prepare_run` result, if already made; ``fingerprint``:
    the data's, if already computed (another seed's)."""
    r = prepared or _prepare_run(config, data_root, run_dir, seed=seed, device=device, resume=resume, ctx=ctx,
                                 fingerprint=fingerprint)
    _build_training(r, seed)
    _restore_or_start(r, seed, resume)
    ranks = _epoch_ranks(r) if monitor and _is_main(ctx) else None
    for epoch in range(r.start, r.tc.epochs + 1):
        row = _train_epoch(r, epoch, progress)
        _stop_if_diverged(r, epoch, row["train_loss"])
        row.update(_validate(r, epoch))
        row.update(lr=r.opt.param_groups[0]["lr"], epoch_s=time.perf_counter() - row.pop("_t0"),
                   epoch_cpu_s=time.process_time() - row.pop("_c0"))
        row = {k: row[k] for k in _METRIC_FIELDS}
        r.history.append(row)
        _save_epoch(r, epoch, row)
        if ranks is not None:
            ranks.record(r.model, epoch)
        if progress and _is_main(ctx):
            from tqdm.auto import tqdm

            # the seed named, as the batched trainer names it: serial seeds print one after another
            tqdm.write(f"seed {seed} epoch {epoch}/{r.tc.epochs}  loss {row['train_loss']:.4f}  "
                       f"val_loss {row['val_loss']:.4f}  val_moc {row['val_moc']:.2f}  "
                       f"{row['frames_per_s']:.0f} frames/s  {row['epoch_s']:.1f} s",
                       file=sys.stderr)
        if on_epoch_end is not None:
            on_epoch_end(epoch, row)
    return run_dir


def _is_main(ctx) -> bool:
    return ctx is None or ctx.is_main


def _epoch_ranks(r: _Run):
    """The run's rank monitor (``RUN/ranks.csv``), with the initial model recorded as epoch 0.

    Eval mode, one video per forward: RTF's distributed statistic is not used, so rank 0 alone
    can measure while the other processes go on.
    """
    ranks = EpochRanks(r.ds, r.config, r.dev, r.run_dir / "ranks.csv", previous=r.start > 1)
    if ranks.last_epoch < r.start - 1:
        # epoch 0, the initial model; or, resumed, the epoch whose checkpoint was committed just
        # before a kill that came before its rows were written: the weights are that epoch's
        ranks.record(r.model, r.start - 1)
    return ranks


def _prepare_run(config, data_root, run_dir, *, seed, device, resume, ctx, ds=None, check_data=True,
                 fingerprint=None) -> _Run:
    """Open the data (or take ``ds``, the dataset at ``data_root`` already opened for the config's
    modalities), resolve the config, check the run folder; the datasets of both splits, their
    frames checked for non-finite values unless ``check_data`` is False. ``fingerprint``: the
    data's :func:`dataset_fingerprint`, if already computed. Writes nothing."""
    dev = resolve_device(device)
    data_root = Path(data_root)
    with said_once():  # the same files for every process
        check_supported(config.train, distributed=ctx is not None)
        ds = open_data(data_root, config) if ds is None else ds
        config = resolve_config(config, ds)
    tc = config.train
    if ctx is not None and ctx.world_size > len(ds.split("train")):
        refuse(f"torchrun world size {ctx.world_size} is larger than the {len(ds.split('train'))} training "
               f"videos of {str(data_root)!r}: every process needs one; use --nproc_per_node "
               f"<= {len(ds.split('train'))}", ctx)
    last_path = run_dir / "checkpoints" / "last.pt"

    def check_folder():
        if resume:
            if not last_path.exists():
                refuse_non_run(run_dir)
            return
        if last_path.exists():
            raise InputError(f"run folder {str(run_dir)!r} already holds a run; pass "
                             f"{option_name('resume=True', '--resume')} "
                             "or choose another output folder")
        refuse_non_empty(run_dir)

    _on_main(ctx, dev, check_folder)
    # of the files this run reads: a split set or modality added later leaves it as it was
    fingerprint = fingerprint or dataset_fingerprint(data_root, split_set=ds.split_set,
                                                     modalities=config.model.modalities)
    info = {"config": config.to_dict(), "config_hash": config.config_hash(), "seed": seed,
            "dataset": str(data_root.resolve()), "data_fingerprint": fingerprint, "split_set": ds.split_set,
            "modalities": list(config.model.modalities), "classes": list(ds.classes)}
    if ctx is not None:
        info["distributed"] = ctx.describe()
    train_set = AnticipationDataset(ds, "train", obs_ratios=tc.obs_ratios, future_ratio=tc.future_ratio,
                                    sample_rate=tc.sample_rate, n_queries=config.model.n_queries)
    val_set = AnticipationDataset(ds, "val", obs_ratios=tc.eval_obs, future_ratio=tc.future_ratio,
                                  sample_rate=tc.sample_rate, n_queries=config.model.n_queries)
    # a non-finite feature fails here, naming its video, before the run folder is written (each
    # epoch reads these frames anyway; the cache keeps them)
    if check_data:
        train_set.check_finite()
        val_set.check_finite()
    r = _Run(config=config, tc=tc, ds=ds, dev=dev, run_dir=run_dir, last_path=last_path, info=info,
             train_set=train_set, val_set=val_set, ctx=ctx, resume_ck=None)
    if resume:
        # the checkpoint is checked against this run here, with the folder (before on_start says the
        # run is accepted); in a distributed run rank 0 reads it and every rank receives it
        r.resume_ck = _on_main(ctx, dev, lambda: _load_resume(r, seed))
    return r


def _build_training(r: _Run, seed):
    """Model, optimiser, loader and schedule; the RNG draws in the order of the original loop."""
    import torch

    tc = r.tc
    _seed_everything(seed)
    r.model = R3D(r.config.model).to(r.dev)
    attach_unimodal_heads(r.model, tc)  # after the model's own draws: a run without heads is unchanged
    r.opt = torch.optim.AdamW(r.model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    # the loader's own generator makes the batch order a function of (seed, epoch) and resumable
    r.gen = torch.Generator().manual_seed(seed)
    r.sampler = None
    if r.ctx is None:
        r.loader = torch.utils.data.DataLoader(r.train_set, batch_size=tc.batch_size, shuffle=True,
                                               collate_fn=collate_anticipation, generator=r.gen)
    else:
        # one permutation per epoch (seed + epoch, set_epoch), every world_size-th sample per rank
        r.sampler = torch.utils.data.distributed.DistributedSampler(
            r.train_set, num_replicas=r.ctx.world_size, rank=r.ctx.rank, shuffle=True, seed=seed)
        r.loader = torch.utils.data.DataLoader(r.train_set, batch_size=tc.batch_size, sampler=r.sampler,
                                               collate_fn=collate_anticipation)
    steps = len(r.loader)
    r.sched = torch.optim.lr_scheduler.LambdaLR(
        r.opt, _lr_lambda(tc.warmup_epochs * steps, tc.epochs * steps, tc.min_lr_ratio))
    r.history, r.best, r.start = [], None, 1


def _restore_or_start(r: _Run, seed, resume):
    """Continue from ``last.pt`` (``resume``), or create the run folder; write ``config.json``."""
    ck, r.resume_ck = (r.resume_ck if resume else None), None  # read and checked by _prepare_run
    if ck is not None:
        r.model.load_state_dict(ck["model"])
        r.opt.load_state_dict(unpack_optimizer(ck["optimizer"], optimizer_params(r.opt)))
        r.sched.load_state_dict(ck["scheduler"])
        if r.ctx is None:
            r.gen.set_state(ck["loader_rng"])
            set_rng_state(ck["rng"])
        else:
            set_rng_state(ck["rng_ranks"][r.ctx.rank])
        r.history, r.best, r.start = ck["history"], ck["best"], ck["epoch"] + 1
    elif r.ctx is not None:
        # dropout masks differ between processes; the initial weights (drawn above) do not
        _seed_everything(int(np.random.SeedSequence([seed, r.ctx.rank]).generate_state(1)[0]))
    if _is_main(r.ctx):
        r.run_dir.mkdir(parents=True, exist_ok=True)
        write_json(r.run_dir / "config.json", r.info)
        if ck is not None:
            # the checkpoint's history is the run's: a kill after last.pt was committed, before
            # metrics.csv got that epoch's row, is made up here (the last epoch's is rewritten by no
            # later epoch), and rows of an epoch that was never committed are dropped
            _write_metrics(r.run_dir / "metrics.csv", r.history)
    r.net = r.model
    if r.ctx is not None:
        _wrap_ddp(r)


def _config_changes(recorded_path: Path, config: dict) -> str:
    """`` (train.lr 0.001 -> 0.01, ...)``: the fields where ``config`` differs from the configuration
    recorded at ``recorded_path`` (the run's ``config.json``), or "" where that cannot be read."""
    try:
        old = json.loads(recorded_path.read_text())["config"]
    except (OSError, ValueError, KeyError, TypeError):
        return ""
    changes = [f"{table}.{k} {old.get(table, {}).get(k)!r} -> {config[table].get(k)!r}"
               for table in ("model", "train") for k in sorted(set(old.get(table, {})) | set(config[table]))
               if old.get(table, {}).get(k) != config[table].get(k)]
    return f" ({', '.join(changes)})" if changes else ""


def _load_resume(r: _Run, seed):
    if not r.last_path.exists():
        return None
    # on the CPU: RNG states must stay CPU tensors; load_state_dict moves the rest to the device
    ck = load_checkpoint(r.last_path, map_location="cpu", keys=CHECKPOINT_KEYS + RESUME_KEYS)
    if ck["config_hash"] != r.info["config_hash"] or ck["seed"] != seed:
        raise InputError(f"--resume: run folder {str(r.run_dir)!r} was made with config {ck['config_hash']} "
                         f"seed {ck['seed']}, not config {r.info['config_hash']} seed {seed}"
                         + _config_changes(r.run_dir / "config.json", r.info["config"]))
    if ck.get("classes") is not None and ck["classes"] != r.info["classes"]:  # same count, other names or order
        raise InputError(f"--resume: run folder {str(r.run_dir)!r} was trained on classes {ck['classes']}, not the "
                         f"dataset's {r.info['classes']}: the model's outputs would be read as other actions")
    # other data under the same classes (a run from before checkpoints recorded the data: not compared)
    if ck.get("data_fingerprint", r.info["data_fingerprint"]) != r.info["data_fingerprint"] or \
            ck.get("split_set", r.info["split_set"]) != r.info["split_set"]:
        was = ck.get("data_fingerprint", "not recorded")
        raise InputError(f"--resume: run folder {str(r.run_dir)!r} was trained on dataset {ck.get('dataset')!r} "
                         f"(split set {ck.get('split_set')!r}, fingerprint {was}), not on {r.info['dataset']!r} "
                         f"(split set {r.info['split_set']!r}, fingerprint {r.info['data_fingerprint']}): resume on "
                         "the data the run started on")
    had, has = ck.get("distributed"), r.info.get("distributed")
    if had != has:
        def say(d):
            return "one process (no torchrun)" if d is None else \
                f"torchrun world size {d['world_size']} with rtf_stats={d['rtf_stats']!r}"
        raise InputError(f"--resume: run folder {str(r.run_dir)!r} was trained with {say(had)}, "
                         f"not {say(has)}; resume it the same way")
    states = ("loader_rng", "rng") if r.ctx is None else ("rng_ranks",)
    if any(k not in ck for k in states):
        raise InputError(f"--resume: checkpoint {str(r.last_path)!r} lacks the random-number states "
                         f"({', '.join(k for k in states if k not in ck)}): not a last.pt rankfusion wrote")
    return ck


def _wrap_ddp(r: _Run):
    import torch

    model = r.model
    if model.rtf is not None and r.ctx.rtf_stats == "global":
        model.rtf.stats_group = torch.distributed.group.WORLD
    # an identity fuser (one modality, or k' = 0) leaves alpha without a gradient
    unused = model.rtf is not None and (len(model.config.modalities) == 1 or model.rtf.k_prime == 0)
    ids = [r.dev.index] if r.dev.type == "cuda" else None
    r.net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, find_unused_parameters=unused)


def diverged(epoch: int, lr: float, seed, *, batched: bool = False) -> InputError:
    """The error of a run whose loss or weights stopped being finite (the data were checked
    before training): every later epoch, and the validation on its outputs, would be lost."""
    # the serial trainer stops at a diverging seed too: only the seeds it trains before that one finish
    rest = " (the batched seeds stop together; --serial-seeds trains the seeds listed before it to the end)" \
        if batched else ""
    return InputError(f"training seed {seed} diverged in epoch {epoch}: its loss or weights are no longer finite at "
                      f"learning rate {lr:g}; lower it (train.lr, --lr of rankfusion train){rest}")


def _stop_if_diverged(r: _Run, epoch, loss: float) -> None:
    """Raise :func:`diverged` when the epoch's ``loss`` (all-reduced under torchrun) or a weight is not
    finite. The per-step check misses a blow-up in the epoch's last step, and under torchrun it is
    not made (one process stopping alone would leave the others waiting); here every process holds
    the same loss and, under DDP, the same weights, so all stop together and rank 0 says why. A
    non-finite score must never become the best epoch."""
    if math.isfinite(loss) and finite_weights(r.model.parameters()):
        return
    err = diverged(epoch, r.tc.lr, r.info["seed"])
    if r.ctx is None:
        raise err
    refuse(str(err), r.ctx)


def finite_weights(params) -> bool:
    """Whether every parameter tensor is finite."""
    return all(bool(p.isfinite().all()) for p in params)


def _train_epoch(r: _Run, epoch, progress) -> dict:
    """One pass over the training set; the epoch's mean losses and throughput."""
    from tqdm.auto import tqdm

    tc = r.tc
    r.model.train()
    if r.sampler is not None:
        r.sampler.set_epoch(epoch)
    t0, c0 = time.perf_counter(), time.process_time()
    sums = {"loss": 0.0, "seg": 0.0, "cls": 0.0, "dur": 0.0}
    n_batches = frames = 0
    bar = tqdm(r.loader, desc=f"seed {r.info['seed']} epoch {epoch}/{tc.epochs}", leave=False,
               disable=bar_disabled(progress and _is_main(r.ctx)),
               unit="batch")
    for batch in bar:
        try:
            loss, parts, mask = _train_step(r, batch)
        except InputError:  # e.g. RTF's check of its input tokens, once the weights have blown up
            if not finite_weights(r.model.parameters()):
                raise diverged(epoch, tc.lr, r.info["seed"]) from None
            raise
        n_batches += 1
        frames += int(mask.sum())
        sums["loss"] += loss.item()
        # one process alone stopping would leave the others waiting in a collective: under torchrun
        # a divergence is found by every process at once, when its weights reach RTF's check
        if r.ctx is None and not math.isfinite(sums["loss"]):
            raise diverged(epoch, tc.lr, r.info["seed"])
        for k in ("seg", "cls", "dur"):
            sums[k] += parts[k].item()
        bar.set_postfix(loss=f"{sums['loss'] / n_batches:.3f}",
                        fps=f"{frames / max(time.perf_counter() - t0, 1e-9):.0f}")
    bar.close()
    train_s = time.perf_counter() - t0
    if r.ctx is not None:
        # each process's terms are world_size x its share of the step's loss (see _distributed_losses)
        keys = ("loss", "seg", "cls", "dur")
        tot = all_reduce_list([sums[k] / r.ctx.world_size for k in keys] + [frames], r.dev)
        sums, frames = dict(zip(keys, tot[:4])), int(round(tot[4]))
    return {"epoch": epoch, "train_loss": sums["loss"] / n_batches, "train_seg": sums["seg"] / n_batches,
            "train_cls": sums["cls"] / n_batches, "train_dur": sums["dur"] / n_batches,
            "frames_per_s": frames / train_s, "_t0": t0, "_c0": c0}


def _train_step(r: _Run, batch):
    """One optimiser step on ``batch``: ``(loss, its parts, mask)``.

    The remedies of :mod:`rankfusion.remedies` act here: modality dropout on the tokens, the
    unimodal heads' loss ``unimodal_heads * sum_m CE_m`` added to the loss, OGM-GE on the
    encoders' gradients after the backward pass (before clipping). Without them the step is the
    plain one, draw for draw.
    """
    import torch


    tc = r.tc
    feats, mask = _to_device(batch, r.dev)
    kw = {}
    if remedies.active(tc):
        probs = remedies.dropout_probabilities(tc, r.config.model.modalities)
        if any(probs):
            kw["keep"] = remedies.keep_mask(probs, mask.shape[0]).to(r.dev)
        if tc.unimodal_heads > 0:
            kw["return_features"] = True
    out = r.net(feats, mask, **kw)
    parts = (compute_losses(out, batch, r.dev, transition_weight=tc.transition_weight) if r.ctx is None
             else _distributed_losses(out, batch, r))
    loss = tc.loss_seg * parts["seg"] + tc.loss_cls * parts["cls"] + tc.loss_dur * parts["dur"]
    if tc.unimodal_heads > 0:
        logits = remedies.unimodal_logits(r.model, out, mask)
        target = remedies.first_future_targets(batch, r.dev)
        loss = loss + tc.unimodal_heads * remedies.unimodal_losses(logits, target).sum()
    r.opt.zero_grad(set_to_none=True)
    loss.backward()
    if tc.ogm > 0:
        coeffs = remedies.ogm_coefficients(remedies.confidence_scores(logits, target), tc.ogm)
        remedies.modulate_gradients(r.model, coeffs)
    if tc.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(r.model.parameters(), tc.grad_clip)
    r.opt.step()
    r.sched.step()
    return loss, parts, mask


def _distributed_losses(out, batch, r: _Run) -> dict:
    """This process's terms of the loss of the whole distributed batch, scaled for DDP.

    Each loss is a mean over a count (tokens, queries, action queries) that differs between the
    processes' batches; dividing this process's sum by the count summed over processes and
    multiplying by ``world_size`` (DDP averages gradients) gives the gradient of the mean over
    the whole batch, as one process with batch ``world_size * batch_size`` computes it.
    """
    parts, counts = _loss_terms(out, batch, r.dev, "sum", r.tc.transition_weight)
    total = all_reduce_list(counts, r.dev)
    w = r.ctx.world_size
    return {k: parts[k] * (w / max(n, 1.0)) for k, n in zip(("seg", "cls", "dur"), total)}


def _validate(r: _Run, epoch) -> dict:
    """Validation loss and (for ``select_metric="val_moc"``) mean validation MoC, over all ranks; a
    non-finite validation loss (weights finite, outputs overflowing) is a divergence of ``epoch``."""
    rtf = r.model.rtf
    if r.ctx is not None and rtf is not None and rtf.stats_group is None and rtf.tracks_training_rows:
        # --rtf-stats local: each process summed the statistic of its own training rows; eval mode's
        # one channel set (saved in the checkpoint) is chosen from all of them, as with one process
        import torch

        torch.distributed.all_reduce(rtf.train_stat)
    val_loss = _validation_loss(r.model, r.val_set, r.tc, r.dev, ctx=r.ctx)
    _stop_if_diverged(r, epoch, val_loss)
    val_moc = (_moc_grid_mean(r.model, r.ds, "val", r.config, r.dev, ctx=r.ctx) if r.tc.select_metric == "val_moc"
               else float("nan"))
    return {"val_loss": val_loss, "val_moc": val_moc}


def _save_epoch(r: _Run, epoch, row):
    """Best-epoch bookkeeping and the checkpoints (rank 0 writes; every rank keeps ``best``)."""
    tc, val_loss = r.tc, row["val_loss"]
    higher = tc.select_metric == "val_moc"
    score = row["val_moc"] if higher else val_loss
    best = r.best
    # equal validation MoC (e.g. 0 for every early epoch) is broken by the lower validation loss
    improved = best is None or (
        (score > best["score"] or (score == best["score"] and val_loss < best["val_loss"])) if higher
        else score < best["score"])
    state = {"model": r.model.state_dict(), **r.info}
    if improved:
        r.best = {"epoch": epoch, "score": score, "metric": tc.select_metric, "val_loss": val_loss}
        if _is_main(r.ctx):
            _save_torch({**state, "epoch": epoch, "best": r.best}, r.run_dir / "checkpoints" / "best.pt")
    last = {**state, "optimizer": pack_optimizer(r.opt.state_dict()), "scheduler": r.sched.state_dict(), "epoch": epoch,
            "history": r.history, "best": r.best}
    if r.ctx is None:
        last.update(loader_rng=r.gen.get_state(), rng=rng_state())
    else:
        # the sampler needs no state (seed + epoch); each rank's own RNG (dropout) does
        last["rng_ranks"] = gather(rng_state(), r.ctx)
    if _is_main(r.ctx):
        _save_torch(last, r.last_path)
        _write_metrics(r.run_dir / "metrics.csv", r.history)


def _validation_loss(model, val_set, tc, dev, ctx=None) -> float:
    """Mean over the validation items (this process's shard) of each item's own loss.

    Items go through the model in padded batches of similar length
    (:func:`rankfusion.data.torchdata.length_batches`) when the model treats videos independently
    (:attr:`rankfusion.model.R3D.videos_independent`), else one per pass: spectral RTF would
    choose its channels from whichever videos share the batch. Either way each item's loss is
    computed on its own valid steps, so the value does not depend on the grouping beyond the
    order of floating-point sums.
    """
    import torch

    idx = list(shard(range(len(val_set)), ctx))
    # the validation loader's iterator draws its seed from the global generator, which is also the
    # run's dropout stream: the draw is made as it always was (the batched trainer makes it too),
    # and the items are then read one group at a time
    iter(torch.utils.data.DataLoader(torch.utils.data.Subset(val_set, idx), batch_size=1, shuffle=False,
                                     collate_fn=collate_anticipation))
    model.eval()
    lengths = [val_set.steps(i) for i in idx]
    groups = length_batches(lengths) if model.videos_independent else [[j] for j in range(len(idx))]
    losses = [0.0] * len(idx)
    with torch.no_grad():
        for group in groups:
            items = [collate_anticipation([val_set[idx[j]]]) for j in group]  # each a batch of one
            inputs = [(b["features"], b["mask"]) for b in items]
            feats, mask = pad_videos(inputs) if len(group) > 1 else inputs[0]
            out = model({m: v.to(dev) for m, v in feats.items()}, mask.to(dev))
            for k, (j, item) in enumerate(zip(group, items)):
                one = R3DOutput(out.seg_logits[k:k + 1, :lengths[j]], out.class_logits[k:k + 1],
                                out.durations[k:k + 1])
                parts = compute_losses(one, item, dev, transition_weight=tc.transition_weight)
                losses[j] = float(tc.loss_seg * parts["seg"] + tc.loss_cls * parts["cls"] + tc.loss_dur * parts["dur"])
    total, n = sum(losses), len(losses)  # summed in item order, as the loader gave them
    if ctx is not None:
        total, n = all_reduce_list([total, n], dev)
    return total / max(n, 1)


def _moc_grid_mean(model, ds, split, config, dev, ctx=None) -> float:
    """The mean over the cells of ``split``'s MoC grid (:func:`grid_mean` of :func:`moc_grid`): the validation MoC."""
    return grid_mean(moc_grid(model, ds, split, config, dev, ctx=ctx))


def grid_mean(grid: dict) -> float:
    """The validation MoC a run selects its best epoch by: the mean of a :func:`moc_grid`'s cells
    (:func:`rankfusion.evaluate.grid_mean`); a grid with no counted cell scores -inf, never "best"."""
    return cells_mean(grid, empty=float("-inf"))
