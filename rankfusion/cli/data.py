"""``rankfusion data ...``: create, check and import datasets in the standard layout."""

from __future__ import annotations

import json
import time

import click

from .._validation import InputError
from ..data.synth import (
    DEFAULT_COMPLEMENTARITY, DEFAULT_IMBALANCE, DEFAULT_MAX_FRAMES, DEFAULT_MIN_FRAMES, DEFAULT_NUISANCE, DEFAULT_SPLIT,
    DEFAULT_VIDEOS,
)
from . import main


def _parse_channels(values):
    """``("64",)`` -> 64 for all; ``("rgb=64", "depth=32")`` -> dict (only those modalities)."""
    if not values:
        return None
    if len(values) == 1 and "=" not in values[0]:
        try:
            return int(values[0])
        except ValueError:
            raise InputError(f"--channels must be an integer or MODALITY=INT, got {values[0]!r}") from None
    out = {}
    for v in values:
        name, sep, num = v.partition("=")
        if not sep or not name:
            raise InputError(f"--channels must be MODALITY=INT when several are given, got {v!r}")
        if name in out:
            raise InputError(f"--channels {name} given twice ({name}={out[name]} and {v})")
        try:
            out[name] = int(num)
        except ValueError:
            raise InputError(f"--channels {name}: expected an integer, got {num!r}") from None
    return out


@main.group()
def data():
    """Create, check and import datasets (mapping.txt, groundTruth/, features/<modality>/, splits/)."""


def _parse_split(fractions: str) -> tuple:
    try:
        return tuple(float(x) for x in fractions.split(","))
    except ValueError:
        raise InputError(f"--split must be three comma-separated numbers, got {fractions!r}") from None


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the whole dataset.")
@click.option("--videos", "n_videos", default=DEFAULT_VIDEOS, show_default=True, type=int, help="Number of videos.")
@click.option("--min-frames", default=DEFAULT_MIN_FRAMES, show_default=True, type=int, help="Shortest video length.")
@click.option("--max-frames", default=DEFAULT_MAX_FRAMES, show_default=True, type=int, help="Longest video length.")
@click.option("--channels", multiple=True, metavar="INT|MODALITY=INT",
              help="Channels for all modalities, or per modality (repeat; only the named ones are written). "
                   "Default rgb=64 depth=64 mvrgb=64 noise=64 imu=16 text=32 (noise needs depth's).")
@click.option("--noise-scale", default=1.0, show_default=True, type=float, help="In [0, 1e6]: multiplies every noise level.")
@click.option("--complementarity", default=DEFAULT_COMPLEMENTARITY, show_default=True, type=float,
              help="0..1: share of the evaluation cut points (obs 0.2/0.3) at which the next actions are "
                   "decided by the trip direction, which only depth sees (0: depth adds nothing rgb lacks).")
@click.option("--nuisance", default=DEFAULT_NUISANCE, show_default=True, type=float,
              help="In [0, 100]: energy of the per-video constants (appearance, scene geometry) relative to the "
                   "per-frame signal (0: none).")
@click.option("--imbalance", default=DEFAULT_IMBALANCE, show_default=True, type=float,
              help="In [1, 100]: rgb's signal-to-noise amplitude over depth's (1: balanced; R lowers depth's SNR R^2-fold). "
                   "Set on the signal without --collapse's hint or --spurious's cue, which add to rgb's: synth.json "
                   "records the measured value.")
@click.option("--collapse", default=None, type=float, metavar="K",
              help="0..1: the collapse dial (default off). rgb sees a 90%-right hint of each trip's direction "
                   "at every K; depth's code of it turns from linear (K = 0, as easy as the hint) to an XOR "
                   "(K = 1) while the hint gets stronger. The oracle is the same at every K.")
@click.option("--spurious", default=None, type=float, metavar="S",
              help="0..1: the spurious cue (default off). rgb sees a cue of each trip's direction, right with "
                   "probability (1 + S) / 2 in the training videos and 1/2 in val and test (no information); "
                   "depth keeps its code. Combines with --collapse. The oracle (held-out) is the same at every S.")
@click.option("--split", "fractions", default=",".join(f"{f:g}" for f in DEFAULT_SPLIT), show_default=True,
              help="Train,val,test shares of the videos.")
