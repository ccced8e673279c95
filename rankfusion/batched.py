"""Train the seeds of one configuration as one batched model.

The K seeds of a configuration build the same R3D shapes, so their parameters can be stacked on a
leading seed axis and run as one model: every Linear becomes one batched matrix product
(``baddbmm`` over the seed axis), LayerNorm, attention and the token fuser act per seed on a
``(K, B, T, ...)`` tensor. On a CPU the small models of the demo are dominated by per-operation
overhead, so one step of K seeds costs little more than one step of one seed
(``benchmarks/bench_seeds.py``, docs/benchmarks.md).

Each seed is the computation its serial run (:func:`rankfusion.train.train`) does, up to
floating-point reordering:

* its own initialisation (drawn by the serial code, :func:`rankfusion.train._build_training`),
  its own loader generator (batch order) and its own dropout stream: the dropout masks are drawn
  from a per-seed generator holding exactly the state the serial run's global generator would
  hold, with the serial run's shapes and in its order, and padded to the batch's length;
* its own loss (the losses are means per seed, summed over seeds, so each seed's parameters get
  their own gradient), its own gradient-norm clip (the norm is taken per seed), and its own AdamW
  state (AdamW is element-wise: one AdamW over the stacked tensors is K AdamWs with the same
  learning-rate schedule, which the seeds share since they take the same number of steps);
* its own RTF channel selection (Eq. 3 on its own batch's valid steps; padding rows are zeroed
  so they add nothing to Definition 1's statistic);
* its own collapse remedies (:mod:`rankfusion.remedies`): the modality-dropout keep mask, drawn
  from the seed's dropout stream before the step's dropout masks as the serial step draws it; the
  unimodal heads (stacked like every parameter) on the seed's own fuser inputs, their loss a mean
  per seed; OGM-GE's coefficients from the seed's own confidence scores, applied to the seed's
  slice of the stacked encoder gradients with noise of that slice's spread, drawn from the seed's
  stream after the backward pass (modality by modality, parameter by parameter), before the clip;
* its own best-epoch selection, validation metrics and run folder ``RUN/seed-<s>/`` with the
  files of a serial run (checkpoints in the serial format, so either trainer resumes them).

Time padding: the seeds' batches are padded to the longest one. Padding never changes an
output at a valid position (:mod:`rankfusion.model`), so this changes nothing but the
summation order of some reductions. The per-time-step work (the Linears, LayerNorms, the
fuser's blend) runs on each seed's valid steps only, packed (:class:`_Packed`); attention,
Eq. 3's channel choice, the ``bn_gamma`` selection's BatchNorm and the unimodal heads' pooling
see the padded layout. The stacked parameters take one fused AdamW
step (:func:`_stacked_adamw`), the same element-wise update as each serial run's, rounded in
another order.

What is not batched (:func:`serial_reason`): distributed (torchrun) runs, CUDA devices (the
fused CUDA dropout kernel draws differently from the CPU one, so the serial dropout stream could
not be reproduced; not measured), and configurations with training options this module does not
implement (any field of :class:`rankfusion.config.TrainConfig` / :class:`~rankfusion.config.R3DConfig`
outside :data:`BATCHED_FIELDS` that is not at its default; the remedies are inside it). The rank
monitor (``ranks.csv``) is measured per seed on that seed's own R3D module.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import sys
import time
import types
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from ._progress import bar_disabled
from ._validation import InputError, InputTypeError
from .config import R3DConfig, RunConfig, TrainConfig
from .data.memo import Memo
from .data.torchdata import FEATURE_CACHE_BYTES, length_batches, video_inputs
from .evaluate import observed_cuts
from .metrics import MoCAccumulator, grid_cells
from .model import (R3DOutput, blend, blend_weights, blending_alpha, channels_from_statistic, recency_positions,
                    sinusoidal_positions)
from .monitor import EpochRanks
from .spectral import (channel_informativeness, channel_statistic, informativeness_from_statistic,
                       low_informative_channels)
from .runs import check_run_folder, pending_path as _pending, settle_pending
from .train import (_METRIC_FIELDS, _build_training, _prepare_run, _restore_or_start, diverged,
                    _save_epoch, _write_seeds, grid_mean, parse_seeds,
                    resolve_device, train)
from .trainstate import rng_state, set_rng_state
from .data import collate_anticipation
from . import remedies
from .bernoulli import bernoulli_into

#: Fields of the configuration the batched trainer implements; any other field must be at its
#: default, or the seeds are trained one after another (:func:`serial_reason`).
BATCHED_FIELDS = {
    "model": {"modalities", "d_model", "trunk_width", "rtf", "selection", "exchange", "exchange_ratio",
              "selection_scope", "eval_channels", "static_alpha", "informativeness_k", "alpha_param",
              "fusion_rule", "latent", "temporal_fuser", "n_layers", "n_heads", "mlp_ratio", "dropout", "n_queries", "positional",
              "input_dims", "n_classes"},
    "train": {"epochs", "batch_size", "lr", "weight_decay", "warmup_epochs", "min_lr_ratio", "obs_ratios",
              "future_ratio", "sample_rate", "loss_seg", "loss_cls", "loss_dur", "transition_weight", "grad_clip",
              "select_metric", "eval_obs", "eval_betas", "modality_dropout", "unimodal_heads", "ogm", "split_set"},
}


# ----------------------------------------------------------------------------- dispatch
def serial_reason(config: RunConfig, *, device=None, distributed=None) -> str | None:
    """Why the seeds of ``config`` must be trained one after another, or None if they can be batched."""
    if distributed is not None:
        return "distributed (torchrun) runs train their seeds one after another"
    if resolve_device(device).type != "cpu":
        return "seeds are batched on the CPU only (the CUDA dropout kernel draws another stream)"
    for table, cls in (("model", R3DConfig), ("train", TrainConfig)):
        part = getattr(config, table)
        for f in dataclasses.fields(cls):
            if f.name in BATCHED_FIELDS[table]:
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            if getattr(part, f.name) != default:
                return f"{table}.{f.name} = {getattr(part, f.name)!r} is not implemented by the batched trainer"
    return None


def train_seeds(config: RunConfig, data_root, run_dir, *, seed=1, serial_seeds: bool = False, device=None,
                resume: bool = False, progress: bool = True, on_epoch_end=None, distributed=None,
                monitor: bool = True, on_start=None) -> Path:
    """:func:`rankfusion.train.train`, with several seeds trained as one batched model where possible.

    Parameters
    ----------
    config, data_root, run_dir, seed, device, resume, progress, on_epoch_end, distributed, monitor, on_start
        As :func:`rankfusion.train.train` (same run folders, same files). ``on_epoch_end(epoch, row)``
        is called for each seed after that seed's epoch is written.
    serial_seeds : bool
        Train the seeds one after another (the serial path) even where they could be batched.

    Returns
    -------
    pathlib.Path
        ``run_dir``.
    """
    if not isinstance(config, RunConfig):
        raise InputTypeError(f"config must be a RunConfig, got {type(config).__name__}")
    seeds = parse_seeds(seed)
    reason = serial_reason(config, device=device, distributed=distributed) if len(seeds) > 1 else None
    if len(seeds) == 1 or serial_seeds or reason is not None:
        def started():
            if reason is not None and progress and (distributed is None or distributed.is_main):
                from tqdm.auto import tqdm

                tqdm.write(f"training the seeds one after another: {reason}", file=sys.stderr)
            if on_start is not None:
                on_start()

        return train(config, data_root, run_dir, seed=seeds, device=device, resume=resume, progress=progress,
                     on_epoch_end=on_epoch_end, distributed=distributed, monitor=monitor, on_start=started)
    run_dir = Path(run_dir)
    check_run_folder(run_dir, seeds, resume)
    runs = {s: run_dir / f"seed-{s}" for s in seeds}
    # the data, config and folders are checked before seeds.json is written
    members = _prepare_members(config, data_root, runs, device=device, resume=resume)
    if on_start is not None:
        on_start()
    _write_seeds(run_dir, seeds)
    _train_members(members, resume=resume, monitor=monitor, progress=progress, on_epoch_end=on_epoch_end)
    return run_dir


# ----------------------------------------------------------------------------- the trainer
def train_batched(config: RunConfig, data_root, runs: dict, *, device=None, resume: bool = False,
                  progress: bool = True, on_epoch_end=None, monitor: bool = True) -> dict:
    """Train one single-seed run per ``{seed: run folder}`` of ``runs``, all seeds as one batched model.

    Each folder gets what :func:`rankfusion.train.train` writes for that seed alone. With
    ``resume``, an interrupted commit of the seeds' checkpoints is settled first
    (:func:`settle_pending`); seeds whose checkpoints stand at different epochs (folders left by a
    serial run) are then brought level, the lagging seeds batched among themselves.

    Returns
    -------
    dict
        ``runs``.
    """
    _train_members(_prepare_members(config, data_root, runs, device=device, resume=resume), resume=resume,
                   monitor=monitor, progress=progress, on_epoch_end=on_epoch_end)
    return runs


def _prepare_members(config, data_root, runs: dict, *, device, resume) -> list:
    """Each seed's :func:`rankfusion.train._prepare_run` (the data checked once, for the first seed:
    they share it); with ``resume``, an interrupted commit settled first. Writes nothing else."""
    if not isinstance(config, RunConfig):
        raise InputTypeError(f"config must be a RunConfig, got {type(config).__name__}")
    reason = serial_reason(config, device=device)
    if reason is not None:
        raise ValueError(f"these seeds cannot be batched: {reason}")
    seeds = parse_seeds(list(runs))
    if resume:
        settle_pending([Path(runs[s]) for s in seeds])
    members = []
    for s in seeds:
        first = members[0] if members else None
        r = _prepare_run(config, data_root, Path(runs[s]), seed=s, device=device, resume=resume, ctx=None,
                         ds=first and first.ds, check_data=not members,
                         fingerprint=first and first.info["data_fingerprint"])
        if members:
            # one dataset (and its item cache) for all seeds: the same items, each seed its own order
            r.train_set, r.val_set = members[0].train_set, members[0].val_set
        else:
            r.train_set, r.val_set = _ItemCache(r.train_set), _ItemCache(r.val_set)
        r.seed = s
        members.append(r)
    return members


def _train_members(members: list, *, resume, monitor, progress, on_epoch_end) -> None:
    """Build, restore or start (writing each folder's ``config.json``) and train the prepared seeds."""
    for k, r in enumerate(members):
        s = r.seed
        _build_training(r, s)
        _restore_or_start(r, s, resume)
        r.rng = rng_state()  # the serial run's global RNG state from here on: its dropout stream
        r.ranks = None
        if monitor:
            path = r.run_dir / "ranks.csv"
            # the same videos for every seed: read once
            r.ranks = (members[0].ranks.for_run(path, previous=r.start > 1) if k
                       else EpochRanks(r.ds, r.config, r.dev, path, previous=r.start > 1))
        # the row of the epoch the seed starts from is missing: epoch 0 (the initial model), or,
        # resumed, an epoch committed just before a kill that came before its rows were written
        r.ranks_due = monitor and r.ranks.last_epoch < r.start - 1
    epochs = members[0].tc.epochs
    while True:
        start = min(r.start for r in members)
        if start > epochs:
            break
        group = [r for r in members if r.start == start]
        ahead = [r.start for r in members if r.start > start]
        _train_group(group, stop=min(ahead) - 1 if ahead else epochs, progress=progress,
                     on_epoch_end=on_epoch_end)
    # seeds that resumed finished, their last epoch's rows missing (a kill after the commit, or a
    # serial run's kill after last.pt): no group of theirs trains an epoch and measures them
    due = [r for r in members if r.ranks_due]
    if due:
        _Group(due).record_ranks(epochs, due)


class _ItemCache(torch.utils.data.Dataset):
    """A dataset whose items are read once and then served from memory, up to ``max_bytes`` of
    features (:class:`rankfusion.data.memo.Memo`; the rest read each time).

    An item of :class:`rankfusion.data.AnticipationDataset` is a function of its index alone (no
    random draw), and every seed of a batched run reads every item once per epoch: caching them
    leaves each seed's batches as they were and reads each item once instead of K x epochs times.
    The items are never modified (collation copies them into new tensors).
    """

    def __init__(self, dataset, max_bytes: int = FEATURE_CACHE_BYTES):
        self.dataset = dataset
        self.items = Memo(max_bytes, size=_feature_bytes)

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        return self.items.get(i, lambda: self.dataset[i])


def _feature_bytes(item) -> int:
    return sum(v.nbytes for v in item["features"].values())


def _train_group(members: list, *, stop: int, progress: bool, on_epoch_end):
    """Epochs ``members[*].start .. stop`` of seeds that all start at the same epoch."""
    g = _Group(members)
    if any(r.ranks_due for r in members):
        g.record_ranks(members[0].start - 1, [r for r in members if r.ranks_due])
    for epoch in range(members[0].start, stop + 1):
        t0, c0 = time.perf_counter(), time.process_time()
        rows = g.train_epoch(epoch, progress)
        g._check_finite(epoch)  # a blow-up in the epoch's last step leaves the summed losses finite
        val = g.validate(epoch)
        lr = g.opt.param_groups[0]["lr"]
        # epoch_s / epoch_cpu_s: the whole batched epoch (all seeds), training and validation
        timing = {"epoch_s": time.perf_counter() - t0, "epoch_cpu_s": time.process_time() - c0}
        for k, r in enumerate(members):
            r.rng["torch"] = g.drop_gens[k].get_state()
            row = dict(rows[k], val_loss=val["val_loss"][k], val_moc=val["val_moc"][k], lr=lr, **timing)
            row = {f: row[f] for f in _METRIC_FIELDS}
            r.history.append(row)
            g.write_back(k)
            set_rng_state(r.rng)  # _save_epoch records the global state: this seed's
            # the resume checkpoint goes to a pending file first; see settle_pending
            last, r.last_path = r.last_path, _pending(r.last_path)
            try:
                _save_epoch(r, epoch, row)
            finally:
                r.last_path = last
            if progress:
                from tqdm.auto import tqdm

                tqdm.write(f"seed {r.seed} epoch {epoch}/{r.tc.epochs}  loss {row['train_loss']:.4f}  "
                           f"val_loss {row['val_loss']:.4f}  val_moc {row['val_moc']:.2f}  "
                           f"{row['frames_per_s']:.0f} frames/s  {row['epoch_s']:.1f} s", file=sys.stderr)
        if members[0].ranks is not None:
            g.record_ranks(epoch, members)
        # every seed's epoch is written: commit them together
        for r in members:
            os.replace(_pending(r.last_path), r.last_path)
        for k, r in enumerate(members):
            if on_epoch_end is not None:
                on_epoch_end(epoch, r.history[-1])
            r.start = epoch + 1


class _Group:
    """K seeds' stacked parameters, optimiser, schedule, loaders and dropout generators."""

    def __init__(self, members):

        self.members = members
        self.K = len(members)
        r0 = members[0]
        self.config, self.tc, self.dev = r0.config, r0.tc, r0.dev
        self.model0 = r0.model  # the module structure (names, eps, heads); its values are not used
        self.names = [n for n, _ in r0.model.named_parameters()]
        self.buffer_names = [n for n, _ in r0.model.named_buffers()]
        self.params = {n: torch.stack([dict(r.model.named_parameters())[n].detach() for r in members]).clone()
                       .requires_grad_(True) for n in self.names}
        self.buffers = {n: torch.stack([dict(r.model.named_buffers())[n] for r in members]).clone()
                        for n in self.buffer_names}
        self.opt = torch.optim.AdamW(list(self.params.values()), lr=self.tc.lr, weight_decay=self.tc.weight_decay,
                                     **_stacked_adamw())
        # in the serial order: the schedule, then the optimiser's saved state (its current lr), then the schedule's
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, r0.sched.lr_lambdas[0])
        self.opt.load_state_dict(_stack_optimizer_states([r.opt.state_dict() for r in members]))
        self.sched.load_state_dict(r0.sched.state_dict())
        # the serial run's implementation settings, kept for each seed's checkpoint (_SeedOptimizer);
        # the stacked AdamW steps every parameter in one fused pass: the same element-wise update
        serial = {n: self.opt.param_groups[0][n] for n in ("foreach", "fused")}
        for group in self.opt.param_groups:
            group.update(_stacked_adamw())
        self.val_inputs = None
        self.val_groups = None
        self.drop_gens = []
        for r in members:
            gen = torch.Generator()
            gen.set_state(r.rng["torch"])
            self.drop_gens.append(gen)
        # each seed's view of the shared optimiser / schedule, for _save_epoch's checkpoint
        for k, r in enumerate(members):
            r.opt = _SeedOptimizer(self.opt, k, serial)
            r.sched = self.sched

    # -- one epoch
    def train_epoch(self, epoch, progress) -> list:
        from tqdm.auto import tqdm

        tc, K = self.tc, self.K
        t0 = time.perf_counter()
        sums = np.zeros((K, 4))
        frames = np.zeros(K)
        n_batches = 0
        # each seed's loader through the serial trainer's progress-bar wrapper: tqdm.auto creates a
        # loader iterator when constructed (a draw from the loader's generator), so the batch order
        # is the serial run's only if the loader is iterated the same way
        iters = [iter(tqdm(r.loader, disable=True)) for r in self.members]
        steps = len(self.members[0].loader)
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{tc.epochs} ({K} seeds)", leave=False, disable=bar_disabled(progress),
                   unit="batch")
        for _ in bar:
            batches = [next(it) for it in iters]
            try:
                loss, parts, mask = self._step(batches)
            except InputError:  # e.g. RTF's check of its input tokens, once a seed's weights have blown up
                self._check_finite(epoch)
                raise
            n_batches += 1
            frames += mask.sum((1, 2)).numpy()
            sums += torch.stack([loss, parts["seg"], parts["cls"], parts["dur"]], 1).detach().double().numpy()
            if not np.isfinite(sums[:, 0]).all():
                raise diverged(epoch, tc.lr, self.members[int(np.flatnonzero(~np.isfinite(sums[:, 0]))[0])].seed,
                               batched=True)
        bar.close()
        train_s = time.perf_counter() - t0
        # plain floats: checkpoints load with weights_only=True
        return [{"epoch": epoch, "train_loss": float(sums[k, 0] / n_batches),
                 "train_seg": float(sums[k, 1] / n_batches),
                 "train_cls": float(sums[k, 2] / n_batches), "train_dur": float(sums[k, 3] / n_batches),
                 # the seed's frames over the wall time of the whole batched epoch
                 "frames_per_s": float(frames[k] / train_s)} for k in range(K)]

    def _check_finite(self, epoch):
        """Raise :func:`rankfusion.train.diverged` for the first seed whose weights are not finite."""
        for k, r in enumerate(self.members):
            if not all(bool(p[k].isfinite().all()) for p in self.params.values()):
                raise diverged(epoch, self.tc.lr, r.seed, batched=True) from None

    def _step(self, batches):
        """One optimisation step of every seed: ``(loss (K,), parts, mask)``."""
        tc = self.tc
        feats, mask, targets = stack_batches(batches, self.config.model.modalities)
        # each seed's stream, in the serial step's order: the modality-dropout keep mask, then the
        # forward's dropout masks, then (after the backward pass) OGM-GE's noise
        keep = self._draw_keep(mask.shape[1])
        noise = self._draw_dropout(batches)
        out = stacked_forward(self.params, self.buffers, self.model0, feats, mask, training=True, noise=noise,
                              keep=keep)
        parts = stacked_losses(out, targets, transition_weight=tc.transition_weight)
        loss = tc.loss_seg * parts["seg"] + tc.loss_cls * parts["cls"] + tc.loss_dur * parts["dur"]
        if tc.unimodal_heads > 0:
            logits = stacked_unimodal_logits(self.params, self.model0, out["before"], mask)
            target = targets["future_classes"][:, :, 0]  # remedies.first_future_targets, per seed
            loss = loss + tc.unimodal_heads * stacked_unimodal_losses(logits, target).sum(1)
        self.opt.zero_grad(set_to_none=True)
        loss.sum().backward()
        if tc.ogm > 0:
            self._modulate_gradients(logits, target)
        if tc.grad_clip > 0:
            clip_per_seed(self.params.values(), tc.grad_clip)
        self.opt.step()
        self.sched.step()
        return loss, parts, mask

    def _draw_keep(self, batch_size):
        """Modality dropout's keep masks (K, B, M), each seed's drawn from its own stream as its serial
        step draws it (:func:`rankfusion.remedies.keep_mask`), or None when no modality is dropped."""

        probs = remedies.dropout_probabilities(self.tc, self.config.model.modalities)
        if not any(probs):
            return None
        return torch.stack([remedies.keep_mask(probs, batch_size, generator=gen) for gen in self.drop_gens])

    def _modulate_gradients(self, logits, target):
        """OGM-GE (:func:`rankfusion.remedies.modulate_gradients`) on each seed's slice of the stacked
        encoder gradients: that seed's coefficients, the spread of its own gradient tensors, its noise
        drawn from its own stream in the serial order (modality, then parameter)."""

        mods = self.config.model.modalities
        names = {m: remedies.encoder_parameter_names(self.model0, m) for m in mods}
        for k, gen in enumerate(self.drop_gens):
            coeffs = remedies.ogm_coefficients(remedies.confidence_scores(logits[k], target[k]), self.tc.ogm)
            for m, c in zip(mods, coeffs):
                for n in names[m]:
                    g = self.params[n].grad
                    if g is not None:
                        g[k] = remedies.modulated_gradient(g[k], c, generator=gen)

    def _draw_dropout(self, batches):
        """Per seed, the dropout masks its serial forward draws (same shapes, same order), each drawn
        straight into its slot of a (K, ...) buffer padded to the longest seed's batch (zero there;
        the same values as drawing each mask on its own and padding it, without the copy)."""

        cfg = self.config.model
        p = cfg.dropout
        if p == 0:
            return None
        W = cfg.d_model * len(cfg.modalities)
        H, Q, hid = cfg.n_heads, cfg.n_queries, cfg.mlp_ratio * W
        n_layers = cfg.n_layers if cfg.temporal_fuser else 0
        B = int(batches[0]["mask"].shape[0])

        def shapes(t):
            # (shape, time-major): dropout fills its mask in the memory order of its input; the
            # attention modules return a (B, T, W) transpose of a time-major tensor, so their masks
            # are drawn time-major
            seq = []
            for _ in range(n_layers):
                seq += [((B, H, t, t), False), ((t, B, W), True), ((B, t, hid), False), ((B, t, W), False)]
            return seq + [((B, H, Q, t), False), ((Q, B, W), True), ((B, Q, hid), False), ((B, Q, W), False)]

        lengths = [int(b["mask"].shape[1]) for b in batches]
        padded = shapes(max(lengths))
        bufs = [torch.zeros((len(batches),) + shape) for shape, _ in padded]
        for k, (t, gen) in enumerate(zip(lengths, self.drop_gens)):
            for buf, (shape, _) in zip(bufs, shapes(t)):
                bernoulli_into(buf[(k,) + tuple(slice(0, n) for n in shape)], 1 - p, gen)
        return [buf.div_(1 - p).transpose(1, 2) if time_major else buf.div_(1 - p)
                for buf, (_, time_major) in zip(bufs, padded)]

    def _videos_independent(self) -> bool:
        """:attr:`rankfusion.model.R3D.videos_independent` for every seed (eval mode)."""
        rtf = self.model0.rtf
        return rtf is None or not rtf.selects_per_batch or bool(self.buffers["rtf.is_frozen"].all())

    def leave_training(self):
        """What each seed's RTF does on the switch to eval mode (its channels from the training rows
        seen since the last switch; :class:`rankfusion.model.RankEnhancingTokenFuser`), for all seeds."""

        rtf, b = self.model0.rtf, self.buffers
        if rtf is None or not rtf.tracks_training_rows or not int(b["rtf.train_batches"].max()):
            return
        with torch.no_grad():
            b["rtf.frozen_low"].copy_(channels_from_statistic(b["rtf.train_stat"], rtf.informativeness_k, rtf.k_prime))
            b["rtf.is_frozen"].fill_(True)
            b["rtf.train_stat"].zero_()
            b["rtf.train_batches"].zero_()

    # -- validation, batched: every seed sees the same video
    def validate(self, epoch) -> dict:
        """Every seed's ``val_loss`` and (``select_metric="val_moc"``) ``val_moc``, as lists over the
        seeds; a seed whose validation loss is not finite diverged in ``epoch``."""
        self.leave_training()
        tc, K = self.tc, self.K
        r0 = self.members[0]
        loader = torch.utils.data.DataLoader(r0.val_set, batch_size=1, shuffle=False,
                                             collate_fn=collate_anticipation)
        # the serial validation's loader has no generator of its own: creating its iterator draws a
        # seed from the global generator, which is each seed's dropout stream; draw it the same way
        saved = torch.get_rng_state()
        for gen in self.drop_gens:
            torch.set_rng_state(gen.get_state())
            batches = iter(loader)
            gen.set_state(torch.get_rng_state())
        torch.set_rng_state(saved)
        if self.val_inputs is None:  # the same inputs every epoch: read and collated once
            self.val_inputs = self._validation_inputs(batches)
        items = self.val_inputs["loss"]
        if self._videos_independent():  # padded batches of validation items, each item's loss its own
            if self.val_groups is None:
                self.val_groups = _padded_groups(items)
            passes = self.val_groups
        else:  # the batch would choose RTF's channels: one item per pass
            passes = [([i], *item, [item[1].shape[-1]]) for i, item in enumerate(items)]
        losses, queries = [None] * len(items), [None] * len(items)
        with torch.no_grad():
            for idx, feats, mask, targets, lengths in passes:
                out = stacked_forward(self.params, self.buffers, self.model0, feats, mask, training=False)
                for j, (i, t) in enumerate(zip(idx, lengths)):
                    one = {"seg": out["seg"][:, j:j + 1, :t], "cls": out["cls"][:, j:j + 1], "dur": out["dur"][:, j:j + 1]}
                    aims = {k: v[:, j:j + 1, :t] if k == "seg_labels" else v[:, j:j + 1] for k, v in targets.items()}
                    parts = stacked_losses(one, aims, transition_weight=tc.transition_weight)
                    loss = tc.loss_seg * parts["seg"] + tc.loss_cls * parts["cls"] + tc.loss_dur * parts["dur"]
                    losses[i] = loss.double().numpy()
                    queries[i] = (out["cls"][:, j].numpy(), out["dur"][:, j].numpy())
        total = np.zeros(K)
        for loss in losses:  # summed in the validation loader's order, as the serial run sums them
            total += loss
        val_loss = [float(v) for v in total / max(len(items), 1)]
        for k, v in enumerate(val_loss):
            if not math.isfinite(v):  # weights finite, outputs overflowing: never a seed's best epoch
                raise diverged(epoch, tc.lr, self.members[k].seed, batched=True)
        if tc.select_metric != "val_moc":
            return {"val_loss": val_loss, "val_moc": [float("nan")] * K}
        accs = [MoCAccumulator(self.config.model.n_classes, betas=tuple(tc.eval_betas), future_ratio=tc.future_ratio)
                for _ in range(K)]
        with torch.no_grad():
            for o, gt, same, f, mask in self.val_inputs["moc"]:
                if same is not None:  # the forward of identical inputs above: the same outputs
                    cls, dur = queries[same]
                else:
                    out = stacked_forward(self.params, self.buffers, self.model0, f, mask, training=False)
                    cls, dur = out["cls"][:, 0].numpy(), out["dur"][:, 0].numpy()
                for k in range(K):
                    accs[k].add_queries(gt, o, cls[k], dur[k])
        return {"val_loss": val_loss, "val_moc": [grid_mean(grid_cells(a, tc.eval_obs, tc.eval_betas)) for a in accs]}

    def _validation_inputs(self, batches) -> dict:
        """The validation's stacked inputs, every seed the same: ``loss``, ``(features, mask, targets)``
        per item of the validation loader; ``moc``, ``(obs, labels, same, features, mask)`` per observed
        cut, ``same`` the index of a ``loss`` item with identical inputs (the validation items are the
        observed cuts at the same ratios), or None."""

        tc, K, r0, mods = self.tc, self.K, self.members[0], self.config.model.modalities
        batches = list(batches)
        loss = [stack_batches([batch], mods) for batch in batches]
        loss = [({m: v.expand(K, *v.shape[1:]) for m, v in feats.items()}, mask.expand(K, *mask.shape[1:]),
                 {k: v.expand(K, *v.shape[1:]) for k, v in targets.items()}) for feats, mask, targets in loss]
        moc = []
        cuts = observed_cuts(r0.ds, r0.ds.split("val"), tc.eval_obs) if tc.select_metric == "val_moc" else ()
        for o, gt, video, past, _ in cuts:
            feats, mask = video_inputs(r0.ds, video, mods, past, tc.sample_rate, self.dev)
            same = next((j for j, b in enumerate(batches) if b["video"] == [video] and torch.equal(b["mask"], mask)
                         and all(torch.equal(b["features"][m], feats[m]) for m in mods)), None)
            moc.append((o, gt, same, {m: v.expand(K, *v.shape) for m, v in feats.items()},
                        mask.expand(K, *mask.shape)))
        return {"loss": loss, "moc": moc}

    def record_ranks(self, epoch, members):
        """Each seed's ``ranks.csv`` row of ``epoch`` (:class:`rankfusion.monitor.EpochRanks`), from one
        batched pass of the token fuser over the monitor's videos (the rest of R3D is not needed)."""

        self.leave_training()
        independent = self._videos_independent()
        ranks = members[0].ranks  # the same videos for every seed
        inputs = ranks.batches if independent else ranks.inputs
        per_seed = [[] for _ in self.members]
        with torch.no_grad():
            for feats, mask in inputs:
                f = {m: v.expand(self.K, *v.shape) for m, v in feats.items()}
                before, after, low = stacked_tokens(self.params, self.buffers, self.model0, f,
                                                    mask.expand(self.K, *mask.shape), training=False)
                for k in range(self.K):
                    per_seed[k].append({m: {"before": b[k], "after": a[k], "low": None if lo is None else lo[k]}
                                        for m, b, a, lo in zip(self.config.model.modalities, before, after, low)})
        for r in members:
            k = self.members.index(r)
            r.ranks.record(_Replay(self.config.model, per_seed[k], independent), epoch)
            r.ranks_due = False

    def write_back(self, k):
        """Copy seed ``k``'s parameters and buffers into its own R3D module (checkpoints, monitor)."""

        model = self.members[k].model
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(self.params[n][k])
            for n, b in model.named_buffers():
                b.copy_(self.buffers[n][k])


