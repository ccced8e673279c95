"""Noisy copies of a dataset: seeded Gaussian noise on one modality of one split (Figs. 6-7).

Noise robustness perturbs one modality of the *test split* only: :func:`noisy_dataset` writes a
copy of the dataset (other files symlinked) whose noisy modality carries seeded Gaussian noise of
standard deviation ``sigma * RMS`` (:func:`modality_rms`, the RMS of that modality's features over
the split), so a trained model, the feature export and the MoC evaluation all see the same
perturbed inputs.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path

import numpy as np

from .._validation import InputError, check_float, check_int
from ..files import atomic_dir, entry_lock
from .layout import open_dataset


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
