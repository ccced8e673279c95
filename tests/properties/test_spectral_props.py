"""Property tests for the spectral core (hypothesis): invariances and known answers of Eq. 1."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rankfusion import spectral as S


# Small matrices on a shared machine: see the fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("one_blas_thread")


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


@given(known_spectrum(max_n=80, max_d=24), st.integers(0, 2**32 - 1))
def test_informativeness_permutes_with_channels(case, seed):
    X, sigma = case
    perm = np.random.default_rng(seed).permutation(X.shape[1])
    k = max(1, sigma.size // 2)
    np.testing.assert_allclose(
        S.channel_informativeness(X[:, perm]), S.channel_informativeness(X)[perm], rtol=1e-10, atol=1e-12 * sigma[0] ** 2
    )
    if sigma.size == k or sigma[k - 1] > 1.01 * sigma[k]:  # top-k subspace well defined
        np.testing.assert_allclose(
            S.channel_informativeness(X[:, perm], k=k), S.channel_informativeness(X, k=k)[perm],
            rtol=1e-6, atol=1e-9 * sigma[0] ** 2,
        )


@given(st.integers(10, 60), st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_principal_angles_properties(n, p, q, seed):
    rng = np.random.default_rng(seed)
    A, B = rng.standard_normal((n, p)), rng.standard_normal((n, q))
    ang = S.principal_angles(A, B)
    assert ang.shape == (min(p, q),)
    assert np.all(np.diff(ang) >= -1e-12) and np.all(ang >= 0) and np.all(ang <= np.pi / 2 + 1e-12)
    np.testing.assert_allclose(S.principal_angles(B, A), ang, atol=1e-10)
    # Only the column spaces matter: mixing columns changes nothing.
    np.testing.assert_allclose(S.principal_angles(A @ rng.standard_normal((p, p)), B), ang, atol=1e-8)
    # A subspace against itself: all angles zero (to rounding).
    assert np.all(S.principal_angles(A, A) < 1e-7)


@given(st.floats(-10, 10), st.floats(-10, 10))
def test_harmonic_mean_gain_rule(a, b):
    hm = S.harmonic_mean_gain(a, b)
    assert isinstance(hm, np.float64)
    if a > 0 and b > 0:
        assert min(a, b) * (1 - 1e-12) <= hm <= max(a, b) * (1 + 1e-12)
        assert hm == pytest.approx(float(S.harmonic_mean_gain(b, a)), rel=1e-15)
    else:
        assert np.isnan(hm)


@given(known_spectrum(max_n=300, max_d=16), st.lists(st.integers(1, 120), min_size=1, max_size=6), st.booleans())
def test_streaming_matches_in_memory_float32(case, cuts, center):
    X, _ = case
    X = (X + 3.0).astype(np.float32)
    acc, parts, start = S.GramAccumulator(center=center, chunk_rows=37), [], 0
    for c in cuts:
        parts.append(X[start : start + c])
        start += c
    parts.append(X[start:])
    halves = [S.GramAccumulator(center=center), S.GramAccumulator(center=center)]
    for i, part in enumerate(parts):
        acc.update(part)
        halves[i % 2].update(part)
    merged = halves[0].merge(halves[1])  # rows in another order: the Gram is order-free
    ref = float(S.effective_rank(X, center=center))
    if acc.n_ambiguous() == 0:
        assert float(acc.effective_rank()) == pytest.approx(ref, rel=1e-6)
        assert acc.numerical_rank() == int(S.numerical_rank(X, center=center))
    np.testing.assert_allclose(merged.gram, acc.gram, rtol=1e-9, atol=1e-9 * np.abs(acc.gram).max())
