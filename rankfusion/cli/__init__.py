"""The ``rankfusion`` command line: a thin click layer over the library.

Each command family lives in its own module of this package and is registered on
:data:`main` below. Errors a user can cause (:class:`~rankfusion._validation.InputError`,
raised by the library's input checks, and ``OSError`` from files) end as one line
``Error: ...`` on stderr and exit status 2, never a traceback; so do click's own usage
errors. Any other exception is a bug and keeps its traceback. Warnings raised by a command
that fails with a user error are dropped: the one ``Error:`` line says what went wrong. A closed
output pipe (``| head``) ends the command quietly with status 1.
"""

from __future__ import annotations

import errno
import io
import os
import sys
import warnings

import click

from .._validation import ON_CLI, InputError
from ..files import cannot_write

#: Exceptions that are the user's input, not a bug: reported in one line, exit 2.
USER_ERRORS = (InputError, OSError)


def _one_line(text: str) -> str:
    text = str(text).strip()
    return text.splitlines()[0] if text else ""


class OneLineError(click.ClickException):
    """A click error shown as the single line ``Error: <message>`` (exit status 2)."""

    exit_code = 2

    def show(self, file=None):
        click.echo(f"Error: {_one_line(self.format_message())}", err=True)


def _usage_error(exc: click.UsageError) -> OneLineError:
    # click prints "Usage: ...", "Try ... --help" and the message on three lines; keep one
    hint = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
    return OneLineError(_one_line(exc.format_message()) + hint)


def _reader_went_away():
    """The reader of stdout closed it (``rankfusion ... | head``): not the input's fault, so no
    ``Error:`` line; stdout goes to /dev/null so that Python's flush at exit raises nothing, and
    the exit status is 1, as Python's own documentation does it."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, io.UnsupportedOperation):  # a stdout without a file descriptor
        pass
    sys.exit(1)


def _is_out_of_memory(exc: BaseException) -> bool:
    """A failed allocation: Python's MemoryError, or torch's allocator error (a RuntimeError)."""
    text = str(exc).lower()
    return isinstance(exc, MemoryError) or (isinstance(exc, RuntimeError) and (
        "can't allocate memory" in text or "out of memory" in text))


class RankfusionGroup(click.Group):
    """A click group that reports user errors in one line with exit status 2."""

    def make_context(self, info_name, args, parent=None, **extra):
        try:
            return super().make_context(info_name, args, parent=parent, **extra)
        except click.UsageError as exc:
            raise _usage_error(exc) from None

    def invoke(self, ctx):
        on_cli = ON_CLI.set(True)  # library messages name the command's options (option_name)
        try:
            return self._invoke(ctx)
        finally:
            ON_CLI.reset(on_cli)

    def _invoke(self, ctx):
        with warnings.catch_warnings(record=True) as caught:
            try:
                result = super().invoke(ctx)
            except (click.exceptions.Exit, click.Abort, OneLineError):
                raise
            except click.UsageError as exc:
                raise _usage_error(exc) from None
            except click.ClickException as exc:
                raise OneLineError(exc.format_message()) from None
            except BrokenPipeError:
                _reader_went_away()
            except (MemoryError, RuntimeError) as exc:
                if not _is_out_of_memory(exc):
                    raise
                click.echo(f"Error: out of memory ({_one_line(exc)[:200]}): choose smaller sizes (widths, batch, "
                           "videos) or a machine with more memory", err=True)
                sys.exit(2)
            except USER_ERRORS as exc:
                if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
                    msg = f"{exc.strerror}: {str(exc.filename)!r}"
                    if exc.errno in (errno.ENOTDIR, errno.EEXIST):  # e.g. a folder made below a file
                        msg = _one_line(cannot_write(exc.filename, exc))
                else:
                    msg = _one_line(exc) or type(exc).__name__
                click.echo(f"Error: {msg}", err=True)
                sys.exit(2)
        # the command succeeded: show its warnings as Python would have
        for w in caught:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
        return result


@click.group(cls=RankfusionGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="rankfusion")
def main():
    """Measure and counter representation collapse in multi-modal models."""


# Each module defines its commands and adds them to ``main``; importing them here keeps
# ``rankfusion --help`` listing all of them.
from . import data, experiments, model, spectrum, theorem  # noqa: E402,F401
