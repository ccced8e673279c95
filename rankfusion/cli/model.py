"""``rankfusion train``, ``rankfusion evaluate`` and ``rankfusion extract`` (the R3D model)."""

from __future__ import annotations

import re
import time
from pathlib import Path

import click

from .._validation import InputError
from . import main


def _split_list(value, name):
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if not items:
        raise InputError(f"{name} must be a comma-separated list, got {value!r}")
    return items


_TRAIN_KEYS = ("epochs", "batch_size", "lr", "sample_rate", "unimodal_heads", "ogm", "modality_dropout", "split_set")


def _overrides(**given):
    """``(model, train)`` override tables from the options given on the command line (None: not given)."""
    set_ = {k: v for k, v in given.items() if v is not None}
    return ({k: v for k, v in set_.items() if k not in _TRAIN_KEYS},
            {k: v for k, v in set_.items() if k in _TRAIN_KEYS})


#: fields whose option is not ``--`` and the field's name with dashes
_OPTION_OF = {"n_layers": "--layers", "rtf": "--no-rtf", "temporal_fuser": "--no-temporal-fuser"}


def _naming_options(exc: InputError, given: dict) -> InputError:
    """A configuration error that names a field set by an option, naming the option instead
    (``n_layers must be at least 0`` -> ``--layers must be at least 0``); others unchanged (a
    value from the config file is named by its file and key)."""
    text = re.sub(r"^overrides \[(model|train)\]: ", "", str(exc))  # load_config's name for the options
    for field in sorted(given, key=len, reverse=True):
        if given[field] is None or not text.startswith(field):
            continue
        option, rest = _OPTION_OF.get(field, "--" + field.replace("_", "-")), text[len(field):]
        if rest.startswith(" "):
            return InputError(option + rest)
        if rest.startswith("["):  # an entry of a table: modality_dropout['rgb'] must be ...
            key, _, rest = rest[1:].partition("]")
            return InputError(f"{option} for {key}{rest}")
    return exc


def _dropout_option(value):
    """``--modality-dropout``: ``P`` (every modality) or ``MOD=P,MOD=P``; None when not given."""
    if value is None:
        return None
    text = value.strip()
    try:
        if "=" not in text:
            return float(text)
        out = {}
        for item in _split_list(text, "--modality-dropout"):
            name, _, p = item.partition("=")
            if not name.strip() or name.strip() in out:
                raise ValueError
            out[name.strip()] = float(p)
        return out
    except ValueError:
        raise InputError(f"--modality-dropout must be P or MOD=P,MOD=P with distinct modalities, got {value!r}") from None


def _modalities_source(data, config_path, preset, model: dict, split_set=None) -> str:
    """Where the run's modalities come from; fills ``model["modalities"]`` with the dataset's own
    (read with ``split_set``, --split-set) when neither --modalities nor the config file / preset
    names any."""
    from ..config import named_modalities
    from ..data import open_dataset

    if "modalities" in model:
        return "from --modalities"
    if config_path is not None and named_modalities(config_path) is not None:
        return "from --config"
    if named_modalities(preset=preset) is not None:
        return "from --preset"
    model["modalities"] = list(open_dataset(data, split_set=split_set).available_modalities)
    return "all of the dataset's; choose with --modalities"


@main.command()
@click.argument("data", type=click.Path(path_type=str))
@click.option("--out", "out", required=True, type=click.Path(path_type=str), help="Run folder to create.")
@click.option("--preset", default=None, help="Bundled config preset, e.g. synthetic-small.")
@click.option("--config", "config_path", default=None, type=click.Path(path_type=str),
              help="TOML file with [model] / [train] tables.")
