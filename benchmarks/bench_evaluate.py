"""``rankfusion evaluate`` with reliance and Shapley: wall and CPU seconds, feature maps kept open vs not.

Usage::

    python benchmarks/bench_evaluate.py [--videos 64] [--modalities rgb,depth,mvrgb,noise,imu,text]
                                        [--draws 3] [--repeats 3] [--threads 1] [--json out.json]

Writes the synthetic dataset (``--videos`` videos, seed 0) into a temporary folder, trains R3D
(the ``synthetic-small`` preset, one epoch, seed 1) on ``--modalities``, then times
:func:`rankfusion.evaluate.evaluate_run` on the test split with reliance on (the CLI's default:
two reliance reads per modality and draw, and with three or more modalities Shapley's
2^M - 1 swap subsets per draw), in two arms interleaved repeat by repeat (their order
alternating), so load from other processes hits both alike:

* ``fresh``: ``rankfusion.data.layout.OPEN_FEATURE_MAPS = 0``, every read of a feature file
  parses its header and maps it anew (the behaviour before the dataset kept maps open);
* ``open``: the default bound of open maps.

Both arms run the same computation on the same data, so their tables must be equal; the script
checks that and stops otherwise. Printed: the machine (CPU, cores, ``uptime``'s load, a GEMM
speed reading), then per arm the median wall and CPU seconds and the ratio fresh / open.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _machine() -> dict:
    import numpy as np
    from threadpoolctl import threadpool_limits

    a = np.random.default_rng(0).standard_normal((256, 256), dtype=np.float32)
    with threadpool_limits(1):
        t = min(_timed(lambda: [a @ a for _ in range(250)]) for _ in range(5))
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "unknown")
    return {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpu": cpu, "cores": os.cpu_count(),
            "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip(),
            "gemm_gflops": round(250 * 2 * 256**3 / t / 1e9, 1)}


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _arm(run: Path, open_maps: int, draws: int):
    from rankfusion.data import layout
    from rankfusion.evaluate import evaluate_run

    saved, layout.OPEN_FEATURE_MAPS = layout.OPEN_FEATURE_MAPS, open_maps
    try:
        t, c = time.perf_counter(), time.process_time()
        df = evaluate_run(run, "test", reliance=True, reliance_draws=draws)
        return time.perf_counter() - t, time.process_time() - c, df
    finally:
        layout.OPEN_FEATURE_MAPS = saved


def run_bench(work: Path, videos: int, modalities: list, draws: int, repeats: int) -> dict:
    from rankfusion.config import load_config
    from rankfusion.data import synthesize
    from rankfusion.data.layout import OPEN_FEATURE_MAPS
    from rankfusion.train import train

    data, run = work / "data", work / "run"
    synthesize(data, seed=0, n_videos=videos)
    cfg = load_config(preset="synthetic-small", model={"modalities": modalities}, train={"epochs": 1})
    train(cfg, data, run, seed=1, progress=False)
    arms = {"fresh": 0, "open": OPEN_FEATURE_MAPS}
    times = {name: [] for name in arms}
    tables = {}
    for r in range(repeats):
        for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            wall, cpu, df = _arm(run, arms[name], draws)
            times[name].append((wall, cpu))
            tables[name] = df
            print(f"repeat {r + 1}/{repeats} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    if not tables["fresh"].equals(tables["open"]):
        raise SystemExit("the two arms' tables differ: the open maps changed what is read")
    out = {name: {"wall_s": statistics.median(w for w, _ in t), "cpu_s": statistics.median(c for _, c in t),
                  "walls": [round(w, 2) for w, _ in t]} for name, t in times.items()}
    out["wall_ratio"] = round(out["fresh"]["wall_s"] / out["open"]["wall_s"], 2)
    out["cpu_ratio"] = round(out["fresh"]["cpu_s"] / out["open"]["cpu_s"], 2)
    out["shapley_rows"] = int((tables["open"].metric == "shapley").sum())
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=64)
    ap.add_argument("--modalities", default="rgb,depth,mvrgb,noise,imu,text")
    ap.add_argument("--draws", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1).")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = {"machine": _machine(), "torch": torch.__version__, "threads": args.threads}
    print(json.dumps(out["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out["result"] = run_bench(Path(tmp), args.videos, [m for m in args.modalities.split(",") if m],
                                  args.draws, args.repeats)
    out["machine_after"] = _machine()
    print(json.dumps(out["result"]), flush=True)
    print(json.dumps(out["machine_after"]), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
