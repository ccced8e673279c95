"""Calibration of the synthetic dataset's collapse dial: does plain fusion stop using depth at K = 1?

For each dataset seed S and collapse level K, generate ``rankfusion data synth --collapse K``
with the given sizes, train the arms (default: plain fusion ``rgb,depth`` without RTF, and depth
alone) with the ``synthetic-small`` preset for the training seeds (default 1, 10, 13452), and
measure on the test split:

* ``moc``: the grid-mean test MoC (8 cells, as ``rankfusion evaluate`` prints);
* ``rel_<m>``: the reliance on modality m (``rankfusion.evaluate.modality_reliance``, the MoC drop
  when m's input comes from another video; fused arms only);
* ``only``: next-action decision accuracy on the partner-only cut points
  (``rankfusion.data.synth.partner_only_cuts``): the first of load_dishwasher / place_on_shelf
  among the predicted future actions (before NONE) against the truth; chance 0.5 for a model
  that names one of the two, and a model that names neither scores 0 there.

Then, per dataset seed, the Welch test (``rankfusion.stats.compare``, alpha 0.05) of the fused
arm's reliance on depth at the highest K against the lowest K, and the binomial test of the
partner-alone arm's ``only`` accuracy against 1/2 (each training seed, and pooled).

``--dial spurious`` runs the same on the spurious cue's levels S (``--spurious S``) instead of
the collapse dial's K (the printed "K" is then S).

Runs go one at a time (the machine is shared), ``--threads`` torch threads each.

Usage::

    nice -n 5 python benchmarks/bench_collapse.py --out /tmp/collapse --data-seeds 0,1 --levels 0,1 \
        [--dial collapse|spurious] [--seeds 1,10,13452] [--arms rgb,depth:no-rtf depth] [--alone-levels 1] \
        [--videos N] [--split 0.6,0.1,0.3] [--profile full] [--threads 2] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, positive_int, run  # noqa: E402

from rankfusion.config import PAPER_SEEDS  # noqa: E402

SEEDS = PAPER_SEEDS


def _decisions(model, ds, config, only: dict):
    """(correct, total) of the load/place decision at the partner-only cut points ``only``."""
    import numpy as np
    import torch

    from rankfusion.config import observed_frames
    from rankfusion.data.synth import A
    from rankfusion.data.torchdata import video_inputs

    model.eval()
    load, place = A["load_dishwasher"], A["place_on_shelf"]
    right = total = 0
    for video, ratios in only.items():
        gt = np.asarray(ds.labels(video))
        for o in ratios:
            past = observed_frames(len(gt), o)  # the cut moc_grid makes
            after = np.flatnonzero(gt[past - 1:] != gt[past - 1])
            truth = int(gt[past - 1 + after[0]])
            feats, mask = video_inputs(ds, video, config.model.modalities, past, config.train.sample_rate, "cpu")
            with torch.no_grad():
                logits = model(feats, mask).class_logits[0].cpu().numpy()
            a = np.argmax(logits, axis=1)
            none = np.flatnonzero(a == logits.shape[1] - 1)
            a = a[: none[0]] if none.size else a
            named = [int(x) for x in a if x in (load, place)]
            right += bool(named) and named[0] == truth
            total += 1
    return right, total


def run_arm(data, run, modalities, rtf, seed, preset, epochs, profile=None):
    """Train one run; return MoC, reliance per modality (fused), partner-only accuracy, timings."""
    from rankfusion.config import load_config
    from rankfusion.data.synth import partner_only_cuts
    from rankfusion.evaluate import grid_mean, modality_reliance, moc_grid
    from rankfusion.runs import load_run, open_data
    from rankfusion.train import train

    t, c = time.perf_counter(), time.process_time()
    if Path(run).exists():  # a run without a recorded result (interrupted): start it again
        shutil.rmtree(run)
    model_kw = {"modalities": list(modalities)}
    if not rtf:
        model_kw["rtf"] = False
    if profile is not None:  # the sizes of a figures profile (rankfusion.profiles.PROFILES)
        cfg = load_config(preset=profile.preset, model={**profile.model, **model_kw},
                          train={**profile.train, **({"epochs": epochs} if epochs else {})})
    else:
        cfg = load_config(preset=preset, model=model_kw, train={"epochs": epochs} if epochs else None)
    train(cfg, data, run, seed=seed, progress=False)
    train_s = time.perf_counter() - t
    model, config, _ = load_run(run)
    ds = open_data(data, config)
    grid = moc_grid(model, ds, "test", config, "cpu")
    out = {"moc": grid_mean(grid), "train_s": train_s}
    if len(modalities) > 1:
        for r in modality_reliance(model, ds, "test", config, "cpu", clean=grid):
            out[f"rel_{r.modality}"] = float(r.drop)
    only = partner_only_cuts(data, ds.split("test"))
    only = {v: tuple(o for o in obs if o in config.train.eval_obs) for v, obs in only.items()}
    right, total = _decisions(model, ds, config, {v: o for v, o in only.items() if o})
    out.update(only_right=right, only_total=total, only=right / total if total else float("nan"),
               wall_s=time.perf_counter() - t, cpu_s=time.process_time() - c)
    return out


def _arm(spec: str):
    mods, _, opt = spec.partition(":")
    return spec, tuple(mods.split(",")), opt != "no-rtf"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="working folder (datasets and runs)")
    p.add_argument("--data-seeds", type=listed(int), default=[0, 1])
    p.add_argument("--levels", type=listed(float), default=[0.0, 1.0], help="levels of the dial (collapse K or spurious S)")
    p.add_argument("--dial", default="collapse", choices=("collapse", "spurious"), help="which dial --levels sets")
    p.add_argument("--seeds", type=listed(int), default=list(SEEDS), help="training seeds")
    p.add_argument("--arms", nargs="+", default=["rgb,depth:no-rtf", "depth"],
                   help="MODS[:no-rtf]; the first fused arm is tested for reliance on the partner")
    p.add_argument("--partner", default="depth")
    p.add_argument("--alone-levels", type=listed(float), default=None, help="levels at which the partner-alone arm runs (default all)")
    p.add_argument("--videos", type=positive_int, default=None)
    p.add_argument("--split", type=listed(float), default=None, help="split fractions train,val,test of the generated datasets")
    p.add_argument("--preset", default="synthetic-small")
    p.add_argument("--epochs", type=positive_int, default=None)
    p.add_argument("--profile", default=None,
                   help="train and generate at a figures profile's sizes (e.g. full) instead of --preset")
    p.add_argument("--threads", type=positive_int, default=2)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)

    import torch
    from scipy.stats import binomtest

    from rankfusion.data import synthesize
    from rankfusion.stats import compare

    torch.set_num_threads(a.threads)
    out = Path(a.out)
    seeds = a.seeds
    levels = a.levels
    arms = [_arm(s) for s in a.arms]
    from rankfusion.profiles import get_profile

    profile = get_profile(a.profile) if a.profile else None
    sizes = {k: v for k, v in profile.synth.items() if k not in ("complementarity", "imbalance")} if profile else {}
    if a.videos:
        sizes["n_videos"] = a.videos
    if a.split:
        sizes["split_fractions"] = tuple(a.split)
    results = json.loads(Path(a.json).read_text()) if a.json and Path(a.json).is_file() else {}
    print(f"load {os.getloadavg()[0]:.1f}; {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}", flush=True)
    for s in a.data_seeds:
        for k in levels:
            tag = f"k{k:g}" if a.dial == "collapse" else f"spur{k:g}"
            data = out / f"data_s{s}_{tag}"
            if not (data / "synth.json").is_file():
                t = time.perf_counter()
                synthesize(data, seed=s, overwrite=True, **{a.dial: k}, **sizes)
                print(f"S{s} K{k:g}: generated in {time.perf_counter() - t:.0f} s", flush=True)
            meta = json.loads((data / "synth.json").read_text())
            for spec, mods, rtf in arms:
                if mods == (a.partner,) and a.alone_levels and k not in a.alone_levels:
                    continue
                for seed in seeds:
                    key = f"S{s} K{k:g} {spec} seed {seed}"
                    if key in results:
                        continue
                    r = run_arm(data, out / "runs" / f"s{s}_{tag}_{spec.replace(',', '+').replace(':', '_')}_{seed}",
                                mods, rtf, seed, a.preset, a.epochs, profile)
                    r.update(data_seed=s, level=k, arm=spec, seed=seed,
                             partner_only_test=meta["partner_only"]["cuts_test"], load=os.getloadavg()[0])
                    results[key] = r
                    rel = " ".join(f"{m} {r[f'rel_{m}']:+.1f}" for m in mods if f"rel_{m}" in r)
                    print(f"{key}: MoC {r['moc']:.1f} reliance [{rel}] partner-only {r['only_right']}/"
                          f"{r['only_total']} train {r['train_s']:.0f} s (load {r['load']:.1f})", flush=True)
                    if a.json:
                        Path(a.json).write_text(json.dumps(results, indent=1))
    _table(results, arms, a.partner, levels, binomtest, compare)


def _table(results, arms, partner, levels, binomtest, compare):
    rows = list(results.values())
    fused = next(spec for spec, mods, _ in arms if len(mods) > 1)
    alone = next((spec for spec, mods, _ in arms if mods == (partner,)), None)
    print("\n| S | K | arm | MoC | reliance on " + partner + " | reliance on rgb | partner-only acc. (pooled) "
          "| binomial p vs 1/2 | train s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for s in sorted({r["data_seed"] for r in rows}):
        for k in levels:
            for spec, mods, _ in arms:
                sel = [r for r in rows if r["data_seed"] == s and r["level"] == k and r["arm"] == spec]
                if not sel:
                    continue

                def ms(key):
                    v = [r[key] for r in sel if key in r]
                    if not v:
                        return "-"
                    sd = statistics.stdev(v) if len(v) > 1 else float("nan")
                    return f"{statistics.mean(v):.1f} +- {sd:.1f} ({' / '.join(f'{x:.1f}' for x in v)})"

                right, total = sum(r["only_right"] for r in sel), sum(r["only_total"] for r in sel)
                p = binomtest(right, total, 0.5, alternative="greater").pvalue if total else float("nan")
                print(f"| {s} | {k:g} | {spec} | {ms('moc')} | {ms('rel_' + partner)} | {ms('rel_rgb')} | "
                      f"{right}/{total} = {right / max(total, 1):.2f} ({' / '.join(str(r['only_right']) for r in sel)}"
                      f" of {sel[0]['only_total']}) | {p:.2g} | {statistics.mean(r['train_s'] for r in sel):.0f} |")
    print()
    lo, hi = min(levels), max(levels)
    for s in sorted({r["data_seed"] for r in rows}):
        a = [r[f"rel_{partner}"] for r in rows if r["data_seed"] == s and r["level"] == hi and r["arm"] == fused]
        b = [r[f"rel_{partner}"] for r in rows if r["data_seed"] == s and r["level"] == lo and r["arm"] == fused]
        if len(a) >= 2 and len(b) >= 2:
            c = compare(a, b)
            print(f"S{s}: {fused} reliance on {partner}, K {hi:g} - K {lo:g}: {c.diff:+.2f} "
                  f"[{c.ci[0]:+.2f}, {c.ci[1]:+.2f}] p {c.p:.3g} ({c.test}) -> "
                  f"{'resolved lower' if c.resolved and c.diff < 0 else 'not resolved lower'}")
        if alone:
            sel = [r for r in rows if r["data_seed"] == s and r["level"] == hi and r["arm"] == alone]
            if sel:
                ps = [binomtest(r["only_right"], r["only_total"], 0.5, alternative="greater").pvalue
                      if r["only_total"] else float("nan") for r in sel]
                print(f"S{s}: {alone} alone at K {hi:g} on the partner-only cut points: "
                      + ", ".join(f"{r['only_right']}/{r['only_total']} (p {q:.2g})" for r, q in zip(sel, ps)))


if __name__ == "__main__":
    sys.exit(run(main))
