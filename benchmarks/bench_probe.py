"""The noise control's fits: one candidate and its surrogates as stacked members, or one fit each.

Usage::

    python benchmarks/bench_probe.py [--widths 6,64,240] [--members 20] [--repeats 3] [--json out.json]

``rankfusion modality-select --paired`` fits, for every candidate and replicate, the candidate and
its 19 surrogates as 20 stacked members (:func:`rankfusion.selection.fit_probe_members`); this
times that fit against its peer, the 20 separate fits it reproduces
(:func:`rankfusion.selection.fit_probe` on each member), on data of the UCI "Multiple Features"
shapes (1,600 training rows of 10 classes, an anchor of 76 columns, a candidate of each
``--widths`` columns), with the probe's defaults (width 32, 100 full-batch Adam steps) and one
torch thread, as each process of the command runs them. The two arms alternate; each reports the
fastest of ``--repeats`` and the ratio separate / stacked. Timings depend on shapes only, so the
data are seeded Gaussians with class means; no data set is read.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import listed, positive_int, run  # noqa: E402
from bench_seeds import _machine  # noqa: E402


def _data(width: int, members: int, rows: int = 1600, classes: int = 10, anchor: int = 76, seed: int = 0):
    rng = np.random.default_rng([seed, width])
    y = np.arange(rows) % classes
    means = rng.standard_normal((classes, anchor + width))
    xa = (means[y, :anchor] + rng.standard_normal((rows, anchor))).astype(np.float32)
    xc = (means[y, anchor:] + rng.standard_normal((members, rows, width))).astype(np.float32)
    return xa, xc, y


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=listed(positive_int), default=[6, 64, 240], help="candidate widths (columns)")
    ap.add_argument("--members", type=positive_int, default=20, help="the candidate and its surrogates")
    ap.add_argument("--repeats", type=positive_int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    import torch

    from rankfusion.selection import ProbeConfig, fit_probe, fit_probe_members

    torch.set_num_threads(1)
    config = ProbeConfig()
    result = {"machine": _machine(), "torch": torch.__version__, "members": args.members, "rows": []}
    print(result["machine"])
    for w in args.widths:
        xa, xc, y = _data(w, args.members)
        stacked, separate = [], []
        for r in range(args.repeats):
            arms = [("stacked", lambda: fit_probe_members(xa, xc, y, config=config, seed=r)),
                    ("separate", lambda: [fit_probe([xa, x], y, config=config, seed=r) for x in xc])]
            for name, fn in arms if r % 2 == 0 else arms[::-1]:  # alternate the order
                (stacked if name == "stacked" else separate).append(_time(fn))
        row = {"width": w, "stacked_s": min(stacked), "separate_s": min(separate),
               "ratio": min(separate) / min(stacked), "stacked_all": stacked, "separate_all": separate}
        result["rows"].append(row)
        print(f"width {w:4d}: stacked {row['stacked_s']:.2f} s, separate {row['separate_s']:.2f} s, "
              f"ratio {row['ratio']:.2f}x (fastest of {args.repeats}; all: "
              f"{', '.join(f'{v:.2f}' for v in stacked)} / {', '.join(f'{v:.2f}' for v in separate)})")
    result["machine_after"] = _machine()
    print("at the end:", result["machine_after"])
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(run(main))