@click.option("--split-set", default="split1", show_default=True, help="Bundle names: train.<split-set>.bundle.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def synth_cmd(out, seed, n_videos, min_frames, max_frames, channels, noise_scale, complementarity, nuisance,
              imbalance, collapse, spurious, fractions, split_set, force):
    """Write the synthetic multi-modal activity dataset to OUT (see docs/datasets.md)."""
    from ..data.synth import synthesize

    t0 = time.perf_counter()
    path = synthesize(out, seed=seed, n_videos=n_videos, min_frames=min_frames, max_frames=max_frames,
                      channels=_parse_channels(channels), noise_scale=noise_scale, split_set=split_set,
                      split_fractions=_parse_split(fractions),
                      complementarity=complementarity, nuisance=nuisance, imbalance=imbalance,
                      collapse=collapse, spurious=spurious, overwrite=force, progress=True)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    truth = json.loads((path / "synth.json").read_text())
    share = truth["measured"]["decision_bearing_share"]
    oracle = truth["oracle"]
    pair = " ".join(f"{k} {100 * oracle[k]:.1f}%" for k in ("rgb", "rgb+depth") if k in oracle)
    only = truth["partner_only"]["share"]
    cue = truth.get("spurious")
    cue = (f"; cue right {100 * cue['cue_accuracy_train']:.1f}% of train trips, "
           f"{100 * cue['cue_accuracy_eval']:.1f}% of val/test trips" if cue else "")
    click.echo(f"wrote {path} ({n_videos} videos, {size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s; "
               f"decision-bearing cut points {100 * share:.1f}%, partner-only {100 * only:.1f}%"
               + (f"; next-action oracle {pair}" if pair else "") + cue)


@data.command("check")
@click.argument("root", metavar="DATA", type=click.Path())
@click.option("--modalities", default=None, help="Comma-separated modalities to check (default: all).")
@click.option("--trim", type=click.Choice(["error", "min"]), default="error", show_default=True,
              help="Frame-count mismatch between labels and modalities: fail, or cut every stream to the shortest.")
@click.option("--split-set", default=None,
              help="Which splits/<split>.<set>.bundle to use (default split1 if present, else the first in "
                   "alphabetical order).")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def check_cmd(root, modalities, trim, split_set, as_json):
    """Run every check on dataset DATA and print a summary; exit 2 naming the first problem."""
    from ..data.layout import open_dataset

    ds = open_dataset(root, modalities=modalities, trim=trim, split_set=split_set)
    report = ds.validate(progress=True)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2))
    else:
        click.echo(report.format())
        click.echo("OK")


@data.command("import-csv")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Dataset folder to write.")
@click.option("--label-column", required=True, help="Column with the action name of each row.")
@click.option("--modality", "modalities", multiple=True, required=True, metavar="NAME=PATTERN[,PATTERN]",
              help="Columns of a modality by glob pattern, e.g. acc='acc_*' (repeat per modality).")
@click.option("--video-column", default=None, help="Column that splits a file into several recordings.")
@click.option("--window", default=1, show_default=True, type=int,
              help="Average non-overlapping windows of this many rows (majority label).")
@click.option("--chunk", default=None, type=int, help="Cut recordings into videos of this many rows.")
@click.option("--split", "fractions", default="0.7,0.15,0.15", show_default=True,
              help="Train,val,test shares of the videos.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the split assignment.")
@click.option("--split-set", default="split1", show_default=True, help="Bundle names: train.<split-set>.bundle.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def import_csv_cmd(files, out, label_column, modalities, video_column, window, chunk, fractions, seed, split_set,
                   force):
    """Import CSV tables (one row per time step; Parquet needs pyarrow) into the standard layout."""
    from ..data.importer import import_csv, parse_modality_specs

    mods = parse_modality_specs(modalities)
    fr = _parse_split(fractions)
    path = import_csv(list(files), out, modalities=mods, label_column=label_column, video_column=video_column,
                      window=window, chunk=chunk, split_fractions=fr, seed=seed, split_set=split_set,
                      overwrite=force)
    from ..data.layout import open_dataset

    report = open_dataset(path).validate()
    click.echo(report.format())
    click.echo(f"wrote {path}")


def _parse_renames(values) -> dict:
    out = {}
    for v in values:
        old, sep, new = v.partition("=")
        if not sep or not old.strip() or not new.strip():
            raise InputError(f"--rename must be OLD=NEW, got {v!r}")
        old, new = old.strip(), new.strip()
        if old in out:  # the later one would silently win
            raise InputError(f"--rename {old} given twice ({old}={out[old]} and {old}={new})")
        out[old] = new
    return out


@data.command("import-r3d")
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--mapping", default=None, help="Mapping file name in SRC when there are several mapping*.txt.")
@click.option("--rename", multiple=True, metavar="OLD=NEW",
              help="Rename a modality (features -> rgb, features_depth -> depth by default); repeatable.")
