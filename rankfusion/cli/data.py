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
@click.option("--noise-scale", default=1.0, show_default=True, type=float, help="Multiplies every noise level.")
@click.option("--complementarity", default=DEFAULT_COMPLEMENTARITY, show_default=True, type=float,
              help="0..1: share of the evaluation cut points (obs 0.2/0.3) at which the next actions are "
                   "decided by the trip direction, which only depth sees (0: depth adds nothing rgb lacks).")
@click.option("--nuisance", default=DEFAULT_NUISANCE, show_default=True, type=float,
              help=">= 0: energy of the per-video constants (appearance, scene geometry) relative to the "
                   "per-frame signal (0: none).")
@click.option("--imbalance", default=DEFAULT_IMBALANCE, show_default=True, type=float,
              help=">= 1: rgb's signal-to-noise amplitude over depth's (1: balanced; R lowers depth's SNR R^2-fold).")
@click.option("--collapse", default=None, type=float, metavar="K",
              help="0..1: the collapse dial (default off). rgb sees an 85%-right hint of each trip's direction "
                   "at every K; depth's code of it turns from linear (K = 0, as easy as the hint) to an XOR "
                   "(K = 1) while the hint gets stronger. The oracle is the same at every K.")
@click.option("--split", "fractions", default=",".join(f"{f:g}" for f in DEFAULT_SPLIT), show_default=True,
              help="Train,val,test shares of the videos.")
@click.option("--split-set", default="split1", show_default=True, help="Bundle names: train.<split-set>.bundle.")
@click.option("--force", is_flag=True, help="Replace OUT if it exists.")
def synth_cmd(out, seed, n_videos, min_frames, max_frames, channels, noise_scale, complementarity, nuisance,
              imbalance, collapse, fractions, split_set, force):
    """Write the synthetic multi-modal activity dataset to OUT (see docs/datasets.md)."""
    from ..data.synth import synthesize

    t0 = time.perf_counter()
    path = synthesize(out, seed=seed, n_videos=n_videos, min_frames=min_frames, max_frames=max_frames,
                      channels=_parse_channels(channels), noise_scale=noise_scale, split_set=split_set,
                      split_fractions=_parse_split(fractions),
                      complementarity=complementarity, nuisance=nuisance, imbalance=imbalance,
                      collapse=collapse, overwrite=force, progress=True)
    size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    truth = json.loads((path / "synth.json").read_text())
    share = truth["measured"]["decision_bearing_share"]
    oracle = truth["oracle"]
    pair = " ".join(f"{k} {100 * oracle[k]:.1f}%" for k in ("rgb", "rgb+depth") if k in oracle)
    only = truth["partner_only"]["share"]
    click.echo(f"wrote {path} ({n_videos} videos, {size / 2**20:.1f} MiB) in {time.perf_counter() - t0:.1f} s; "
               f"decision-bearing cut points {100 * share:.1f}%, partner-only {100 * only:.1f}%"
               + (f"; next-action oracle {pair}" if pair else ""))


@data.command("check")
@click.argument("root", metavar="DATA", type=click.Path())
@click.option("--modalities", default=None, help="Comma-separated modalities to check (default: all).")
@click.option("--trim", type=click.Choice(["error", "min"]), default="error", show_default=True,
              help="Frame-count mismatch between labels and modalities: fail, or cut every stream to the shortest.")
@click.option("--split-set", default=None, help="Which splits/<split>.<set>.bundle to use (default split1).")
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
    from ..data.importer import import_csv, parse_modality_spec

    mods = {}
    for spec in modalities:
        name, pats = parse_modality_spec(spec)
        if name in mods:
            raise InputError(f"--modality {name!r} given twice")
        mods[name] = pats
    fr = _parse_split(fractions)
    path = import_csv(list(files), out, modalities=mods, label_column=label_column, video_column=video_column,
                      window=window, chunk=chunk, split_fractions=fr, seed=seed, split_set=split_set,
                      overwrite=force)
    from ..data.layout import open_dataset

    report = open_dataset(path).validate()
    click.echo(report.format())
    click.echo(f"wrote {path}")
