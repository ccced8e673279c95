"""Shared entry point of the figure scripts: parse the options, call rankfusion.figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def run_family(name: str, doc: str) -> int:
    """Regenerate one figure family (``rankfusion figures --only NAME``) and update the manifest."""
    from rankfusion._validation import InputError
    from rankfusion.figures import FigureContext, make_figures
    from rankfusion.runcache import default_workers
    from rankfusion.threads import set_threads

    parser = argparse.ArgumentParser(description=doc)
    parser.add_argument("--data", required=True, type=Path, help="dataset in the standard layout")
    parser.add_argument("--out", default=Path("figures"), type=Path, help="output folder (default: figures)")
    parser.add_argument("--cache", default=None, type=Path, help="run cache (default: <DATA>/../rankfusion-cache)")
    parser.add_argument("--profile", default="full", choices=["quick", "full"])
    parser.add_argument("--anchor", default="rgb")
    parser.add_argument("--partner", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", default=1, type=int, help="torch threads (default 1)")
    parser.add_argument("--workers", default=None, type=int,
                        help="processes over the independent runs, one torch thread each (default min(2, CPU count))")
    args = parser.parse_args()
    try:
        set_threads(args.threads)
        ctx = FigureContext.open(args.data, out=args.out, cache_dir=args.cache, profile=args.profile,
                                 device=args.device, anchor=args.anchor, partner=args.partner)
        command = "python " + " ".join(sys.argv)
        res = make_figures(ctx, only=[name], command=command, workers=default_workers() if args.workers is None else args.workers)[name]
    except (InputError, ValueError, TypeError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    print("\n".join(str(args.out / f) for f in res.files))
    return 0
