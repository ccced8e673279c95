"""Benchmark of the spectral core (docs/benchmarks.md, "Spectral core").

One run on one float32 matrix (default 100,000 x 512): our ``effective_rank`` against
``numpy.linalg.svd(compute_uv=False)``, ``scipy.linalg.svdvals``, ``torch.linalg.svdvals``, the
bare float32 product ``X.T @ X`` and the float64 product (cast + ``X.T @ X``, the exact floor),
best of ``--repeats``; the effective-rank error of each route against a float64 SVD; and the
peak memory of the streaming path (GramAccumulator over a memory-mapped ``.npy`` file four
times larger than its chunk budget), measured in a fresh subprocess.

With ``--device cuda`` (GPU path): the matrix as a float32 torch tensor on the GPU, our
``effective_rank`` of it (float64 Gram on the device, certified, SVD fallback there) against
``torch.linalg.svdvals`` on the same device and the bare float32 / float64 products there;
every timing synchronises the device. Without a CUDA device it stops with one ``Error:`` line
(exit status 2).

Usage: ``python benchmarks/bench_spectral.py [--rows 100000] [--cols 512] [--repeats 3] [--device cpu|cuda]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import positive_float, positive_int, run  # noqa: E402


def bench_cuda(args):
    """The GPU path: torch tensors on the device vs ``torch.linalg.svdvals`` there."""
    import numpy as np
    import torch

    from rankfusion.spectral import effective_rank, spectrum_info

    if not torch.cuda.is_available():
        print("Error: --device cuda: no CUDA device is available (torch.cuda.is_available() is False; "
              f"torch {torch.__version__})", file=sys.stderr)
        sys.exit(2)
    dev = torch.device("cuda")
    rng = np.random.default_rng(args.seed)
    X = (rng.standard_normal((args.rows, args.cols), dtype=np.float32)
         * np.geomspace(1.0, 1e-2, args.cols).astype(np.float32))
    shape, eps32 = X.shape, float(np.finfo(np.float32).eps)
    Xt = torch.from_numpy(X).to(dev)

    def synced(fn):
        def run():
            out = fn()
            torch.cuda.synchronize()
            return out
        return run

    # Warm-up: CUDA context, cuBLAS/cuSOLVER handles and kernels are not the method's cost.
    effective_rank(Xt[:2000, :64]), torch.linalg.svdvals(Xt[:2000, :64]), torch.cuda.synchronize()
    ref = erank_from_sigma(torch.linalg.svdvals(Xt.double()).cpu().numpy(), eps32, shape)
    methods = [
        ("rankfusion effective_rank (cuda tensor)", lambda: float(effective_rank(Xt)), lambda e: e),
        ("torch.linalg.svdvals (float32, cuda)", lambda: torch.linalg.svdvals(Xt).cpu().numpy(),
         lambda s: erank_from_sigma(s, eps32, shape)),
        ("bare X.T @ X (float32, cuda)", lambda: Xt.T @ Xt, None),
        ("float64 product (cuda): X.double(); X64.T @ X64", lambda: (lambda a: a.T @ a)(Xt.double()), None),
    ]
    print(f"matrix {shape[0]} x {shape[1]} float32 on {torch.cuda.get_device_name(dev)}; "
          f"torch {torch.__version__}", flush=True)
    best = {}
    for _ in range(args.repeats):
        for name, fn, _ in methods:
            t, c, out = best_of(synced(fn), 1)
            b = best.setdefault(name, [float("inf"), out])
            b[0], b[1] = min(b[0], t), out
    ours = best[methods[0][0]][0]
    for name, _, to_erank in methods:
        t, out = best[name]
        err = "" if to_erank is None else f"   ERank rel. error {abs(to_erank(out) - ref) / ref:.1e}"
        print(f"  {name:<52} wall {t * 1e3:9.2f} ms   {t / ours:6.2f}x ours{err}")
    info = spectrum_info(Xt)
    print(f"  route taken by effective_rank: {info.route} (fallbacks: {info.n_fallback})")
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC")


def best_of(fn, repeats):
    """(best wall time, best process CPU time, result) over ``repeats`` runs.

    CPU time (all threads of this process) is reported next to wall time because the machine
    is shared: other users' load inflates wall time but not the CPU work a method needs.
    """
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        c0, t0 = time.process_time(), time.perf_counter()
        out = fn()
        walls.append(time.perf_counter() - t0)
        cpus.append(time.process_time() - c0)
    return min(walls), min(cpus), out


def erank_from_sigma(s, eps, shape):
    """Eq. 1 (:func:`rankfusion.spectral.effective_rank` of a spectrum) of singular values another
    routine computed for a matrix of ``shape`` and precision ``eps``, those at or below the rank
    tolerance (:func:`rankfusion.spectral.rank_tolerance`) dropped, as ``effective_rank`` drops them."""
    import numpy as np

    from rankfusion.spectral import effective_rank, rank_tolerance

    s = np.sort(np.clip(np.asarray(s, dtype=np.float64), 0, None))[::-1]
    return float(effective_rank(s[s > rank_tolerance(s[0], max(shape), eps)]))


_STREAM_CHILD = r"""
import json, sys, time, tracemalloc
import numpy as np
import scipy.special  # imported before tracing: its import is not the streaming path's memory
from rankfusion.spectral import GramAccumulator

