"""``rankfusion evaluate`` with reliance and Shapley: wall and CPU seconds, features kept in memory vs read per grid.

Usage::

    python benchmarks/bench_evaluate.py [--videos 64] [--modalities rgb,depth,mvrgb,noise,imu,text]
                                        [--draws 3] [--repeats 3] [--threads 1] [--json out.json]

Writes the synthetic dataset (``--videos`` videos, seed 0) into a temporary folder, trains R3D
(the ``synthetic-small`` preset, one epoch, seed 1) on ``--modalities``, then times
:func:`rankfusion.evaluate.evaluate_run` on the test split with reliance on (the CLI's default:
two reliance reads per modality and draw, and with three or more modalities Shapley's
2^M - 1 swap subsets per draw), in two arms interleaved repeat by repeat (their order
alternating), so load from other processes hits both alike:

* ``fresh``: every MoC grid reads each video's features from its file (a memory map; the
  behaviour before evaluation kept them), done here by making
  :class:`rankfusion.data.torchdata.CachedFeatures` keep nothing (``max_bytes = 0``);
* ``kept``: evaluation as it runs, each ``(video, modality)`` read once and kept.

Both arms run the same computation on the same data, so their tables must be equal; the script
checks that and stops otherwise. Printed: the machine (CPU, cores, ``uptime``'s load, a GEMM
speed reading), then per arm the median wall and CPU seconds and the ratio fresh / kept.

The whole evaluation moves with the machine's speed by more than the change (on the shared
development VM, 26-37 s for the same arm within minutes), so the part that changed is also timed
alone: ``reads_us``, microseconds per :func:`rankfusion.data.torchdata.video_inputs` call (one
video's observed features, every modality) over the test videos, best of 5 rounds per arm,
interleaved.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, positive_int, run  # noqa: E402
from bench_seeds import _finish, _machine  # noqa: E402  (the machine's description, one rule)


def _arm(run: Path, keep: bool, draws: int):
    from rankfusion import evaluate

    kept = evaluate.CachedFeatures
    if not keep:  # a cache that keeps nothing: every grid reads from the files
        evaluate.CachedFeatures = lambda ds: kept(ds, max_bytes=0)
    try:
        t, c = time.perf_counter(), time.process_time()
        df = evaluate.evaluate_run(run, "test", reliance=True, reliance_draws=draws)
        return time.perf_counter() - t, time.process_time() - c, df
    finally:
        evaluate.CachedFeatures = kept


def _reads(data: Path, modalities: list, keep: bool) -> float:
    """Microseconds per :func:`video_inputs` call over the test videos (obs 0.3), best of 5 rounds."""
    from rankfusion.data import open_dataset
    from rankfusion.data.torchdata import FEATURE_CACHE_BYTES, CachedFeatures, video_inputs

    ds = CachedFeatures(open_dataset(data, modalities=modalities), FEATURE_CACHE_BYTES if keep else 0)
    videos = ds.split("test")
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(10):
            for v in videos:
                video_inputs(ds, v, modalities, max(1, int(0.3 * ds.n_frames(v))), 4, "cpu")
        best = min(best, (time.perf_counter() - t) / (10 * len(videos)) * 1e6)
    return best


def run_bench(work: Path, videos: int, modalities: list, draws: int, repeats: int) -> dict:
    from rankfusion.config import load_config
    from rankfusion.data import synthesize
    from rankfusion.train import train

    data, run = work / "data", work / "run"
    synthesize(data, seed=0, n_videos=videos)
    cfg = load_config(preset="synthetic-small", model={"modalities": modalities}, train={"epochs": 1})
    train(cfg, data, run, seed=1, progress=False)
    arms = {"fresh": False, "kept": True}
    times = {name: [] for name in arms}
    tables = {}
    for r in range(repeats):
        for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            wall, cpu, df = _arm(run, arms[name], draws)
            times[name].append((wall, cpu))
            tables[name] = df
            print(f"repeat {r + 1}/{repeats} {name}: {wall:.1f} s wall, {cpu:.1f} s CPU", file=sys.stderr, flush=True)
    if not tables["fresh"].equals(tables["kept"]):
        raise SystemExit("the two arms' tables differ: keeping the features changed what is read")
    out = {name: {"wall_s": statistics.median(w for w, _ in t), "cpu_s": statistics.median(c for _, c in t),
                  "walls": [round(w, 2) for w, _ in t]} for name, t in times.items()}
    out["wall_ratio"] = round(out["fresh"]["wall_s"] / out["kept"]["wall_s"], 2)
    out["cpu_ratio"] = round(out["fresh"]["cpu_s"] / out["kept"]["cpu_s"], 2)
    out["shapley_rows"] = int((tables["kept"].metric == "shapley").sum())
    reads = {name: [] for name in arms}
    for r in range(3):
        for name in (list(arms) if r % 2 == 0 else list(arms)[::-1]):
            reads[name].append(_reads(data, modalities, arms[name]))
    out["reads_us"] = {name: round(min(v), 1) for name, v in reads.items()}
    out["reads_ratio"] = round(out["reads_us"]["fresh"] / out["reads_us"]["kept"], 2)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=positive_int, default=64)
    ap.add_argument("--modalities", type=listed(str), default=["rgb", "depth", "mvrgb", "noise", "imu", "text"])
    ap.add_argument("--draws", type=positive_int, default=3, help="reliance draws per modality")
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--threads", type=positive_int, default=1, help="torch threads (default 1).")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    out = {"machine": _machine(), "torch": torch.__version__, "threads": args.threads}
    print(json.dumps(out["machine"]), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        out["result"] = run_bench(Path(tmp), args.videos, args.modalities, args.draws, args.repeats)
    print(json.dumps(out["result"]), flush=True)
    return _finish(out, args.json)


if __name__ == "__main__":
    sys.exit(run(main))