@click.option("--feature-axis", type=click.Choice(["auto", "frames-first", "channels-first"]), default="auto",
              show_default=True, help="Orientation of the source arrays (auto: the axis matching the label count).")
@click.option("--split-set", default="split1", show_default=True, help="Bundle names: train.<split-set>.bundle.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def import_r3d_cmd(src, out, mapping, rename, feature_axis, split_set, force):
    """Import the official R3D code's folder SRC (mapping, splits, groundTruth, features*) into OUT."""
    from ..data.layout import open_dataset
    from ..data.r3d_folder import import_r3d

    path = import_r3d(src, out, mapping=mapping, rename=_parse_renames(rename), feature_axis=feature_axis,
                      split_set=split_set, overwrite=force)
    click.echo(open_dataset(path).validate().format())
    click.echo(f"wrote {path}")


@data.command("import-ntu-skeleton")
@click.argument("src", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--protocol", type=click.Choice(["xsub", "xview", "xset"]), default="xsub", show_default=True,
              help="Train/test split: cross-subject, cross-view (camera 1 test) or cross-setup (NTU 120).")
@click.option("--val-fraction", default=0.1, show_default=True, type=float,
              help="Share of the training subjects held out as val.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the held-out subjects.")
@click.option("--skip-empty", is_flag=True, help="Leave out files without any body instead of refusing them.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def import_ntu_skeleton_cmd(src, out, protocol, val_fraction, seed, skip_empty, force):
    """Import a folder SRC of NTU RGB+D .skeleton files into OUT (modality 'skeleton', 75 channels)."""
    from ..data.layout import open_dataset
    from ..data.skeleton import import_ntu_skeleton

    path = import_ntu_skeleton(src, out, protocol=protocol, val_fraction=val_fraction, seed=seed,
                               skip_empty=skip_empty, overwrite=force)
    click.echo(open_dataset(path).validate().format())
    click.echo(f"wrote {path}")


@data.command("import-utkinect-joints")
@click.argument("src", type=click.Path())
@click.argument("labels", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--val-fraction", default=0.2, show_default=True, type=float,
              help="Share of the training subjects held out as val.")
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the held-out subjects.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def import_utkinect_joints_cmd(src, labels, out, val_fraction, seed, force):
    """Import UTKinect-Action3D joint files (SRC/joints_sXX_eYY.txt) and LABELS (actionLabel.txt) into OUT."""
    from ..data.layout import open_dataset
    from ..data.skeleton import import_utkinect_joints

    path = import_utkinect_joints(src, labels, out, val_fraction=val_fraction, seed=seed, overwrite=force)
    click.echo(open_dataset(path).validate().format())
    click.echo(f"wrote {path}")


@data.command("featurize")
@click.argument("frames", type=click.Path())
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--modality", required=True, help="Modality name of the features (e.g. rgb, depth).")
@click.option("--backbone", default="resnet50", show_default=True,
              help="torchvision model name (needs the 'vision' extra) or a torch.export program file (.pt2).")
@click.option("--weights", default=None, type=click.Path(), help="State dict of the torchvision backbone (a file).")
@click.option("--random-weights", is_flag=True, help="Randomly initialised backbone (timing and tests only).")
@click.option("--stride", default=1, show_default=True, type=int, help="Keep every STRIDE-th frame.")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Frames per forward pass.")
@click.option("--size", default=224, show_default=True, type=int, help="Input side in pixels (whole frame resized).")
@click.option("--depth-max", default="8000", show_default=True,
              help="Depth frames are divided by this (millimetres) and clipped to [0, 1]; 'minmax': each "
                   "frame scaled by its own minimum and maximum (the official R3D preprocessing).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def featurize_cmd(frames, out, modality, backbone, weights, random_weights, stride, batch_size, size, depth_max,
                  device, quiet):
    """Per-frame features of FRAMES/<video>/ frame folders into OUT/features/<modality>/ (resumable)."""
    from ..data.featurize import featurize

    if depth_max == "minmax":
        depth_max = None
    else:
        try:
            depth_max = float(depth_max)
        except ValueError:
            raise InputError(f"--depth-max must be a positive number or 'minmax', got {depth_max!r}") from None
    done = featurize(frames, out, modality, backbone=backbone, weights=weights, random_weights=random_weights,
                     stride=stride, batch_size=batch_size, size=size, depth_max=depth_max, device=device,
                     progress=not quiet)
    click.echo(f"wrote {len(done['written'])} videos ({done['frames']} frames"
               + (f", {done['channels']} channels" if done["channels"] else "")
               + f") to {out}/features/{modality}; skipped {len(done['skipped'])} already written")
