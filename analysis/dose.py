"""Dose-response: MoC of rgb alone, plain rgb+depth fusion and R3D against complementarity and imbalance, and modality reliance.

Usage: python analysis/dose.py --data DATA [--out figures] [--profile full|quick] [--cache DIR] [--workers N]
(the same as `rankfusion figures --only dose`; the dose datasets are generated under CACHE/dose/,
unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("dose", __doc__.splitlines()[0]))
