"""Evaluation of a trained R3D run on a split: MoC grid, segmentation, modality utilization.

:func:`moc_grid`, :func:`segmentation_grid` and :func:`modality_reliance` apply the protocols of
:mod:`rankfusion.metrics` to a trained R3D model, each video scored as it would be alone (the MoC
protocol): in padded batches of similar length when the model computes each video independently
(:func:`eval_batches`), else one video per forward pass; :func:`evaluate_run` evaluates a run
folder (one seed or several) and writes ``RUN/eval_<split>.csv`` (percentages).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._validation import InputError, check_choice, check_float, check_folder, check_int
from .config import RunConfig, observed_frames, ratio_key
from .data.synth import partner_only_cuts, partner_only_modality
from .data.torchdata import CachedFeatures, length_batches, observed_steps, pad_videos, video_inputs
from .distributed import all_reduce_list, shard
from .files import write_json, write_text
from .metrics import (DEFAULT_OVERLAPS, MoCAccumulator, decode_queries, grid_cells, segmentation_keys,
                      segmentation_scores)
from .runs import check_config_data, load_run, open_data, resolve_device, seed_dirs
from .stats import compare
from .utilization import (collapse_index, conditional_utilization, matched_donors, run_donor_seed,
                          shapley_values)


def moc_grid(model, ds, split, config: RunConfig, dev, *, obs=None, betas=None, ctx=None, notes=None,
             swap=None, shifts=None, only=None) -> dict:
    """MoC in percent for each (obs, beta): ``{(obs, beta): value}`` over ``split``'s videos.

    Each video is observed up to its cut point and its future queries decoded with
    :meth:`rankfusion.metrics.MoCAccumulator.add_queries` (the MoC protocol). A video is scored as
    it would be alone: when the model computes each video of a batch independently
    (:attr:`rankfusion.model.R3D.videos_independent`: no RTF, or RTF blending the channels chosen
    on the training rows) the cut points of a ratio go through the model in padded batches of
    similar length (:func:`eval_batches`; padding changes no valid output, so only the float
    summation order differs from one video per pass), else one video per forward pass. With
    ``ctx`` (a :class:`rankfusion.distributed.DistContext`) each process scores every
    ``world_size``-th of those batches and the T/F count tables are summed over processes:
    integer counts of the same batches, so the MoC is exactly the single-process one for the same
    weights. A video too short to observe one frame at a ratio (``int(obs * N) == 0``) has nothing
    to score there (the protocol's future window starts at an empty past): it is skipped at that
    ratio, with a line naming it appended to ``notes`` (a list) when given. A cell no video
    reaches is NaN.
    ``swap`` (``{modality: {video: donor video}}``) replaces that modality's input of each video
    by the donor's (:func:`modality_reliance`); labels and the other modalities stay the video's own.
    ``shifts`` (``{video: u}``, u in [0, 1)) reads the donors at a random time instead of the same
    relative times (:func:`rankfusion.data.torchdata.video_inputs`). ``only`` (a set of ``(video, obs)`` pairs) counts those
    cut points alone.
    """

    obs = config.train.eval_obs if obs is None else obs
    betas = config.train.eval_betas if betas is None else betas
    model.eval()
    cuts = list(observed_cuts(ds, ds.split(split), obs, notes, swap, only))
    acc = MoCAccumulator(model.config.n_classes, betas=tuple(betas), future_ratio=config.train.future_ratio)
    for batch in shard(eval_batches(model, cuts, config.train.sample_rate), ctx):
        inputs = [video_inputs(ds, video, config.model.modalities, past, config.train.sample_rate, dev,
                               donors=donors, shift=shifts[video] if shifts else None)
                  for _, _, video, past, donors in (cuts[i] for i in batch)]
        for i, (logits, durations) in zip(batch, _queries(model, inputs)):
            acc.add_queries(cuts[i][1], cuts[i][0], logits, durations)
    if ctx is not None:
        acc = _all_reduce_moc(acc, obs, dev)
    return grid_cells(acc, obs, betas)


def eval_batches(model, cuts, sample_rate: int) -> list:
    """How :func:`moc_grid` groups the cut points (``observed_cuts``' tuples) into forward passes:
    lists of indices into ``cuts``.

    One cut per pass unless ``model.videos_independent``; then :func:`length_batches` of the cuts'
    observed steps, one ratio at a time. A function of the cuts alone, so every process of a
    distributed evaluation forms the same batches.
    """
    if not getattr(model, "videos_independent", False):
        return [[i] for i in range(len(cuts))]
    steps = [observed_steps(cut[3], sample_rate) for cut in cuts]
    return length_batches(steps, [cut[0] for cut in cuts])


def observed_cuts(ds, videos, obs, notes=None, swap=None, only=None):
    """``(obs, labels, video, past, donors)`` of each video observed alone at each ratio, in
    :func:`moc_grid`'s order (ratio-major); a video with no observed frame at a ratio is skipped
    (a line in ``notes``), and so is every cut not in ``only`` (a set of ``(video, obs)``) when
    given. ``donors``: :func:`video_inputs`' modality swap of the video, or None."""
    for o in obs:
        for video in videos:
            if only is not None and (video, ratio_key(o)) not in only:
                continue
            gt = ds.labels(video)
            past = observed_frames(len(gt), o)
            if past == 0:
                if notes is not None:
                    notes.append(f"video {video!r} ({len(gt)} frames) has no observed frame at obs {o:g} "
                                 f"(int({o:g} * {len(gt)}) = 0): skipped at that cut point")
                continue
            donors = {m: per_video[video] for m, per_video in swap.items()} if swap else None
            yield o, gt, video, past, donors


def _queries(model, inputs) -> list:
    """The model's raw future queries for videos given as batches of one (:func:`video_inputs`),
    in one forward pass: per video ``(class_logits (Q, C + 1), durations (Q,))`` as NumPy arrays."""
    import torch

    feats, mask = inputs[0] if len(inputs) == 1 else pad_videos(inputs)
    with torch.no_grad():
        out = model(feats, mask)
    logits, durations = out.class_logits.cpu().numpy(), out.durations.cpu().numpy()
    return [(logits[j], durations[j]) for j in range(len(inputs))]


def predict_future(model, ds, video, config: RunConfig, dev, obs: float) -> tuple:
    """Per-frame predicted labels of one video's future window at a cut point (the MoC protocol).

    The video is observed up to ``past = int(obs * N)`` and its queries decoded into the next
    ``int(future_ratio * N)`` frames exactly as :func:`moc_grid` scores them (NONE = ``n_classes``).

    Parameters
    ----------
    model : R3D in eval mode
    ds : dataset with ``labels(video)`` and the model's modalities
    video : str
    config : RunConfig of the run
    dev : torch.device
    obs : float
        Observation ratio in (0, 1].

    Returns
    -------
    (gt, past, pred) : (int64 array (N,), int, int64 array (int(future_ratio * N),))
    """
    gt = np.asarray(ds.labels(video))
    obs = check_float(obs, "obs", low=0.0, high=1.0, low_open=True)
    past = observed_frames(len(gt), obs)  # as moc_grid cuts the input and scores the future
    if past == 0:
        raise InputError(f"video {video!r} ({len(gt)} frames) has no observed frame at obs {obs:g}")
    model.eval()
    [(logits, durations)] = _queries(model, [video_inputs(ds, video, config.model.modalities, past,
                                                          config.train.sample_rate, dev)])
    pred = decode_queries(logits, durations, int(config.train.future_ratio * len(gt)), model.config.n_classes)
    return gt, past, pred


def _all_reduce_moc(acc, obs, dev):
    """``acc``'s count tables and video counts summed over all processes (a process may hold no video)."""
    import torch
    import torch.distributed as dist

    shape = (len(acc.betas), acc.n_classes)
    tables, n_videos = [], []
    for o in obs:
        # a process may hold no video, or only videos too short for this ratio
        t, f = acc.counts(o) if ratio_key(o) in acc.obs_ratios else (np.zeros(shape, np.int64),) * 2
        tables.append(np.stack([t, f]))
        n_videos.append(acc.n_videos(o))
    counts = torch.from_numpy(np.stack(tables)).to(dev)
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    n_all = all_reduce_list(n_videos, dev)
    out = MoCAccumulator(acc.n_classes, betas=acc.betas, future_ratio=acc.future_ratio)
    for o, (t, f), n in zip(obs, counts.cpu().numpy(), n_all):
        if n:
            out.add_counts(o, t, f, int(n))
    return out


@dataclass(frozen=True)
class Reliance:
    """How much a trained model uses one modality (:func:`modality_reliance`).

    Attributes
    ----------
    modality : str
    moc : float
        Grid-mean MoC (%) with every input the video's own.
    moc_swapped : float
        Grid-mean MoC (%) with this modality's input taken from another video (mean over draws).
    drop : float
        ``moc - moc_swapped`` in MoC points: 0 for a modality the model ignores.
    grid : tuple of (obs, beta, drop)
        The drop per cell of the evaluation grid (mean over the donor draws).
    seed : int
        Seed of the donor draws.
    sd : float
        Standard deviation of the grid-mean drop over the donor draws (ddof 1; NaN for one draw).
    n_draws : int
        Number of donor draws averaged.
    mismatch : float
        Mean relative length mismatch ``|n_donor - n| / n`` of the donors (over videos and draws).
    matched : float
        Share of the donors within the length tolerance.
    read : str
        ``"aligned"`` (donor read at the same relative times) or ``"random"`` (at a random time).
    drops : tuple of float
        The grid-mean drop of each donor draw.
    """

    modality: str
    moc: float
    moc_swapped: float
    drop: float
    grid: tuple
    seed: int
    sd: float = float("nan")
    n_draws: int = 1
    mismatch: float = float("nan")
    matched: float = float("nan")
    read: str = "aligned"
    drops: tuple = ()


def grid_mean(grid: dict, *, empty: float = float("nan")) -> float:
    """The mean of a MoC grid's cells: NaN cells (no frame counted) are skipped; ``empty`` when none is left."""
    vals = [v for v in grid.values() if np.isfinite(v)]
    return float(np.mean(vals)) if vals else float(empty)


@dataclass(frozen=True)
class DonorDraws:
    """Donor assignments of one reliance measurement (:func:`donor_draws`).

    donors : list of dict, one per draw, ``{video: donor video}``.
    shifts : list of dict, one per draw, ``{video: u}`` with u uniform in [0, 1) (random-time reads).
    mismatch, matched : float
        Mean relative length mismatch, and share within ``tol``, over videos and draws.
    """

    donors: list
    shifts: list
    mismatch: float
    matched: float


def donor_draws(ds, split, *, seed: int = 0, draws: int = 3, tol: float = 0.1) -> DonorDraws:
    """Length-matched donors for every video of ``split``, ``draws`` times (:func:`rankfusion.utilization.matched_donors`).

    Draw ``d`` uses the seed sequence ``(seed, d)``; the random-time offsets come from the same
    generator. Needs at least 2 videos.
    """
    videos = list(ds.split(split))
    if len(videos) < 2:
        raise InputError(f"modality reliance needs at least 2 videos in split {split!r}, got {len(videos)}")
    draws = check_int(draws, "draws", low=1)
    seed = check_int(seed, "seed", low=0)
    lengths = [ds.n_frames(v) for v in videos]
    donors, shifts, gaps = [], [], []
    for d in range(draws):
        sub = int(np.random.SeedSequence([seed, d]).generate_state(1)[0])
        idx, gap = matched_donors(lengths, sub, tol=tol)
        u = np.random.default_rng([sub, 1]).random(len(videos))
        donors.append({v: videos[j] for v, j in zip(videos, idx)})
        shifts.append({v: float(x) for v, x in zip(videos, u)})
        gaps.append(gap)
    gaps = np.concatenate(gaps)
    return DonorDraws(donors, shifts, float(gaps.mean()), float(np.mean(gaps <= tol + 1e-12)))


def _swapped_grid(model, ds, split, config, dev, swapped, draws: DonorDraws, d: int, read: str, only):
    swap = {m: draws.donors[d] for m in swapped}
    return moc_grid(model, ds, split, config, dev, swap=swap, only=only,
                    shifts=draws.shifts[d] if read == "random" else None)


def modality_reliance(model, ds, split, config: RunConfig, dev, *, seed: int = 0, modalities=None,
                      clean: dict | None = None, draws: int = 3, read: str = "aligned", tol: float = 0.1,
                      only=None, donors: DonorDraws | None = None) -> list[Reliance]:
    """Modality reliance: the MoC drop when one modality's input comes from another video.

    For each modality m, every video of ``split`` is evaluated (the MoC protocol, as
    :func:`moc_grid`) with m's observed input replaced by m's input of a donor video of similar
    length (:func:`donor_draws`: within ``tol`` of its length, else the nearest), the labels and
    the other modalities being the video's own; ``drop = MoC(clean) - MoC(swapped)``, averaged
    over ``draws`` independent donor draws (their spread is :attr:`Reliance.sd`). A sample from
    another video keeps the input on the data distribution (right scale, spectrum and temporal
    structure), so the drop measures what the model takes from this video's m, not its reaction
    to an input it never saw (zeros would be off-distribution). A model that ignores m gets
    exactly the clean predictions, so its drop is exactly 0.

    ``read="aligned"`` reads the donor at the same relative times: what videos share at the same
    point of their progress (e.g. a common script of actions) stays in the input, so this
    measures the *video-specific* information the model takes from m. ``read="random"`` reads a
    window of the same span starting at a random time of the donor: information shared by time
    is removed too, so a single-modality model's reliance on its only input approaches its gain
    over an input-free baseline (docs/analysis.md).

    Parameters
    ----------
    model, ds, split, config, dev
        As for :func:`moc_grid`.
    seed : int
        Seed of the donor draws.
    modalities : sequence of str, optional
        Default: every modality of the model.
    clean : dict, optional
        The clean :func:`moc_grid` result (with the same ``only``) when already computed.
    draws : int
        Donor draws averaged (>= 1; 3 by default).
    read : {"aligned", "random"}
    tol : float
        Relative length tolerance of the donors.
    only : set of (video, obs), optional
        Count only these cut points (e.g. those only one modality can decide).
    donors : DonorDraws, optional
        Donors already drawn (then ``seed``, ``draws`` and ``tol`` are not used).

    Returns
    -------
    list of Reliance
        One per modality, in order.
    """
    check_choice(read, "read", {"aligned", "random"})
    draw = donor_draws(ds, split, seed=seed, draws=draws, tol=tol) if donors is None else donors
    mods = list(config.model.modalities if modalities is None else modalities)
    for m in mods:
        if m not in config.model.modalities:
            raise InputError(f"modalities must be among {list(config.model.modalities)}, got {m!r}")
    only = None if only is None else {(v, ratio_key(o)) for v, o in only}
    clean = moc_grid(model, ds, split, config, dev, only=only) if clean is None else clean
    out = []
    for m in mods:
        per_draw = [_swapped_grid(model, ds, split, config, dev, [m], draw, d, read, only)
                    for d in range(len(draw.donors))]
        swapped = {k: float(np.mean([g[k] for g in per_draw])) for k in clean}
        grid = tuple((o, b, clean[(o, b)] - swapped[(o, b)]) for (o, b) in clean)
        c, s_ = grid_mean(clean), grid_mean(swapped)
        drops = [c - grid_mean(g) for g in per_draw]
        sd = float(np.std(drops, ddof=1)) if len(drops) > 1 else float("nan")
        out.append(Reliance(m, c, s_, c - s_, grid, int(seed), sd, len(drops), draw.mismatch, draw.matched, read,
                            tuple(drops)))
    return out


def modality_shapley(model, ds, split, config: RunConfig, dev, *, seed: int = 0, draws: int = 3,
                     read: str = "aligned", tol: float = 0.1, clean: dict | None = None,
                     donors: DonorDraws | None = None) -> dict:
    """Exact Shapley contributions (grid-mean MoC points) of the model's modalities over swap subsets.

    The value of a subset S is the grid-mean MoC when the modalities in S are the video's own
    and all the others come from the same donor (:func:`donor_draws`, averaged over the draws);
    ``v(all)`` is the clean MoC. :func:`rankfusion.utilization.shapley_values` gives the shares,
    which add up to ``v(all) - v(empty)``. Cost: 2^M - 1 MoC grids per draw.

    Returns
    -------
    dict of str to float
    """
    check_choice(read, "read", {"aligned", "random"})
    draw = donor_draws(ds, split, seed=seed, draws=draws, tol=tol) if donors is None else donors
    mods = list(config.model.modalities)
    clean = moc_grid(model, ds, split, config, dev) if clean is None else clean
    value = {frozenset(mods): grid_mean(clean)}
    for k in range(len(mods)):
        for own in itertools.combinations(mods, k):
            swapped = [m for m in mods if m not in own]
            value[frozenset(own)] = float(np.mean([
                grid_mean(_swapped_grid(model, ds, split, config, dev, swapped, draw, d, read, None))
                for d in range(len(draw.donors))]))
    return shapley_values(value, mods)


def segmentation_grid(model, ds, split, config: RunConfig, dev, *, obs=None) -> dict:
    """Frame accuracy, edit and F1@{10,25,50} (percent) of the segmentation head, per observation ratio.

    For each ratio in ``obs`` (default ``eval_obs``) the head segments the observed part of every
    video, the inputs it is trained on (training never observes more than the largest training
    ratio, so whole videos would be out of distribution for the positional code and the
    attention span). Predictions are upsampled back to the ground truth's frame rate and pooled
    over videos as MS-TCN reports them (:func:`segmentation_scores`). A video with no observed
    frame at a ratio (``int(obs * frames) == 0``) is skipped there, as :func:`moc_grid` skips it;
    a ratio with no video left has NaN scores.

    Returns
    -------
    dict
        ``{obs: {"accuracy", "edit", "f1@10", "f1@25", "f1@50"}}``.
    """
    import torch

    model.eval()
    sr = config.train.sample_rate
    out = {}
    for o in (config.train.eval_obs if obs is None else obs):
        preds, gts = [], []
        for video in ds.split(split):
            gt = np.asarray(ds.labels(video))
            stop = observed_frames(len(gt), o)
            if stop == 0:
                continue
            feats, mask = video_inputs(ds, video, config.model.modalities, stop, sr, dev)
            with torch.no_grad():
                seg = model(feats, mask).seg_logits[0].argmax(-1).cpu().numpy()
            # each sampled step stands for the sample_rate frames that follow it
            preds.append(np.repeat(seg, sr)[:stop])
            gts.append(gt[:stop])
        out[float(o)] = _segmentation_metrics(gts, preds) if gts else dict.fromkeys(segmentation_keys(), float("nan"))
    return out


def _segmentation_metrics(gts, preds) -> dict:
    res = segmentation_scores(list(zip(gts, preds)), overlaps=DEFAULT_OVERLAPS)
    return {k: 100.0 * float(v) for k, v in res.items() if k != "n_videos"}


def _evaluate_single(run_dir: Path, split, data_root, dev, checkpoint, reliance: bool = True,
                     reliance_seed: int = 0, reliance_draws: int = 3, partner: dict | None = None) -> dict:

    model, config, info = load_run(run_dir, checkpoint=checkpoint, device=dev)
    ds = open_data(data_root or info["dataset"], config, info)
    check_config_data(config, ds, info.get("classes"))  # the model's channels and classes must be the dataset's
    notes = []
    grid = moc_grid(model, ds, split, config, dev, notes=notes)
    if grid and all(np.isnan(v) for v in grid.values()):
        # every cut point skipped (its reason in the notes): a table of NaN is no evaluation
        why = notes[0] if notes else "no cut point could be scored"
        raise InputError(f"nothing in split {split!r} of {str(data_root or info['dataset'])!r} can be scored: {why}"
                         + (f" ({len(notes) - 1} more like it)" if len(notes) > 1 else ""))
    rows = [("moc", "", o, b, v) for (o, b), v in grid.items()]
    rows += [(k, "", o, float("nan"), v) for o, scores in segmentation_grid(model, ds, split, config, dev).items()
             for k, v in scores.items()]
    if reliance and len(ds.split(split)) >= 2:
        # each training seed draws its own donors, so the donor variance is in the spread over seeds
        seed = run_donor_seed(reliance_seed, int(info["seed"]))
        kept = CachedFeatures(ds)  # reliance and Shapley read every video once per MoC grid
        rows += utilization_rows(model, kept, split, config, dev, seed=seed, clean=grid, draws=reliance_draws)
        if partner is not None:
            rows += collapse_rows(model, kept, split, config, dev, partner, seed=seed)
    elif reliance:
        notes.append(f"modality reliance skipped: split {split!r} has {len(ds.split(split))} video "
                     "(it swaps a modality's input between videos, so it needs at least 2)")
    return {"rows": rows, "info": info, "notes": notes}


def decidable_cuts(root, ds, split: str, config: RunConfig) -> set:
    """The evaluation cut points of ``split`` that only the partner can decide, as ``{(video, obs)}``.

    From the synthetic generator's record (:func:`rankfusion.data.synth.partner_only_cuts`), kept
    at the observation ratios the run is evaluated at (``config.train.eval_obs``, 6 decimals).
    """
    eval_obs = {ratio_key(x) for x in config.train.eval_obs}
    cuts = partner_only_cuts(root, ds.split(split))
    return {(v, ratio_key(o)) for v, obs in cuts.items() for o in obs if ratio_key(o) in eval_obs}


#: Donor draws averaged by a decidable gain (:func:`partner_reference`, :func:`collapse_rows` and the
#: collapse family). It counts a handful of cut points (6 in each of the demo's collapse test splits), where one
#: draw's drop varies by about 9 MoC points between draws (a donor shows the right direction or not),
#: so 3 draws would leave a donor sd of about 5 points per run; 30 bring it to about 1.6. They cost
#: little: only those cut points are evaluated (1.5 s per run for 3 draws or 30 on the 2-core
#: development machine, 2026-12-07, idle).
DECIDABLE_DRAWS = 30


def partner_reference(partner_run, fused_modalities, split, *, data_root=None, device=None, checkpoint="best",
                      seed: int = 0) -> dict:
    """What the partner alone attains on the cut points only it can decide (for :func:`collapse_rows`).

    ``partner_run`` is a run (one seed or several) of a single-modality model, the partner, on
    a synthetic dataset whose generator marks those cut points
    (:func:`rankfusion.data.synth.partner_only_cuts`). Its attainable gain is its time-aligned
    reliance on its only input restricted to them (:data:`DECIDABLE_DRAWS` donor draws from each
    seed's own stream), averaged over its seeds.

    Returns
    -------
    dict
        ``modality``, ``only`` (set of ``(video, obs)``), ``attainable`` (MoC points), ``n_cuts``.
    """
    dev = resolve_device(device)
    gains, only, mod = [], None, None
    for d in seed_dirs(Path(partner_run)):
        model, config, info = load_run(d, checkpoint=checkpoint, device=dev)
        mods = list(config.model.modalities)
        if len(mods) != 1 or mods[0] not in fused_modalities:
            raise InputError(f"partner run {str(d)!r} must be a single-modality run of one of {list(fused_modalities)}, "
                             f"got modalities {mods}")
        mod = mods[0]
        root = data_root or info["dataset"]
        want = partner_only_modality(root)
        if mod != want:
            raise InputError(f"partner run {str(d)!r} is a run of {mod!r}, but only {want!r} decides the partner-only "
                             f"cut points of {str(root)!r}: pass a run of {want!r} alone")
        ds = open_data(root, config, info)
        if only is None:
            only = decidable_cuts(root, ds, split, config)
            if not only:
                raise InputError(f"dataset {str(root)!r} has no partner-only cut point in split {split!r}")
        sub = run_donor_seed(seed, int(info["seed"]))
        gains.append(modality_reliance(model, ds, split, config, dev, seed=sub, draws=DECIDABLE_DRAWS,
                                       only=only)[0].drop)
    return {"modality": mod, "only": only, "attainable": float(np.mean(gains)), "n_cuts": len(only)}


def collapse_rows(model, ds, split, config, dev, partner: dict, *, seed: int) -> list:
    """Rows of the collapse index of a fused model against :func:`partner_reference`.

    ``decidable_gain``: the fused model's time-aligned reliance on the partner restricted to the
    partner-only cut points (MoC points; :data:`DECIDABLE_DRAWS` donor draws from ``seed``);
    ``decidable_attainable``: the partner alone's there;
    ``collapse_index``: ``100 * (1 - gain / attainable)`` (%; :func:`rankfusion.utilization.collapse_index`);
    ``decidable_cuts``: how many cut points they count.
    """
    m = partner["modality"]
    gain = modality_reliance(model, ds, split, config, dev, modalities=[m], seed=seed, draws=DECIDABLE_DRAWS,
                             only=partner["only"])[0].drop
    return [("decidable_gain", m, NAN, NAN, gain), ("decidable_attainable", m, NAN, NAN, partner["attainable"]),
            ("collapse_index", m, NAN, NAN, 100.0 * collapse_index(gain, partner["attainable"])),
            ("decidable_cuts", m, NAN, NAN, float(partner["n_cuts"]))]


NAN = float("nan")

#: Each seed's interval of its reliance over its donor draws: in that seed's table only.
DONOR_CI_METRICS = ("reliance_donor_ci_low", "reliance_donor_ci_high", "reliance_random_donor_ci_low",
                    "reliance_random_donor_ci_high")
#: Utilization rows of the evaluation CSV (``metric`` names; docs/analysis.md, "Modality utilization").
UTILIZATION_METRICS = ("reliance", "reliance_random", "reliance_donor_sd", "reliance_random_donor_sd",
                       *DONOR_CI_METRICS,
                       "cur", "cur_random", "shapley", "donor_mismatch", "donor_matched", "collapse_index",
                       "decidable_gain", "decidable_attainable", "decidable_cuts")


def utilization_rows(model, ds, split, config, dev, *, seed: int, clean: dict, draws: int = 3) -> list:
    """``(metric, modality, obs, beta, value)`` rows of each modality's utilization (percent / MoC points).

    Per cell: ``reliance`` (length-matched donors read at the same relative times) and
    ``reliance_random`` (read at a random time), each the mean over ``draws`` donor draws. Per
    modality (obs and beta NaN): ``reliance_donor_sd`` / ``reliance_random_donor_sd`` (the spread
    of the grid-mean drop over the draws) and ``*_donor_ci_low`` / ``*_donor_ci_high`` (its 95 %
    interval over the draws, :func:`rankfusion.stats.compare`, paired t), ``cur`` / ``cur_random`` (the conditional utilization
    rate in %, :func:`rankfusion.utilization.conditional_utilization`), and for three or more
    modalities ``shapley`` (exact Shapley contributions over swap subsets, MoC points). Per run:
    ``donor_mismatch`` (mean relative length difference of the donors, %) and ``donor_matched``
    (% of donors within 10 % of the video's length).
    """
    draw = donor_draws(ds, split, seed=seed, draws=draws)
    rows = []
    for read, name in (("aligned", "reliance"), ("random", "reliance_random")):
        for r in modality_reliance(model, ds, split, config, dev, seed=seed, clean=clean, read=read, donors=draw):
            rows += [(name, r.modality, o, b, d) for o, b, d in r.grid]
            rows.append((f"{name}_donor_sd", r.modality, NAN, NAN, r.sd))
            # the 95 % interval of the drop over the donor draws (paired t: the same clean grid)
            ci = compare(list(r.drops), [0.0] * len(r.drops), paired=True).ci
            rows += [(f"{name}_donor_ci_low", r.modality, NAN, NAN, ci[0]),
                     (f"{name}_donor_ci_high", r.modality, NAN, NAN, ci[1])]
            cur = conditional_utilization(r.moc, r.moc_swapped)
            rows.append(("cur" if read == "aligned" else "cur_random", r.modality, NAN, NAN, 100.0 * cur))
    if len(config.model.modalities) > 2:
        phi = modality_shapley(model, ds, split, config, dev, seed=seed, clean=clean, donors=draw)
        rows += [("shapley", m, NAN, NAN, v) for m, v in phi.items()]
    rows += [("donor_mismatch", "", NAN, NAN, 100.0 * draw.mismatch),
             ("donor_matched", "", NAN, NAN, 100.0 * draw.matched)]
    return rows


def _partner_notes(partner) -> list[str]:
    """Why the collapse index against ``partner`` (:func:`partner_reference`, or None) is NaN, if it is."""
    if partner is None or partner["attainable"] > 0:
        return []
    return [f"collapse index NaN: the partner run alone gains {partner['attainable']:+.2f} MoC points from "
            f"{partner['modality']} on its {partner['n_cuts']} partner-only cut points, so there is nothing "
            "attainable to compare the fused run's use with"]


def _partner_of(run_dir: Path, partner_run, split, data_root, dev, checkpoint, reliance_seed):
    """:func:`partner_reference` of ``partner_run`` for the run at ``run_dir``, refused (one line) when
    the two were trained on different datasets and no ``data_root`` says which one to use, or on
    different split sets (the partner-only cut points would be another split's videos)."""
    recorded = json.loads((seed_dirs(run_dir)[0] / "config.json").read_text())
    fused = RunConfig.from_dict(recorded["config"])
    check_folder(partner_run, "partner run")  # named as the partner, not as the run evaluated
    partner = json.loads((seed_dirs(Path(partner_run))[0] / "config.json").read_text())
    theirs = partner.get("dataset")
    if data_root is None and theirs != recorded.get("dataset"):
        raise InputError(f"partner run {str(partner_run)!r} was trained on {theirs!r}, not on the run's "
                         f"dataset {recorded.get('dataset')!r}; the collapse index compares them on one dataset")
    root = data_root or recorded.get("dataset")
    sets = [open_data(root, RunConfig.from_dict(c["config"]), c).split_set for c in (recorded, partner)]
    if sets[0] != sets[1]:
        raise InputError(f"partner run {str(partner_run)!r} was trained on split set {sets[1]!r}, the run on "
                         f"{sets[0]!r}; the collapse index compares them on one split's videos")
    return partner_reference(partner_run, fused.model.modalities, split, data_root=data_root, device=dev,
                             checkpoint=checkpoint, seed=reliance_seed)


def evaluate_run(run_dir, split: str = "test", *, device=None, data_root=None, checkpoint: str = "best",
                 reliance: bool = True, reliance_seed: int = 0, reliance_draws: int = 3, partner_run=None):
    """Evaluate a run (one seed or several) on ``split``; write ``RUN/eval_<split>.csv`` and the record
    of how it was made, ``RUN/eval_<split>.json``.

    Parameters
    ----------
    run_dir : str or Path
        A run folder made by :func:`rankfusion.train.train`.
    split : {"test", "val", "train"}
    device : str, optional
    data_root : str or Path, optional
        Dataset folder; default the one the run was trained on.
    checkpoint : {"best", "last"}
    reliance : bool, default True
        Also compute each modality's utilization (:func:`utilization_rows`: reliance with
        length-matched donors read at the same relative times and at a random time, the
        conditional utilization rate, Shapley contributions for three or more modalities;
        2 x ``reliance_draws`` extra MoC grids per modality, plus 2^M - 1 per draw for Shapley),
        skipped when the split has fewer than 2 videos.
    reliance_seed : int
        Seed of the donor draws; each training seed draws from ``(reliance_seed, its seed)``, so
        the spread over seeds includes the donors' variance.
    reliance_draws : int
        Donor draws averaged per run (>= 1; 3 by default) by the reliance rows; the collapse
        index's decidable gains average :data:`DECIDABLE_DRAWS`.
    partner_run : str or Path, optional
        A single-modality run of the partner on the same synthetic dataset: adds the collapse
        index rows (:func:`collapse_rows`, with ``reliance``).

    Returns
    -------
    pandas.DataFrame
        Columns ``metric`` ("moc", "accuracy", "edit", "f1@10", "f1@25", "f1@50", and the
        utilization metrics :data:`UTILIZATION_METRICS`), ``modality`` (the modality of a
        utilization row, else empty), ``obs``, ``beta`` (NaN for the segmentation metrics, which
        score the observed part at ``obs``, and for the per-modality utilization summaries),
        ``mean``, ``std`` (over seeds, ddof=1; NaN for one seed) and ``n_seeds``. All values are
        percentages or MoC points (reliance: MoC points lost when the modality's input comes from
        another video). ``attrs["notes"]`` lists the videos skipped at a cut point (:func:`moc_grid`).
    """
    import pandas as pd


    check_choice(split, "split", {"train", "val", "test"})
    dev = resolve_device(device)
    run_dir = Path(run_dir)
    partner = (_partner_of(run_dir, partner_run, split, data_root, dev, checkpoint, reliance_seed)
               if partner_run is not None and reliance else None)
    per_seed, notes = [], _partner_notes(partner)
    used = []
    for d in seed_dirs(run_dir):
        res = _evaluate_single(d, split, data_root, dev, checkpoint, reliance,
                               check_int(reliance_seed, "reliance_seed", low=0),
                               check_int(reliance_draws, "reliance_draws", low=1), partner)
        used.append({"seed": int(res["info"]["seed"]), "epoch": int(res["info"]["epoch"]),
                     "data": str(data_root or res["info"]["dataset"])})
        notes += [n for n in res["notes"] if n not in notes]
        df = pd.DataFrame(res["rows"], columns=["metric", "modality", "obs", "beta", "value"])
        df.insert(0, "seed", res["info"]["seed"])
        per_seed.append((d, df))
    out = _aggregate_seeds([df for _, df in per_seed])
    # the record of what made the tables: removed before they are replaced and written after them, so
    # that a record never stands beside tables of another evaluation (a failed write leaves no record);
    # nothing is written before every seed is evaluated, so a failed evaluation leaves the previous
    # tables and record as they were
    record_path = run_dir / f"eval_{split}.json"
    record_path.unlink(missing_ok=True)
    if len(per_seed) > 1:
        for d, df in per_seed:
            _write_csv(d / f"eval_{split}.csv", _aggregate(df))
    _write_csv(run_dir / f"eval_{split}.csv", out)
    write_json(record_path, {"split": split, "checkpoint": checkpoint, "reliance": bool(reliance),
                             "reliance_seed": int(reliance_seed), "reliance_draws": int(reliance_draws),
                             "partner_run": None if partner_run is None else str(partner_run), "seeds": used})
    out.attrs["notes"] = notes
    return out


def _aggregate_seeds(tables: list):
    """The run's table from its seeds' rows. A donor interval belongs to one seed's draws (each seed's
    own table keeps it): over several seeds a mean of bounds is no interval of anything."""
    import pandas as pd

    allv = pd.concat(tables, ignore_index=True)
    if len(tables) > 1:
        allv = allv[~allv["metric"].isin(DONOR_CI_METRICS)]
    return _aggregate(allv)


def _aggregate(df):
    g = df.groupby(["metric", "modality", "obs", "beta"], dropna=False, sort=False)["value"]
    out = g.agg(mean="mean", std=lambda v: v.std(ddof=1) if len(v) > 1 else float("nan"),
                n_seeds="count").reset_index()
    return out


def _write_csv(path, df):
    write_text(path, df.to_csv(index=False, float_format="%.4f"))


def format_eval_table(df) -> str:
    """Human-readable table of :func:`evaluate_run`'s result (mean +- std when several seeds)."""

    def num(v):  # rounded first, so that -1e-15 prints as 0.00, not -0.00
        return f"{round(float(v), 2) + 0.0:.2f}"

    def cell(r):
        return num(r["mean"]) if not (r["n_seeds"] > 1) else f"{num(r['mean'])} +- {num(r['std'])}"

    lines = []
    moc = df[df["metric"] == "moc"]
    betas = sorted(moc["beta"].unique())
    if len(moc):
        lines.append("MoC (%)      " + "".join(f"{'beta=' + format(b, 'g'):>18}" for b in betas))
        for o in sorted(moc["obs"].unique()):
            sub = moc[moc["obs"] == o].set_index("beta")
            lines.append(f"obs={o:<8g} " + "".join(f"{cell(sub.loc[b]):>18}" for b in betas))
    for metric, what in (("reliance", "the same relative times"), ("reliance_random", "a random time")):
        rel = df[df["metric"] == metric]
        if len(rel):
            lines.append(f"{metric}: MoC points lost when the modality's input comes from another video of similar "
                         f"length, read at {what}")
        for m in dict.fromkeys(rel["modality"]):
            for o in sorted(rel["obs"].unique()):
                sub = rel[(rel["modality"] == m) & (rel["obs"] == o)].set_index("beta")
                lines.append(f"{m[:8]:<8s} {o:<4g}" + "".join(f"{cell(sub.loc[b]):>18}" for b in betas
                                                              if b in sub.index))
    summary = df[df["metric"].isin(UTILIZATION_METRICS) & df["obs"].isna()]
    for metric in dict.fromkeys(summary["metric"]):
        rows = summary[summary["metric"] == metric]
        lines.append(f"{metric}: " + "  ".join(f"{r['modality'] or 'all'} {cell(r)}" for _, r in rows.iterrows()))
    seg = df[~df["metric"].isin(("moc",) + UTILIZATION_METRICS)]
    for o in sorted(seg["obs"].unique()):
        rows = seg[seg["obs"] == o]
        lines.append(f"segmentation (%) of the observed {o:g}: "
                     + "  ".join(f"{r['metric']} {cell(r)}" for _, r in rows.iterrows()))
    n = int(df["n_seeds"].max()) if len(df) else 0
    lines.append(f"({n} seed{'s' if n != 1 else ''})")
    return "\n".join(lines)
