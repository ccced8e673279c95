"""Thread pools sized for small-matrix work: torch's intra-op threads and NumPy's BLAS threads.

rankfusion's models and spectra are small (D = 32 ... 512). On such matrices a multi-threaded
kernel gains little, and two thread pools on the same cores lose a lot: after a call, a BLAS pool's
threads spin-wait for more work, and torch's threads then wait for a core. Measured on a 2-core
machine while 5 seeds trained (torch's two threads; the rank monitor's eigendecompositions on
NumPy's OpenBLAS, two threads): the monitor's 325 updates of 13-217 rows took 0.13-0.30 s in all,
the slowest 16 ms, against 0.05 s and 0.5 ms with NumPy's BLAS on one thread, and the whole
training ran 25-30 % slower.

The rule, stated once here: where torch trains, NumPy's BLAS gets one thread
(:func:`blas_threads`); a process that runs alongside others (the run cache's workers, the figure
builder while they train) gets ``n`` of each (:func:`set_threads`, :func:`limited_threads`).
"""

from __future__ import annotations

import contextlib
import functools

from ._validation import check_int

__all__ = ["set_threads", "limited_threads", "blas_threads"]


@functools.cache
def _controller():
    """The thread pools of the libraries loaded so far. The search takes 1-3 ms and a limit through
    it ~20-60 us, so :func:`blas_threads`, entered once per monitor record, reuses the last search;
    :func:`set_threads` and :func:`limited_threads` search again (a library loaded since, such as
    SciPy's own BLAS, is then limited too)."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _limit(n: int, user_api: str | None, *, search: bool):
    if search:
        _controller.cache_clear()
    return _controller().limit(limits=n, user_api=user_api)


def set_threads(n: int | None) -> None:
    """Use ``n`` torch (intra-op) threads and ``n`` NumPy BLAS threads from now on; None leaves both
    at their defaults.

    The demo's models are small (D = 32, a few hundred steps per batch): one thread runs them
    about as fast as two on an idle machine and several times faster on a shared one, where
    multi-threaded kernels on small matrices spin-wait for a busy core (measured 4.5 s vs 9.7-18 s
    for the same run on a 2-core machine under load).
    """
    if n is None:
        return
    n = check_int(n, "threads", low=1)
    import torch

    torch.set_num_threads(n)
    _limit(n, "blas", search=True)  # kept: the limiter restores the old setting only when asked to


@contextlib.contextmanager
def limited_threads(n: int):
    """Within the block, ``n`` torch threads and ``n`` threads for every BLAS and OpenMP pool NumPy
    and SciPy loaded; both restored after it."""
    import torch

    n = check_int(n, "threads", low=1)
    old = torch.get_num_threads()
    # the BLAS/OpenMP limit first, so that what it restores is the caller's setting
    limiter = _limit(n, None, search=True)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        limiter.restore_original_limits()
        torch.set_num_threads(old)


@contextlib.contextmanager
def blas_threads(n: int):
    """Within the block, ``n`` threads for NumPy's (and SciPy's) BLAS; torch's pool is left alone."""
    with _limit(check_int(n, "threads", low=1), "blas", search=False):
        yield
