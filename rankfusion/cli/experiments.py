"""``rankfusion modality-select``, ``figures``, ``robustness`` and ``demo``: thin wrappers over
:mod:`rankfusion.selection`, :mod:`rankfusion.figures` and :mod:`rankfusion.demo`."""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict
from pathlib import Path

import click

from .._validation import InputError, check_folder
from . import main

#: The figure families, as ``rankfusion.figures.FAMILIES`` lists them (written out so that ``--help``
#: does not import the figures; tests/test_figures_registry.py checks the two agree).
_FAMILY_HELP = "spectra, modality, noise, exchange, angles, ablation, dose, collapse, dynamics, timeline, theorem, spectrum"


def _command_line(omit=()) -> str:
    """The invoked command with every option as resolved (for the manifest), but those named in
    ``omit`` (parameter names the route does not read and would refuse: their defaults are no part
    of the command)."""
    ctx = click.get_current_context()
    parts = ["rankfusion", ctx.info_name]
    for p in ctx.command.params:
        value = ctx.params.get(p.name)
        if value in (None, False, ()) or p.name == "quiet" or p.name in omit:
            continue
        if isinstance(p, click.Argument):
            parts += [shlex.quote(str(v)) for v in (value if isinstance(value, tuple) else (value,))]
            continue
        flag = p.opts[0]
        if p.is_flag:
            parts.append(flag)
        else:
            for v in value if isinstance(value, tuple) else (value,):
                parts += [flag, shlex.quote(str(v))]
    return " ".join(parts)


def _threads_option(f):
    return click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1),
                        help="Torch and NumPy BLAS threads (small models: 1 is as fast and robust on shared cores).")(f)


def _default_workers() -> int:
    from ..runcache import default_workers

    return default_workers()


def _workers_option(f):
    return click.option("--workers", default=_default_workers, show_default="min(2, CPU count)",
                        type=click.IntRange(min=1),
                        help="Processes that train the independent runs in parallel (one torch thread each).")(f)


def _cache_options(f):
    f = _threads_option(f)
    f = click.option("--device", default="cpu", show_default=True, help="Torch device (cpu, cuda, auto).")(f)
    f = click.option("--profile", type=click.Choice(["quick", "full"]), default="full", show_default=True,
                     help="Size of the R3D runs trained for the analysis.")(f)
    f = click.option("--cache", "cache_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                     help="Run cache (default: <DATA>/../rankfusion-cache). Runs with an unchanged config "
                          "hash, seed and dataset are reused, never retrained.")(f)
    f = click.option("--anchor", default="rgb", show_default=True, help="Reference modality.")(f)
    f = click.option("--quiet", is_flag=True, help="No progress bars.")(f)
    return f


#: modality-select's options that only the --paired route reads (its fusion probe and labels).
_PAIRED_ONLY = ("labels_key", "folds", "seeds", "surrogates", "steps", "width", "jobs")

#: modality-select's options that only the --data route reads (the R3D runs it trains or reuses), and
#: that the --paired route does not read (the FEATURES route reads --expected too).
_DATA_ONLY = ("cache_dir", "profile", "device")
_NOT_PAIRED = ("expected",) + _DATA_ONLY
#: what the FEATURES route does not read either (it fits nothing and shows no progress)
_NOT_FEATURES = ("threads", "quiet")