class _Replay(torch.nn.Module):
    """One seed's R3D as the rank monitor sees it: each call returns the next video's token-fuser
    features of that seed, computed beforehand in the batched pass (same videos, same order;
    ``videos_independent`` as the seed's R3D: then the videos came in the monitor's padded batches)."""

    def __init__(self, config, features, videos_independent: bool):
        super().__init__()
        self.config, self.features, self.calls = config, features, 0
        self.videos_independent = videos_independent

    def forward(self, feats, mask, *, return_features=False):
        out = R3DOutput(None, None, None, self.features[self.calls])
        self.calls += 1
        return out


class _SeedOptimizer:
    """Seed ``k``'s AdamW state, sliced from the stacked optimiser in ``torch.optim`` format, with the
    serial run's implementation settings ``serial`` (``foreach``, ``fused``)."""

    def __init__(self, opt, k, serial: dict):
        self.opt, self.k, self.serial = opt, k, serial

    @property
    def param_groups(self):
        return self.opt.param_groups

    def state_dict(self):
        sd = self.opt.state_dict()
        state = {i: {name: (v.clone() if name == "step" else v[self.k].clone()) for name, v in s.items()}
                 for i, s in sd["state"].items()}
        return {"state": state, "param_groups": [{**g, **self.serial} for g in sd["param_groups"]]}


