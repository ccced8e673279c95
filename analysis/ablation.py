"""Tables 2, 3, 8, 9: MoC of the ablation variants (no RTF, static exchange, no temporal fuser, shared latent, ...).

Usage: python analysis/ablation.py --data DATA [--out figures] [--profile full|quick] [--cache DIR]
(the same as `rankfusion figures --only ablation`; unchanged runs are reused from the cache).
"""

import sys

if __package__:  # python -m analysis.NAME
    from ._common import run_family
else:  # python analysis/NAME.py: the script's folder is on sys.path
    from _common import run_family

if __name__ == "__main__":
    sys.exit(run_family("ablation", __doc__.splitlines()[0]))
