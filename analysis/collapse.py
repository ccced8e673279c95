"""Modality collapse: depth's use where only it decides, for plain fusion, RTF and the remedies, against depth alone.

Usage: python analysis/collapse.py --data DATA [--out figures] [--profile full|quick] [--cache DIR] [--workers N]
(the same as `rankfusion figures --only collapse`; the collapse datasets are generated under
CACHE/collapse/, unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("collapse", __doc__.splitlines()[0]))
