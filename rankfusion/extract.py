"""Export the token fuser's per-modality features of a trained run (docs/formats.md).

For every video of a split, the first ``int(obs_ratio * N)`` frames (at least one; subsampled with the run's
``sample_rate``) go through the model as in evaluation, each video giving the rows it gives alone;
the inputs and outputs of the Rank-enhancing Token Fuser (Sec. 4.2's analysis point) are stacked
over all valid steps into ``<modality>.before`` / ``<modality>.after`` arrays of shape (n_steps, D).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ._progress import bar_disabled
from ._validation import InputError, check_float, check_int, option_name
from .config import observed_frames
from .files import save_npz
from .data.torchdata import length_batches, observed_steps, pad_videos, video_inputs
from .runs import check_config_data, load_run, open_data, recorded_seeds, resolve_device, seed_dirs


def parse_noise(spec) -> dict:
    """``"depth=0.1"`` / ``["rgb=0.3", ...]`` / ``{"depth": 0.1}`` -> ``{modality: sigma}``."""
    if spec is None:
        return {}
    if isinstance(spec, str):
        spec = [spec]
    out = {}
    items = spec.items() if isinstance(spec, dict) else None
    if items is None:
        items = []
        for s in spec:
            if not isinstance(s, str) or s.count("=") != 1:
                raise InputError(f"{option_name('noise', '--noise')} must look like MODALITY=SIGMA, got {s!r}")
            m, v = s.split("=")
            try:
                items.append((m.strip(), float(v)))
            except ValueError:
                raise InputError(f"{option_name('noise', '--noise')} sigma must be a number, got {s!r}") from None
    for m, v in items:
        if m in out:
            raise InputError(f"{option_name('noise', '--noise')} names modality {m!r} twice")
        out[m] = check_float(v, f"{option_name('noise', '--noise')} sigma of {m!r}", low=0.0)
    return out


def extract_features(run_dir, split: str, obs_ratio: float, out_path, *, noise=None, noise_seed: int = 0,
                     device=None, checkpoint: str = "best", run_seed: int | None = None,
                     data_root=None, progress: bool = False, overwrite: bool = False) -> Path:
    """Write the pre-/post-fusion token features of ``split`` at ``obs_ratio`` to ``out_path``.

    Parameters
    ----------
    run_dir : str or Path
        A run made by :func:`rankfusion.train.train`. For a several-seed run, ``run_seed`` picks
        the sub-run (default: its first seed).
    split : {"train", "val", "test"}
    obs_ratio : float
        Observed fraction of each video, in (0, 1].
    out_path : str or Path
        ``.npz`` file to write (atomically).
    noise : dict or str or list of str, optional
        Gaussian noise added to one or more modalities' *input* features (before Eq. 2), as
        ``{"depth": 0.1}`` or ``"depth=0.1"``: i.i.d. N(0, sigma^2) per entry, in the units of the
        stored features.
    noise_seed : int
        Seed of the noise generator (the same seed gives the same noise).
    device : str, optional
    checkpoint : {"best", "last"}
    run_seed : int, optional
        Which seed of a several-seed run.
    data_root : str or Path, optional
        Dataset folder; default the one the run was trained on.
    progress : bool
        Show a progress bar over videos.
    overwrite : bool
        Replace ``out_path`` if it exists (else refused before any work; ``extract --force``).

    Returns
    -------
    pathlib.Path
        ``out_path``.
    """
    if split not in ("train", "val", "test"):
        raise InputError(f"split must be one of ['test', 'train', 'val'], got {split!r}")
    obs_ratio = check_float(obs_ratio, option_name("obs_ratio", "--obs"), low=0.0, high=1.0, low_open=True)
    noise_seed = check_int(noise_seed, option_name("noise_seed", "--noise-seed"), low=0)
    noise = parse_noise(noise)
    if Path(out_path).suffix.lower() != ".npz":
        raise InputError(f"output file {str(out_path)!r} must end in .npz (a feature file is an .npz archive)")
    if Path(out_path).exists() and not overwrite:
        raise InputError(f"output file {str(out_path)!r} exists; pass {option_name('overwrite=True', '--force')} "
                         "to replace it")
    sub = _pick_seed_dir(run_dir, run_seed)
    dev = resolve_device(device)
    model, config, info = load_run(sub, checkpoint=checkpoint, device=dev)
    if run_seed is not None and info["seed"] != run_seed:
        raise InputError(f"{option_name('run_seed', '--seed')} {run_seed} does not match run {str(sub)!r} (seed {info['seed']})")
    mods = list(config.model.modalities)
    for m in noise:
        if m not in mods:
            raise InputError(f"noise modality {m!r} is not one of the run's modalities {mods}")
    ds = open_data(data_root or info["dataset"], config, info)
    check_config_data(config, ds, info.get("classes"))  # the model's channels and classes must be the dataset's
    videos = ds.split(split)
    arrays, rows, blended = _fuser_features(model, ds, videos, split, obs_ratio, mods, config.train.sample_rate, dev,
                                   noise, np.random.default_rng(noise_seed), progress)
    meta = {
        "run": str(Path(sub).resolve()), "split": split, "split_set": ds.split_set, "obs_ratio": obs_ratio,
        "config_hash": info["config_hash"], "modalities": mods, "rtf": config.model.rtf,
        "seed": info["seed"], "dataset": str(Path(data_root or info["dataset"]).resolve()),
        "checkpoint": checkpoint, "epoch": info["epoch"], "d_model": config.model.d_model,
        "selection": config.model.selection, "exchange": config.model.exchange,
        "exchange_ratio": config.model.exchange_ratio, "sample_rate": config.train.sample_rate,
        "noise": noise, "noise_seed": noise_seed, "videos": videos, "rows_per_video": rows,
        "blended_channels": blended,
        "format": "rankfusion.features/1",
    }
    out_path = Path(out_path)
    save_npz(out_path, arrays, meta)
    return out_path


def _pick_seed_dir(run_dir, run_seed) -> Path:
    """The sub-run of ``run_dir`` for ``run_seed`` (default: the first seed's)."""
    dirs = seed_dirs(run_dir)
    if run_seed is None:
        return dirs[0]
    matches = [d for d in dirs if d.name == f"seed-{run_seed}" or len(dirs) == 1]
    if not matches:
        raise InputError(f"{option_name('run_seed', '--seed')} {run_seed} is not one of the seeds in {str(run_dir)!r}: "
                         f"{recorded_seeds(run_dir)}")
    return matches[0]


def _fuser_features(model, ds, videos, split, obs_ratio, mods, sample_rate, dev, noise, rng, progress):
    """Run ``videos`` (of ``split``) through ``model`` and stack the token fuser's features.

    Each video's rows are those it gives alone: in padded batches of similar length
    (:func:`rankfusion.data.torchdata.length_batches`) when the model computes each video as it
    would alone (:attr:`rankfusion.model.R3D.videos_independent`) and no noise is drawn, else one
    video per pass (noise is drawn video by video, in order, so the same seed gives the same noise).

    Returns ``({"<modality>.before"/".after": float32 array of shape (n_steps, D)}, rows, blended)``
    where ``rows[i]`` is the number of valid steps video ``i`` contributed, videos in the given
    order, and ``blended`` ``{modality: [channel, ...]}`` the channels RTF blended (Eq. 3) for the
    modalities where every forward pass blended the same ones (the choice recorded on the training
    rows, or BN-gamma's); a modality whose channels changed from pass to pass (the batch or the
    video decided) or that nothing blended is absent.
    """
    import torch
    from tqdm.auto import tqdm

    # at least one observed frame, so that every video of the list gives rows (evaluation instead
    # skips a video with no observed frame at a ratio; docs/formats.md)
    past = [max(1, observed_frames(ds.n_frames(v), obs_ratio)) for v in videos]
    if model.videos_independent and not noise:
        groups = length_batches([observed_steps(p, sample_rate) for p in past])
    else:
        groups = [[i] for i in range(len(videos))]
    keys = [f"{m}.{s}" for m in mods for s in ("before", "after")]
    per_video = [None] * len(videos)
    chosen = {m: set() for m in mods}  # each modality's blended channel sets, one per pass
    with tqdm(total=len(videos), desc=f"extract {split}", unit="video", disable=bar_disabled(progress),
              leave=False) as bar:
        for group in groups:
            inputs = [video_inputs(ds, videos[i], mods, past[i], sample_rate, dev, noise, rng) for i in group]
            feats, mask = pad_videos(inputs) if len(group) > 1 else inputs[0]
            with torch.no_grad():
                out = model(feats, mask, return_features=True)
            for m in mods:
                low = out.features[m]["low"]
                chosen[m].add(None if low is None or low.dim() != 1 or low.numel() == 0 else tuple(int(c) for c in low))
            for j, (i, (_, alone)) in enumerate(zip(group, inputs)):
                t = int(alone.sum())  # the video's own steps
                per_video[i] = {f"{m}.{s}": out.features[m][s][j, :t].float().cpu().numpy()
                                for m in mods for s in ("before", "after")}
            bar.update(len(group))
    arrays = {k: np.concatenate([v[k] for v in per_video], axis=0).astype(np.float32, copy=False) for k in keys}
    blended = {m: list(next(iter(sets))) for m, sets in chosen.items() if len(sets) == 1 and None not in sets}
    return arrays, [len(v[keys[0]]) for v in per_video], blended