@functools.cache
def _stacked_adamw() -> types.MappingProxyType:
    """How the stacked optimiser steps: AdamW's fused kernel (one pass over each tensor; on the
    development machine ~5x faster than the per-tensor loop, which the multi-tensor ``foreach``
    path does not beat on a CPU), or the multi-tensor path where this torch has no CPU fused
    kernel (before 2.4). The update is element-wise, the same for every implementation up to
    rounding. Decided on first use: constructing an optimiser imports torch's compiler stack."""
    try:
        torch.optim.AdamW([torch.zeros(1, requires_grad=True)], fused=True)
    except (RuntimeError, TypeError, ValueError):
        return types.MappingProxyType({"fused": None, "foreach": True})
    return types.MappingProxyType({"fused": True, "foreach": False})


def _stack_optimizer_states(states: list) -> dict:
    """K per-seed AdamW state dicts (the same step count) as one over the stacked parameters."""

    out = {}
    for i in states[0]["state"]:  # empty before the first step
        per = [s["state"][i] for s in states]
        steps = {float(p["step"]) for p in per}
        if len(steps) != 1:
            raise ValueError(f"cannot batch seeds at different optimiser steps {sorted(steps)}")
        out[i] = {name: (per[0][name].clone() if name == "step" else torch.stack([p[name] for p in per]))
                  for name in per[0]}
    return {"state": out, "param_groups": states[0]["param_groups"]}


