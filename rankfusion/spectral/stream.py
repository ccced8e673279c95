"""Streaming spectra: the float64 Gram matrix of a matrix given in row chunks (:class:`GramAccumulator`)."""

from __future__ import annotations

import math

import numpy as np

from .._backend import NumpyOps, chunk_rows_for, get_ops
from .._validation import check_int, check_structure, describe
from .conventions import _entropy_rank
from .informativeness import topk_informativeness
from .routes import _check_tol, _finite_or_raise, _gram_error_radius, rank_tolerance


class GramAccumulator:
    """Streaming float64 Gram matrix of a (N, D) matrix given in row chunks.

    For features larger than memory (e.g. ``np.load(path, mmap_mode="r")``): feed row chunks
    with :meth:`update`, combine partial accumulators with :meth:`merge`, and read the spectrum
    at the end. Chunks may also be torch tensors (e.g. activations, :mod:`rankfusion.monitor`):
    the float64 state then stays on their device and only the D x D matrix is copied to the host
    when the spectrum is read. With ``center=True`` the centred co-moment matrix is maintained with the
    pairwise update of Chan, Golub & LeVeque (1979), never as ``G - n mu mu^T`` (which cancels
    catastrophically when the mean dominates).

    The accumulator never holds ``X``, so it cannot fall back to an SVD: its spectrum is
    *Gram-accurate*: each ``sigma_j^2`` is known to within ``delta = (sqrt(max(n, D)) + min(n, D))
    * eps64 * lambda_max`` (see :meth:`error_radius`), i.e. singular values are resolved down to
    about ``sqrt(delta)``; those at or below it cannot be told apart from 0 and count as zeros
    (the rank of rank-deficient float64 data is not inflated by rounding). :meth:`n_ambiguous`
    counts those whose keep/drop decision the Gram matrix cannot make.

    Rows are scaled by a power of two (exact) that brings the largest ``|x|`` seen into
    [0.5, 1) before they are multiplied, and results are scaled back: values whose squares
    would underflow float64 (``|x|`` below ~1e-154, e.g. denormals) or overflow it (above
    ~1e154) get the same Gram-accurate spectrum as values of order 1, as the in-memory route
    (which falls back to a scaling SVD there) gives them.

    Parameters
    ----------
    center : bool, default False
    chunk_rows : int, optional
        Rows cast to float64 at a time inside :meth:`update`; default: 32 MiB of float64.
    """

    def __init__(self, center: bool = False, chunk_rows: int | None = None):
        self.center = bool(center)
        self.chunk_rows = check_int(chunk_rows, "chunk_rows", low=1, allow_none=True)
        self._n = 0
        self._d = None
        self._eps = 0.0
        self._mean = None
        self._m2 = None
        self._exp = None  # the stored moments are in units of 2**_exp (None: nothing non-zero yet)

    @property
    def n_rows(self) -> int:
        """Number of rows seen so far."""
        return self._n

    @property
    def n_channels(self):
        """D (None before the first update)."""
        return self._d

    @property
    def gram(self):
        """(D, D) float64 ``X^T X`` (centred co-moment matrix with ``center=True``), a copy.

        A NumPy array, or a torch tensor on the chunks' device when they were tensors."""
        self._require()
        return get_ops(self._m2).ldexp(self._m2, 2 * self._e)

    @property
    def covariance(self):
        """(D, D) float64 population covariance of the rows seen, ``C / n`` with ``C`` the centred
        co-moment matrix (:attr:`gram`; ``center=True`` only), a copy.

        Accurate where ``G / n - mu mu^T`` cancels: columns whose mean dominates their spread."""
        self._require()
        if not self.center:
            raise ValueError("covariance needs the centred co-moments: build GramAccumulator(center=True)")
        return self.gram / self._n

    @property
    def mean(self):
        """(D,) float64 column means of the rows seen (tracked with or without centring)."""
        self._require()
        return get_ops(self._mean).ldexp(self._mean, self._e)

    @property
    def _e(self) -> int:
        return 0 if self._exp is None else self._exp

    def _rescale(self, exp: int) -> None:
        """Store the moments in units of ``2**exp`` (``exp >= self._exp``: exact up to underflow of
        entries below ``2**-1074`` of the new unit, far below the Gram error radius)."""
        if self._exp is not None and exp > self._exp:
            shift = self._exp - exp
            self._m2 = get_ops(self._m2).ldexp(self._m2, 2 * shift)
            self._mean = get_ops(self._mean).ldexp(self._mean, shift)
        self._exp = exp if self._exp is None else max(exp, self._exp)

    def _host_m2(self):
        # The spectrum is read from a host copy: D x D is small, and one code path (NumPy)
        # applies the tolerance and the eigenvalue tail whatever device accumulated the rows.
        return get_ops(self._m2).to_host(self._m2)

    def _check_backend(self, x, what):
        if self._m2 is None:
            return
        mine, theirs = get_ops(self._m2), get_ops(x)
        if mine.name != theirs.name or mine.device(self._m2) != theirs.device(x):
            kind = {"numpy": "a NumPy array", "torch": "a torch tensor"}.get(mine.name, f"a {mine.name} array")
            where = kind + (f" on {mine.device(self._m2)}" if mine.device(self._m2) is not None else "")
            raise TypeError(f"{what} must be {where} like the previous chunks, got {describe(x)}"
                            + (f" on {theirs.device(x)}" if theirs.device(x) is not None else ""))

    def _require(self):
        if self._n == 0:
            raise ValueError("GramAccumulator is empty: call update(chunk) with at least one row first")

    def update(self, chunk) -> GramAccumulator:
        """Add rows. ``chunk`` : ndarray (or memmap) of shape (n, D), any real dtype, or a torch
        tensor (detached; every chunk on the same device, where the float64 state is kept)."""
        chunk = check_structure(chunk, "chunk", allow_empty=True)
        if len(chunk.shape) != 2:
            raise ValueError(f"chunk must be 2-D (n, D), got {describe(chunk)}")
        self._check_backend(chunk, "chunk")
        ops = get_ops(chunk)
        chunk = ops.detach(chunk)  # the accumulator never joins an autograd graph
        if self._d is None:
            self._d = chunk.shape[1]
            z = ops.to64(chunk[:0])  # (0, D): zeros below come out on the chunk's backend and device
            self._m2, self._mean = z.T @ z, z.sum(0)
        elif chunk.shape[1] != self._d:
            raise ValueError(f"chunk must have {self._d} columns like the previous chunks, got {describe(chunk)}")
        self._eps = max(self._eps, ops.eps(chunk))
        rows = self.chunk_rows or chunk_rows_for(self._d)
        for start in range(0, chunk.shape[0], rows):
            c = ops.to64(chunk[start : start + rows])
            nb = c.shape[0]
            with np.errstate(all="ignore"):  # NaN/Inf are caught from the diagonal below
                top = float(abs(c).max()) if c.shape[0] else 0.0
                if 0.0 < top < math.inf:
                    self._rescale(math.frexp(top)[1])
                c = ops.ldexp(c, -self._e)  # a power of two: exact
                mb = c.mean(0)
                if self.center:
                    cc = c - mb
                    m2b = cc.T @ cc
                else:
                    m2b = c.T @ c
            # the message names the first NaN/Inf of the chunk as given (its dtype, its row)
            if not _finite_or_raise(ops, ops.diagonal(m2b), chunk, "chunk"):
                raise ValueError(f"chunk has entries too large for a float64 Gram matrix: {describe(chunk)}")
            self._combine(nb, mb, m2b)
        return self

    def _combine(self, nb, mb, m2b):
        na = self._n
        n = na + nb
        diff = mb - self._mean
        if self.center:
            # Chan et al. pairwise merge of co-moments: exact in exact arithmetic and stable.
            self._m2 += m2b + diff[:, None] * diff[None, :] * (na * nb / n)
        else:
            self._m2 += m2b
        self._mean += diff * (nb / n)
        self._n = n

    def merge(self, other: GramAccumulator) -> GramAccumulator:
        """Fold another accumulator (same D and ``center``) into this one; returns self."""
        if not isinstance(other, GramAccumulator):
            raise TypeError(f"other must be a GramAccumulator, got {type(other).__name__}")
        if other.center != self.center:
            raise ValueError(f"other.center={other.center} does not match center={self.center}")
        if other._n == 0:
            return self
        self._check_backend(other._m2, "other's state")
        if self._d is None:
            self._d, self._mean, self._m2 = other._d, other._mean * 0.0, other._m2 * 0.0
        elif other._d != self._d:
            raise ValueError(f"other has {other._d} channels, this accumulator has {self._d}")
        self._eps = max(self._eps, other._eps)
        if other._exp is not None:
            self._rescale(other._exp)
        shift = other._e - self._e  # <= 0
        self._combine(other._n, get_ops(other._mean).ldexp(other._mean, shift), get_ops(other._m2).ldexp(other._m2, 2 * shift))
        return self

    def error_radius(self) -> float:
        """``delta``: every true ``sigma_j^2`` lies within ``lambda_j +- delta``."""
        self._require()
        return float(np.ldexp(self._radius(), 2 * self._e))

    def _radius(self, lam=None) -> float:
        # in the stored units (see _rescale); ``lam``: the eigenvalues of :meth:`_eig`, if at hand
        lam_max = float(lam[0]) if lam is not None else float(np.linalg.eigvalsh(self._host_m2())[-1])
        return _gram_error_radius(max(lam_max, 0.0), max(self._n, self._d), min(self._n, self._d))

    def _eig(self):
        lam = np.linalg.eigvalsh(self._host_m2())[::-1]
        # Only min(n, D) eigenvalues can be non-zero; the rest are rounding of exact zeros.
        return lam[: min(self._n, self._d)]

    def _tol2(self, lam, tol):
        if tol is None:
            smax = math.sqrt(max(float(lam[0]), 0.0))
            # ||X||_F of the rows as given: the Gram's trace, plus n ||mean||^2 when it is centred
            # (centring removes the mean, not the rounding the mean's size brought)
            fro2 = float(np.sum(np.clip(lam, 0.0, None)))
            if self.center:
                mean = get_ops(self._mean).to_host(self._mean)
                fro2 += self._n * float(mean @ mean)
            t = rank_tolerance(smax, max(self._n, self._d), self._eps, math.sqrt(fro2), self.center)
        else:
            t = float(np.ldexp(_check_tol(tol), -self._e))  # in the stored units
        return t * t

    def singular_values(self, tol: float | None = None):
        """(r,) float64 singular values above ``tol`` (default as :func:`singular_values`), descending;
        those with ``sigma_j^2 <= delta`` (:meth:`error_radius`), indistinguishable from 0, are dropped."""
        return np.ldexp(self._sigma(tol), self._e)

    def _sigma(self, tol):
        # in the stored units (see _rescale)
        self._require()
        lam = self._eig()
        # An eigenvalue within the error radius of 0 cannot be told apart from 0 (its true
        # sigma^2 may be 0): it is a zero, even where tol^2 is below the radius (float64 input).
        cut = max(self._tol2(lam, tol), self._radius(lam))
        # Clip: tiny negative eigenvalues of the PSD Gram matrix are rounding errors.
        sigma = np.sqrt(np.clip(lam, 0.0, None))
        return sigma[lam > cut].copy()

    def n_ambiguous(self, tol: float | None = None) -> int:
        """How many eigenvalues lie within ``delta`` of ``tol^2``: their true ``sigma_j`` may lie on
        either side of ``tol``, so :meth:`numerical_rank` is within this many of the true one
        (exact when 0). Eigenvalues within ``delta`` of 0 count as zeros in the rank, and are
        counted here when ``tol^2 < delta`` (float64 data of deficient rank)."""
        self._require()
        lam = self._eig()
        tol2 = self._tol2(lam, tol)
        delta = self._radius(lam)
        return int(np.sum((lam - delta <= tol2) & (tol2 < lam + delta)))

    def numerical_rank(self, tol: float | None = None) -> int:
        """Number of singular values above ``tol`` and resolved by the Gram matrix
        (``sigma_j^2 > max(tol^2, delta)``, see :meth:`error_radius`)."""
        return int(self._sigma(tol).shape[0])

    def effective_rank(self, tol: float | None = None) -> np.float64:
        """Eq. 1 of the accumulated matrix (0.0 for the zero matrix)."""
        s = self._sigma(tol)  # Eq. 1 is scale-invariant: no need to scale back
        if s.shape[0] == 0:
            return np.float64(0.0)
        return np.float64(_entropy_rank(NumpyOps, s))

    def channel_informativeness(self, k: int | None = None):
        """Definition 1 from the accumulated Gram matrix: (D,) float64."""
        self._require()
        k = check_int(k, "k", low=1, high=self._d, allow_none=True)
        m2 = self._host_m2()
        if k is None:
            return np.ldexp(np.diag(m2), 2 * self._e)
        lam, v = NumpyOps.eigh_desc(m2)
        return np.ldexp(topk_informativeness(lam, v, k, energy=np.diag(m2)), 2 * self._e)
