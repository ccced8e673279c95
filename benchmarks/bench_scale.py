"""Benchmark of spectra of a chunked store (docs/scaling.md, docs/benchmarks.md "Scale").

Generates a zarr store of ``--rows`` x ``--cols`` float32 (default 2,000,000 x 512, ~4 GB,
uncompressed: random features do not compress) chunk by chunk, then computes its effective
rank four ways, each in a fresh process so that peak memory is its own:

* ``dask LocalCluster``: ``effective_rank`` of the dask array on a LocalCluster of
  ``--workers`` worker processes (one thread each): tree reduction of per-chunk Grams;
* ``dask threaded``: the same on dask's local threaded scheduler (what ``rankfusion spectrum
  STORE`` uses without ``--scheduler``);
* ``streaming``: one process, GramAccumulator fed chunk by chunk from the store;
* ``in memory``: the store read into one NumPy array, then ``effective_rank`` (where it fits).

Reported: wall time, peak resident memory (VmHWM) of the process and of each worker, and the
relative difference of each effective rank and spectrum from the in-memory result.

Usage: ``python benchmarks/bench_scale.py [--rows 2000000] [--cols 512] [--chunk-rows 50000]
[--workers 2] [--store DIR] [--keep]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import fail, positive_int, run  # noqa: E402

_CHILD = r"""
import json, os, resource, sys, time
import numpy as np
method, store, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
import zarr
import scipy.linalg, scipy.special  # lazy imports of the spectral core: not the method's cost
from rankfusion import spectral

def vmhwm(pid="self"):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
out = {"method": method}
t0 = time.perf_counter()
z = zarr.open_array(store, mode="r")
if method in ("dask LocalCluster", "dask threaded"):
    import dask.array as da
    x = da.from_array(z, chunks=(z.chunks[0], z.shape[1]))
    client = None
    if method == "dask LocalCluster":
        from distributed import Client, LocalCluster
        cluster = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                               dashboard_address=None, memory_limit=0)
        client = Client(cluster)
        t0 = time.perf_counter()  # the cluster's start-up is not the method's cost
    info = spectral.spectrum_info(x)
    if client is not None:
        out["worker_peak_bytes"] = sorted(client.run(lambda: vmhwm()).values())
        client.close(); cluster.close()
elif method == "streaming":
    acc = spectral.GramAccumulator()
    step = z.chunks[0]
    for start in range(0, z.shape[0], step):
        acc.update(z[start:start + step])
    s = acc.singular_values()
    info = spectral.SpectrumInfo(sigma=s, rank=s.shape[0], tol=None, route="gram (streamed)", n_fallback=0)
    out["n_ambiguous"] = acc.n_ambiguous()
else:
    X = z[:]
    info = spectral.spectrum_info(X)