def status():
    # VmHWM: peak resident set of this process (fresh after exec, unlike ru_maxrss, which
    # Linux carries over from the forking parent); RssFile: resident pages of the memory map.
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key, _, val = line.partition(":")
            if key in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[key] = int(val.split()[0])
    return out

path, chunk_rows = sys.argv[1], int(sys.argv[2])
before = status()
mm = np.load(path, mmap_mode="r")
tracemalloc.start()
t0 = time.perf_counter()
acc = GramAccumulator()
for start in range(0, mm.shape[0], chunk_rows):
    acc.update(mm[start:start + chunk_rows])
erank = float(acc.effective_rank())
dt = time.perf_counter() - t0
_, peak = tracemalloc.get_traced_memory()
print(json.dumps({"seconds": dt, "erank": erank, "tracemalloc_peak": peak, "before": before, "after": status()}))
"""


def stream_memory(X, budget_bytes=None):
    """Stream a memory-mapped copy of X in a fresh process, chunk budget 1/4 of the file; peak memory.

    The budget is the float64 size of one chunk once cast (default: a quarter of the file).
    """
    import numpy as np

    n, d = X.shape
    if budget_bytes is None:
        budget_bytes = X.nbytes // 4
    chunk_rows = max(1, budget_bytes // (8 * d))
    rows = max(1, min(n, 4 * budget_bytes // X.itemsize // d))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "stream.npy")
        np.save(path, X[:rows])
        file_bytes = os.path.getsize(path)
        out = subprocess.run(
            [sys.executable, "-c", _STREAM_CHILD, path, str(chunk_rows)],
            check=True, capture_output=True, text=True,
        )
    res = json.loads(out.stdout)
    res.update(file_bytes=file_bytes, chunk_rows=chunk_rows, rows=rows, budget_bytes=budget_bytes)
    return res


def _parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=positive_int, default=100_000)
    ap.add_argument("--cols", type=positive_int, default=512)
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--budget-mib", type=positive_float, default=None,
                    help="chunk budget of the streaming run (default: a quarter of the matrix's bytes)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=positive_int, default=None,
                    help="BLAS/OpenMP threads for every method (default: the libraries' own choice)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                    help="cuda: the GPU path (torch tensors on the device vs torch.linalg.svdvals there)")
    return ap.parse_args(argv)


def _methods(X, Xt, eps32, shape):
    """(name, call, its output -> ERank or None) of every method timed, rankfusion's first."""
    import numpy as np
    import scipy.linalg
    import torch

    from rankfusion.spectral import effective_rank

    return [
        ("rankfusion effective_rank", lambda: float(effective_rank(X)), lambda e: e),
        ("rankfusion effective_rank (torch tensor)", lambda: float(effective_rank(Xt)), lambda e: e),
        ("bare X.T @ X (float32)", lambda: X.T @ X, None),
        ("float64 product: X.astype(f64); X64.T @ X64", lambda: (lambda a: a.T @ a)(X.astype(np.float64)), None),
        ("float32 Gram + eigvalsh (approximate; not offered)", lambda: np.linalg.eigvalsh(X.T @ X),
         lambda lam: erank_from_sigma(np.sqrt(np.clip(lam, 0, None)), eps32, shape)),
        ("torch.linalg.svdvals (float32)", lambda: torch.linalg.svdvals(Xt).numpy(),
         lambda s: erank_from_sigma(s, eps32, shape)),
        ("scipy.linalg.svdvals (float32)", lambda: scipy.linalg.svdvals(X, check_finite=False),
         lambda s: erank_from_sigma(s, eps32, shape)),
        ("numpy.linalg.svd(compute_uv=False) (float32)", lambda: np.linalg.svd(X, compute_uv=False),
         lambda s: erank_from_sigma(s, eps32, shape)),
    ]


