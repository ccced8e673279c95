"""Table 6: principal angles between a modality's dominant subspace and the other's injected channels.

Usage: python analysis/angles.py --data DATA [--out figures] [--profile full|quick] [--cache DIR]
(the same as `rankfusion figures --only angles`; unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("angles", __doc__.splitlines()[0]))