@click.option("--epochs", type=int, default=None, help="Override train.epochs.")
@click.option("--seed", type=int, default=None, help="One seed (default 1).")
@click.option("--seeds", default=None, help="Several seeds, e.g. 1,10,13452 (one sub-run each, batched).")
@click.option("--serial-seeds", is_flag=True, help="Train several seeds one after another, not batched.")
@click.option("--modalities", default=None, help="Comma-separated modalities, e.g. rgb,depth.")
@click.option("--no-rtf", is_flag=True, help="Disable the Rank-enhancing Token Fuser (Table 2).")
@click.option("--no-temporal-fuser", is_flag=True, help="Disable the Temporal Fuser layers (Table 8).")
@click.option("--selection", type=click.Choice(["spectral", "bn_gamma"]), default=None)
@click.option("--exchange", type=click.Choice(["adaptive", "static"]), default=None)
@click.option("--exchange-ratio", type=float, default=None, help="Fraction of channels blended (k'/D).")
@click.option("--latent", type=click.Choice(["separated", "shared"]), default=None)
@click.option("--d-model", type=int, default=None, help="Token width D per modality (replaces a preset's trunk_width).")
@click.option("--layers", type=int, default=None, help="Temporal Fuser layers L.")
@click.option("--batch-size", type=int, default=None)
@click.option("--lr", type=float, default=None)
@click.option("--sample-rate", type=int, default=None)
@click.option("--split-set", default=None,
              help="The dataset's split set to train, validate and later evaluate on, e.g. split2 "
                   "(splits/<split>.<set>.bundle; default split1 when present, else the first).")
@click.option("--modality-dropout", help="Remedy: drop a modality's tokens per sample, P or MOD=P,MOD=P.")
@click.option("--unimodal-heads", type=float, help="Remedy: per-modality anticipation heads, loss weight W.")
@click.option("--ogm", type=float, help="Remedy: OGM-GE, strength ALPHA (needs --unimodal-heads).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda, cuda:N or auto.")
@click.option("--resume", is_flag=True,
              help="Continue an interrupted run in --out (one without a checkpoint starts from scratch).")
@click.option("--monitor/--no-monitor", default=True, show_default=True,
              help="Per-epoch effective ranks of the tokens before/after the token fuser on a fixed "
                   "validation subset, written to OUT/ranks.csv (docs/monitor.md).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Torch and NumPy BLAS threads of this process (default: one per core; small models: 1, see docs/cli.md).")
@click.option("--rtf-stats", type=click.Choice(["global", "local"]), default="global", show_default=True,
              help="Under torchrun: RTF's channel statistic summed over processes (N x B selects as one "
                   "process with batch N*B) or each process's own batch.")
@click.option("--dist-backend", type=click.Choice(["gloo", "nccl"]), default=None,
              help="Under torchrun: default gloo on CPU, nccl with --device cuda.")
def train(data, out, preset, config_path, epochs, seed, seeds, serial_seeds, modalities, no_rtf, no_temporal_fuser,
          selection, exchange, exchange_ratio, latent, d_model, layers, batch_size, lr, sample_rate, split_set,
          modality_dropout, unimodal_heads, ogm, device, resume, monitor, quiet, threads, rtf_stats, dist_backend):
    """Train R3D on dataset DATA (train split; best epoch chosen on val).

    Data-parallel on several processes or machines: start it with torchrun, e.g.
    ``torchrun --nproc_per_node 2 -m rankfusion train DATA --out RUN`` (docs/scaling.md);
    --batch-size is then the batch of each process.
    """
    from ..batched import train_seeds
    from ..distributed import said_once, under_torchrun
    from ..threads import set_threads
    from ..runs import recorded_config_hash
    set_threads(threads)
    with said_once():  # under torchrun every process reads the same command line and files: rank 0 says what is wrong
        if seed is not None and seeds is not None:
            raise InputError("give --seed or --seeds, not both")
        _refuse_rtf_options(no_rtf, selection=selection, exchange=exchange, exchange_ratio=exchange_ratio)
        given = dict(
            modalities=_split_list(modalities, "--modalities"), selection=selection, exchange=exchange, latent=latent,
            exchange_ratio=exchange_ratio, d_model=d_model, n_layers=layers, epochs=epochs, batch_size=batch_size,
            lr=lr, rtf=False if no_rtf else None, temporal_fuser=False if no_temporal_fuser else None,
            sample_rate=sample_rate, unimodal_heads=unimodal_heads, ogm=ogm,
            modality_dropout=_dropout_option(modality_dropout), split_set=split_set)
        cfg, source = _train_config(data, config_path, preset, given)
    mods_line = f"modalities {','.join(cfg.model.modalities)} ({source})" + _warmup_note(cfg.train)
    seed_arg = seeds if seeds is not None else (1 if seed is None else seed)
    t0 = time.perf_counter()
    if not under_torchrun():
        _refuse_torchrun_options(rtf_stats, dist_backend)
        verb = "trained" if not (resume and _finished(out, seed_arg, cfg.train.epochs)) else "already trained:"
        # the modalities line is information, as the progress (stdout holds only the result), once accepted
        path = train_seeds(cfg, data, out, seed=seed_arg, serial_seeds=serial_seeds, device=device, resume=resume,
                           progress=not quiet, monitor=monitor, on_start=lambda: click.echo(mods_line, err=True))
        click.echo(f"{verb} {path} (config {recorded_config_hash(path)}) in {time.perf_counter() - t0:.1f} s")
        return
    _train_distributed(cfg, data, out, seed_arg, mods_line, t0, device=device, resume=resume, quiet=quiet,
                       monitor=monitor, rtf_stats=rtf_stats, dist_backend=dist_backend)


