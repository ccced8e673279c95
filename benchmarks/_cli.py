"""The command line shared by the benchmark scripts: option types that refuse a bad value before
any work starts (argparse's usage and one error line, exit status 2), and :func:`run`, the entry
point that reports bad input the library refuses as one ``Error:`` line (exit status 2) instead
of a traceback.

The scripts run as files (``python benchmarks/NAME.py``), so this folder is on ``sys.path``.
"""

from __future__ import annotations

import argparse
import sys


def _number(kind, low, strict):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {'an integer' if kind is int else 'a number'}, got {text!r}")
        if value != value or (value <= low if strict else value < low):
            raise argparse.ArgumentTypeError(f"must be {'>' if strict else '>='} {low}, got {text!r}")
        return value

    return parse


#: ``type=`` of an option that must be an integer >= 1, >= 0, or a number > 0.
positive_int = _number(int, 0, True)
non_negative_int = _number(int, 0, False)
positive_float = _number(float, 0.0, True)


def listed(item):
    """``type=`` of a comma-separated, non-empty list whose entries ``item`` parses (``int``,
    ``float``, :data:`positive_int`, ...)."""

    def parse(text: str) -> list:
        parts = [p.strip() for p in text.split(",")]
        if not all(parts):
            raise argparse.ArgumentTypeError(f"expected a comma-separated list without empty entries, got {text!r}")
        try:
            return [item(p) for p in parts]
        except (ValueError, argparse.ArgumentTypeError) as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None

    return parse


def fail(message: str):
    """Stop with one ``Error:`` line on stderr and exit status 2, the status of a bad option."""
    print(f"Error: {message}", file=sys.stderr)
    raise SystemExit(2)


def run(main, argv=None) -> int:
    """Call ``main(argv)``; the exit status: 0, or what ``main`` returns when that is an int, or 2
    with one ``Error:`` line on stderr when the library refuses its input or a file cannot be read
    or written."""
    from rankfusion._validation import InputError

    try:
        out = main(argv)
    except (InputError, OSError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2
    return out if isinstance(out, int) and not isinstance(out, bool) else 0
