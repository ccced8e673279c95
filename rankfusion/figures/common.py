"""What several figure families share: the runs a family reads (:class:`RunSet`), its result
(:class:`FigureResult`), writing a table or figure, and MoC per seed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .. import verdicts
from .._validation import InputError
from ..data.synth import MOST_COMPLEMENTARY
from ..files import atomic_path, to_markdown, write_text
from ..runcache import RunCache
from .context import FigureContext

#: Columns that hold p-values: shown in Markdown as the report writes them ("0.012", "< 0.001"),
#: not rounded to the tables' two decimals (which would print "0.00").
P_VALUE_COLUMNS = ("p", "p_holm", "control_p")


@dataclass
class FigureResult:
    """What a family wrote and found."""

    name: str
    files: list = field(default_factory=list)
    run_keys: list = field(default_factory=list)
    params: dict = field(default_factory=dict)
    #: the family's typed result (:class:`rankfusion.figures.spectra.SpectraResult`, ...)
    data: object = field(default=None, repr=False)
    seconds: float = 0.0
    tables: dict = field(default_factory=dict, repr=False)
    #: extra run caches a family used (the dose family's datasets), for the manifest
    caches: list = field(default_factory=list, repr=False)

    @property
    def findings(self) -> dict:
        """The numbers the manifest records (JSON), from :attr:`data`."""
        return {} if self.data is None else self.data.findings()


@dataclass(frozen=True)
class RunSet:
    """One configuration a family reads, for each of its seeds: its label, exports and run cache.

    A family's ``jobs(ctx)`` lists its run sets; :meth:`jobs` turns one into the process pool's
    :class:`rankfusion.runcache.RunJob` s (one per seed) and :meth:`records` into the finished
    runs the family reads (trained here when the pool did not).

    Attributes
    ----------
    name : str
        The label the runs carry in the manifest.
    modalities : tuple of str
    overrides : tuple
        ``(key, value)`` pairs of R3DConfig overrides.
    seeds : tuple of int
    obs_ratios : tuple of float
        Observation ratios whose feature exports the family reads.
    reliance : bool
        Whether the family reads the runs' modality reliance.
    cache : RunCache
        The run cache of the runs' dataset.
    """

    name: str
    modalities: tuple
    overrides: tuple = ()
    seeds: tuple = ()
    obs_ratios: tuple = ()
    reliance: bool = False
    cache: RunCache | None = field(default=None, compare=False, repr=False)

    @property
    def options(self) -> dict:
        """The R3DConfig overrides as a dict."""
        return dict(self.overrides)

    def jobs(self) -> list:
        """One :class:`rankfusion.runcache.RunJob` per seed: train, evaluate, export what is read."""
        return [self.cache.job(self.modalities, s, obs_ratios=self.obs_ratios, reliance=self.reliance,
                               **self.options) for s in self.seeds]

    def records(self) -> list:
        """The finished runs, one :class:`rankfusion.runcache.RunRecord` per seed (unfinished
        seeds trained together, :meth:`rankfusion.runcache.RunCache.train_seeds`)."""
        self.cache.train_seeds(self.modalities, self.seeds, **self.options)
        return [self.cache.run(self.name, self.modalities, seed=s, **self.options) for s in self.seeds]


def run_set(ctx: FigureContext, name: str, modalities, *, seeds=None, obs=(), reliance: bool = False,
            cache: RunCache | None = None, **overrides) -> RunSet:
    """A :class:`RunSet` of ``ctx`` (default: every seed of the profile, the context's cache)."""
    return RunSet(name, tuple(modalities), tuple(overrides.items()), tuple(ctx.seeds if seeds is None else seeds),
                  tuple(obs), bool(reliance), ctx.cache if cache is None else cache)


def pair_runs(ctx: FigureContext, *, rtf: bool = True, obs=()) -> RunSet:
    """The anchor+partner runs of every seed, with RTF (``"<a>+<p>"``) or without (``"<a>+<p> W/O RTF"``)."""
    if rtf:
        return run_set(ctx, f"{ctx.anchor}+{ctx.partner}", ctx.pair, obs=obs)
    return run_set(ctx, f"{ctx.anchor}+{ctx.partner} W/O RTF", ctx.pair, obs=obs, rtf=False)


def require_generator_partner(ctx: FigureContext, family: str, why: str) -> None:
    """Refuse (one line) a family of the generator's dials for a partner other than the modality the
    dials act on (:data:`rankfusion.data.synth.MOST_COMPLEMENTARY`); ``why`` says what it needs it for."""
    if ctx.partner != MOST_COMPLEMENTARY:
        raise InputError(f"the {family} family needs partner {MOST_COMPLEMENTARY!r} ({why}), got partner "
                         f"{ctx.partner!r}; use --partner {MOST_COMPLEMENTARY} or leave the family out (--only)")


def fused_width_anchor(ctx: FigureContext):
    """``(modalities, overrides)`` of the anchor alone with ``d_model`` = M x the pair's D, so its
    trunk is as wide as the pair's (the dose family's "anchor only, fused width")."""
    return [ctx.anchor], {"d_model": len(ctx.pair) * ctx.cache.config(ctx.pair).model.d_model}


def save(out, fig, stem: str, res: FigureResult, formats=("png", "pdf")) -> None:
    """Write ``fig`` as ``<out>/<stem>.<format>`` for each format, close it, list the files in ``res``."""
    from .. import plots

    paths = plots.save_figure(fig, Path(out) / stem, formats=formats)
    plots.close(fig)
    res.files += [p.name for p in paths]


def table(out, df: pd.DataFrame, name: str, res: FigureResult, markdown: bool = False, note: str = "") -> None:
    """Write ``<out>/<name>.csv`` (and ``.md`` when ``markdown``) atomically and list them in ``res``.

    ``note``: a line under the Markdown table, e.g. which test its p-values are and over which
    family they are adjusted, so that the table read on its own says so."""
    with atomic_path(Path(out) / f"{name}.csv") as tmp:
        df.to_csv(tmp, index=False, float_format="%.6g")
    res.files.append(f"{name}.csv")
    if markdown:
        shown = df.assign(**{c: [verdicts.p_cell(float(v)) for v in df[c]] for c in P_VALUE_COLUMNS if c in df})
        write_text(Path(out) / f"{name}.md", to_markdown(shown) + "\n" + (f"\n{note}\n" if note else ""))
        res.files.append(f"{name}.md")


def keys(runs) -> list[tuple]:
    """The cache keys of runs, ``(run folder, label)``, for the manifest."""
    return [(r.run_dir, r.name) for r in runs]


def seed_moc(cache: RunCache, runs) -> pd.DataFrame:
    """MoC per run: ``obs_ratio, beta, moc, seed``."""
    return pd.concat([cache.evaluate(r).assign(seed=r.seed) for r in runs], ignore_index=True)


def spread(per_seed: pd.DataFrame, by) -> pd.DataFrame:
    """Mean over beta per seed, then mean and standard deviation over seeds (NaN std for one seed)."""
    per = per_seed.groupby(list(by) + ["seed"], sort=False, as_index=False)["moc"].mean()
    return per.groupby(list(by), sort=False)["moc"].agg(moc="mean", moc_std="std", n_seeds="count").reset_index()


def grid_moc_over_seeds(cache: RunCache, runs, noise=None) -> pd.DataFrame:
    """MoC per (obs, beta), averaged over the runs (seeds)."""
    tabs = [cache.evaluate(r, noise=noise) for r in runs]
    return pd.concat(tabs).groupby(["obs_ratio", "beta"], as_index=False)["moc"].mean()