# ----------------------------------------------------------------------------- the stacked computation
def stack_batches(batches: list, modalities) -> tuple:
    """K collated batches (:func:`rankfusion.data.collate_anticipation`, one per seed, the same B) as
    ``(features {m: (K, B, T, C)}, mask (K, B, T), targets)``, time padded to the longest."""

    T = max(int(b["mask"].shape[1]) for b in batches)

    def pad_t(x, value=0):
        extra = T - x.shape[1]
        if not extra:
            return x
        return F.pad(x, (0, 0) * (x.dim() - 2) + (0, extra), value=value)

    feats = {m: torch.stack([pad_t(b["features"][m]) for b in batches]) for m in modalities}
    mask = torch.stack([pad_t(b["mask"], False) for b in batches])
    targets = {"seg_labels": torch.stack([pad_t(b["seg_labels"], -100) for b in batches]),
               **{k: torch.stack([b[k] for b in batches])
                  for k in ("future_classes", "future_durations", "last_observed")}}
    return feats, mask, targets


def _padded_groups(items) -> list:
    """Validation items ``(features {m: (K, 1, T, C)}, mask (K, 1, T), targets)`` as padded passes
    ``(indices, features (K, B, T, C), mask (K, B, T), targets, lengths)``: the items sorted by
    length (stable) and cut into runs of at most :data:`rankfusion.data.torchdata.EVAL_BATCH_STEPS`
    padded steps (:func:`rankfusion.data.torchdata.length_batches`)."""

    lengths = [int(mask.shape[-1]) for _, mask, _ in items]
    out = []
    for idx in length_batches(lengths):
        T = max(lengths[i] for i in idx)

        def cat(xs, value=0):  # along the batch axis, time (axis 2) padded to T
            return torch.cat([F.pad(x, (0, 0) * (x.dim() - 3) + (0, T - x.shape[2]), value=value) for x in xs], dim=1)

        feats = {m: cat([items[i][0][m] for i in idx]) for m in items[idx[0]][0]}
        mask = torch.cat([F.pad(items[i][1], (0, T - lengths[i]), value=False) for i in idx], dim=1)
        targets = {k: cat([items[i][2][k] for i in idx], -100) if k == "seg_labels"
                   else torch.cat([items[i][2][k] for i in idx], dim=1) for k in items[idx[0]][2]}
        out.append((idx, feats, mask, targets, [lengths[i] for i in idx]))
    return out


