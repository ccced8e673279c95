"""When progress bars show: on a terminal only, so that logs get one line per epoch, not per update."""

from __future__ import annotations

import sys


def bar_disabled(progress: bool, stream=None) -> bool:
    """tqdm's ``disable=`` for a bar the caller asked for (``progress``).

    A bar redraws itself (a carriage return and a new line of text) every ``mininterval``;
    written to a file or a pipe (``make demo > log 2>&1``) every redraw stays in the log. So a
    bar shows only when its stream (default ``sys.stderr``, tqdm's) is a terminal; the callers
    print their own one line per epoch / run either way.

    Parameters
    ----------
    progress : bool
        Whether the caller wants progress output at all.
    stream : file-like, optional
        Where the bar would be written; default ``sys.stderr``.

    Returns
    -------
    bool
        True when the bar must not be drawn.
    """
    if not progress:
        return True
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    try:
        return not (callable(isatty) and isatty())
    except (ValueError, OSError):  # a closed stream
        return True