def _given(names) -> list[str]:
    """Those of ``names`` (parameter names) the user set explicitly (command line or environment),
    as spelled on the command line."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    return [p.opts[0] for p in ctx.command.params if p.name in names
            and ctx.get_parameter_source(p.name) not in (ParameterSource.DEFAULT, ParameterSource.DEFAULT_MAP)]


def _listed(opts: list[str]) -> str:
    return " and ".join(filter(None, [", ".join(opts[:-1]), opts[-1]]))


def _context(data, out, cache_dir, profile, device, quiet, threads=1, anchor="rgb", partner=None):
    """The figure context of ``--data`` (:meth:`rankfusion.figures.FigureContext.open`), torch set to ``threads``."""
    from ..figures import FigureContext
    from ..threads import set_threads

    data = check_folder(data, "--data folder")
    set_threads(threads)
    return FigureContext.open(data, out=out, cache_dir=cache_dir, profile=profile, device=device,
                              progress=not quiet, anchor=anchor, partner=partner)


@main.command("modality-select")
@click.argument("features", nargs=-1, type=click.Path(path_type=Path))
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="Dataset: train (or reuse) anchor+candidate R3D runs instead of reading FEATURES.")
@click.option("--paired", type=click.Path(path_type=Path), default=None,
              help="Labelled paired features (.npz: one (N, C_m) array per modality + labels; or CSV/Parquet "
                   "with --modality): criterion from a fusion probe, noise control, task gains.")
@click.option("--labels", "labels_key", default="labels", show_default=True,
              help="With --paired: key (.npz) or column (table) holding the class of each row.")
@click.option("--modality", "modality_specs", multiple=True, metavar="NAME=PATTERN[,PATTERN]",
              help="With a --paired table: columns of a modality by glob pattern (repeat per modality).")
@click.option("--candidates", default=None,
              help="Comma-separated candidates (with --data or --paired; default: every other modality).")
@click.option("--expected", default=None,
              help="Candidate expected to rank first (default with --data: the synthetic dataset's most complementary one).")
@click.option("--folds", default=5, show_default=True, type=int, help="With --paired: cross-validation folds.")
@click.option("--seeds", default="0", show_default=True,
              help="With --paired: probe seeds (comma-separated; each adds --folds replicates).")
@click.option("--surrogates", default=None, type=int,
              help="With --paired: spectrum-matched noise surrogates per candidate, each fitted on every "
                   "replicate; at least the fewest whose empirical p-value can reach alpha 0.05, where the "
                   "smallest p is 1/20 (default 19).")
@click.option("--steps", default=100, show_default=True, type=int, help="With --paired: training steps per probe fit.")
@click.option("--width", default=32, show_default=True, type=int, help="With --paired: probe token width D.")
@click.option("--jobs", default=1, show_default=True, type=click.IntRange(min=1),
              help="With --paired: processes computing the probe fits, this one and JOBS-1 workers "
                   "(results do not depend on it).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON (only JSON on stdout).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("modality_select"),
              show_default=True, help="Output folder (CSV tables, JSON and the figure).")
@_cache_options
def modality_select(features, data, paired, labels_key, modality_specs, candidates, expected, folds, seeds, surrogates,
                    steps, width, jobs, as_json, out, anchor, cache_dir, profile, device, quiet, threads):
    """Rank candidate modalities by the harmonic mean of effective-rank gains with ANCHOR (Sec. 3.2).

    Give FEATURES (.npz files of any model, docs/formats.md; each holds ANCHOR and one candidate,
    one file per observation ratio and seed), --data DATA to train R3D runs pairing ANCHOR with each
    candidate, or --paired FILE with labelled per-modality features: then a fusion probe supplies the
    fused features, each candidate gets a spectrum-matched noise control and a cross-validated
    accuracy gain over ANCHOR alone (docs/analysis.md, "Modality selection with evidence").
    """
    given = [n for n, v in (("FEATURES", features), ("--data", data), ("--paired", paired)) if v]
    if len(given) > 1:
        raise InputError(f"give one of FEATURES files, --data or --paired, not both ({' and '.join(given)})")
    if not given:
        raise InputError("no input: give FEATURES (.npz files), --data DATA or --paired FILE")
    cands = None if candidates is None else [c.strip() for c in candidates.split(",") if c.strip()]
    if cands == []:  # not "every other modality", and not the file's fault ("only the anchor")
        raise InputError(f"--candidates {candidates!r} names no modality; give NAME[,NAME...] or leave it out")
    if cands is not None and not (data or paired):
        raise InputError("--candidates needs --data or --paired "
                         "(with FEATURES every non-anchor modality is a candidate)")
    repeated = sorted({c for c in cands or () if cands.count(c) > 1})
    if repeated:  # before any run is trained
        raise InputError(f"candidate {repeated[0]!r} is named more than once in --candidates; name each candidate once")
    if modality_specs and not paired:
        raise InputError("--modality needs --paired (it names the columns of a paired table)")
    paired_only = [] if paired else _given(_PAIRED_ONLY)
    if paired_only:
        raise InputError(f"{_listed(paired_only)} need{'s' if len(paired_only) == 1 else ''} --paired "
                         "(with FEATURES or --data there is no fusion probe)")
    unused = _given(_NOT_PAIRED) if paired else ([] if data else _given(_DATA_ONLY + _NOT_FEATURES))
    if unused:
        raise InputError(f"{_listed(unused)} {'is' if len(unused) == 1 else 'are'} not used with {given[0]}"
                         + (" (the fusion probe trains no R3D run and expects no candidate)" if paired
                            else " (the files are read, no run is trained)"))
    if paired is not None:
        _paired(paired, labels_key, modality_specs, cands, folds, seeds, surrogates, steps, width, jobs, as_json,
                out, anchor, quiet, threads)
        return
    _rank_runs(features, data, cands, expected, out, anchor, cache_dir, profile, device, quiet, threads, as_json)


def _paired(path, labels_key, specs, cands, folds, seeds, surrogates, steps, width, jobs, as_json, out, anchor,
            quiet, threads):
    from .. import plots, selection, verdicts
    from ..data.importer import parse_modality_specs
    from ..files import to_markdown, write_json, write_text

    mods = parse_modality_specs(specs)
    try:
        seed_list = tuple(int(s) for s in seeds.split(",") if s.strip())
    except ValueError:
        raise InputError(f"--seeds must be comma-separated integers, got {seeds!r}") from None
    given = {} if surrogates is None else {"n_surrogates": surrogates}  # else ProbeConfig's default
    config = selection.ProbeConfig(folds=folds, seeds=seed_list, steps=steps, width=width, threads=threads, **given)
    arrays, labels = selection.load_paired(path, labels=labels_key, modalities=mods or None)
    report = selection.select_modalities(arrays, labels, anchor, candidates=cands, config=config, jobs=jobs,
                                         progress=not quiet, source=repr(str(path)))
    table = report.table()
    # everything is computed before the first file is written: a bad input leaves --out untouched
    fig = plots.plot_selection_evidence(table, anchor=anchor, agreement=report.agreement)
    out.mkdir(parents=True, exist_ok=True)
    # each file is atomic; the set is marked complete by the JSON, removed first and written last,
    # so that a killed run never leaves a JSON beside a table or figure of another run
    (out / "modality_evidence.json").unlink(missing_ok=True)
    write_text(out / "modality_evidence.csv", table.to_csv(index=False))
    plots.save_figure(fig, out / "modality_evidence")
    plots.close(fig)
    write_json(out / "modality_evidence.json", {**report.to_json(), "source": str(path), "n_rows": report.n_rows,
                                                 "seconds": round(report.seconds, 2), "config": asdict(config)})
    if as_json:
        click.echo(json.dumps(report.to_json(), indent=2))
        return
    cols = ["rank_criterion", "rank_controlled", "candidate", "gain_anchor", "gain_candidate", "criterion",
            "control_mean", "control_std", "control_p", "noise_like", "task_gain", "task_gain_lo", "task_gain_hi",
            "task_gain_plain"]
    click.echo(to_markdown(table.sort_values("rank_criterion")[cols], floatfmt=".3f"))
    agree = ("untested (fewer than 3 candidates)" if report.agreement is None
             else verdicts.agreement_clause(report.agreement))
    click.echo(f"\naccuracy of {anchor} alone: {report.accuracy_anchor:.3f}; criterion vs task gain: {agree}")
    note = verdicts.undefined_criterion_note(table)
    if note is not None:
        click.echo(note)
    click.echo(verdicts.per_candidate_note(len(table)))
    click.echo(f"{report.n_rows} rows, {report.n_replicates} replicates, {report.seconds:.1f} s; "
               f"wrote {out}/modality_evidence.csv, .json, .png/.pdf")


def _rank_runs(features, data, cands, expected, out, anchor, cache_dir, profile, device, quiet, threads, as_json):
    from .. import selection, verdicts
    from ..figures import modality as modality_family
    from ..figures import write_manifest
    from ..files import to_markdown

    moc = None
    if data is not None:
        ctx = _context(data, out, cache_dir, profile, device, quiet, threads, anchor=anchor)
        res = modality_family.make(ctx, candidates=cands, expected=expected)
        write_manifest(ctx, {"modality": res}, command=_command_line(omit=_PAIRED_ONLY))
        summary, ranking, cmp = res.tables["summary"], res.tables["ranking"], res.data.comparison
        per_seed = res.data.seed_scores
        moc = (res.data.task_gain, res.data.agreement)
    else:
        table = selection.modality_selection(features, anchor=anchor)
        sel = modality_family.write_selection(out, table, anchor=anchor, expected=expected)
        summary, ranking, cmp, per_seed = sel["summary"], sel["ranking"], sel["comparison"], sel["seed_scores"]
    if as_json:
        task, agreement = moc if moc is not None else (None, None)
        click.echo(json.dumps(selection.ranking_json(ranking, anchor, task, agreement), indent=2))
        return
    click.echo(to_markdown(summary[list(selection.SUMMARY_COLUMNS)]))
    click.echo("")
    click.echo(to_markdown(ranking[["rank", "candidate", "score", "wins", "reason"]]))
    how = "by construction" if expected is None else "(--expected)"
    if cmp["matches"] is not None:
        verdict = "matches" if cmp["matches"] else f"does NOT match (expected ranks {cmp['expected_rank']})"
        scores = dict(zip(ranking["candidate"], ranking["score"]))
        second, lead, tested, _ = verdicts.top_lead(list(ranking["candidate"]), scores, per_seed)
        # the pair is the ranking's top two, picked on the same data: the test is a screen (optimistic p)
        first = (f"; its lead over {second}: {lead:.2f}, {tested} (unadjusted, a screen: the pair is the "
                 "ranking's top two)") if second else ""
        click.echo(f"\ntop candidate by point score: {cmp['found']}; expected {how}: {cmp['expected']} -> "
                   f"{verdict}{first}")
    elif cmp["expected"] is not None:
        click.echo(f"\nno top candidate: every criterion is NaN (a gain <= 0, no mutual enhancement), so the "
                   f"order is a tie-break and says nothing about {cmp['expected']}, expected {how}")
    if moc is not None:
        task, agreement = moc
        for c, (g, (lo, hi)) in task.items():
            # no interval from fewer than two seeds an arm or without spread (stats.compare gives NaN bounds)
            ci = (f"[{lo:+.2f}, {hi:+.2f}] points (Welch interval over seeds)"
                  if math.isfinite(lo) and math.isfinite(hi)
                  else "points (Welch interval over seeds: n/a, fewer than two seeds an arm, or no spread)")
            click.echo(f"task evidence: MoC({anchor}+{c}) - MoC({anchor}) = {g:+.2f} {ci}")
        if agreement is not None:
            click.echo(f"criterion vs MoC gain: {verdicts.agreement_clause(agreement)}")
    click.echo(f"wrote {out}/modality_selection.csv/.md, modality_ranking.csv/.md, modality_selection_files.csv, "
               f"modality_selection.png/.pdf" + (", modality_runs.csv, manifest.json" if data is not None else ""))


@main.command("figures")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset (standard layout).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("figures"), show_default=True)
@click.option("--only", multiple=True, help=f"Regenerate only these figure families (repeatable): {_FAMILY_HELP}.")
@click.option("--partner", default=None,
              help="Modality fused with the anchor (default: the dataset's most complementary one, else the first).")
@_cache_options
@_workers_option
def figures_cmd(data, out, only, partner, anchor, cache_dir, profile, device, quiet, threads, workers):
    """Regenerate the paper's figures and tables into OUT, with OUT/manifest.json tracing each one."""
    from ..figures import check_names, make_figures

    check_names(only)
    ctx = _context(data, out, cache_dir, profile, device, quiet, threads, anchor=anchor, partner=partner)
    results = make_figures(ctx, only=only or None, command=_command_line(), progress=not quiet, workers=workers)
    for name, r in results.items():
        click.echo(f"{name:9s} {r.seconds:7.1f} s  " + ", ".join(f for f in r.files if not f.endswith(".pdf")))
    click.echo(f"manifest: {out / 'manifest.json'}")