def _time_methods(methods, repeats: int, ref: float) -> list:
    """Round-robin repeats (on a shared machine every method gets the same chance of a quiet
    moment): per method its fastest wall and CPU seconds and its ERank's relative error."""
    best = {name: [float("inf"), float("inf"), None] for name, _, _ in methods}
    for _ in range(repeats):
        for name, fn, _ in methods:
            t, c, out = best_of(fn, 1)
            b = best[name]
            b[0], b[1], b[2] = min(b[0], t), min(b[1], c), out
    rows = []
    for name, _, to_erank in methods:
        t, c, out = best[name]
        err = abs(to_erank(out) - ref) / ref if to_erank else None
        rows.append((name, t, c, err))
        print(f"  {name:<52} wall {t:7.3f} s  cpu {c:7.3f} s"
              + ("" if err is None else f"   ERank rel. error {err:.1e}"), flush=True)
    return rows


def _print_ratios(rows) -> None:
    ours_t, ours_c = rows[0][1], rows[0][2]
    print("\nratios (other / rankfusion effective_rank), wall and cpu:")
    for name, t, c, _ in rows[1:]:
        print(f"  {name:<52} {t / ours_t:6.2f}x {c / ours_c:6.2f}x")
    named = {name: (t, c) for name, t, c, _ in rows}
    for label, key in (("wall", 0), ("cpu", 1)):
        o = named["rankfusion effective_rank"][key]
        print(f"targets ({label}): torch.linalg.svdvals / ours = "
              f"{named['torch.linalg.svdvals (float32)'][key] / o:.2f} (target >= 4); "
              f"ours / bare float32 product = {o / named['bare X.T @ X (float32)'][key]:.2f} (target <= 1.5); "
              f"ours / float64 product (exact floor) = "
              f"{o / named['float64 product: X.astype(f64); X64.T @ X64'][key]:.2f}")


def _print_streaming(X, budget_mib) -> None:
    mem = stream_memory(X, None if budget_mib is None else int(budget_mib * 2**20))
    print(f"\nstreaming: {mem['rows']} x {X.shape[1]} float32 .npy ({mem['file_bytes'] / 2**20:.0f} MiB, "
          f"{mem['file_bytes'] / mem['budget_bytes']:.1f}x the {mem['budget_bytes'] / 2**20:.0f} MiB chunk budget, "
          f"chunks of {mem['chunk_rows']} rows) in {mem['seconds']:.2f} s")
    b, a = mem["before"], mem["after"]
    print(f"  tracemalloc peak (NumPy heap) {mem['tracemalloc_peak'] / 2**20:.1f} MiB; "
          f"peak RSS (VmHWM) {a['VmHWM'] / 1024:.0f} MiB, after imports {b['VmHWM'] / 1024:.0f} MiB; "
          f"anonymous RSS at the end {a['RssAnon'] / 1024:.0f} MiB (after imports {b['RssAnon'] / 1024:.0f}); "
          f"resident pages of the memory map {a['RssFile'] / 1024 - b['RssFile'] / 1024:.0f} MiB (clean, reclaimable)")


def main(argv=None):
    args = _parse(argv)
    if args.device == "cuda":
        return bench_cuda(args)
    if args.threads:
        # Must be set before NumPy/torch load their BLAS.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)

    import numpy as np
    import scipy.linalg
    import torch

    from rankfusion.spectral import effective_rank, spectrum_info

    rng = np.random.default_rng(args.seed)
    # Feature-like spectrum: channel scales decaying over two decades (cf. Fig. 2).
    X = (rng.standard_normal((args.rows, args.cols), dtype=np.float32)
         * np.geomspace(1.0, 1e-2, args.cols).astype(np.float32))
    shape, eps32 = X.shape, float(np.finfo(np.float32).eps)
    Xt = torch.from_numpy(X)

    # Warm-up on a small matrix: lazy imports (scipy.special, torch.linalg) are not the method's cost.
    small = X[:1000, :64]
    effective_rank(small), effective_rank(torch.from_numpy(small)), torch.linalg.svdvals(torch.from_numpy(small))
    t_ref, _, s_ref = best_of(lambda: scipy.linalg.svdvals(X.astype(np.float64), check_finite=False), 1)
    ref = erank_from_sigma(s_ref, eps32, shape)

    print(f"matrix {shape[0]} x {shape[1]} float32; torch threads {torch.get_num_threads()}; "
          f"threads asked {args.threads or 'default'}; "
          f"os.cpu_count() {os.cpu_count()}; load average {os.getloadavg()[0]:.2f}", flush=True)
    rows = _time_methods(_methods(X, Xt, eps32, shape), args.repeats, ref)
    print(f"  load average after the timings {os.getloadavg()[0]:.2f}")
    info = spectrum_info(X)
    print(f"  route taken by effective_rank: {info.route} (fallbacks: {info.n_fallback}); "
          f"reference float64 SVD took {t_ref:.2f} s", flush=True)
    _print_ratios(rows)
    _print_streaming(X, args.budget_mib)
    print(f"\n{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.processor() or platform.machine()}, "
          f"numpy {np.__version__}, torch {torch.__version__}")


if __name__ == "__main__":
    sys.exit(run(main))
