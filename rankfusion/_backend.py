"""The array backend seam: every operation :mod:`rankfusion.spectral` performs on an array.

The backend follows the input type (house rule 1): NumPy arrays (and memory maps) go to
NumPy/SciPy, torch tensors stay torch on their own device, dask arrays (chunked by rows) are
reduced chunk by chunk into small NumPy results (:class:`DaskOps`, the ``[scale]``
extra). :func:`get_ops` picks the backend and refuses to mix NumPy arrays with torch tensors.
torch and dask are imported lazily so that ``import rankfusion.spectral`` works without them.
Every reduction that decides a spectrum is done in float64.
"""

from __future__ import annotations

import math

import numpy as np

from ._validation import check_float, check_matrix, describe, is_dask, is_torch, require_extra

#: Bytes of float64 per chunk when a Gram matrix is accumulated chunk by chunk (8192 rows of a
#: 512-channel matrix). Single-threaded, 2048 to 8192 rows cost the same; fewer, larger BLAS
#: calls suffer less from thread synchronisation on a loaded machine (benchmarks/bench_spectral.py),
#: and 32 MiB keeps the transient float64 copy small next to any feature matrix worth chunking.
CHUNK_BYTES = 32 * 2**20


def chunk_rows_for(d: int) -> int:
    """Rows per float64 chunk for ``d`` columns (at least 256)."""
    return max(256, CHUNK_BYTES // (8 * max(int(d), 1)))


def _rows(mu, start, count):
    """The part of a broadcast mean ``mu`` that matches rows ``start:start+count``.

    ``mu`` is either a row of column means, shape (..., 1, d), or (for a transposed, wide
    input) a column of row means, shape (..., n, 1).
    """
    return mu if mu.shape[-2] == 1 else mu[..., start : start + count, :]


def _torch():
    import torch

    return torch


class NumpyOps:
    """NumPy/SciPy implementation of the backend operations."""

    name = "numpy"

    @staticmethod
    def eps(x) -> float:
        """Machine epsilon of the input's own dtype (float64 for integer/bool inputs)."""
        dt = x.dtype
        return float(np.finfo(dt).eps) if np.issubdtype(dt, np.floating) else float(np.finfo(np.float64).eps)

    @staticmethod
    def to64(x):
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def asarray(x, like=None):
        return np.asarray(x)

    @staticmethod
    def mean64(x, axis):
        # dtype=float64 makes NumPy accumulate in float64 through its buffered loops,
        # without materialising a float64 copy of a float32 input.
        with np.errstate(all="ignore"):  # NaN/Inf are reported by the caller's finiteness check
            mu = np.mean(x, axis=axis, dtype=np.float64, keepdims=True)
            # One correction pass (chunks of rows, cast one at a time): the mean of the residuals
            # x - mu, whose rounding is relative to the spread, not to the mean. The sum above
            # runs row by row and can be several ulps off; mu + r is within about half an ulp of
            # the exact mean (a constant column gets its value back, and centres to exactly 0).
            # Chunks of about 4 MiB of float64, cast and subtracted in one operation: they stay in
            # cache, so the pass costs about a quarter of what chunks of chunk_rows_for's size do.
            axis, n = axis % x.ndim, x.shape[axis % x.ndim]
            step = max(1, (4 << 20) // max(1, 8 * (x.size // max(n, 1))))
            r = np.zeros_like(mu)
            for start in range(0, n, step):
                part = x[(slice(None),) * axis + (slice(start, start + step),)]
                r += np.subtract(part, mu, dtype=np.float64).sum(axis=axis, keepdims=True)
            return mu + r / n

    @staticmethod
    def gram64(x, mu=None, chunk_rows=None):
        """``x^T x`` (or ``(x - mu)^T (x - mu)``) over the last two axes, in float64.

        Parameters
        ----------
        x : ndarray of shape (..., n, d)
        mu : ndarray of shape (..., 1, d) or None
        """
        n, d = x.shape[-2], x.shape[-1]
        chunk_rows = chunk_rows or chunk_rows_for(d)
        # NaN/Inf inputs are detected afterwards from the diagonal; no warnings on the way.
        with np.errstate(all="ignore"):
            if x.dtype == np.float64 and mu is None and x.ndim == 2:
                # One call: NumPy recognises ``a.T @ a`` and uses the symmetric rank-k update.
                return x.T @ x
            g = np.zeros(x.shape[:-2] + (d, d), dtype=np.float64)
            for start in range(0, n, chunk_rows):
                c = np.asarray(x[..., start : start + chunk_rows, :], dtype=np.float64)
                if mu is not None:
                    c = c - _rows(mu, start, chunk_rows)
                ct = np.swapaxes(c, -1, -2)
                g += ct @ c
        return g

    @staticmethod
    def colsq64(x, mu=None, chunk_rows=None):
        """Column energies ``sum_n x[n, c]^2`` over axis -2, in float64."""
        out = np.zeros(x.shape[:-2] + (x.shape[-1],), dtype=np.float64)
        chunk_rows = chunk_rows or chunk_rows_for(x.shape[-1])
        with np.errstate(all="ignore"):  # NaN/Inf are detected afterwards from the result
            for start in range(0, x.shape[-2], chunk_rows):
                c = np.asarray(x[..., start : start + chunk_rows, :], dtype=np.float64)
                if mu is not None:
                    c = c - mu
                out += np.einsum("...nd,...nd->...d", c, c)
        return out

    @staticmethod
    def diagonal(g):
        return np.diagonal(g, axis1=-2, axis2=-1)

    @staticmethod
    def all_finite(x) -> bool:
        return bool(np.isfinite(x).all())

    @staticmethod
    def eigvalsh_desc(g):
        return np.linalg.eigvalsh(g)[..., ::-1]

    @staticmethod
    def eigh_desc(g):
        w, v = np.linalg.eigh(g)
        return w[..., ::-1], v[..., ::-1]

    @staticmethod
    def svdvals64(x):
        """Singular values (descending) of a float64 array of shape (..., n, d)."""
        import scipy.linalg

        if x.ndim == 2:
            return scipy.linalg.svdvals(x, check_finite=False)
        return np.linalg.svd(x, compute_uv=False)

    @staticmethod
    def svd64(x):
        """Thin SVD ``u, s, vt`` of a float64 matrix."""
        import scipy.linalg

        return scipy.linalg.svd(x, full_matrices=False, check_finite=False)

    @staticmethod
    def xlogy(a, b):
        import scipy.special

        return scipy.special.xlogy(a, b)

    sqrt = staticmethod(np.sqrt)
    exp = staticmethod(np.exp)
    log = staticmethod(np.log)
    abs = staticmethod(np.abs)
    arcsin = staticmethod(np.arcsin)
    arccos = staticmethod(np.arccos)
    rad2deg = staticmethod(np.rad2deg)

    @staticmethod
    def clip(x, lo, hi=None):
        return np.clip(x, lo, hi)

    @staticmethod
    def where(c, a, b):
        return np.where(c, a, b)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        return np.sum(x, axis=axis, keepdims=keepdims)

    @staticmethod
    def zeros_like(x):
        return np.zeros_like(x)

    @staticmethod
    def tofloat(x):
        """Scalar (0-d) result in the backend's float64 type."""
        return np.float64(x) if np.ndim(x) == 0 else np.asarray(x, dtype=np.float64)

    @staticmethod
    def stable_argsort(x, axis=-1):
        return np.argsort(x, axis=axis, kind="stable")

    @staticmethod
    def sort(x, axis=-1):
        return np.sort(x, axis=axis)

    @staticmethod
    def nonzero1d(mask):
        return np.flatnonzero(mask).astype(np.int64)

    @staticmethod
    def int64(x):
        return np.asarray(x, dtype=np.int64) if np.ndim(x) else np.int64(x)

    @staticmethod
    def to_host(x):
        return np.asarray(x)

    @staticmethod
    def detach(x):
        return x

    @staticmethod
    def device(x):
        """Where ``x`` lives, for error messages and same-place checks (None: host memory)."""
        return None

    @staticmethod
    def ldexp(x, e: int):
        """``x * 2**e``, exact unless the result under/overflows (a copy)."""
        return np.ldexp(x, e)

    @staticmethod
    def ndim(x) -> int:
        return int(np.ndim(x))

    @staticmethod
    def copy(x):
        return np.array(x, copy=True)

    @staticmethod
    def flip_last(x):
        return x[..., ::-1]

    @staticmethod
    def mT(x):
        """Swap the last two axes (a view)."""
        return np.swapaxes(x, -1, -2)

    @staticmethod
    def qr_q(x):
        """Orthonormal factor ``Q`` of a thin QR of a float64 matrix."""
        return np.linalg.qr(x)[0]

    @staticmethod
    def atan2(y, x):
        return np.arctan2(y, x)

    @staticmethod
    def mean_or_nan(x):
        """Mean of all entries as a float64 scalar; NaN for an empty array."""
        return np.float64(x.mean()) if x.size else np.float64(np.nan)

    @staticmethod
    def nan_like(x):
        return np.full_like(x, np.nan)

    @staticmethod
    def ones_like(x):
        return np.ones_like(x)

    minimum = staticmethod(np.minimum)
    maximum = staticmethod(np.maximum)

    @staticmethod
    def float64(x, like=None):
        """``x`` (array-like or Python/NumPy scalar) as a float64 array of this backend."""
        return np.asarray(x, dtype=np.float64)

    @staticmethod
    def index(idx, like=None):
        """Host integer indices ``idx`` as an index array for ``like``."""
        return np.asarray(idx)

    @staticmethod
    def bool_mask(mask, like=None, name="mask"):
        """A boolean mask for indexing ``like``; TypeError naming ``name`` otherwise."""
        if is_torch(mask):
            raise TypeError(f"{name} must be a NumPy array like F, got {describe(mask)}")
        mask = np.asarray(mask)
        if mask.dtype != np.bool_:
            raise TypeError(f"{name} must be boolean, got {describe(mask)}")
        return mask

    @staticmethod
    def matmul64(x, w, chunk_rows=None):
        """``x @ w`` in float64 with ``x`` (N, D) cast chunk by chunk (no whole float64 copy)."""
        chunk_rows = chunk_rows or chunk_rows_for(x.shape[1])
        out = np.empty((x.shape[0], w.shape[1]), dtype=np.float64)
        for start in range(0, x.shape[0], chunk_rows):
            out[start : start + chunk_rows] = np.asarray(x[start : start + chunk_rows], dtype=np.float64) @ w
        return out

    @staticmethod
    def check_layout(x, name):
        """Backend-specific layout requirements of a (..., N, D) input; NumPy has none."""
        return x

    @staticmethod
    def erank_value(x, name):
        """A given effective-rank value (0-d, finite, ``>= 0``) as a float64 scalar."""
        return np.float64(check_float(float(np.asarray(x)), name, low=0.0))


class TorchOps:
    """torch implementation; every result stays on the input's device."""

    name = "torch"

    @staticmethod
    def eps(x) -> float:
        torch = _torch()
        dt = x.dtype if x.is_floating_point() else torch.float64
        return float(torch.finfo(dt).eps)

    @staticmethod
    def to64(x):
        return x.to(_torch().float64)

    @staticmethod
    def asarray(x, like=None):
        torch = _torch()
        return torch.as_tensor(x, device=None if like is None else like.device)

    @staticmethod
    def mean64(x, axis):
        torch = _torch()
        if _host_view_ok(x):
            # zero-copy NumPy view: the correction pass casts chunk by chunk, not X whole
            return torch.from_numpy(NumpyOps.mean64(x.numpy(), axis))
        if not x.is_floating_point():
            x = x.to(torch.float64)
        mu = x.mean(dim=axis, keepdim=True, dtype=torch.float64)
        # one correction pass, as NumpyOps.mean64: within about half an ulp of the exact mean
        return mu + (x.to(torch.float64) - mu).mean(dim=axis, keepdim=True)

    @staticmethod
    def gram64(x, mu=None, chunk_rows=None):
        torch = _torch()
        n, d = x.shape[-2], x.shape[-1]
        if n * d * d >= _NUMPY_GRAM_MIN_WORK and _host_view_ok(x) and (mu is None or _host_view_ok(mu)):
            # A CPU tensor outside autograd shares its memory with a NumPy view (no copy);
            # NumPy's ``a.T @ a`` uses the symmetric rank-k update, half the flops of torch's
            # general matmul (2.2x faster on the benchmark matrix). Only for large inputs:
            # on small ones NumPy's BLAS threads, still spinning, slow the next torch kernel.
            g = NumpyOps.gram64(x.numpy(), None if mu is None else mu.numpy(), chunk_rows)
            return torch.from_numpy(g)
        if x.dtype == torch.float64 and mu is None:
            return x.transpose(-1, -2) @ x
        if x.ndim == 2 and x.device.type != "cpu":
            # On an accelerator one float64 cast + one product beats a Python loop of
            # small kernels; the float64 copy lives on the same device.
            c = x.to(torch.float64)
            if mu is not None:
                c = c - mu
            return c.T @ c
        g = torch.zeros(x.shape[:-2] + (d, d), dtype=torch.float64, device=x.device)
        chunk_rows = chunk_rows or chunk_rows_for(d)
        for start in range(0, n, chunk_rows):
            c = x[..., start : start + chunk_rows, :].to(torch.float64)
            if mu is not None:
                c = c - _rows(mu, start, chunk_rows)
            g += c.transpose(-1, -2) @ c
        return g

    @staticmethod
    def colsq64(x, mu=None, chunk_rows=None):
        if _host_view_ok(x) and (mu is None or _host_view_ok(mu)):
            # Zero-copy NumPy view: chunked casts instead of one whole float64 copy.
            return _torch().from_numpy(NumpyOps.colsq64(x.numpy(), None if mu is None else mu.numpy(), chunk_rows))
        c = x.to(_torch().float64)
        if mu is not None:
            c = c - mu
        return (c * c).sum(dim=-2)

    @staticmethod
    def diagonal(g):
        return _torch().diagonal(g, dim1=-2, dim2=-1)

    @staticmethod
    def all_finite(x) -> bool:
        return bool(_torch().isfinite(x).all())

    @staticmethod
    def eigvalsh_desc(g):
        return _torch().linalg.eigvalsh(g).flip(-1)

    @staticmethod
    def eigh_desc(g):
        w, v = _torch().linalg.eigh(g)
        return w.flip(-1), v.flip(-1)

    @staticmethod
    def svdvals64(x):
        return _torch().linalg.svdvals(x)

    @staticmethod
    def svd64(x):
        return _torch().linalg.svd(x, full_matrices=False)

    @staticmethod
    def xlogy(a, b):
        return _torch().special.xlogy(a, b)

    @staticmethod
    def sqrt(x):
        return _torch().sqrt(x)

    @staticmethod
    def exp(x):
        return _torch().exp(x)

    @staticmethod
    def log(x):
        return _torch().log(x)

    @staticmethod
    def abs(x):
        return _torch().abs(x)

    @staticmethod
    def arcsin(x):
        return _torch().arcsin(x)

    @staticmethod
    def arccos(x):
        return _torch().arccos(x)

    @staticmethod
    def rad2deg(x):
        return _torch().rad2deg(x)

    @staticmethod
    def clip(x, lo, hi=None):
        return _torch().clamp(x, min=lo, max=hi)

    @staticmethod
    def where(c, a, b):
        return _torch().where(c, a, b)

    @staticmethod
    def sum(x, axis=None, keepdims=False):
        if axis is None:
            return x.sum()
        return x.sum(dim=axis, keepdim=keepdims)

    @staticmethod
    def zeros_like(x):
        return _torch().zeros_like(x)

    @staticmethod
    def tofloat(x):
        return x.to(_torch().float64)

    @staticmethod
    def stable_argsort(x, axis=-1):
        return _torch().argsort(x, dim=axis, stable=True)

    @staticmethod
    def sort(x, axis=-1):
        return _torch().sort(x, dim=axis).values

    @staticmethod
    def nonzero1d(mask):
        return _torch().nonzero(mask).flatten().to(_torch().int64)

    @staticmethod
    def int64(x):
        return x.to(_torch().int64)

    @staticmethod
    def to_host(x):
        return x.detach().cpu().numpy()

    @staticmethod
    def detach(x):
        return x.detach()

    @staticmethod
    def device(x):
        return x.device

    @staticmethod
    def ldexp(x, e: int):
        # torch has no exact ldexp for large |e| (2.0**e leaves float64's range): scale in steps of
        # at most 2**1000, each exact unless the result under/overflows
        out = x.clone()
        while e:
            step = max(-1000, min(1000, e))
            out = out * math.ldexp(1.0, step)
            e -= step
        return out

    @staticmethod
    def ndim(x) -> int:
        return x.dim()

    @staticmethod
    def copy(x):
        return x.clone()

    @staticmethod
    def flip_last(x):
        return x.flip(-1)

    @staticmethod
    def mT(x):
        return x.transpose(-1, -2)

    @staticmethod
    def qr_q(x):
        return _torch().linalg.qr(x).Q

    @staticmethod
    def atan2(y, x):
        return _torch().atan2(y, x)

    @staticmethod
    def mean_or_nan(x):
        torch = _torch()
        return x.mean() if x.numel() else torch.tensor(float("nan"), dtype=torch.float64, device=x.device)

    @staticmethod
    def nan_like(x):
        return _torch().full_like(x, float("nan"))

    @staticmethod
    def ones_like(x):
        return _torch().ones_like(x)

    @staticmethod
    def minimum(a, b):
        return _torch().minimum(a, b)

    @staticmethod
    def maximum(a, b):
        return _torch().maximum(a, b)

    @staticmethod
    def float64(x, like=None):
        torch = _torch()
        device = like.device if is_torch(like) else (x.device if is_torch(x) else None)
        return torch.as_tensor(x, dtype=torch.float64, device=device)

    @staticmethod
    def index(idx, like=None):
        return _torch().as_tensor(np.asarray(idx), device=None if like is None else like.device)

    @staticmethod
    def bool_mask(mask, like=None, name="mask"):
        torch = _torch()
        if not is_torch(mask):
            mask = torch.as_tensor(np.asarray(mask), device=None if like is None else like.device)
        if mask.dtype != torch.bool:
            raise TypeError(f"{name} must be boolean, got {describe(mask)}")
        return mask

    @staticmethod
    def matmul64(x, w, chunk_rows=None):
        return x.to(_torch().float64) @ w

    @staticmethod
    def check_layout(x, name):
        return x

    @staticmethod
    def erank_value(x, name):
        check_matrix(x, name, min_ndim=0)
        return x.to(_torch().float64)



#: Work (N * D^2) above which a CPU tensor's float64 Gram goes through NumPy's symmetric
#: rank-k update. Below it, handing over between NumPy's and torch's thread pools costs more
#: than the update saves: a 1635 x 128 Gram followed by torch's eigh measured 8.0 ms via
#: NumPy against 1.8-5.9 ms in torch alone; from ~1e9 up NumPy wins (20000 x 256: 44 vs 59 ms).
_NUMPY_GRAM_MIN_WORK = 5e8


def _host_view_ok(x) -> bool:
    """True when a torch tensor can be viewed as a NumPy array without copying or losing grads."""
    torch = _torch()
    return (
        x.device.type == "cpu"
        and not (x.requires_grad and torch.is_grad_enabled())
        and x.dtype in (torch.float64, torch.float32, torch.float16, torch.int64, torch.int32,
                        torch.int16, torch.int8, torch.uint8)
        and not x.is_conj() and not x.is_neg()
    )


# --------------------------------------------------------------------------------------
# Dask (the [scale] extra): reductions over N on dask, everything after them NumPy
# --------------------------------------------------------------------------------------
#: The extra that carries dask.
DASK_EXTRA = "scale"
#: Partial Gram matrices summed per task of the tree reduction (dask's own default ``split_every``).
SPLIT_EVERY = 8


def require_dask(module: str = "dask"):
    """``dask`` (or one of its modules), or ImportError naming the ``[scale]`` extra."""
    return require_extra(module, DASK_EXTRA)


def _block_gram(block, mu, chunk_rows):
    """One row block -> its float64 Gram ``(B - mu)^T (B - mu)`` (a leaf of the tree).

    No finiteness check here: a NaN/Inf anywhere shows in the summed diagonal, and the caller
    then names ``X`` (a block knows neither its name nor its offset).
    """
    return NumpyOps.gram64(np.asarray(block), mu, chunk_rows)


def _sum_grams(*grams):
    """Combine step of the tree: the sum of uncentred block Grams, into a new array.

    The inputs are left untouched, so a task that a cluster retries does not count twice.
    """
    out = np.array(grams[0], dtype=np.float64, copy=True)
    with np.errstate(all="ignore"):  # a NaN/Inf block: detected afterwards from the diagonal
        for g in grams[1:]:
            out += g
    return out


def _compute(*lazy):
    return require_dask().compute(*lazy)


class DaskOps(NumpyOps):
    """Row-chunked dask arrays: reductions over N run on dask, the rest is :class:`NumpyOps`."""

    name = "dask"

    @staticmethod
    def check_layout(x, name):
        """2-D, tall (N >= D), one chunk across the columns (rechunked if not)."""
        if x.ndim != 2:
            raise ValueError(f"{name}: a dask array must be 2-D (N, D), chunked by rows, got {describe(x)}")
        if any(np.isnan(c) for dim in x.chunks for c in dim):
            raise ValueError(f"{name}: a dask array must have known chunk sizes (call compute_chunk_sizes()), got {describe(x)}")
        if x.shape[0] < x.shape[1]:
            raise ValueError(f"{name}: a dask array must be tall (N >= D rows), got {describe(x)}")
        return x if x.numblocks[1] == 1 else x.rechunk({1: -1})

    @staticmethod
    def mean64(x, axis):
        """Column means of a row-chunked (N, D) array in one pass over the data: each row block's own
        mean (:meth:`NumpyOps.mean64`, in memory, with its correction pass), combined as
        ``m_0 + sum_k n_k (m_k - m_0) / N``, which keeps that accuracy (equal block means give
        their value back exactly)."""
        if axis % x.ndim != 0 or x.ndim != 2:
            raise ValueError(f"DaskOps.mean64 takes the means over the rows of an (N, D) array, got axis {axis} "
                             f"of {describe(x)}")
        delayed = require_dask().delayed
        x = x if x.numblocks[1] == 1 else x.rechunk({1: -1})
        blocks = [(b, n) for b, n in zip(x.to_delayed().ravel(), x.chunks[0]) if n > 0]
        means = _compute(*[delayed(NumpyOps.mean64)(b, 0) for b, _ in blocks])
        with np.errstate(all="ignore"):  # NaN/Inf are reported by the caller's finiteness check
            first = np.asarray(means[0], dtype=np.float64)
            shift = sum(n * (np.asarray(m, dtype=np.float64) - first) for m, (_, n) in zip(means, blocks))
            return first + shift / x.shape[0]

    @staticmethod
    def gram64(x, mu=None, chunk_rows=None):
        """``(X - mu)^T (X - mu)`` in float64 as a tree reduction of per-block Grams."""
        delayed = require_dask().delayed
        chunk_rows = chunk_rows or chunk_rows_for(x.shape[1])
        mu_d = None if mu is None else delayed(mu)
        parts = [delayed(_block_gram)(b, mu_d, chunk_rows) for b in x.to_delayed().ravel()]
        while len(parts) > 1:
            parts = [delayed(_sum_grams)(*parts[i : i + SPLIT_EVERY]) for i in range(0, len(parts), SPLIT_EVERY)]
        (gram,) = _compute(parts[0])
        return gram

    @staticmethod
    def colsq64(x, mu=None, chunk_rows=None):
        c = x.astype(np.float64)
        if mu is not None:
            c = c - mu
        (out,) = _compute((c * c).sum(axis=-2))
        return np.asarray(out, dtype=np.float64)

    @staticmethod
    def to64(x):
        return x.astype(np.float64)

    @staticmethod
    def svdvals64(x):
        """Singular values of a tall float64 dask array from the R factor of its TSQR."""
        import scipy.linalg

        linalg = require_dask("dask.array.linalg")
        x = x if x.numblocks[1] == 1 else x.rechunk({1: -1})
        _, r = linalg.tsqr(x)
        (r,) = _compute(r)
        return scipy.linalg.svdvals(r, check_finite=False)

    @staticmethod
    def matmul64(x, w, chunk_rows=None):
        (out,) = _compute(x.astype(np.float64) @ w)
        return out


def _kind(x):
    """"torch", "dask", "numpy", or None for what adapts to any backend (None, Python/NumPy scalars)."""
    if x is None or isinstance(x, (bool, int, float, np.generic)):
        return None
    if is_torch(x):
        return "torch"
    if is_dask(x):
        return "dask"
    return "numpy"


def get_ops(*arrays, names=None):
    """Backend operations for the arrays of one call.

    Parameters
    ----------
    *arrays : ndarray, torch.Tensor, dask.array.Array, scalar or None
        The array arguments of one public call. Scalars and None adapt to the others.
    names : sequence of str, optional
        The parameter names of ``arrays`` (for the error message); default ``arg0, arg1, ...``.

    Returns
    -------
    ops : :class:`NumpyOps`, :class:`TorchOps` or :class:`DaskOps`

    Raises
    ------
    TypeError
        If the arrays mix backends (a NumPy array with a torch tensor, or a dask array with
        either): results would silently move between devices or be computed eagerly.
    """
    kinds = [_kind(a) for a in arrays]
    present = [(i, k) for i, k in enumerate(kinds) if k is not None]
    for i, k in present[1:]:
        j, k0 = present[0]
        if k != k0:
            names = names or [f"arg{n}" for n in range(len(arrays))]
            raise TypeError(
                f"{names[j]} and {names[i]} must both be NumPy arrays or both torch tensors "
                f"(or both dask arrays), got {type(arrays[j]).__name__} and {type(arrays[i]).__name__}"
            )
    kind = present[0][1] if present else "numpy"
    if kind == "torch":
        return TorchOps
    if kind == "dask":
        return DaskOps
    return NumpyOps
