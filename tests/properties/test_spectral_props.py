"""Property tests for the spectral core (hypothesis): invariances and known answers of Eq. 1."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rankfusion import spectral as S


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """One BLAS/torch thread while these tests run.

    The test machine is shared by several processes; multi-threaded BLAS calls on small
    matrices then spin-wait for descheduled threads and run 10-100x slower than on one thread.
    """
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only a speed-up
        threadpool_limits = None
    torch = None
    try:
        import torch
    except ImportError:
        pass
    old = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(1) if threadpool_limits else contextlib.nullcontext():
        yield
    if torch is not None:
        torch.set_num_threads(old)


def _orthonormal(rng, n, k):
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))  # Haar-distributed


@st.composite
def known_spectrum(draw, max_n=120, max_d=40):
    """(X, sigma): X = U diag(sigma) V^T with a chosen spectrum (rank r, sigma in [1e-6, 1e3]).

    Singular values stay far above the tolerance (~1e-12 here), so the numerical rank is a known
    answer; tall shapes (n >= 2d) exercise the Gram route, the rest the SVD route.
    """
    n = draw(st.integers(2, max_n))
    d = draw(st.integers(1, max_d))
    r = draw(st.integers(1, min(n, d)))
    sigma = np.sort(np.array(draw(st.lists(st.floats(1e-6, 1e3), min_size=r, max_size=r))))[::-1]
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    X = (_orthonormal(rng, n, r) * sigma) @ _orthonormal(rng, d, r).T
    return X, sigma


def _erank_of(sigma):
    p = sigma / sigma.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


@given(known_spectrum())
def test_known_spectrum_and_bounds(case):
    X, sigma = case
    erank = float(S.effective_rank(X))
    assert erank == pytest.approx(_erank_of(sigma), rel=1e-9)
    r = int(S.numerical_rank(X))
    assert r == sigma.size
    assert 1.0 - 1e-12 <= erank <= r * (1 + 1e-12)


@given(known_spectrum(), st.floats(1e-3, 1e3))
def test_scale_invariance(case, c):
    X, _ = case
    assert float(S.effective_rank(c * X)) == pytest.approx(float(S.effective_rank(X)), rel=1e-9)


@given(known_spectrum(), st.integers(0, 2**32 - 1))
def test_channel_permutation_invariance(case, seed):
    X, _ = case
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    assert float(S.effective_rank(X[:, perm])) == pytest.approx(float(S.effective_rank(X)), rel=1e-9)


@given(known_spectrum(), st.integers(0, 2**32 - 1))
def test_rotation_invariance_both_sides(case, seed):
    X, _ = case
    rng = np.random.default_rng(seed)
    n, d = X.shape
    ref = float(S.effective_rank(X))
    assert float(S.effective_rank(_orthonormal(rng, n, n) @ X)) == pytest.approx(ref, rel=1e-9)
    assert float(S.effective_rank(X @ _orthonormal(rng, d, d))) == pytest.approx(ref, rel=1e-9)


@given(st.integers(2, 100), st.integers(1, 30), st.floats(1e-3, 1e3), st.integers(0, 2**32 - 1))
def test_equal_singular_values_give_rank(n, r, value, seed):
    r = min(r, n)
    rng = np.random.default_rng(seed)
    d = r + int(rng.integers(0, 10))
    X = value * _orthonormal(rng, n, r) @ _orthonormal(rng, d, r).T
    assert float(S.effective_rank(X)) == pytest.approx(r, rel=1e-9)
    assert float(S.effective_rank(np.full(r, value))) == pytest.approx(r, rel=1e-12)


@given(known_spectrum(max_n=80, max_d=24))
def test_torch_matches_numpy(case):
    torch = pytest.importorskip("torch")
    X, _ = case
    Xt = torch.as_tensor(X)
    assert float(S.effective_rank(Xt)) == pytest.approx(float(S.effective_rank(X)), rel=1e-10)
    assert int(S.numerical_rank(Xt)) == int(S.numerical_rank(X))
    np.testing.assert_allclose(S.singular_values(Xt).numpy(), S.singular_values(X), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(
        S.channel_informativeness(Xt).numpy(), S.channel_informativeness(X), rtol=1e-10, atol=1e-12
    )


@given(known_spectrum(max_n=80, max_d=24))
def test_informativeness_identities(case):
    X, sigma = case
    energy = S.channel_informativeness(X)
    assert energy.sum() == pytest.approx(float(np.sum(sigma**2)), rel=1e-9)
    np.testing.assert_allclose(S.channel_informativeness(X, k=sigma.size), energy, rtol=1e-7, atol=1e-9 * sigma[0] ** 2)