def _finished(out, seed_arg, epochs: int) -> bool:
    """Whether ``out`` already holds every requested seed trained for ``epochs`` (its metrics.csv has
    that many epochs): a ``--resume`` there trains nothing, and the closing line says so."""
    from ..runs import is_multi_seed, recorded_seeds
    from ..train import parse_seeds

    seeds, out = parse_seeds(seed_arg), Path(out)
    if len(seeds) > 1 and not (is_multi_seed(out) and set(seeds) <= set(recorded_seeds(out))):
        return False
    dirs = [out / f"seed-{s}" for s in seeds] if len(seeds) > 1 else [out]
    try:
        return all(len((d / "metrics.csv").read_text().strip().splitlines()) - 1 >= epochs for d in dirs)
    except OSError:
        return False


def _warmup_note(tc) -> str:
    """A second information line when the linear warm-up lasts the whole run (e.g. ``--epochs 3``
    beside the default ``warmup_epochs = 10``): the learning rate never reaches ``lr``."""
    if tc.warmup_epochs <= tc.epochs:
        return ""
    return (f"\nnote: warmup_epochs {tc.warmup_epochs} > epochs {tc.epochs}: the learning rate rises through the "
            f"whole run to {tc.lr * tc.epochs / tc.warmup_epochs:.3g} at most, never to lr {tc.lr:g}, and the cosine "
            "decay never starts (set warmup_epochs in the [train] table of a --config file)")


def _refuse_rtf_options(no_rtf, **given):
    """RTF's options with ``--no-rtf``: one line (each would change the config hash of the same model)."""
    named = ["--" + k.replace("_", "-") for k, v in given.items() if v is not None]
    if no_rtf and named:
        one = len(named) == 1
        raise InputError(f"{', '.join(named)} configure{'s' if one else ''} RTF, which --no-rtf turns "
                         f"off: leave {'it' if one else 'them'} out")


def _train_config(data, config_path, preset, given: dict):
    """``train``'s configuration from the options ``given`` (None: not given), the config file and the
    preset: ``(RunConfig, where its modalities come from)``. A remedy torchrun cannot run is refused
    here, before the job is joined."""
    from ..config import load_config
    from ..distributed import under_torchrun
    from ..remedies import check_supported

    model, train_kw = _overrides(**given)
    source = _modalities_source(data, config_path, preset, model, given.get("split_set"))
    try:
        cfg = load_config(config_path, preset=preset, model=model, train=train_kw)
    except InputError as exc:
        raise _naming_options(exc, given) from None
    check_supported(cfg.train, distributed=under_torchrun())
    return cfg, source


def _refuse_torchrun_options(rtf_stats, dist_backend):
    """Options of torchrun runs given to ``train`` started without it: one line (they would do nothing)."""
    given = [o for o, on in (("--dist-backend", dist_backend is not None), ("--rtf-stats local", rtf_stats != "global"))
             if on]
    if given:
        several = len(given) > 1
        raise InputError(f"{' and '.join(given)} {'apply' if several else 'applies'} under torchrun only: start "
                         f"train with torchrun (docs/scaling.md), or leave {'them' if several else 'it'} out")