out["seconds"] = time.perf_counter() - t0
out["sigma"] = [float(v) for v in np.asarray(info.sigma)[: int(info.rank)]]
out["erank"] = float(spectral.effective_rank(np.asarray(out["sigma"])))
out["route"] = info.route
out["peak_bytes"] = vmhwm()
print(json.dumps(out))
"""


def make_store(path, rows, cols, chunk_rows, seed):
    """Feature-like float32 store: channel scales decaying over two decades (cf. Fig. 2)."""
    import numpy as np
    import zarr

    z = zarr.create_array(path, shape=(rows, cols), chunks=(chunk_rows, cols), dtype="f4",
                          compressors=None, overwrite=True)
    scale = np.geomspace(1.0, 1e-2, cols).astype(np.float32)
    for i, start in enumerate(range(0, rows, chunk_rows)):
        rng = np.random.default_rng([seed, i])
        n = min(chunk_rows, rows - start)
        z[start : start + n] = rng.standard_normal((n, cols), dtype=np.float32) * scale


def run_child(method, store, workers, env):
    p = subprocess.run([sys.executable, "-c", _CHILD, method, store, str(workers)],
                       capture_output=True, text=True, env=env)
    if p.returncode:
        raise RuntimeError(f"{method} failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=positive_int, default=2_000_000)
    ap.add_argument("--cols", type=positive_int, default=512)
    ap.add_argument("--chunk-rows", type=positive_int, default=50_000)
    ap.add_argument("--workers", type=positive_int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--store", default=None,
                    help="folder to write the store into, created if missing (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the generated store (and its temporary folder)")
    ap.add_argument("--no-memory", action="store_true", help="skip the in-memory read (when it does not fit)")
    ap.add_argument("--methods", default=None,
                    help="comma-separated subset of: LocalCluster, threaded, streaming, memory (default: all)")
    ap.add_argument("--repeats", type=positive_int, default=1, help="round-robin repeats; the best wall time is kept")
    args = ap.parse_args(argv)

    methods = ["dask LocalCluster", "dask threaded", "streaming"] + ([] if args.no_memory else ["in memory"])
    if args.methods:
        wanted = [w.strip() for w in args.methods.split(",")]
        methods = [m for m in methods if any(w in m for w in wanted)]
    if not methods:
        fail(f"--methods {args.methods!r} names none of LocalCluster, threaded, streaming, memory"
             + (" (memory is off with --no-memory)" if args.no_memory else ""))
    if args.store:
        os.makedirs(args.store, exist_ok=True)
    root = args.store or tempfile.mkdtemp(prefix="rankfusion-scale-")
    store = os.path.join(root, "features.zarr")
    # without --keep nothing generated stays behind, whether the run ends or fails: the store, and
    # the temporary folder made for it
    generated = store if args.store else root
    nbytes = args.rows * args.cols * 4
    free = shutil.disk_usage(root).free
    if nbytes * 1.1 > free:
        if not args.store:
            os.rmdir(root)
        fail(f"the store needs {nbytes / 1e9:.1f} GB and {root!r} has {free / 1e9:.1f} GB free; "
             "use --rows to make it smaller")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         env.get("PYTHONPATH", "")])
    print(f"store {args.rows} x {args.cols} float32 ({nbytes / 1e9:.2f} GB), chunks of {args.chunk_rows} rows; "
          f"os.cpu_count() {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    results = {}
    try:
        t0 = time.perf_counter()
        make_store(store, args.rows, args.cols, args.chunk_rows, args.seed)
        print(f"  generated in {time.perf_counter() - t0:.1f} s", flush=True)
        # Round-robin repeats: on a shared machine every method gets the same chance of a quiet moment.
        for _ in range(args.repeats):
            for m in methods:
                r = run_child(m, store, args.workers, env)
                r["load"] = os.getloadavg()[0]
                if m not in results or r["seconds"] < results[m]["seconds"]:
                    results[m] = r
    finally:
        if not args.keep:
            shutil.rmtree(generated, ignore_errors=True)
    for m, r in results.items():
        workers = ""
        if "worker_peak_bytes" in r:
            workers = "; worker peak RSS " + ", ".join(f"{b / 2**20:.0f}" for b in r["worker_peak_bytes"]) + " MiB"
        print(f"  {m:<18} wall {r['seconds']:8.2f} s  process peak RSS {r['peak_bytes'] / 2**20:7.0f} MiB{workers}  "
              f"ERank {r['erank']:.12f}  route {r['route']}  (load {r['load']:.2f})", flush=True)
    import numpy as np

    ref_name = next((m for m in ("in memory", "streaming") if m in results), methods[0])
    ref = results[ref_name]
    s_ref = np.asarray(ref["sigma"])
    print(f"\nrelative differences from {ref_name!r}:")
    for m, r in results.items():
        s = np.asarray(r["sigma"])
        ds = (np.linalg.norm(s - s_ref) / np.linalg.norm(s_ref)) if s.shape == s_ref.shape else float("nan")
        print(f"  {m:<18} ERank {abs(r['erank'] - ref['erank']) / ref['erank']:.1e}   spectrum (2-norm) {ds:.1e}   "
              f"time / {ref_name} {r['seconds'] / ref['seconds']:.2f}x")
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    sys.exit(run(main))
