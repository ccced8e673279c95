"""Calibration of the synthetic dataset's complementarity dial: does fusion resolve where it should?

For each dataset seed S and complementarity C, generate ``rankfusion data synth`` with the given
sizes, train R3D on ``rgb`` and on ``rgb,depth`` (the preset, training seeds 1, 10, 13452) and
report the grid-mean test MoC (8 cells: obs 0.2 / 0.3 x beta 0.1 / 0.2 / 0.3 / 0.5, the numbers
``rankfusion evaluate`` prints) of each arm, mean +- std over the training seeds (ddof = 1), the
gap, and the gap in units of the larger of the two arms' seed standard deviations (and of the
paired standard deviation of the per-seed differences). Calibration target (a screening
rule, not a test): gap > 2 sd at C = 1 and < 1 sd at C = 0 for every S. The test of each gap is
Welch's t (:func:`rankfusion.stats.compare`: the difference with its 95 % interval, p and the
difference detectable with 80 % power), Holm-adjusted over all the rows of the run at the end.

Independent runs go to a process pool (``--workers``, default 2), one torch thread each. Wall
and CPU time (the sum over the worker processes' tasks) are reported per dataset: generation plus
the six runs.

Usage::

    python benchmarks/bench_dials.py --out /tmp/dials --data-seeds 0,1,2 --levels 0,1 \
        [--videos 120 --min-frames 150 --max-frames 350] [--preset synthetic-small] \
        [--epochs N] [--d-model D] [--arms rgb rgb,depth] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, positive_int, run  # noqa: E402

from rankfusion import stats, verdicts  # noqa: E402
from rankfusion.config import PAPER_SEEDS  # noqa: E402

SEEDS = PAPER_SEEDS


def _init_worker():
    import torch

    torch.set_num_threads(1)


def train_and_score(data, run, modalities, seed, preset, overrides):
    """Train one run; return its grid-mean test MoC (%), per-cell MoC, wall and CPU seconds."""
    from rankfusion.config import load_config
    from rankfusion.evaluate import grid_mean, moc_grid
    from rankfusion.runs import load_run, open_data
    from rankfusion.train import train

    t, c = time.perf_counter(), time.process_time()
    model_kw = dict(overrides.get("model", {}), modalities=list(modalities))
    cfg = load_config(preset=preset, model=model_kw, train=overrides.get("train") or None)
    train(cfg, data, run, seed=seed, progress=False)
    model, config, _ = load_run(run)
    grid = moc_grid(model, open_data(data, config), "test", config, "cpu")
    return {"moc": grid_mean(grid), "cells": {f"{o}/{b}": v for (o, b), v in grid.items()},
            "wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c}


def make_dataset(out, seed, level, sizes, dial):
    from rankfusion.data import synthesize

    t, c = time.perf_counter(), time.process_time()
    synthesize(out, seed=seed, complementarity=level, overwrite=True, **sizes, **{k: v for k, v in dial.items()
                                                                               if k != "complementarity"})
    meta = json.loads((Path(out) / "synth.json").read_text())
    return {"wall_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
            "measured": meta["measured"], "oracle": meta["oracle"], "oracle_test": meta["oracle_test"]}


def summarise(per_seed: dict, arms) -> tuple:
    """Mean, sd of each arm, the gap (last arm minus first), the gap in sd units and its Welch test
    (a JSON-ready dict), and the test itself (:class:`rankfusion.stats.Comparison`)."""
    base, fused = arms[0], arms[-1]
    out = {}
    for a in arms:
        v = [per_seed[a][s]["moc"] for s in SEEDS]
        out[a] = {"mean": statistics.mean(v), "sd": statistics.stdev(v), "per_seed": v}
    diffs = [per_seed[fused][s]["moc"] - per_seed[base][s]["moc"] for s in SEEDS]
    gap = statistics.mean(diffs)
    sd_arm = max(out[base]["sd"], out[fused]["sd"])
    sd_pair = statistics.stdev(diffs)
    out["gap"] = gap
    out["sd_arms"] = sd_arm
    out["sd_paired"] = sd_pair
    out["gap_in_sd"] = gap / sd_arm if sd_arm > 0 else float("inf")
    out["gap_in_paired_sd"] = gap / sd_pair if sd_pair > 0 else float("inf")
    c = stats.compare(out[fused]["per_seed"], out[base]["per_seed"])
    out["welch"] = {"diff": c.diff, "ci": list(c.ci), "p": c.p, "mde": c.mde}
    return out, c


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="working folder (datasets and runs)")
    p.add_argument("--data-seeds", type=listed(int), default=[0, 1, 2])
    p.add_argument("--levels", type=listed(float), default=[0.0, 1.0], help="complementarity levels")
    p.add_argument("--videos", type=positive_int, default=None)
    p.add_argument("--min-frames", type=positive_int, default=None)
    p.add_argument("--max-frames", type=positive_int, default=None)
    p.add_argument("--split", type=listed(float), default=None, help="train,val,test fractions of the videos")
    p.add_argument("--nuisance", type=float, default=None)
    p.add_argument("--imbalance", type=float, default=None)
    p.add_argument("--preset", default="synthetic-small")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--d-model", type=positive_int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--arms", nargs="+", default=["rgb", "rgb,depth"])
    p.add_argument("--workers", type=positive_int, default=2)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    split = tuple(a.split) if a.split else None
    sizes = {k: v for k, v in {"n_videos": a.videos, "min_frames": a.min_frames, "max_frames": a.max_frames,
                               "split_fractions": split}.items() if v is not None}
    dial = {k: v for k, v in {"nuisance": a.nuisance, "imbalance": a.imbalance}.items() if v is not None}
    overrides = {"model": {k: v for k, v in {"d_model": a.d_model}.items() if v is not None},
                 "train": {k: v for k, v in {"epochs": a.epochs, "lr": a.lr}.items() if v is not None}}
    arms = [tuple(x.split(",")) for x in a.arms]
    out = Path(a.out)
    results, comps = [], []
    with ProcessPoolExecutor(max_workers=a.workers, initializer=_init_worker) as pool:
        for s in a.data_seeds:
            for level in a.levels:
                tag = f"S{s}_C{level:g}"
                t0 = time.perf_counter()
                ds = pool.submit(make_dataset, str(out / tag / "data"), s, level, sizes, dial).result()
                futs = {(m, seed): pool.submit(train_and_score, str(out / tag / "data"),
                                               str(out / tag / f"{'+'.join(m)}_seed{seed}"), m, seed, a.preset,
                                               overrides)
                        for m in arms for seed in SEEDS}
                per = {"+".join(m): {seed: futs[(m, seed)].result() for seed in SEEDS} for m in arms}
                summ, test = summarise(per, ["+".join(m) for m in arms])
                comps.append(test)
                row = {"data_seed": s, "complementarity": level, "sizes": sizes, "dial": dial,
                       "overrides": overrides, "dataset": ds, "runs": per, "summary": summ,
                       "wall_s": time.perf_counter() - t0,
                       "cpu_s": ds["cpu_s"] + sum(r["cpu_s"] for runs in per.values() for r in runs.values()),
                       "loadavg": os.getloadavg()}
                results.append(row)
                names = ["+".join(m) for m in arms]
                arms_txt = "  ".join(f"{n} {summ[n]['mean']:.1f} +- {summ[n]['sd']:.1f}" for n in names)
                print(f"S={s} C={level:g}: {arms_txt}  gap {summ['gap']:+.1f} = {summ['gap_in_sd']:.2f} sd "
                      f"(paired {summ['gap_in_paired_sd']:.2f}); Welch {_welch_text(summ['welch'])}  oracle rgb {100 * ds['oracle']['rgb']:.0f} "
                      f"rgb+depth {100 * ds['oracle'].get('rgb+depth', float('nan')):.0f}  "
                      f"share {ds['measured']['decision_bearing_share']:.2f}  "
                      f"{row['wall_s']:.0f} s wall, {row['cpu_s']:.0f} s CPU (gen {ds['wall_s']:.0f} s), "
                      f"load {row['loadavg'][0]:.1f}", flush=True)
                if a.json:
                    Path(a.json).write_text(json.dumps(results, indent=1))
    m = sum(verdicts.testable(c) for c in comps)  # the family Holm adjusts over: the tested rows
    for r, c, ph in zip(results, comps, verdicts.holm(comps)):
        r["summary"]["welch"]["p_holm"] = ph
        print(f"S={r['data_seed']} C={r['complementarity']:g}: gap "
              f"{verdicts.comparison_verdict(c, ph, family=m)}, Holm over the {m} tested rows")
    if a.json:
        Path(a.json).write_text(json.dumps(results, indent=1))
    return results


def _welch_text(w: dict) -> str:
    return f"{w['diff']:+.1f} [{w['ci'][0]:+.1f}, {w['ci'][1]:+.1f}], p {w['p']:.4f} (detectable {w['mde']:.1f})"


if __name__ == "__main__":
    sys.exit(run(main))
