"""The ``rankfusion`` command line: a thin click layer over the library.

Each command family lives in its own module of this package and is registered on
:data:`main` below. Errors a user can cause (``ValueError``/``TypeError`` raised by
the library's input checks, unreadable files) end as one line on stderr and exit
status 2, never a traceback.
"""

from __future__ import annotations

import sys

import click

from .._validation import InputError

#: Exceptions that are the user's input, not a bug: reported in one line, exit 2.
USER_ERRORS = (InputError, ValueError, TypeError, OSError, KeyError)


class RankfusionGroup(click.Group):
    """A click group that reports user errors in one line with exit status 2."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except click.exceptions.Exit:
            raise
        except (click.ClickException, click.Abort):
            raise
        except USER_ERRORS as exc:
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            if isinstance(exc, KeyError):
                msg = f"missing key {exc}"
            click.echo(f"Error: {msg}", err=True)
            sys.exit(2)


@click.group(cls=RankfusionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rankfusion")
def main():
    """Measure and counter representation collapse in multi-modal models."""


def _register():
    # Each module defines its commands and adds them to ``main``; importing here keeps
    # ``rankfusion --help`` listing all of them. Missing modules are work in progress.
    import importlib

    for name in ("spectrum", "theorem", "data", "model", "analysis"):
        try:
            importlib.import_module(f"{__name__}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{__name__}.{name}":
                raise


_register()
