"""Fig. 5: MoC for exchange ratios 0.1, 0.2, 0.3.

Usage: python analysis/exchange_ratio.py --data DATA [--out figures] [--profile full|quick] [--cache DIR]
(the same as `rankfusion figures --only exchange`; unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("exchange", __doc__.splitlines()[0]))
