"""Distributed training throughput: frames/s of R3D training with 1 and 2 processes (torchrun).

Usage::

    python benchmarks/bench_ddp.py [--videos 48] [--epochs 3] [--batch 8] [--nprocs 1,2]
                                   [--repeats 2] [--device cpu] [--json out.json]

Trains the ``synthetic-small`` preset (validation by loss, so the epochs time training) on a
synthetic dataset generated in a temporary folder, once without torchrun (the single-process
path, the peer) and once per ``--nprocs`` entry under ``python -m torch.distributed.run``
(gloo on CPU, nccl with ``--device cuda``), each process with one torch thread and batch
``--batch`` (so N processes take N x batch samples per step). Variants run round-robin
``--repeats`` times, so load from other processes on a shared machine hits each alike; the
figure is the best epoch's frames/s (valid time steps of all processes per second of training,
validation excluded) over repeats, epoch 1 (start-up) excluded. Ratios are against the
single-process path measured in the same run. The CPU seconds of rank 0's process per epoch
(validation included; least over epochs and repeats) show the work, which other users' load
does not inflate.

:func:`ddp_section` returns the numbers as a dict, for a combined scaling benchmark.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, positive_int, run  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train_cmd(nproc, data, out, epochs, batch, device):
    args = ["-m", "rankfusion", "train", str(data), "--out", str(out), "--preset", "synthetic-small",
            "--epochs", str(epochs), "--batch-size", str(batch), "--device", device, "--quiet"]
    if nproc == 0:  # the single-process path, no torchrun
        return [sys.executable, *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(nproc),
            "--master_addr", "127.0.0.1", "--master_port", str(_free_port()), *args]


def _best(run: Path) -> tuple:
    """Best frames/s and least CPU seconds of rank 0 per epoch (validation included), epoch 1 excluded."""
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    rows = rows[1:] or rows
    return max(float(r["frames_per_s"]) for r in rows), min(float(r["epoch_cpu_s"]) for r in rows)


def ddp_section(*, videos=48, epochs=3, batch=8, nprocs=(1, 2), repeats=2, device="cpu") -> dict:
    """Frames/s of the single-process path and of torchrun with each of ``nprocs`` processes.

    Returns
    -------
    dict
        ``{"single": fps, "torchrun-1": fps, ..., "ratios": {...}, "setup": {...}}``.
    """
    from rankfusion.data import synthesize

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    variants = {"single": 0, **{f"torchrun-{n}": n for n in nprocs}}
    best = {k: 0.0 for k in variants}
    cpu = {k: float("inf") for k in variants}
    with tempfile.TemporaryDirectory() as tmp:
        data = synthesize(Path(tmp) / "syn", seed=7, n_videos=videos, min_frames=120, max_frames=300,
                          channels={"rgb": 32, "depth": 32})
        for rep in range(repeats):
            for name, n in variants.items():
                out = Path(tmp) / f"{name}-{rep}"
                res = subprocess.run(_train_cmd(n, data, out, epochs, batch, device), env=env,
                                     capture_output=True, text=True)
                if res.returncode != 0:
                    raise RuntimeError(f"{name} failed:\n{res.stderr[-2000:]}")
                fps, cpu_s = _best(out)
                best[name], cpu[name] = max(best[name], fps), min(cpu[name], cpu_s)
    ratios = {k: best[k] / best["single"] for k in best if k != "single"}
    return {**best, "ratios": ratios, "epoch_cpu_s_rank0": cpu,
            "setup": {"videos": videos, "epochs": epochs, "batch_per_process": batch, "repeats": repeats,
                      "device": device, "machine": f"{platform.machine()}, {os.cpu_count()} cores",
                      "load_average": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=positive_int, default=48)
    ap.add_argument("--epochs", type=positive_int, default=3)
    ap.add_argument("--batch", type=positive_int, default=8, help="batch per process")
    ap.add_argument("--nprocs", type=listed(positive_int), default=[1, 2], help="torchrun process counts, e.g. 1,2")
    ap.add_argument("--repeats", type=positive_int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", default=None)
    a = ap.parse_args(argv)
    load0 = os.getloadavg()
    res = ddp_section(videos=a.videos, epochs=a.epochs, batch=a.batch, repeats=a.repeats, device=a.device,
                      nprocs=tuple(a.nprocs))
    res["setup"]["load_average_before"] = load0
    print(f"{res['setup']['date']}, {res['setup']['machine']}, load average before {load0[0]:.1f}, "
          f"after {res['setup']['load_average'][0]:.1f}")
    print(f"{'variant':<14}{'frames/s':>12}{'vs single':>12}{'epoch cpu s (rank 0)':>24}")
    for k in res["epoch_cpu_s_rank0"]:
        print(f"{k:<14}{res[k]:>12.0f}{res['ratios'].get(k, 1.0):>12.2f}{res['epoch_cpu_s_rank0'][k]:>24.2f}")
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    sys.exit(run(main))
