"""The backend seam: one backend per call, chosen from the inputs (rankfusion._backend)."""

from __future__ import annotations

import numpy as np
import pytest

from rankfusion import spectral as S
from rankfusion._backend import NumpyOps, TorchOps, get_ops

torch = pytest.importorskip("torch")


def test_get_ops_follows_the_input():
    assert get_ops(np.zeros(3)) is NumpyOps
    assert get_ops(torch.zeros(3)) is TorchOps
    # Scalars and None adapt to the array beside them.
    assert get_ops(2.0, torch.zeros(3), None) is TorchOps
    assert get_ops(np.float64(2.0), np.zeros(2)) is NumpyOps
    assert get_ops(1.0) is NumpyOps


def test_get_ops_refuses_mixed_numpy_and_torch_naming_the_arguments():
    with pytest.raises(TypeError, match=r"A and B must both be NumPy arrays or both torch tensors.*ndarray and Tensor"):
        get_ops(np.zeros((3, 2)), torch.zeros(3, 2), names=("A", "B"))
    with pytest.raises(TypeError, match="gain_a and gain_b"):
        S.harmonic_mean_gain(np.array([1.0]), torch.tensor([1.0]))
    with pytest.raises(TypeError, match="X and Y"):
        S.injection_angles(np.ones((6, 2)), torch.ones(6, 2), np.array([0]), 1)
    # both the feature route and the relative gain: the effective ranks were computed on their own
    # backends and subtracted (or crashed inside torch.where with relative=True)
    A = np.random.default_rng(0).normal(size=(20, 4))
    for relative in (False, True):
        with pytest.raises(TypeError, match="before and after must both be NumPy arrays or both torch tensors"):
            S.rank_gain(A, torch.tensor(A), relative=relative)


def test_rank_gain_scalar_joins_the_tensor():
    for before, after in ((3.0, torch.tensor(2.0)), (torch.tensor(3.0), 2.0), (np.float64(3.0), torch.tensor(2.0)),
                          (np.array(3.0), torch.tensor(2.0))):
        for relative, want in ((False, -1.0), (True, -1 / 3)):
            g = S.rank_gain(before, after, relative=relative)
            assert isinstance(g, torch.Tensor) and g.dtype == torch.float64
            assert g.item() == pytest.approx(want, rel=1e-15)


def test_harmonic_mean_gain_scalar_joins_the_tensor():
    hm = S.harmonic_mean_gain(1.0, torch.tensor([3.0, -1.0], dtype=torch.float32))
    assert hm.dtype == torch.float64
    assert hm[0].item() == pytest.approx(1.5, rel=1e-15) and torch.isnan(hm[1])
    assert isinstance(S.harmonic_mean_gain(torch.tensor(3.0), 1.0), torch.Tensor)
