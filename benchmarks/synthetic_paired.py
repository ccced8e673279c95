"""Paired per-frame features from the bundled synthetic dataset, with the two controls.

Rows are frames (every ``--stride``-th frame of every video, until ``--rows`` rows), labels are
each frame's action; or, with ``--label next``, the last observed frame of every evaluation cut
point (obs 0.2 / 0.3) labelled with the action that follows it, the quantity the
``--complementarity`` dial acts on (at complementarity 1 the next action of every cut point
depends on the trip direction, which only depth sees). Modalities are the dataset's own (rgb,
depth, mvrgb, imu, text), plus:

* ``noise``: a spectrum-matched surrogate of ``depth`` (same column means and singular values,
  random rows: :func:`rankfusion.selection.spectral_surrogates`, seed 12345): pure noise that a
  spectrum cannot tell from depth;
* ``rgbcopy``: ``rgb`` times a random orthogonal matrix: redundant with the anchor by construction.

::

    python benchmarks/synthetic_paired.py synth.npz [--seed 0] [--rows 2000]
    python benchmarks/synthetic_paired.py next_c1.npz --label next --complementarity 1 --videos 1100
    rankfusion modality-select --paired synth.npz --anchor rgb --out sel_synth
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, non_negative_int, positive_int, run  # noqa: E402
from rankfusion.data import open_dataset  # noqa: E402
from rankfusion.data.synth import CUT_OBS, cut_records, synthesize  # noqa: E402
from rankfusion.files import save_npz  # noqa: E402
from rankfusion.selection import spectral_surrogates  # noqa: E402


def paired_frames(root, rows: int, stride: int) -> tuple[dict, np.ndarray]:
    ds = open_dataset(root)
    feats = {m: [] for m in ds.modalities}
    labels, n = [], 0
    for video in ds.split("train") + ds.split("val") + ds.split("test"):
        lab = ds.labels(video)[::stride]
        for m in ds.modalities:
            feats[m].append(np.asarray(ds.features(video, m))[::stride])
        labels.append(lab)
        n += len(lab)
        if n >= rows:
            break
    out = {m: np.concatenate(v)[:rows] for m, v in feats.items()}
    return out, np.concatenate(labels)[:rows]


def cut_frames(root, rows: int) -> tuple[dict, np.ndarray]:
    """The last observed frame of every cut point with a next action, labelled with that action."""
    ds = open_dataset(root)
    feats = {m: [] for m in ds.modalities}
    labels = []
    for video in ds.split("train") + ds.split("val") + ds.split("test"):
        with np.load(Path(root) / "factors" / f"{video}.npz") as f:
            cuts = cut_records(f["action"], f["direction"], CUT_OBS)
        cuts = cuts[cuts["next"] >= 0]
        for m in ds.modalities:
            feats[m].append(np.asarray(ds.features(video, m))[cuts["cut"] - 1])
        labels.append(cuts["next"])
        if sum(map(len, labels)) >= rows:
            break
    out = {m: np.concatenate(v)[:rows] for m, v in feats.items()}
    return out, np.concatenate(labels)[:rows]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path)
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the synthetic dataset")
    p.add_argument("--rows", type=positive_int, default=2000)
    p.add_argument("--stride", type=positive_int, default=10,
                   help="keep every STRIDE-th frame (neighbours are near-copies)")
    p.add_argument("--label", choices=("action", "next"), default="action",
                   help="each frame's action, or the next action at the cut points")
    p.add_argument("--complementarity", type=float, default=None, help="the generator's dial (default its default)")
    p.add_argument("--videos", type=positive_int, default=40)
    p.add_argument("--split", type=listed(float), default=None,
                   help="train,val,test shares (default the generator's); rows are taken from the train, val and "
                        "test videos in that order")
    a = p.parse_args(argv)
    dial = {} if a.complementarity is None else {"complementarity": a.complementarity}
    if a.split:
        dial["split_fractions"] = tuple(a.split)
    with tempfile.TemporaryDirectory() as tmp:
        root = synthesize(Path(tmp) / "synth", seed=a.seed, n_videos=a.videos, **dial)
        mods, labels = (paired_frames(root, a.rows, a.stride) if a.label == "action" else cut_frames(root, a.rows))
    rng = np.random.default_rng(a.seed)
    mods["noise"] = spectral_surrogates(mods["depth"], 1, seed=12345)[0]
    q, _ = np.linalg.qr(rng.standard_normal((mods["rgb"].shape[1],) * 2))
    mods["rgbcopy"] = mods["rgb"] @ q
    save_npz(a.out, {**mods, "labels": labels})
    print(f"wrote {a.out}: " + ", ".join(f"{m} {x.shape[1]}" for m, x in mods.items())
          + f"; {len(labels)} rows, {len(np.unique(labels))} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
