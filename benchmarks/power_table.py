"""The false-positive rate and power of rankfusion's verdicts, simulated with ``stats.compare``.

Two arms of ``n`` seeds each, values Normal(0, 1) and Normal(delta, 1) (``delta`` in units of the
single-run sd); a verdict is "resolved" when :func:`rankfusion.stats.compare` (Welch's t, the
default for two different models) gives p <= alpha (:func:`rankfusion.stats.rejects`). Each cell is the fraction of seeded draws
resolved: at delta = 0 the false-positive rate, above it the power. For comparison the former
screening rule (|difference of means| >= 2 x the larger single-run sd) is simulated on the same
draws. The table in docs/analysis.md, "How findings are judged", is this script's output::

    python benchmarks/power_table.py            # 4,000 draws per cell, seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import non_negative_int, positive_int, run  # noqa: E402
from rankfusion import stats  # noqa: E402


def simulate(n: int, delta: float, draws: int, rng) -> tuple[float, float, float]:
    """``(resolved by compare, resolved by the former 2-sd rule, median mde)`` at one cell."""
    a = rng.standard_normal((draws, n)) + delta
    b = rng.standard_normal((draws, n))
    res = [stats.compare(x, y) for x, y in zip(a, b)]
    welch = np.mean([c.resolved for c in res])
    ref = np.maximum(a.std(axis=1, ddof=1), b.std(axis=1, ddof=1))
    old = np.mean(np.abs(a.mean(axis=1) - b.mean(axis=1)) >= 2.0 * ref)
    mde = float(np.median([c.mde for c in res[:500]]))
    return float(welch), float(old), mde


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", type=positive_int, default=4000, help="draws per cell (default 4000)")
    p.add_argument("--seed", type=non_negative_int, default=0)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    t0 = time.perf_counter()
    print(f"Welch's t at alpha = {stats.ALPHA:g}, {a.draws} draws per cell, seed {a.seed}; "
          "fraction of draws resolved (former 2-sd rule in brackets); mde: median smallest difference "
          "detected with 80 % power, in sd")
    print()
    print("| seeds per arm | false positives (0 sd) | power at 1 sd | power at 2 sd | power at 3 sd | mde |")
    print("|---|---|---|---|---|---|")
    for n in (3, 5, 10):
        cells, mde = [], float("nan")
        for delta in (0.0, 1.0, 2.0, 3.0):
            w, o, m = simulate(n, delta, a.draws, rng)
            cells.append(f"{w:.3f} ({o:.3f})")
            if delta == 0.0:
                mde = m
        print(f"| {n} | " + " | ".join(cells) + f" | {mde:.2f} sd |")
    print()
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
