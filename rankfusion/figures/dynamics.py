"""Rank dynamics (no paper figure): effective rank of each modality's tokens over the epochs, with and without RTF."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

import pandas as pd

from .. import verdicts
from ..files import atomic_path
from ..runcache import RunCache
from ..stats import ALPHA, compare
from ..train import train
from .common import FigureResult, keys, pair_runs, save, table
from .context import FigureContext

#: The two models drawn, in this order: label -> with RTF.
MODELS = {"with RTF": True, "without RTF": False}


@dataclass(frozen=True)
class DynamicsResult:
    """Rank dynamics over training. ``erank``: ``{(model, name): {"erank_init", "erank_final",
    "change", "change_std", "erank_min", "p", "p_holm"}}`` (means over seeds, the change's sd over
    seeds, the paired t of final against initial ERank and its Holm adjustment over the family's
    rows); ``reliance``: why modality reliance is not drawn per epoch."""

    erank: dict
    reliance: str

    def findings(self) -> dict:
        out = {f"{m} {n}": dict(v) for (m, n), v in self.erank.items()}
        out["reliance"] = self.reliance
        return out


def jobs(ctx: FigureContext) -> list:
    """The pair's runs with and without RTF (read: their ``ranks.csv`` and ``metrics.csv``)."""
    return [pair_runs(ctx, rtf=rtf) for rtf in MODELS.values()]