def _train_distributed(cfg, data, out, seed_arg, mods_line, t0, *, device, resume, quiet, monitor, rtf_stats,
                       dist_backend):
    """``train`` under torchrun: join the job, train, leave it in order (all processes at a barrier)."""
    from ..batched import train_seeds
    from ..distributed import setup, teardown
    from ..runs import recorded_config_hash

    ctx, dev = setup(device, rtf_stats=rtf_stats, backend=dist_backend)
    def started():  # information, as the progress (stdout holds only the result), once the run is accepted
        if ctx.is_main:
            click.echo(mods_line, err=True)

    try:
        path = train_seeds(cfg, data, out, seed=seed_arg, device=dev, resume=resume, progress=not quiet,
                           distributed=ctx, monitor=monitor, on_start=started)
    except BaseException:
        teardown()
        raise
    teardown(wait=True)
    if ctx.is_main:
        click.echo(f"trained {path} (config {recorded_config_hash(path)}) on {ctx.world_size} processes "
                   f"({ctx.backend}) in {time.perf_counter() - t0:.1f} s")


@main.command()
@click.argument("run", type=click.Path(path_type=str))
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--data", "data_root", default=None, type=click.Path(path_type=str),
              help="Dataset folder (default: the one the run was trained on).")
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--reliance/--no-reliance", default=True, show_default=True,
              help="Also report each modality's reliance: the MoC drop when its input comes from another "
                   "video (2 x --reliance-draws extra MoC passes per modality, a time-aligned and a "
                   "random-time read; with 3 or more modalities 2^M - 1 more per draw for Shapley).")
@click.option("--reliance-seed", default=0, show_default=True, type=click.IntRange(min=0),
              help="Seed of the donor draws (each training seed draws its own from it).")
@click.option("--reliance-draws", default=3, show_default=True, type=click.IntRange(min=1),
              help="Donor draws averaged per run (donors within 10 % of each video's length).")
@click.option("--partner-run", default=None, type=click.Path(path_type=str),
              help="A single-modality run of the partner on the same synthetic data: adds the collapse index "
                   "on the cut points only the partner can decide (docs/analysis.md).")
def evaluate(run, split, data_root, checkpoint, device, reliance, reliance_seed, reliance_draws, partner_run):
    """MoC grid (obs x beta), segmentation metrics and modality reliance of RUN on a split; writes
    RUN/eval_<split>.csv (and RUN/eval_<split>.json, how it was made)."""
    from pathlib import Path

    from ..evaluate import evaluate_run, format_eval_table

    if partner_run is not None and not reliance:
        raise InputError("--partner-run needs the reliance passes (the collapse index is one of them); "
                         "it is not used with --no-reliance")
    df = evaluate_run(run, split, device=device, data_root=data_root, checkpoint=checkpoint, reliance=reliance,
                      reliance_seed=reliance_seed, reliance_draws=reliance_draws, partner_run=partner_run)
    for note in df.attrs.get("notes", []):
        click.echo(f"note: {note}", err=True)
    click.echo(format_eval_table(df))
    click.echo(f"wrote {Path(run) / f'eval_{split}.csv'}")


@main.command()
@click.argument("run", type=click.Path(path_type=str))
@click.option("--out", "out", required=True, type=click.Path(path_type=str), help="Feature file (.npz).")
@click.option("--split", type=click.Choice(["test", "val", "train"]), default="test", show_default=True)
@click.option("--obs", type=float, default=0.3, show_default=True, help="Observation ratio.")
@click.option("--noise", multiple=True, help="Gaussian input noise MOD=SIGMA (repeatable).")
@click.option("--noise-seed", type=int, default=0, show_default=True)
@click.option("--seed", "run_seed", type=int, default=None, help="Sub-run of a several-seed run.")
@click.option("--data", "data_root", default=None, type=click.Path(path_type=str))
@click.option("--checkpoint", type=click.Choice(["best", "last"]), default="best", show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--force", is_flag=True, help="Replace --out if it exists.")
def extract(run, out, split, obs, noise, noise_seed, run_seed, data_root, checkpoint, device, force):
    """Export RUN's per-modality features before/after the token fuser (docs/formats.md)."""
    from ..extract import extract_features
    from ..files import load_arrays

    path = extract_features(run, split, obs, out, noise=list(noise) or None, noise_seed=noise_seed,
                            device=device, checkpoint=checkpoint, run_seed=run_seed, data_root=data_root,
                            progress=True, overwrite=force)
    shapes = {k: v.shape for k, v in load_arrays(path).items()}
    click.echo(f"wrote {path}: " + ", ".join(f"{k} {s}" for k, s in shapes.items()))
