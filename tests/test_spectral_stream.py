"""GramAccumulator: streaming, merging, centring, memory maps, documented Gram accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from rankfusion import spectral as S


# Small matrices on a shared machine: see the fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _feed(acc, X, step):
    for start in range(0, X.shape[0], step):
        acc.update(X[start : start + step])
    return acc


@pytest.mark.parametrize("center", [False, True])
def test_stream_matches_exact_float32(rng, center):
    X = (rng.standard_normal((5000, 7)) @ rng.standard_normal((7, 64)) + 50.0).astype(np.float32)
    acc = _feed(S.GramAccumulator(center=center, chunk_rows=300), X, 777)
    assert acc.n_rows == 5000 and acc.n_channels == 64
    ref = S.singular_values(X, center=center)
    got = acc.singular_values()
    assert got.shape == ref.shape  # rank 7 (+1 for the offset when not centred)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-6 * ref[0])
    assert acc.effective_rank() == pytest.approx(float(S.effective_rank(X, center=center)), rel=1e-9)
    assert acc.n_ambiguous() == 0
    np.testing.assert_allclose(
        acc.channel_informativeness(), S.channel_informativeness(X, center=center), rtol=1e-9
    )
    np.testing.assert_allclose(
        acc.channel_informativeness(k=3), S.channel_informativeness(X, k=3, center=center), rtol=1e-7
    )


def test_centering_is_stable_with_large_mean(rng):
    # Mean 1e6 times the spread: G - n mu mu^T would lose every digit; the pairwise merge keeps them.
    X = rng.standard_normal((4000, 8)) + 1e6
    acc = _feed(S.GramAccumulator(center=True, chunk_rows=512), X, 1000)
    ref = np.linalg.svd(X - X.mean(0), compute_uv=False)
    np.testing.assert_allclose(acc.singular_values(), ref, rtol=1e-8)
    np.testing.assert_allclose(acc.mean, X.mean(0), rtol=1e-14)


def test_merge_equals_single_pass(rng):
    X = rng.standard_normal((3000, 20)) + 3.0
    for center in (False, True):
        whole = _feed(S.GramAccumulator(center=center), X, 3000)
        a = _feed(S.GramAccumulator(center=center), X[:1000], 250)
        b = _feed(S.GramAccumulator(center=center), X[1000:], 333)
        a.merge(b).merge(S.GramAccumulator(center=center))  # merging an empty one is a no-op
        np.testing.assert_allclose(a.gram, whole.gram, rtol=1e-11, atol=1e-9)
        assert a.n_rows == 3000
        empty = S.GramAccumulator(center=center).merge(a)
        np.testing.assert_allclose(empty.gram, a.gram)


def test_memmap_input(tmp_path, rng):
    X = rng.standard_normal((2500, 12)).astype(np.float32)
    np.save(tmp_path / "x.npy", X)
    mm = np.load(tmp_path / "x.npy", mmap_mode="r")
    acc = S.GramAccumulator().update(mm)
    assert acc.effective_rank() == pytest.approx(float(S.effective_rank(X)), rel=1e-10)


def test_float64_rank_deficient_reports_ambiguity(rng):
    # Gram-accurate only: float64 zero singular values (~1e-16 sigma_max) cannot be told apart
    # from the tolerance through the Gram matrix; the accumulator says so instead of guessing.
    X = rng.standard_normal((2000, 4)) @ rng.standard_normal((4, 30))
    acc = S.GramAccumulator().update(X)
    assert acc.n_ambiguous() == 26
    assert acc.error_radius() > 0
    # A tolerance above the Gram error band gives a certain answer.
    assert acc.numerical_rank(tol=1e-4 * float(acc.singular_values()[0])) == 4


def _erank_rel_tol(acc, r):
    """Relative error allowed for Eq. 1 on ``r`` Gram-resolved singular values: each kept
    ``sigma_j^2`` is within ``delta`` of the truth, so ``sigma_j`` moves by at most
    ``delta / (2 lambda_j)`` relative; ``|dERank| / ERank = |dH| <= max_j (dsigma_j / sigma_j) * 2 H``
    with ``H <= log r``: at most ``log(r) * delta / lambda_r``."""
    lam_r = float(acc.singular_values()[r - 1]) ** 2
    return max(np.log(r), 1.0) * acc.error_radius() / lam_r


@pytest.mark.parametrize("tol", [None, 0.0])
def test_float64_rank_deficient_zeros_inside_the_error_band_are_zeros(rng, tol):
    # Eigenvalues within delta of 0 cannot be told apart from 0: they are not part of the rank,
    # also where the tolerance is below the Gram error band (float64's default, or tol=0).
    X = rng.standard_normal((2000, 4)) @ rng.standard_normal((4, 30))
    acc = _feed(S.GramAccumulator(), X, 500)
    assert acc.numerical_rank(tol) == 4 == int(S.numerical_rank(X))
    assert acc.singular_values(tol).shape == (4,)
    assert acc.n_ambiguous() == 26  # still says the Gram matrix cannot certify those 26 directions
    ref = float(S.effective_rank(X))
    assert float(acc.effective_rank(tol)) == pytest.approx(ref, rel=_erank_rel_tol(acc, 4))


def test_float64_full_rank_keeps_every_singular_value_above_the_band(rng):
    # Smallest singular value 1e-5 sigma_max: sigma^2 ~1e-10 lambda_max, far above delta ~1e-14.
    U, _ = np.linalg.qr(rng.standard_normal((3000, 12)))
    V, _ = np.linalg.qr(rng.standard_normal((12, 12)))
    X = (U * np.logspace(0, -5, 12)) @ V
    acc = _feed(S.GramAccumulator(), X, 700)
    assert acc.numerical_rank() == 12 and acc.n_ambiguous() == 0
    assert float(acc.effective_rank()) == pytest.approx(float(S.effective_rank(X)), rel=_erank_rel_tol(acc, 12))


def test_zero_and_errors(rng):
    acc = S.GramAccumulator().update(np.zeros((10, 3)))
    assert acc.singular_values().shape == (0,) and acc.effective_rank() == 0.0
    with pytest.raises(ValueError, match="empty"):
        S.GramAccumulator().singular_values()
    with pytest.raises(ValueError, match="columns"):
        S.GramAccumulator().update(np.ones((3, 2))).update(np.ones((3, 4)))
    for center in (False, True):
        for bad in (np.nan, np.inf):
            with pytest.raises(ValueError, match="chunk contains NaN or Inf"):
                S.GramAccumulator(center=center).update(np.array([[bad, 1.0], [2.0, 3.0]]))
    # the chunk as given is named (dtype float32, not the float64 copy), with its first bad entry
    big = np.ones((40, 3), dtype=np.float32)
    big[33, 2] = np.nan
    with pytest.raises(ValueError, match=r"dtype float32; the first, nan, at row 33, column 2\)"):
        S.GramAccumulator(chunk_rows=8).update(big)
    with pytest.raises(ValueError, match="center"):
        S.GramAccumulator(center=True).merge(S.GramAccumulator())
    torch = pytest.importorskip("torch")
    # torch chunks are accepted (state on their device), but one accumulator takes one backend
    with pytest.raises(TypeError, match="chunk must be a NumPy array"):
        S.GramAccumulator().update(np.ones((3, 2))).update(torch.ones(3, 2))
    with pytest.raises(TypeError, match="chunk must be a torch tensor"):
        S.GramAccumulator().update(torch.ones(3, 2)).update(np.ones((3, 2)))
    with pytest.raises(ValueError, match="chunk contains NaN or Inf"):
        S.GramAccumulator().update(torch.tensor([[float("nan"), 1.0]]))


@pytest.mark.parametrize("center", [False, True])
@pytest.mark.parametrize("scale", [1.0, 2.0**-600, 2.0**500])
def test_torch_chunks_stay_on_their_device(backend, rng, center, scale):
    # The same rows streamed as tensors give the NumPy stream's spectrum; the float64 state lives
    # on the tensors' device (what rankfusion.monitor relies on for activations on a GPU).
    if backend.name == "numpy":
        pytest.skip("the tensor path; the NumPy path is tested above")
    # full rank, two decades of spectrum: every singular value is resolved, none is rounding noise
    X = (rng.standard_normal((3000, 40)) * np.logspace(0, -2, 40) + 5.0) * scale
    X = X.astype(np.float32) if scale == 1.0 else X  # extreme scales need float64 entries
    ref = _feed(S.GramAccumulator(center=center), X, 700)
    acc = _feed(S.GramAccumulator(center=center), backend.asarray(X), 700)
    backend.check_type(acc.gram)
    assert acc.gram.dtype == backend.torch.float64
    np.testing.assert_allclose(backend.to_numpy(acc.gram), ref.gram, rtol=1e-12, atol=1e-9 * ref.gram.max())
    # two Gram products with different rounding: each sigma^2 within its documented error radius
    got, want = acc.singular_values(), ref.singular_values()
    assert got.shape == want.shape == (40,)
    np.testing.assert_allclose(got**2, want**2, rtol=0, atol=2 * ref.error_radius())
    assert acc.effective_rank() == pytest.approx(float(S.effective_rank(X, center=center)), rel=1e-9)
    merged = S.GramAccumulator(center=center).merge(acc)
    backend.check_type(merged.mean)
    np.testing.assert_allclose(backend.to_numpy(merged.mean), X.mean(0, dtype=np.float64), rtol=1e-12)
    # a tensor that requires grad is read without joining the graph
    t = backend.asarray(X).requires_grad_(True)
    assert not S.GramAccumulator().update(t).gram.requires_grad


@pytest.mark.parametrize("exp", [-600, -1000, 500])
def test_power_of_two_scaling_is_exact(rng, exp):
    """Chunks are scaled by powers of two: X * 2**exp has exactly the spectrum of X times 2**exp,
    also where X * 2**exp has squares below (or above) the float64 range."""
    X = rng.standard_normal((400, 12)) * np.linspace(2.0, 0.1, 12)
    for center in (False, True):
        ref = S.GramAccumulator(center=center, chunk_rows=64).update(X)
        acc = S.GramAccumulator(center=center, chunk_rows=64).update(np.ldexp(X, exp))
        np.testing.assert_array_equal(acc.singular_values(), np.ldexp(ref.singular_values(), exp))
        assert acc.effective_rank() == ref.effective_rank()
        assert acc.numerical_rank() == 12 and acc.n_ambiguous() == 0


def test_merge_of_different_scales(rng):
    X = rng.standard_normal((300, 8))
    X[:150] *= 1e-170  # rows whose squares underflow, then rows of order 1
    whole = S.GramAccumulator().update(X)
    a = S.GramAccumulator().update(X[:150])
    b = S.GramAccumulator().update(X[150:])
    merged = a.merge(b)
    np.testing.assert_allclose(merged.singular_values(), whole.singular_values(), rtol=1e-12)
    np.testing.assert_allclose(merged.gram, X.T @ X, rtol=1e-12, atol=1e-12)
    small = S.GramAccumulator().update(X[:150])
    np.testing.assert_allclose(small.singular_values(), np.linalg.svd(X[:150], compute_uv=False), rtol=1e-9)


def test_covariance_is_the_centred_co_moment_over_n_and_needs_centring():
    rng = np.random.default_rng(3)
    x = 5.0 + rng.standard_normal((300, 4))
    acc = S.GramAccumulator(center=True).update(x[:120]).update(x[120:])
    np.testing.assert_allclose(acc.covariance, np.cov(x, rowvar=False, bias=True), rtol=1e-12, atol=1e-13)
    with pytest.raises(ValueError, match="center=True"):
        S.GramAccumulator().update(x).covariance
