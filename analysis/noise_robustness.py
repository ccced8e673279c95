"""Figs. 6 and 7: ERank gains and MoC under calibrated Gaussian noise on one modality, with and without RTF.

Usage: python analysis/noise_robustness.py --data DATA [--out figures] [--profile full|quick] [--cache DIR]
(the same as `rankfusion figures --only noise`; unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("noise", __doc__.splitlines()[0]))
