"""Figs. 2 and 9: normalised spectra of each modality before/after RTF and of a plain fusion without RTF.

Usage: python analysis/spectra.py --data DATA [--out figures] [--profile full|quick] [--cache DIR]
(the same as `rankfusion figures --only spectra`; unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("spectra", __doc__.splitlines()[0]))
