"""R3D timings: forward time per frame with and without RTF (ratio in one run), training throughput.

Usage::

    python benchmarks/bench_model.py [--d-model 128] [--batch 8] [--steps 256] [--channels 512]
                                     [--repeats 15] [--device cpu] [--threads N] [--json out.json]
    python benchmarks/bench_model.py --compare DATA --out RUNS [--preset synthetic-small]
                                     [--seeds 1,10,13452] [--epochs N]
    python benchmarks/bench_model.py --monitor [--monitor-repeats 3] [--monitor-run DATA]

``--compare`` trains R3D (rgb+depth), RGB only and R3D without RTF with the preset, one run per
seed, and prints training time and test MoC at obs 0.2 / 0.3 (mean +- std over seeds).

Forward timings interleave the compared models repeat by repeat and report medians, so load from
other processes on a shared machine hits every variant alike; the ratio is what the RTF target
(at most +25% forward time) is judged on. Training throughput is frames (valid time steps) per
second of full optimisation steps (forward, three losses, backward, AdamW) on random batches.

``--monitor`` measures the overhead of :class:`rankfusion.monitor.RankMonitor` on R3D training
steps: one interval (``DEFAULT_EVERY`` steps) with the monitor watching each modality's tokens
before/after the token fuser and the stacked tokens (5 names, padding masked, default
``max_rows``) against the same steps without it, the two arms interleaved, best of
``--monitor-repeats``. ``--monitor-run DATA`` also trains R3D at this size on DATA with
``train(monitor=True)`` and reports the per-epoch measurement of ``RUN/ranks.csv`` against the
epoch time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch

from rankfusion.config import R3DConfig, TrainConfig
from rankfusion.model import R3D
from rankfusion.train import compute_losses

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, non_negative_int, positive_int, run  # noqa: E402


def _batch(B, T, C, mods, n_classes, n_queries, device, seed=0):
    g = torch.Generator().manual_seed(seed)
    feats = {m: torch.randn(B, T, C, generator=g).to(device) for m in mods}
    mask = torch.ones(B, T, dtype=torch.bool)
    for b in range(B):  # ragged lengths, as in a real batch
        mask[b, int(T * (0.6 + 0.4 * b / max(B - 1, 1))):] = False
    seg = torch.randint(0, n_classes, (B, T), generator=g).masked_fill(~mask, -100)
    fut = torch.randint(0, n_classes, (B, n_queries), generator=g)
    fut[:, n_queries // 2] = n_classes
    fut[:, n_queries // 2 + 1:] = -100
    dur = torch.rand(B, n_queries, generator=g) * (fut >= 0) * (fut < n_classes)
    dur = dur / dur.sum(1, keepdim=True)
    batch = {"seg_labels": seg, "future_classes": fut, "future_durations": dur,
             "future_mask": fut >= 0}
    return feats, mask.to(device), batch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench_forward(variants: dict, feats, mask, repeats, device):
    """Median seconds per forward pass of each model, interleaved repeat by repeat."""
    times = {k: [] for k in variants}
    with torch.no_grad():
        for m in variants.values():  # warm-up
            m(feats, mask)
        for _ in range(repeats):
            for k, m in variants.items():
                _sync(device)
                t = time.perf_counter()
                m(feats, mask)
                _sync(device)
                times[k].append(time.perf_counter() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _train_step(model, feats, mask, batch, opt, device):
    """One optimiser step on the anticipation, segmentation and duration losses."""
    out = model(feats, mask)
    parts = compute_losses(out, batch, device)
    loss = parts["seg"] + parts["cls"] + parts["dur"]
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def bench_train(model, feats, mask, batch, steps, device):
    """Frames per second of full training steps: (per wall second, per CPU second of this process)."""
    tc = TrainConfig()
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    model.train()
    frames = int(mask.sum())

    def step():
        _train_step(model, feats, mask, batch, opt, device)

    step()
    _sync(device)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    _sync(device)
    return steps * frames / (time.perf_counter() - t), steps * frames / (time.process_time() - c)


def monitor_specs(model):
    """The names ``train --monitor`` watches, as hooks on the token fuser and the first fuser layer."""
    import torch as _t

    mods = list(model.config.modalities)
    specs = {}
    for i, m in enumerate(mods):
        specs[f"{m}/before"] = (model.rtf, lambda o, i=i: o.before[i])
        specs[f"{m}/after"] = (model.rtf, lambda o, i=i: o.after[i])
    specs["fused"] = (model.rtf, lambda o: _t.cat(o.after, dim=-1))
    return specs


def bench_monitor(model, feats, mask, batch, device, repeats, every=None, max_rows=None):
    """Seconds of one monitor interval of training steps with and without the monitor (best of repeats)."""
    from rankfusion.monitor import DEFAULT_EVERY, DEFAULT_MAX_ROWS, RankMonitor

    every = every or DEFAULT_EVERY
    max_rows = max_rows or DEFAULT_MAX_ROWS
    tc = TrainConfig()
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    model.train()

    def steps():
        for _ in range(every):
            _train_step(model, feats, mask, batch, opt, device)

    def timed(with_monitor):
        mon = RankMonitor(model, monitor_specs(model), every=every, max_rows=max_rows, mask=1) if with_monitor else None
        _sync(device)
        t, c = time.perf_counter(), time.process_time()
        steps()
        _sync(device)
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        if mon is not None:
            mon.close()
            assert len(mon.rows) == 5, mon.rows  # one record per name for the interval
        return wall, cpu

    timed(False)  # warm-up
    res = {"without": [], "with": []}
    for r in range(repeats):
        # alternate which arm goes first, so a load change hits both alike
        for arm in (("without", "with") if r % 2 == 0 else ("with", "without")):
            res[arm].append(timed(arm == "with"))
    best = {k: (min(w for w, _ in v), min(c for _, c in v)) for k, v in res.items()}
    return {"every": every, "max_rows": max_rows, "repeats": repeats,
            "wall_s": {k: [w for w, _ in v] for k, v in res.items()},
            "cpu_s": {k: [c for _, c in v] for k, v in res.items()},
            "best_wall_ratio": best["with"][0] / best["without"][0],
            "best_cpu_ratio": best["with"][1] / best["without"][1]}


def monitor_run(data, out, d_model, layers, epochs, device):
    """Train R3D (rgb+depth) at ``d_model`` with the epoch monitor; its time against the epoch time."""
    import pandas as pd

    from rankfusion.config import load_config
    from rankfusion.train import train

    heads = 8 if (2 * d_model) % 8 == 0 else 1
    cfg = load_config(preset="synthetic-small", model={"modalities": ["rgb", "depth"], "d_model": d_model,
                                                       "n_layers": layers, "n_heads": heads},
                      train={"epochs": epochs})
    run = Path(out) / f"monitor-d{d_model}"
    train(cfg, data, run, device=device, progress=False, monitor=True, resume=run.exists())
    metrics = pd.read_csv(run / "metrics.csv")
    ranks = pd.read_csv(run / "ranks.csv").groupby("epoch")["seconds"].first()
    per_epoch = ranks.loc[metrics["epoch"]].to_numpy() / metrics["epoch_s"].to_numpy()
    return {"epochs": epochs, "d_model": d_model, "epoch_s": metrics["epoch_s"].tolist(),
            "monitor_s": ranks.loc[metrics["epoch"]].tolist(), "ratio_per_epoch": per_epoch.tolist(),
            "median_ratio": float(statistics.median(per_epoch)), "n_videos": int(pd.read_csv(run / "ranks.csv")["n_videos"][0])}


COMPARE = {
    "R3D (rgb+depth)": {"modalities": ["rgb", "depth"]},
    "RGB only": {"modalities": ["rgb"]},
    "rgb+depth, rtf=False": {"modalities": ["rgb", "depth"], "rtf": False},
}


def compare(data, out, preset, seeds, device, epochs=None):
    """Train the three variants of COMPARE for every seed; print times and the test MoC table."""
    import json as _json

    from rankfusion.config import load_config
    from rankfusion.evaluate import evaluate_run
    from rankfusion.train import parse_seeds, train

    out = Path(out)
    seeds = parse_seeds(seeds)
    results = {}
    for name, model in COMPARE.items():
        cfg = load_config(preset=preset, model=model, train={"epochs": epochs} if epochs else None)
        run = out / name.replace(" ", "_").replace("(", "").replace(")", "").replace(",", "").replace("=", "-")
        t, c = time.perf_counter(), time.process_time()
        train(cfg, data, run, seed=seeds, device=device, progress=False, resume=run.exists())
        wall, cpu = time.perf_counter() - t, time.process_time() - c
        df = evaluate_run(run, "test", device=device)
        results[name] = {"wall_s_per_run": wall / len(seeds), "cpu_s_per_run": cpu / len(seeds),
                         "moc": df[df.metric == "moc"].to_dict("records")}
        print(f"{name}: {wall / len(seeds):.1f} s wall, {cpu / len(seeds):.1f} s CPU per run", flush=True)
    print(f"\n| model | obs | beta=0.1 | beta=0.2 | beta=0.3 | beta=0.5 |\n|---|---|---|---|---|---|")
    for name, r in results.items():
        for obs in (0.2, 0.3):
            cells = {x["beta"]: x for x in r["moc"] if x["obs"] == obs}
            row = " | ".join(f"{cells[b]['mean']:.1f} +- {cells[b]['std']:.1f}" for b in (0.1, 0.2, 0.3, 0.5))
            print(f"| {name} | {obs} | {row} |")
    with open(out / "compare.json", "w") as fh:
        _json.dump(results, fh, indent=2)
    return results


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--compare", default=None, metavar="DATA", help="train/evaluate the comparison on DATA")
    p.add_argument("--out", default="runs/bench_model")
    p.add_argument("--preset", default="synthetic-small")
    p.add_argument("--seeds", type=listed(int), default=[1, 10, 13452], help="training seeds of --compare")
    p.add_argument("--epochs", type=positive_int, default=None, help="override the preset's epochs in --compare")
    p.add_argument("--d-model", type=positive_int, default=128)
    p.add_argument("--layers", type=non_negative_int, default=2)
    p.add_argument("--batch", type=positive_int, default=8)
    p.add_argument("--steps", type=positive_int, default=256, help="time steps T per video")
    p.add_argument("--channels", type=positive_int, default=512, help="input channels C per modality")
    p.add_argument("--repeats", type=positive_int, default=15)
    p.add_argument("--train-steps", type=positive_int, default=5)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=positive_int, default=None)
    p.add_argument("--json", default=None)
    p.add_argument("--monitor", action="store_true", help="overhead of the rank monitor on training steps")
    p.add_argument("--monitor-repeats", type=positive_int, default=3)
    p.add_argument("--monitor-run", default=None, metavar="DATA",
                   help="with --monitor: also train on DATA with train(monitor=True) and time the epoch monitor")
    p.add_argument("--monitor-epochs", type=positive_int, default=3)
    a = p.parse_args(argv)
    if a.threads:
        torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    if a.compare:
        return compare(a.compare, a.out, a.preset, a.seeds, a.device, a.epochs)
    mods, n_classes = ("rgb", "depth"), 12
    base = dict(modalities=mods, d_model=a.d_model, n_layers=a.layers, input_dims={m: a.channels for m in mods},
                n_classes=n_classes, dropout=0.1)
    torch.manual_seed(0)
    variants = {
        "no RTF": R3D(R3DConfig(rtf=False, **base)),
        "RTF (spectral, k=all)": R3D(R3DConfig(**base)),
        "RTF (spectral, top-k=16)": R3D(R3DConfig(informativeness_k=16, **base)),
        "RTF (bn_gamma)": R3D(R3DConfig(selection="bn_gamma", **base)),
    }
    for m in variants.values():
        m.to(device).eval()
    feats, mask, batch = _batch(a.batch, a.steps, a.channels, mods, n_classes, 8, device)
    frames = int(mask.sum())
    if a.monitor:
        return _report_monitor(a, variants["RTF (spectral, k=all)"], feats, mask, batch, frames, device)
    fwd = bench_forward(variants, feats, mask, a.repeats, device)
    ref = fwd["no RTF"]
    res = {"device": str(device), "threads": torch.get_num_threads(), "d_model": a.d_model, "layers": a.layers,
           "batch": a.batch, "steps": a.steps, "channels": a.channels, "frames_per_batch": frames,
           "forward": {k: {"ms_per_frame": 1e3 * v / frames, "ratio_to_no_rtf": v / ref} for k, v in fwd.items()}}
    train_fps, train_cpu = {}, {}
    for k in ("no RTF", "RTF (spectral, k=all)"):
        train_fps[k], train_cpu[k] = bench_train(variants[k], feats, mask, batch, a.train_steps, device)
    res["train_frames_per_s"] = train_fps
    res["train_frames_per_cpu_s"] = train_cpu
    print(f"R3D forward, {device} ({torch.get_num_threads()} threads), D={a.d_model}, L={a.layers}, "
          f"B={a.batch}, T={a.steps}, C={a.channels}, {frames} valid frames/batch, median of {a.repeats}")
    print("| variant | ms / frame | ratio to no RTF |")
    print("|---|---|---|")
    for k, v in res["forward"].items():
        print(f"| {k} | {v['ms_per_frame']:.4f} | {v['ratio_to_no_rtf']:.3f} |")
    print("training throughput, frames per wall second: " + ", ".join(f"{k} {v:.0f}" for k, v in train_fps.items()))
    print("training throughput, frames per CPU second:  " + ", ".join(f"{k} {v:.0f}" for k, v in train_cpu.items()))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


def _report_monitor(a, model, feats, mask, batch, frames, device):
    import os
    import platform

    res = {"machine": f"{platform.machine()}, {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_before": os.getloadavg(), "device": str(device), "threads": torch.get_num_threads(),
           "d_model": a.d_model, "layers": a.layers, "frames_per_batch": frames}
    res["steps"] = bench_monitor(model, feats, mask, batch, device, a.monitor_repeats)
    if a.monitor_run:
        res["epoch"] = monitor_run(a.monitor_run, a.out, a.d_model, a.layers, a.monitor_epochs, a.device)
    res["load_after"] = os.getloadavg()
    s = res["steps"]
    print(f"RankMonitor on R3D training steps, {device} ({res['threads']} threads), D={a.d_model}, L={a.layers}, "
          f"{frames} valid frames/batch, every={s['every']}, max_rows={s['max_rows']}, 5 names; "
          f"{res['date']}, load {res['load_before'][0]:.2f} -> {os.getloadavg()[0]:.2f}")
    for arm in ("without", "with"):
        print(f"  {arm:8s} monitor: wall " + ", ".join(f"{v:.2f}" for v in s["wall_s"][arm])
              + " s; cpu " + ", ".join(f"{v:.2f}" for v in s["cpu_s"][arm]) + " s")
    print(f"  ratio with/without (best of {s['repeats']}): wall {s['best_wall_ratio']:.4f}, cpu {s['best_cpu_ratio']:.4f}")
    if "epoch" in res:
        e = res["epoch"]
        print(f"  train --monitor, {e['n_videos']} validation videos per epoch: monitor / epoch time per epoch "
              + ", ".join(f"{r:.4f}" for r in e["ratio_per_epoch"]) + f" (median {e['median_ratio']:.4f})")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump(res, fh, indent=2)
    return res


if __name__ == "__main__":
    sys.exit(run(main))
