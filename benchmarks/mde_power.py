"""How much power a reported detectable difference (``Comparison.mde``) really has, simulated.

``stats.compare`` gives, with an unresolved test, the difference its design detects with 80 % power
(:attr:`rankfusion.stats.Comparison.mde`), computed at the *observed* spread (for Welch's test
exactly, over the two sample variances and the degrees of freedom estimated from them). The
observed spread is itself an estimate, so the real power at a reported difference varies from
study to study. This script measures it: for each n it draws many small studies (two arms of n
seeds, Normal(0, 1) values), takes each study's reported ``mde_in_family(m)``, and estimates the
Welch test's power at that difference with the true sd 1 from a fixed set of simulated draws. It
also prints the difference that truly has 80 % power. A second part gives Welch's false-positive
rate with unequal arms and spreads. The numbers quoted in docs/analysis.md ("How findings are
judged") are this script's::

    python benchmarks/mde_power.py              # 300 studies, 20,000 draws per power value, seed 11
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from scipy import optimize
from scipy import stats as sps

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import non_negative_int, positive_int, run  # noqa: E402
from rankfusion import stats  # noqa: E402


def welch_power(delta: float, za: np.ndarray, zb: np.ndarray, alpha: float) -> float:
    """Fraction of the draws ``(za + delta, zb)`` that Welch's test resolves at ``alpha``."""
    return float(np.mean(sps.ttest_ind(za + delta, zb, axis=1, equal_var=False).pvalue < alpha))


def achieved(n: int, m: int, studies: int, draws: int, rng) -> dict:
    """One row: the median reported mde of ``studies`` studies at level alpha/m, the median and
    10th percentile of Welch's power at it, and the difference with 80 % power."""
    alpha = stats.ALPHA / m
    za, zb = rng.standard_normal((draws, n)), rng.standard_normal((draws, n))
    reported = np.array([stats.compare(rng.standard_normal(n), rng.standard_normal(n)).mde_in_family(m)
                         for _ in range(studies)])
    power = np.array([welch_power(d, za, zb, alpha) for d in reported])
    # the power curve is monotone in delta: its 80 % point by a bracketed root
    true80 = optimize.brentq(lambda d: welch_power(d, za, zb, alpha) - stats.POWER, 0.0, 50.0, xtol=1e-3)
    return {"n": n, "m": m, "mde_median": float(np.median(reported)), "power_median": float(np.median(power)),
            "power_p10": float(np.quantile(power, 0.1)), "true_80": float(true80)}


def false_positives(designs, draws: int, rng) -> list[dict]:
    """Welch's false-positive rate at alpha for arms ``(n_a, sd_a, n_b, sd_b)`` of equal means."""
    out = []
    for na, sa, nb, sb in designs:
        p = sps.ttest_ind(rng.standard_normal((draws, na)) * sa, rng.standard_normal((draws, nb)) * sb,
                          axis=1, equal_var=False).pvalue
        out.append({"arms": f"{na} of sd {sa} vs {nb} of sd {sb}", "false_positives": float(np.mean(p < stats.ALPHA)),
                    "mc_se": float(np.sqrt(stats.ALPHA * (1 - stats.ALPHA) / draws))})
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--studies", type=positive_int, default=300, help="studies per row (default 300)")
    p.add_argument("--draws", type=positive_int, default=20000, help="draws per power value (default 20000)")
    p.add_argument("--family", type=positive_int, default=36,
                   help="the Holm family size m of the second level (default 36)")
    p.add_argument("--seed", type=non_negative_int, default=11)
    a = p.parse_args(argv)
    rng = np.random.default_rng(a.seed)
    t0 = time.time()
    print("| seeds per arm | level | median reported mde (sd) | Welch's power at it: median | 10th percentile "
          "| difference with 80 % power (sd) |")
    print("|---|---|---|---|---|---|")
    for n in (3, 5, 10):
        for m in (1, a.family):
            r = achieved(n, m, a.studies, a.draws, rng)
            level = f"{stats.ALPHA:g}" if m == 1 else f"{stats.ALPHA:g}/{m}"
            print(f"| {n} | {level} | {r['mde_median']:.2f} | {r['power_median']:.2f} | {r['power_p10']:.2f} "
                  f"| {r['true_80']:.2f} |")
    print()
    for r in false_positives([(5, 1, 5, 1), (5, 1, 5, 4), (10, 1, 4, 2), (3, 1, 8, 3)], 2 * a.draws, rng):
        print(f"Welch, {r['arms']}: false positives {r['false_positives']:.3f} (Monte Carlo se {r['mc_se']:.3f})")
    print(f"({time.time() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
