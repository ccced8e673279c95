"""Feature arrays for selection: host float64 copies, results in the input's type, exact power-of-two scaling."""

from __future__ import annotations

import numpy as np

from .._validation import InputTypeError, is_torch


def _as_numpy64(x, name: str) -> np.ndarray:
    """A float64 NumPy copy of an array or tensor (the probe and the control run on host copies)."""
    if is_torch(x):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if x.dtype.kind not in "fiub":
        raise InputTypeError(f"{name} must be a real numeric array, got dtype {x.dtype}")
    return x.astype(np.float64, copy=False)


def _like(out: np.ndarray, ref):
    """Return ``out`` in the type of ``ref``: a tensor on ref's device and dtype, else ref's dtype."""
    if is_torch(ref):
        import torch

        dtype = ref.dtype if ref.is_floating_point() else torch.float32
        return torch.as_tensor(out, device=ref.device).to(dtype)
    dtype = ref.dtype if np.asarray(ref).dtype.kind == "f" else np.float64
    return out.astype(dtype, copy=False)


def _unit_scale(x: np.ndarray, axis=None) -> np.ndarray:
    """``x`` times the power of two that brings its largest ``|x|`` (per column with ``axis=0``) into [0.5, 1).

    Exact (a change of the exponent only), as the rows of the streamed Gram matrix
    (:class:`~rankfusion.spectral.GramAccumulator`) are scaled: the squares taken afterwards
    neither overflow (finite ``|x|`` above ~1e154) nor underflow (below ~1e-162, denormals),
    and every scale-invariant result (standardised features, singular vectors) is unchanged.
    """
    top = np.abs(x).max(axis=axis, keepdims=axis is not None)
    return np.ldexp(x, -np.frexp(top)[1])  # frexp(0) gives exponent 0: a zero column stays zero