@main.command("robustness")
@click.option("--data", type=click.Path(path_type=Path), required=True, help="Dataset (standard layout).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("robustness"), show_default=True)
@click.option("--partner", default=None, help="Modality fused with the anchor (default: most complementary).")
@click.option("--noise-seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the noise.")
@_cache_options
def robustness_cmd(data, out, partner, noise_seed, anchor, cache_dir, profile, device, quiet, threads):
    """Noise robustness (Figs 6-7): calibrated noise on each modality, ERank gains and MoC with/without RTF.

    Gaussian noise on the test inputs of one modality at a time (clean / small / large), with sigma
    calibrated per modality so that each level changes that modality's token-fuser input by the same
    relative amount (docs/analysis.md). Writes noise_sigmas, noise_gains, noise_moc tables and figures.
    """
    from ..figures import noise as noise_family
    from ..figures import write_manifest
    from ..files import to_markdown

    ctx = _context(data, out, cache_dir, profile, device, quiet, threads, anchor=anchor, partner=partner)
    res = noise_family.make(ctx, noise_seed=noise_seed)
    write_manifest(ctx, {"noise": res}, command=_command_line())
    import pandas as pd

    click.echo(to_markdown(pd.read_csv(out / "noise_sigmas.csv")[
        ["noisy_modality", "level", "sigma_rms_units", "target_change", "achieved_change"]], floatfmt=".3f"))
    click.echo("")
    click.echo(to_markdown(pd.read_csv(out / "noise_moc.csv")[["noisy_modality", "level", "model", "moc"]]))
    click.echo(f"\nwrote {out}/noise_sigmas, noise_gains, noise_moc (.csv/.md), the figures and manifest.json; runs "
               f"cached in {ctx.cache.cache_dir}")


@main.command("demo")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo"), show_default=True)
@click.option("--quick", is_flag=True, help="Tiny dataset and 1-epoch runs (about a minute; for tests).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--seed", default=0, show_default=True, type=click.IntRange(min=0), help="Seed of the synthetic dataset.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
@_threads_option
@_workers_option
def demo_cmd(out, quick, device, seed, quiet, threads, workers):
    """End to end on the bundled synthetic data: dataset, R3D runs, features, analyses, figures, OUT/report.md."""
    from ..demo import run_demo

    result = run_demo(out, quick=quick, device=device, seed=seed, progress=not quiet, command=_command_line(),
                      threads=threads, workers=workers)
    click.echo(f"report: {result['report']}")
    if result.get("ranking"):
        verdict = {True: "matches", False: "does NOT match",
                   None: "every criterion NaN: no top candidate to compare with"}[result.get("matches")]
        lead = result.get("lead") or {}
        first = (f"; first place: lead over {lead['over']} {lead['lead']:.2f}, {lead['verdict']}"
                 if lead.get("over") and lead.get("lead") is not None else "")
        click.echo("modality ranking by the criterion's point scores: " + " > ".join(result["ranking"])
                   + f" ({verdict} the most complementary partner by construction{first})")
    click.echo(f"wall time: {result['seconds']:.1f} s, CPU time {result['cpu_seconds']:.1f} s "
               f"({result['workers']} worker{'s' if result['workers'] != 1 else ''})")
