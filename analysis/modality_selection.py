"""Fig. 3: harmonic mean of effective-rank gains of rgb fused with each candidate modality.

Usage: python analysis/modality_selection.py --data DATA [--out figures] [--profile full|quick] [--cache DIR]
(the same as `rankfusion figures --only modality`; unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("modality", __doc__.splitlines()[0]))
