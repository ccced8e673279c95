"""Fig. 8: ground truth against the predicted future per test video, with and without RTF and for the anchor alone."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .._validation import InputError
from ..config import observed_frames
from ..data import open_dataset
from ..evaluate import predict_future
from ..metrics import MoCAccumulator
from ..runs import load_run, open_data, resolve_device
from .ablation import variant_runs
from .common import FigureResult, keys, save, table
from .context import FigureContext

#: Fig. 8's rows: label -> the ablation variant whose (cached) run draws it.
TIMELINE_MODELS = {"with RTF": "R3D (RTF)", "without RTF": "W/O RTF (Tab. 2)", "anchor alone": "anchor only (Uni)"}
#: The videos Fig. 8 shows, by the MoC difference with - without RTF over the test split.
TIMELINE_ROLES = ("largest", "median", "smallest")


@dataclass(frozen=True)
class TimelineResult:
    """Fig. 8. ``videos``: ``{role: video}`` for the largest / median / smallest per-video MoC
    difference (with - without RTF) at the cut point ``obs``; ``moc``: ``{video: {model: MoC %}}``
    of the shown videos (mean over the betas); ``seed``: the run seed drawn; ``n_videos``: test
    videos ranked; ``mean_diff``: the difference averaged over them."""

    videos: dict
    moc: dict
    obs: float
    seed: int
    n_videos: int
    mean_diff: float

    def findings(self) -> dict:
        return {"videos": dict(self.videos), "moc": {v: dict(m) for v, m in self.moc.items()}, "obs": self.obs,
                "seed": self.seed, "n_videos": self.n_videos, "mean_diff": self.mean_diff}


def jobs(ctx: FigureContext) -> list:
    """The first seed's run of each of Fig. 8's models (the ablation family's runs), in
    :data:`TIMELINE_MODELS` order."""
    return [dataclasses.replace(variant_runs(ctx, variant), seeds=ctx.seeds[:1])
            for variant in TIMELINE_MODELS.values()]


def _predictions(ctx: FigureContext, rec, obs: float) -> dict:
    """``{video: (gt, past, pred)}`` of one run on every test video long enough to observe."""
    dev = resolve_device(ctx.cache.device)
    model, config, info = load_run(rec.run_dir, device=dev)
    ds = open_data(ctx.data_root, config, info)
    return {v: predict_future(model, ds, v, config, dev, obs) for v in ds.split("test")
            if observed_frames(ds.n_frames(v), obs) > 0}


def _video_moc(gt, obs, pred, n_classes, betas) -> float:
    """One video's MoC (%), mean over the betas, scored as :func:`rankfusion.evaluate.moc_grid` does."""
    acc = MoCAccumulator(n_classes, betas=betas)
    acc.add(gt, obs, pred)
    return 100.0 * float(np.nanmean(acc.result().to_numpy(dtype=float)))



def _table(ctx: FigureContext, preds: dict, obs: float, n_classes: int) -> pd.DataFrame:
    """One row per test video: its MoC under each model and the difference with - without RTF."""
    betas = tuple(ctx.cache.config(ctx.pair).train.eval_betas)
    rows = []
    for v, (gt, past, _) in preds["with RTF"].items():
        row = {"video": v, "n_frames": int(gt.size), "past": past}
        row.update({f"moc {m}": _video_moc(gt, obs, preds[m][v][2], n_classes, betas) for m in TIMELINE_MODELS})
        rows.append(row)
    if not rows:
        raise InputError(f"no test video of {str(ctx.data_root)!r} is long enough to observe at {obs:g}")
    out = pd.DataFrame(rows)
    out["diff"] = out["moc with RTF"] - out["moc without RTF"]
    return out


def choose_videos(tab: pd.DataFrame, none_scored: str) -> dict:
    """``{role: video}``: the largest, the median and the smallest MoC difference with - without RTF
    (:data:`TIMELINE_ROLES`), ties by name. Videos whose difference is undefined (no future frame
    scored) are not ranked; none scored is an :class:`InputError` saying ``none_scored``."""
    scored = tab[np.isfinite(tab["diff"])]
    if scored.empty:
        raise InputError(none_scored)
    order = scored.sort_values(["diff", "video"], kind="stable")["video"].tolist()
    return dict(zip(TIMELINE_ROLES, (order[-1], order[len(order) // 2], order[0])))


def make(ctx: FigureContext) -> FigureResult:
    """Fig. 8: per test video, colour bars of ground truth and predicted future at the cut point."""
    from .. import plots

    seed, obs = ctx.seeds[0], ctx.obs
    res = FigureResult("timeline", params={"obs": obs, "seed": seed, "split": "test", "models": dict(TIMELINE_MODELS)})
    preds, runs = {}, []
    for label, runset in zip(TIMELINE_MODELS, jobs(ctx)):
        (rec,) = runset.records()
        runs.append(rec)
        preds[label] = _predictions(ctx, rec, obs)
    ds = open_dataset(ctx.data_root)
    tab = _table(ctx, preds, obs, len(ds.classes))
    chosen = choose_videos(tab, f"no test video of {str(ctx.data_root)!r} has a scored future frame at {obs:g}")
    tab["shown as"] = tab["video"].map({v: r for r, v in reversed(list(chosen.items()))}).fillna("")
    table(ctx.out, tab, "timeline", res)
    panels = []
    for role, v in chosen.items():
        gt, past, _ = preds["with RTF"][v]
        r = tab.set_index("video").loc[v]
        title = (f"{v}: {role} MoC difference ({r['diff']:+.1f}; with RTF {r['moc with RTF']:.1f}, "
                 f"without {r['moc without RTF']:.1f}, anchor alone {r['moc anchor alone']:.1f})")
        panels.append({"title": title, "gt": gt, "past": past,
                       "rows": [(m, preds[m][v][2]) for m in TIMELINE_MODELS]})
    save(ctx.out, plots.plot_timelines(panels, list(ds.classes), obs=obs), "timeline", res, ctx.formats)
    res.run_keys = keys(runs)
    res.data = TimelineResult(
        videos=chosen, obs=obs, seed=seed, n_videos=len(tab), mean_diff=float(tab["diff"].mean()),
        moc={v: {m: float(tab.set_index("video").loc[v, f"moc {m}"]) for m in TIMELINE_MODELS}
             for v in dict.fromkeys(chosen.values())})
    return res
