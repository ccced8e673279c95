"""Several seeds of one configuration: batched (one stacked model) against one after another.

Usage::

    python benchmarks/bench_seeds.py [--widths 32,128] [--seeds 1,3,5,8] [--epochs 2] [--repeats 1]
                                     [--threads 1] [--step] [--remedies] [--json out.json]

Each configuration is the demo's R3D run (the ``full`` profile of :mod:`rankfusion.profiles`:
the ``synthetic-small`` preset at d_model 32, one temporal-fuser layer, batch 8, sample rate 4,
rgb+depth) on the demo's synthetic dataset (64 videos, generated in a temporary folder), at
d_model = each ``--widths`` entry, trained for ``--epochs`` epochs with validation (MoC) and the
rank monitor, as the demo trains it, with ``--threads`` torch threads (default 1, as each of the
demo's two workers; 2 is ``rankfusion train --seeds ...`` on a 2-core machine, torch's default). For each
width and K in ``--seeds`` the K seeds (1, 2, ..., K) are trained by
:func:`rankfusion.batched.train_seeds` (batched) and by :func:`rankfusion.train.train` (serial),
the two arms interleaved (their order alternating between repeats), so load from other
processes on a shared machine hits both alike; ratios are serial / batched of the same repeat.

Reported per configuration (all K seeds): wall seconds, CPU seconds of this process (each arm's
fastest repeat), frames/s = K x epochs x (valid time steps of one pass over the training split) /
wall, and the wall and CPU ratios serial / batched of each repeat with their median.

``--remedies`` instead times the collapse family's three remedy arms (:mod:`rankfusion.figures.collapse`:
plain fusion of rgb and depth with modality dropout of rgb, with unimodal heads, with unimodal
heads and OGM-GE) on its dataset at the highest collapse level of the ``full`` profile (96 videos),
K = each ``--seeds`` entry, at the profile's d_model (``--widths`` is ignored).

``--step`` adds a micro-benchmark of one training step's forward and backward for K = 5 seeds
(no RTF, no dropout: ``torch.func.vmap`` cannot run RTF's channel selection, whose row count
depends on the data, nor reproduce the serial dropout stream): ``vmap`` over ``functional_call``
with ``stack_module_state``, the grouped layers of :mod:`rankfusion.batched`, and K separate
modules.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, positive_int, run  # noqa: E402


def _speed() -> dict:
    """This machine's speed now, on one thread: a 256 x 256 float32 matrix product's GFLOP/s (best of
    5 runs of 250 products) and the seconds of a fixed pure-Python loop (best of 3), about a second in
    all. On the shared development VM the product's rate moved between 73 and 91 GFLOP/s within
    minutes while the load average stayed low; timings taken at different times are comparable
    only next to such a reading, and one reading is itself a sample of a speed that moves."""
    import timeit

    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)
    with threadpool_limits(1):
        best = min(timeit.repeat(lambda: a @ a, number=250, repeat=5))
    loop = min(timeit.repeat("for i in range(5_000_000): pass", number=1, repeat=3))
    return {"gemm_gflops": round(250 * 2 * 256**3 / best / 1e9, 1), "python_loop_s": round(loop, 4)}


def _machine() -> dict:
    load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "uptime": load, "speed": _speed()}


def _frames_per_epoch(cfg, data) -> int:
    from rankfusion.data import AnticipationDataset, open_dataset

    ds = open_dataset(data, modalities=list(cfg.model.modalities))
    tc = cfg.train
    items = AnticipationDataset(ds, "train", obs_ratios=tc.obs_ratios, future_ratio=tc.future_ratio,
                                sample_rate=tc.sample_rate, n_queries=cfg.model.n_queries)
    return sum(int(items[i]["seg_labels"].shape[0]) for i in range(len(items)))


def _arm(kind, cfg, data, out, seeds):
    from rankfusion.batched import train_batched, train_seeds
    from rankfusion.train import train

    shutil.rmtree(out, ignore_errors=True)
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "serial":
        train(cfg, data, out, seed=seeds, progress=False)
    elif len(seeds) == 1:  # one seed through the batched trainer (train_seeds would use the serial path)
        train_batched(cfg, data, {seeds[0]: out}, progress=False)
    else:
        train_seeds(cfg, data, out, seed=seeds, progress=False)
    return time.perf_counter() - t0, time.process_time() - c0


def _warm_up():
    """One-off costs of the process (the first optimiser imports torch's compiler stack, ~5 s), so
    that neither arm pays them."""
    import torch

    torch.optim.AdamW([torch.zeros(1, requires_grad=True)])


def run_bench(widths, ks, epochs, repeats, work: Path) -> list:
    from rankfusion.data import synthesize
    from rankfusion.profiles import get_profile
    from rankfusion.runcache import RunCache

    prof = get_profile("full")
    data = work / "data"
    if not (data / "synth.json").exists():
        synthesize(data, seed=0, **prof.synth)
    cache = RunCache(data, work / "cache", prof, progress=False)
    _warm_up()
    rows = []
    for width in widths:
        cfg = cache.config(("rgb", "depth"), d_model=width).replace(train={"epochs": epochs})
        for k in ks:
            rows.append(_compare(cfg, data, work, k, repeats, {"d_model": width}))
    return rows


def remedy_bench(ks, epochs, repeats, work: Path) -> list:
    """The collapse family's remedy arms (plain fusion of rgb and depth, rgb the anchor), batched vs serial."""
    from rankfusion.data.synth import prepare_dataset
    from rankfusion.figures.collapse import ANCHOR_DROPOUT, ARMS, levels
    from rankfusion.profiles import get_profile
    from rankfusion.remedies import active
    from rankfusion.runcache import RunCache

    prof = get_profile("full")
    kwargs = {**prof.collapse.get("synth", prof.synth), "collapse": levels(prof)[-1]}
    data = prepare_dataset(work / "collapse", kwargs, seed=int(prof.collapse.get("data_seed", 0)))
    cache = RunCache(data, work / "cache", prof, progress=False)
    _warm_up()
    rows = []
    for arm, (role, opts) in ARMS.items():
        opts = dict(opts)
        if opts.get("modality_dropout") == "anchor":
            opts["modality_dropout"] = (("rgb", ANCHOR_DROPOUT),)
        cfg = cache.config(("rgb", "depth"), **opts).replace(train={"epochs": epochs})
        if role != "pair" or not active(cfg.train):
            continue
        for k in ks:
            rows.append(_compare(cfg, data, work, k, repeats, {"arm": arm, "d_model": cfg.model.d_model}))
    return rows


def _compare(cfg, data, work: Path, k: int, repeats: int, head: dict) -> dict:
    """Seeds 1..k of ``cfg``, batched and serial, interleaved over ``repeats``: one result row."""
    epochs = cfg.train.epochs
    frames = _frames_per_epoch(cfg, data)
    seeds = list(range(1, k + 1))
    res = {"batched": [], "serial": []}
    for rep in range(repeats):
        for kind in (("batched", "serial") if rep % 2 == 0 else ("serial", "batched")):
            res[kind].append(_arm(kind, cfg, data, work / "run", seeds))
    row = {**head, "K": k, "epochs": epochs, "frames_per_epoch": frames}
    for kind, vals in res.items():
        wall = min(v[0] for v in vals)
        row[f"{kind}_wall_s"] = round(wall, 2)
        row[f"{kind}_cpu_s"] = round(min(v[1] for v in vals), 2)
        row[f"{kind}_frames_per_s"] = round(k * epochs * frames / wall, 1)
    # per repeat, serial / batched of the same round; the median over repeats (wall and CPU alike)
    for i, what in enumerate(("wall", "cpu")):
        ratios = [s[i] / b[i] for s, b in zip(res["serial"], res["batched"])]
        row[f"{what}_ratios"] = [round(r, 2) for r in ratios]
        row[f"{what}_ratio"] = round(statistics.median(ratios), 2)
    print(json.dumps(row), flush=True)
    return row


def step_bench(k=5, b=8, t=48, width=32, reps=20) -> dict:
    """ms per forward+backward of K seeds: vmap(functional_call), grouped layers, K modules."""
    import torch
    from torch.func import functional_call, stack_module_state, vmap

    from rankfusion.batched import stacked_forward
    from rankfusion.config import R3DConfig
    from rankfusion.model import R3D

    cfg = R3DConfig(modalities=("rgb", "depth"), d_model=width, n_layers=1, n_heads=4, mlp_ratio=2, dropout=0.0,
                    rtf=False, input_dims={"rgb": 64, "depth": 64}, n_classes=12)
    torch.manual_seed(0)
    models = [R3D(cfg) for _ in range(k)]
    params, buffers = stack_module_state(models)
    base = copy.deepcopy(models[0]).to("meta")
    feats = {m: torch.randn(k, b, t, 64) for m in cfg.modalities}
    mask = torch.ones(k, b, t, dtype=torch.bool)
    mask[:, b // 2:, 3 * t // 4:] = False

    def one(p, bf, fe, ma):
        o = functional_call(base, (p, bf), (fe, ma))
        return o.seg_logits.square().mean() + o.class_logits.square().mean()

    def with_vmap():
        loss = vmap(one)(params, buffers, feats, mask).sum()
        torch.autograd.grad(loss, list(params.values()), allow_unused=True)

    stacked = {n: v.detach().clone().requires_grad_(True) for n, v in params.items()}

    def grouped():
        o = stacked_forward(stacked, buffers, models[0], feats, mask, training=True)
        loss = (o["seg"].square().mean((1, 2, 3)) + o["cls"].square().mean((1, 2, 3))).sum()
        torch.autograd.grad(loss, list(stacked.values()), allow_unused=True)

    def separate():
        for i, mdl in enumerate(models):
            o = mdl({m: feats[m][i] for m in feats}, mask[i])
            torch.autograd.grad(o.seg_logits.square().mean() + o.class_logits.square().mean(),
                                list(mdl.parameters()), allow_unused=True)

    best = {}
    for _ in range(2):  # interleaved rounds; the best of each
        for name, fn in (("vmap", with_vmap), ("grouped", grouped), ("separate", separate)):
            fn()
            t0 = time.perf_counter()
            for _ in range(reps):
                fn()
            best[name] = min(best.get(name, float("inf")), (time.perf_counter() - t0) / reps * 1e3)
    return {"K": k, "B": b, "T": t, "d_model": width, **{f"{n}_ms": round(v, 1) for n, v in best.items()}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=listed(positive_int), default=[32, 128], help="d_model of each configuration")
    ap.add_argument("--seeds", type=listed(positive_int), default=[1, 3, 5, 8],
                    help="numbers of seeds K (seeds 1..K), one comparison each")
    ap.add_argument("--epochs", type=positive_int, default=2)
    ap.add_argument("--repeats", type=positive_int, default=1)
    ap.add_argument("--threads", type=positive_int, default=1, help="torch threads of both arms (default 1).")
    ap.add_argument("--step", action="store_true")
    ap.add_argument("--remedies", action="store_true", help="Time the collapse family's remedy arms instead.")
    ap.add_argument("--work", default=None, help="Folder for the dataset and runs (default: a temporary one).")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = {"machine": _machine(), "torch": torch.__version__, "threads": args.threads}
    print(json.dumps(out["machine"]), flush=True)
    if args.step:
        out["step"] = step_bench()
        print(json.dumps(out["step"]), flush=True)
    bench = remedy_bench if args.remedies else (lambda *a: run_bench(args.widths, *a))
    if args.work:
        out["runs"] = bench(args.seeds, args.epochs, args.repeats, Path(args.work))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            out["runs"] = bench(args.seeds, args.epochs, args.repeats, Path(tmp))
    return _finish(out, args.json)


def _finish(out: dict, json_path) -> dict:
    """Record the machine after the run, print it, and write ``out`` to ``json_path`` if given."""
    out["machine_after"] = _machine()
    print(json.dumps(out["machine_after"]), flush=True)
    if json_path:
        Path(json_path).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    sys.exit(run(main))