def _run_ranks(cache: RunCache, rec) -> tuple[pd.DataFrame, bool]:
    """``RUN/ranks.csv`` of a cached run; regenerated when the run predates the monitor.

    Training is deterministic for a (config, seed, machine) and the monitor does not change it,
    so the run is retrained with the monitor in a scratch folder and only its ranks.csv is kept.
    Returns the table and whether it had to be regenerated.
    """
    path = rec.run_dir / "ranks.csv"
    if path.exists():
        return pd.read_csv(path), False
    overrides = dict(rec.overrides)
    cfg = cache.config(overrides.pop("modalities"), **overrides)
    tmp = rec.run_dir.with_name(rec.run_dir.name + ".ranks-tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    train(cfg, cache.data_root, tmp, seed=rec.seed, device=cache.device, progress=cache.progress, monitor=True)
    with atomic_path(path) as out:
        shutil.copyfile(tmp / "ranks.csv", out)
    shutil.rmtree(tmp)
    return pd.read_csv(path), True


def make(ctx: FigureContext) -> FigureResult:
    """Rank dynamics: ERank of each modality's tokens over epochs with and without RTF, beside val MoC.

    Reads ``RUN/ranks.csv`` (``rankfusion train --monitor``: a fixed validation subset, epoch 0 =
    initialisation) and ``RUN/metrics.csv`` of the pair's runs with and without RTF, every seed.
    """
    from .. import plots

    variants = {model: runset.records() for model, runset in zip(MODELS, jobs(ctx))}
    res = FigureResult("dynamics", params={"modalities": ctx.pair, "split": "val", "regenerated": []})
    ranks, moc = [], []
    for model, runs in variants.items():
        for rec in runs:
            r, regen = _run_ranks(ctx.cache, rec)
            if regen:
                res.params["regenerated"].append(f"{rec.name}/s{rec.seed}")
            ranks.append(r.assign(model=model, seed=rec.seed))
            m = pd.read_csv(rec.run_dir / "metrics.csv")
            moc.append(m[["epoch", "val_moc", "val_loss", "train_loss"]].assign(model=model, seed=rec.seed))
        res.run_keys += keys(runs)
    cols = ["model", "seed", "epoch", "name", "modality", "stage", "n_rows", "numerical_rank", "effective_rank"]
    ranks = pd.concat(ranks, ignore_index=True)
    res.params.update(obs_ratio=float(ranks["obs"].iloc[0]), n_videos=int(ranks["n_videos"].iloc[0]))
    ranks = ranks[cols]
    moc = pd.concat(moc, ignore_index=True)[["model", "seed", "epoch", "val_moc", "val_loss", "train_loss"]]
    table(ctx.out, ranks, "dynamics_ranks", res)
    table(ctx.out, moc, "dynamics_moc", res)
    summary = _dynamics_summary(ranks, moc)
    res.params["n_tests"] = summary.attrs["n_tests"]  # the Holm family: distinct tests, not rows
    table(ctx.out, summary, "dynamics", res, markdown=True, note=summary_note(summary))
    save(ctx.out, plots.plot_dynamics(ranks, moc, modalities=ctx.pair), "dynamics", res, ctx.formats)
    res.tables = {"summary": summary}
    res.data = DynamicsResult(
        erank={(r.model, r.name): {k: float(getattr(r, k)) for k in
                                   ("erank_init", "erank_final", "change", "change_std", "ci_low", "ci_high", "erank_min", "p",
                                    "p_holm")}
               for r in summary.itertuples()},
        reliance="not per epoch: evaluate.modality_reliance is measured on finished runs (family dose)")
    return res


def summary_note(summary: pd.DataFrame) -> str:
    """The line under ``dynamics.md``: the test of the change and the Holm family of its rows."""
    return (f"p: paired t of final against initial ERank over seeds (the same run measured twice); p_holm: Holm over "
            f"the {summary.attrs.get('n_tests', len(summary))} distinct tests of the {len(summary)} rows (rows with "
            f"identical values are one test; a row with one seed or no spread is untested and not in the family), "
            f"and the verdict is taken on it at {ALPHA:g}.")


def _dynamics_summary(ranks: pd.DataFrame, moc: pd.DataFrame) -> pd.DataFrame:
    """Per model and name: ERank at initialisation and at the last epoch, the change (mean and
    std over seeds), the lowest value over epochs, the validation MoC of the last epoch, and the
    test of the change: paired t of final against initial ERank over seeds (the same run measured
    twice), Holm-adjusted over the rows, and its verdict (:func:`rankfusion.verdicts.change_verdict`)."""
    last = int(ranks["epoch"].max())
    per_seed = ranks.pivot_table(index=["model", "name", "seed"], columns="epoch", values="effective_rank")
    out = pd.DataFrame({"erank_init": per_seed[0], "erank_final": per_seed[last],
                        "change": per_seed[last] - per_seed[0], "erank_min": per_seed.min(axis=1)}).reset_index()
    agg = out.groupby(["model", "name"], sort=False).agg(
        erank_init=("erank_init", "mean"), erank_final=("erank_final", "mean"), change=("change", "mean"),
        change_std=("change", "std"), erank_min=("erank_min", "mean"), n_seeds=("seed", "count")).reset_index()
    # rows with the same per-seed values are one test (without RTF a modality's tokens after the
    # fuser are its tokens before): Holm counts each distinct test once, and its rows share the result
    groups = [g for _, g in out.groupby(["model", "name"], sort=False)]
    keys = [tuple(g["erank_init"].tolist() + g["erank_final"].tolist()) for g in groups]
    distinct = {k: compare(g["erank_final"], g["erank_init"], paired=True, alpha=ALPHA)
                for k, g in zip(keys, groups)}
    adjusted = dict(zip(distinct, verdicts.holm(list(distinct.values()))))
    tests = [distinct[k] for k in keys]
    agg["ci_low"] = [t.ci[0] for t in tests]  # the (1 - alpha) interval of the mean change
    agg["ci_high"] = [t.ci[1] for t in tests]
    agg["p"] = [t.p for t in tests]
    agg["p_holm"] = [adjusted[k] for k in keys]
    agg.attrs["n_tests"] = sum(verdicts.testable(t) for t in distinct.values())  # what Holm adjusted over
    agg["verdict"] = [verdicts.change_verdict(t, p, agg.attrs["n_tests"]) for t, p in zip(tests, agg["p_holm"])]
    final_moc = moc[moc["epoch"] == moc["epoch"].max()].groupby("model")["val_moc"].mean()
    agg["val_moc_final"] = agg["model"].map(final_moc)
    agg.insert(2, "epochs", last)
    return agg