def grouped_linear(x, w, b):
    """Per-seed ``x @ w.T + b``: x (K, ..., in), w (K, out, in), b (K, out) -> (K, ..., out)."""

    K, shape = x.shape[0], x.shape
    y = _GroupedLinear.apply(x.reshape(K, -1, shape[-1]), w, b)
    return y.view(*shape[:-1], w.shape[1])


class _GroupedLinear(torch.autograd.Function):
    """``baddbmm(b, x, w^T)`` whose backward gives the weight's gradient in the weight's own
    (K, out, in) layout, as ``F.linear``'s does (autograd's ``baddbmm`` backward gives it
    transposed, and every parameter's gradient was then copied to a contiguous tensor)."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        gx = torch.bmm(g, w) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = g.sum(1) if ctx.needs_input_grad[2] else None
        return gx, gw, gb


def _layer_norm(x, w, b, eps):

    shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
    return torch.addcmul(b.view(shape), F.layer_norm(x, x.shape[-1:], eps=eps), w.view(shape))


def _attend(q, k, v, bias, n_heads, noise):
    """Multi-head attention's core per seed, before the output projection: q (K, B, Tq, W), k and v
    (K, B, Tk, W), bias (K * B * n_heads, 1, Tk) -inf at padded keys, else 0
    (:func:`_key_padding_bias`); noise (K, B, H, Tq, Tk) or None. Returns (K, B, Tq, W)."""

    K, B, Tq, W = q.shape
    Tk, hd = k.shape[2], W // n_heads

    def heads(x, t):
        return x.reshape(K * B, t, n_heads, hd).transpose(1, 2)

    # scaled scores plus the padding bias in one batched product
    s = torch.baddbmm(bias, heads(q, Tq).reshape(-1, Tq, hd), heads(k, Tk).reshape(-1, Tk, hd).transpose(1, 2),
                      alpha=1.0 / math.sqrt(hd))
    a = torch.softmax(s.view(K * B, n_heads, Tq, Tk), dim=-1)
    if noise is not None:
        a = a * noise.reshape(a.shape)
    return torch.matmul(a, heads(v, Tk)).transpose(1, 2).reshape(K, B, Tq, W)


def _key_padding_bias(mask, n_heads) -> torch.Tensor:
    """(K * B * n_heads, 1, T) additive attention bias of a (K, B, T) mask: 0 at valid keys, -inf at
    padded ones (``masked_fill`` of the scores with -inf, as ``key_padding_mask`` does)."""

    K, B, T = mask.shape
    bias = torch.zeros(K * B, 1, 1, T).masked_fill_(~mask.reshape(K * B, 1, 1, T), float("-inf"))
    return bias.expand(K * B, n_heads, 1, T).reshape(K * B * n_heads, 1, T)


def _drop(x, noise):
    return x if noise is None else x * noise


class _Packed:
    """The valid time steps of a (K, B, T) mask, each seed's packed to the front of a (K, N, ...)
    layout (video by video, in time order), N the most valid steps of any seed.

    Everything R3D computes per time step (Eq. 2's projections, the fuser's blend, the temporal
    layers' Linears, LayerNorms and residuals, the segmentation head) runs on this layout, so the
    seeds' products multiply their valid steps (and, for a seed with fewer valid steps than the
    most, as many of its padded steps, discarded), not the padding of every seed's batch to
    the longest video of all K. What mixes time steps (attention, Eq. 3's channel choice) runs on
    the padded (K, B, T, ...) layout: :meth:`unpack` writes the packed rows back to their steps
    (a seed's unused rows to some of its padded steps, which attention and the losses never read),
    :meth:`pack` reads them. Both are differentiable.
    """

    def __init__(self, mask):
        K, B, T = mask.shape
        flat = mask.reshape(K, B * T)
        self.shape, self.mask = (K, B, T), mask
        self.N = N = int(flat.sum(1).max())
        # each seed's valid positions first, in (video, step) order (a stable sort keeps the order),
        # then as many of its padded positions as it has valid steps fewer than N: distinct positions
        pos = torch.sort((~flat).to(torch.uint8), dim=1, stable=True).indices[:, :N]
        self.index = (pos + (torch.arange(K) * (B * T))[:, None]).reshape(-1)
        self.video, self.step = pos // T, pos % T  # (K, N)

    def pack(self, x):
        """(K, B, T, C) -> (K, N, C)."""
        K, B, T = self.shape
        return x.reshape(K * B * T, x.shape[-1]).index_select(0, self.index).view(K, self.N, x.shape[-1])

    def unpack(self, y):
        """(K, N, C) -> (K, B, T, C), zeros at the padded steps no packed row comes from."""
        K, B, T = self.shape
        C = y.shape[-1]
        return y.new_zeros(K * B * T, C).index_copy_(0, self.index, y.reshape(K * self.N, C)).view(K, B, T, C)

    def per_video(self, x):
        """A (K, B, C) per-video tensor at each packed row: (K, N, C)."""
        return x.gather(1, self.video[..., None].expand(-1, -1, x.shape[-1]))


def stacked_forward(P: dict, buffers: dict, model, feats: dict, mask, *, training: bool, noise=None,
                    keep=None) -> dict:
    """R3D's forward (:meth:`rankfusion.model.R3D.forward`) for K seeds' stacked parameters.

    Per-time-step work runs on each seed's valid steps only (:class:`_Packed`); outputs at padded
    steps (``seg``, ``before``) are zero or, for a seed with fewer valid steps than another, the
    values of the extra rows it computed there. As in R3D, nothing reads them.

    Parameters
    ----------
    P, buffers : dict of name to Tensor (K, ...)
        Stacked parameters / buffers, named as in ``model``.
    model : rankfusion.model.R3D
        Any module of the configuration (structure only: names, LayerNorm eps, heads).
    feats : dict of str to Tensor (K, B, T, C_m)
    mask : bool Tensor (K, B, T)
    training : bool
        Training mode: MaskedBatchNorm batch statistics (and running-stat updates), dropout.
    noise : list of Tensor or None
        Dropout multipliers in the serial forward's draw order (``_Group._draw_dropout``).
    keep : Tensor of shape (K, B, M) or None
        Modality-dropout factors per seed (the ``keep`` argument of R3D's forward).

    Returns
    -------
    dict
        ``seg`` (K, B, T, n_classes), ``cls`` (K, B, Q, n_classes + 1), ``dur`` (K, B, Q),
        ``low`` (list per modality of (K, k') / (K, B, k') channel indices, or None), ``before``
        (list per modality of the token fuser's (K, B, T, D) inputs).
    """

    cfg = model.config
    K, B, T = mask.shape
    pk = _Packed(mask)
    noise = list(noise) if noise is not None else None

    def nxt(step=False):
        if noise is None:
            return None
        x = noise.pop(0)
        return pk.pack(x) if step else x

    toks = _project(P, model, {m: pk.pack(v) for m, v in feats.items()},
                    None if keep is None else pk.per_video(keep))
    before, toks, low = _packed_rtf(P, buffers, model.rtf, toks, pk, training)
    x = torch.cat(toks, dim=-1)
    W = x.shape[-1]
    if cfg.positional == "sinusoidal":
        x = x + sinusoidal_positions(T, W, x.device, x.dtype)[pk.step]
    elif cfg.positional == "recency":
        x = x + pk.pack(recency_positions(mask.reshape(K * B, T), W, x.dtype).view(K, B, T, W))
    pad = _key_padding_bias(mask, cfg.n_heads)
    for i, layer in enumerate(model.layers):
        pre = f"layers.{i}."
        h = _layer_norm(x, P[pre + "ln1.weight"], P[pre + "ln1.bias"], layer.ln1.eps)
        qkv = pk.unpack(grouped_linear(h, P[pre + "attn.in_proj_weight"], P[pre + "attn.in_proj_bias"]))
        o = pk.pack(_attend(*qkv.chunk(3, dim=-1), pad, cfg.n_heads, nxt()))
        att = grouped_linear(o, P[pre + "attn.out_proj.weight"], P[pre + "attn.out_proj.bias"])
        z = h + _drop(att, nxt(True))
        hid = F.gelu(grouped_linear(z, P[pre + "mlp.0.weight"], P[pre + "mlp.0.bias"]))
        y = grouped_linear(_drop(hid, nxt(True)), P[pre + "mlp.3.weight"], P[pre + "mlp.3.bias"])
        x = _layer_norm(z + _drop(y, nxt(True)), P[pre + "ln2.weight"], P[pre + "ln2.bias"], layer.ln2.eps)
    x = _layer_norm(x, P["final_ln.weight"], P["final_ln.bias"], model.final_ln.eps)
    seg = pk.unpack(grouped_linear(x, P["seg_head.weight"], P["seg_head.bias"]))
    a, pre = model.anticipation, "anticipation."
    # one split of the packed in-projection (its backward is one concatenation, not two zero-filled slices)
    (wq, wkv), (bq, bkv) = (P[pre + n].split([W, 2 * W], dim=1) for n in ("attn.in_proj_weight", "attn.in_proj_bias"))
    q = P[pre + "queries"].unsqueeze(1).expand(K, B, *P[pre + "queries"].shape[1:])
    kv = pk.unpack(grouped_linear(x, wkv, bkv))
    o = _attend(grouped_linear(q, wq, bq), *kv.chunk(2, dim=-1), pad, cfg.n_heads, nxt())
    att = grouped_linear(o, P[pre + "attn.out_proj.weight"], P[pre + "attn.out_proj.bias"])
    h = _layer_norm(q + _drop(att, nxt()), P[pre + "ln1.weight"], P[pre + "ln1.bias"], a.ln1.eps)
    hid = F.gelu(grouped_linear(h, P[pre + "ffn.0.weight"], P[pre + "ffn.0.bias"]))
    y = grouped_linear(_drop(hid, nxt()), P[pre + "ffn.3.weight"], P[pre + "ffn.3.bias"])
    h = _layer_norm(h + _drop(y, nxt()), P[pre + "ln2.weight"], P[pre + "ln2.bias"], a.ln2.eps)
    cls = grouped_linear(h, P[pre + "cls_head.weight"], P[pre + "cls_head.bias"])
    dur = grouped_linear(h, P[pre + "dur_head.weight"], P[pre + "dur_head.bias"]).squeeze(-1)
    return {"seg": seg, "cls": cls, "dur": dur, "low": low, "before": before}


def _project(P: dict, model, feats: dict, keep=None) -> list:
    """Eq. 2 per seed: each modality's tokens (K, ..., D) from its features (K, ..., C_m), times its
    modality-dropout factor ``keep`` (K, ..., M), if given (R3D applies it before the fuser)."""

    toks = []
    for i, m in enumerate(model.config.modalities):
        x = F.relu(grouped_linear(feats[m], P[f"proj.{m}.weight"], P[f"proj.{m}.bias"]))
        if model.shared is not None:
            x = F.relu(grouped_linear(x, P["shared.weight"], P["shared.bias"]))
        if keep is not None:
            x = x * keep[..., i, None].to(x.dtype)
        toks.append(x)
    return toks


def _packed_rtf(P, buffers, rtf, toks, pk: _Packed, training):
    """The token fuser on packed tokens (K, N, D): Eq. 3's choice on the padded layout (per seed or
    per video, :func:`_rtf_choice`), Eqs. 4-5's blend on the packed rows. Returns (its padded
    inputs, the packed fused tokens, the blended channels)."""

    padded = [pk.unpack(x) for x in toks]
    if rtf is None:
        return padded, toks, [None] * len(toks)
    normed, low, weights = _rtf_choice(P, buffers, rtf, padded, pk.mask, training)
    if rtf.selection == "bn_gamma":
        toks = [pk.pack(x) for x in normed]
    if weights is None:
        return normed, toks, low
    after = []
    for x, y, w in zip(toks, rtf.partners(toks), weights):
        after.append(blend(x, y, w.view(pk.shape[0], 1, -1) if w.dim() == 2 else pk.per_video(w)))
    return normed, after, low


def stacked_tokens(P: dict, buffers: dict, model, feats: dict, mask, *, training: bool, keep=None) -> tuple:
    """Per-modality tokens (Eq. 2) and the token fuser for K seeds: ``(before, after, low)``, lists over
    modalities of (K, B, T, D) tensors (``before``: the fuser's inputs) and blended channels.

    ``keep`` (K, B, M), optional: modality-dropout factors on each seed's tokens, as R3D applies them
    (after Eq. 2, before the fuser)."""

    toks = _project(P, model, feats, None if keep is None else keep[:, :, None])
    if model.rtf is None:
        return toks, toks, [None] * len(toks)
    normed, low, weights = _rtf_choice(P, buffers, model.rtf, toks, mask, training)
    if weights is None:
        return normed, normed, low
    after = [blend(x, y, w.view(x.shape[0], -1, 1, x.shape[-1]))
             for x, y, w in zip(normed, model.rtf.partners(normed), weights)]
    return normed, after, low


def _rtf_choice(P, buffers, rtf, toks, mask, training):
    """The token fuser's inputs (after the ``bn_gamma`` selection's normalisation), Eq. 3's channels
    per seed and Eq. 4's per-channel weights: (K, D) with one channel set per seed, (K, B, D) with
    one per video, or None when nothing is blended. ``toks``: (K, B, T, D) per modality, zero or
    not at padded steps (they are zeroed here)."""

    K, B, T = mask.shape
    valid = mask.unsqueeze(-1).to(toks[0].dtype)
    if rtf.selection == "bn_gamma":
        toks = [_stacked_batch_norm(P, buffers, f"rtf.norms.{i}.", norm, x, mask, valid, training)
                for i, (norm, x) in enumerate(zip(rtf.norms, toks))]
    M = len(toks)
    if M == 1 or rtf.k_prime == 0:
        return toks, [None] * M, None
    low = []
    track = training and rtf.tracks_training_rows
    frozen = not training and bool(buffers["rtf.is_frozen"].all())
    with torch.no_grad():
        for i, x in enumerate(toks):
            if frozen:  # eval mode: the channels chosen on the training rows
                low.append(buffers["rtf.frozen_low"][:, i])
                continue
            if rtf.selection == "bn_gamma":
                score = P[f"rtf.norms.{i}.weight"].detach().abs()
            elif rtf.selection_scope == "sample":
                score = channel_informativeness(x.detach() * valid, k=rtf.informativeness_k)  # (K, B, D)
            else:
                # padded rows zeroed: Definition 1 on each seed's valid steps only
                stat = channel_statistic((x.detach() * valid).reshape(K, B * T, -1), rtf.informativeness_k)
                if track:
                    buffers["rtf.train_stat"][:, i] += stat
                score = informativeness_from_statistic(stat, rtf.informativeness_k)
            low.append(low_informative_channels(score, k_prime=rtf.k_prime))
        if track:
            buffers["rtf.train_batches"] += 1
    alpha = blending_alpha(rtf.exchange, rtf.alpha_param, P.get("rtf.alpha_raw"), buffers.get("rtf.alpha_const"))
    # (K, D): one set per seed; (K, B, D): one set per video
    weights = [blend_weights(low[i], alpha[:, i] if low[i].dim() == 2 else alpha[:, i, None]) for i in range(len(toks))]
    return toks, low, weights


def _stacked_batch_norm(P, buffers, pre, norm, x, mask, valid, training):
    """:class:`rankfusion.model.MaskedBatchNorm` per seed (statistics over each seed's valid steps)."""

    w, b = P[pre + "weight"].unsqueeze(1).unsqueeze(1), P[pre + "bias"].unsqueeze(1).unsqueeze(1)
    if training:
        n = mask.sum((1, 2)).to(x.dtype).view(-1, 1)  # (K, 1)
        mean = (x * valid).sum((1, 2)) / n
        var = (((x - mean[:, None, None]) ** 2) * valid).sum((1, 2)) / n
        with torch.no_grad():
            buffers[pre + "running_mean"].lerp_(mean, norm.momentum)
            buffers[pre + "running_var"].lerp_(var * (n / (n - 1).clamp(min=1)), norm.momentum)
    else:
        mean, var = buffers[pre + "running_mean"], buffers[pre + "running_var"]
    return (x - mean[:, None, None]) * torch.rsqrt(var[:, None, None] + norm.eps) * w + b


def stacked_losses(out: dict, targets: dict, *, transition_weight: float = 1.0) -> dict:
    """:func:`rankfusion.train.compute_losses` per seed: ``{"seg", "cls", "dur"}``, each (K,).

    Each is the mean of its seed's own terms (tokens, target queries, action queries), so the sum
    over seeds has each seed's gradient on that seed's parameters.
    """

    seg_logits, cls_logits, durations = out["seg"], out["cls"], out["dur"]
    K, C = seg_logits.shape[0], seg_logits.shape[-1]
    seg_t, cls_t, dur_t = targets["seg_labels"], targets["future_classes"], targets["future_durations"]
    ce = F.cross_entropy(seg_logits.reshape(-1, C), seg_t.reshape(-1), ignore_index=-100, reduction="none")
    seg = ce.view(K, -1).sum(1) / (seg_t != -100).view(K, -1).sum(1)
    ce = F.cross_entropy(cls_logits.reshape(-1, C + 1), cls_t.reshape(-1), ignore_index=-100,
                         reduction="none").view(cls_t.shape)
    valid = (cls_t != -100).to(ce.dtype)
    if transition_weight == 1.0:
        cls = ce.sum((1, 2)) / valid.sum((1, 2))
    else:
        changed = cls_t[..., 0] != targets["last_observed"]
        w = torch.where(changed, transition_weight, 1.0).to(ce.dtype)[..., None]
        cls = (ce * w * valid).sum((1, 2)) / valid.sum((1, 2)).clamp(min=1.0)
    act = (cls_t >= 0) & (cls_t < C)
    rows = act.any(-1, keepdim=True)
    # rows without an action query keep finite logits (excluded below), so no NaN reaches the gradient
    d = durations.masked_fill(~act & rows, float("-inf"))
    frac = torch.softmax(d, dim=-1)
    err = torch.where(act, (frac - dur_t) ** 2, torch.zeros((), dtype=frac.dtype))
    dur = err.sum((1, 2)) / act.sum((1, 2)).clamp(min=1).to(err.dtype)
    return {"seg": seg, "cls": cls, "dur": dur}


def stacked_unimodal_logits(P: dict, model, before, mask) -> torch.Tensor:
    """The unimodal heads (:func:`rankfusion.remedies.unimodal_logits`) per seed: logits of shape
    (K, M, B, n_classes + 1) from each modality's fuser inputs ``before`` (list of (K, B, T, D)) under
    ``mask`` (K, B, T)."""

    pre = remedies.HEADS_ATTR + ".heads."
    return torch.stack([grouped_linear(remedies.pooled_tokens(x, mask), P[f"{pre}{m}.weight"], P[f"{pre}{m}.bias"])
                        for m, x in zip(model.config.modalities, before)], dim=1)


def stacked_unimodal_losses(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`rankfusion.remedies.unimodal_losses` per seed, shape (K, M): each head's cross-entropy
    averaged over its seed's samples with a target (0, with a zero gradient, for a seed with none).

    ``logits`` (K, M, B, C + 1), ``target`` (K, B) with -100 for no target.
    """

    K, M, B, C1 = logits.shape
    t = target[:, None, :].expand(K, M, B)
    ce = F.cross_entropy(logits.reshape(-1, C1), t.reshape(-1), ignore_index=-100, reduction="none").view(K, M, B)
    n = (target != -100).sum(1).clamp(min=1).to(ce.dtype)
    return ce.sum(2) / n[:, None]


def clip_per_seed(params, max_norm: float):
    """``torch.nn.utils.clip_grad_norm_`` applied to each seed's slice of the stacked gradients."""

    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    K = grads[0].shape[0]
    norms = torch.stack([torch.linalg.vector_norm(g.reshape(K, -1), dim=1) for g in grads], dim=1)
    total = torch.linalg.vector_norm(norms, dim=1)
    coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
    for g in grads:
        g.mul_(coef.view((K,) + (1,) * (g.dim() - 1)))

