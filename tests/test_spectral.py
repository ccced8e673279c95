"""Spectral core: reference tests against a float64 full SVD, API behaviour, bad input."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.linalg

from rankfusion import spectral as S


# Small matrices on a shared machine: see the fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("one_blas_thread")


# ----------------------------------------------------------------------------------------
# Reference implementation (slow, obvious): numpy.linalg.svd in float64
# ----------------------------------------------------------------------------------------


def ref_spectrum(X, center=False):
    X = np.asarray(X)
    eps = np.finfo(X.dtype).eps if X.dtype.kind == "f" else np.finfo(np.float64).eps
    x64 = X.astype(np.float64)
    if center:
        x64 = x64 - x64.mean(axis=0)
    s = np.linalg.svd(x64, compute_uv=False)
    if s.size == 0 or s[0] == 0:
        return s[:0]
    tol = np.sqrt(max(X.shape)) * eps * s[0]
    return s[s > tol]


def ref_erank(X, center=False):
    s = ref_spectrum(X, center)
    if s.size == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def _orthonormal(rng, n, k):
    return np.linalg.qr(rng.standard_normal((n, k)))[0]


@functools.lru_cache(maxsize=None)
def make_cases(seed):
    """name -> float64 matrix (cast to float32 in the float32 tests); built once per seed."""
    rng = np.random.default_rng(seed)
    d = 256
    cond = np.logspace(0, -8, d)  # condition number 1e8
    return {
        "random_tall": rng.standard_normal((1500, d)),
        "rank5_tall": rng.standard_normal((1500, 5)) @ rng.standard_normal((5, d)),
        "cond1e8_tall": (_orthonormal(rng, 1500, d) * cond) @ _orthonormal(rng, d, d).T,
        "random_wide": rng.standard_normal((96, 1000)),
        "rank5_wide": rng.standard_normal((120, 5)) @ rng.standard_normal((5, 900)),
        "near_square": rng.standard_normal((300, d)),
        "rank5_square": rng.standard_normal((d, 5)) @ rng.standard_normal((5, d)),
    }


CASE_NAMES = list(make_cases(7))


@functools.lru_cache(maxsize=None)
def reference(name, dtype):
    """(effective rank, spectrum) of a case by the slow reference, computed once."""
    X = make_cases(7)[name].astype(dtype)
    return ref_erank(X), ref_spectrum(X)


@pytest.mark.parametrize("name", CASE_NAMES)
@pytest.mark.parametrize("dtype,rtol", [(np.float64, 1e-9), (np.float32, 1e-6)])
def test_effective_rank_matches_reference(backend, name, dtype, rtol):
    X = make_cases(7)[name].astype(dtype)
    ref_er, ref_s = reference(name, dtype)
    expected_rank = ref_s.size
    erank = S.effective_rank(backend.asarray(X))
    backend.check_type(erank)
    got = float(backend.to_numpy(erank))
    assert abs(got - ref_er) <= rtol * ref_er
    assert int(backend.to_numpy(S.numerical_rank(backend.asarray(X)))) == expected_rank
    if name.startswith("rank5"):
        assert expected_rank == 5


@pytest.mark.parametrize("name", ["random_tall", "rank5_tall", "cond1e8_tall", "random_wide"])
def test_singular_values_match_reference(backend, name):
    X = make_cases(7)[name]
    ref = reference(name, np.float64)[1]
    sigma = S.singular_values(backend.asarray(X))
    backend.check_type(sigma)
    sigma = backend.to_numpy(sigma)
    assert sigma.dtype == np.float64 and sigma.shape == ref.shape
    # Absolute accuracy relative to sigma_max: Gram route resolves sigma_j^2 to ~1e-13 lambda_max.
    np.testing.assert_allclose(sigma, ref, rtol=0, atol=1e-9 * ref[0])
    assert np.all(np.diff(sigma) <= 0)


@pytest.mark.parametrize("center", [False, True])
def test_centering_matches_reference(backend, rng, center):
    X = rng.standard_normal((2000, 64)) + 10.0  # a large mean makes centring matter
    got = float(backend.to_numpy(S.effective_rank(backend.asarray(X), center=center)))
    assert got == pytest.approx(ref_erank(X, center=center), rel=1e-9)
    Xw = rng.standard_normal((40, 300)) + 3.0
    got = float(backend.to_numpy(S.effective_rank(backend.asarray(Xw), center=center)))
    assert got == pytest.approx(ref_erank(Xw, center=center), rel=1e-9)


def test_centring_a_constant_column_leaves_exact_zeros(backend, rng):
    # 0.1 and 1/3 have float64 means that a plain row-by-row sum rounds off by an ulp or more;
    # the residual must not read as a direction (rank 1, ERank 1, MONAI "not fully collapsed")
    for value in (0.1, 1 / 3, 1e5 + 0.1):
        for shape in ((100, 10), (1000, 4), (7, 3)):
            X = backend.asarray(np.full(shape, value))
            assert int(backend.to_numpy(S.numerical_rank(X, center=True))) == 0, (value, shape)
            for c in ("covariance", "monai", "diff-erank"):
                assert float(backend.to_numpy(S.effective_rank(X, convention=c))) == 0.0, (value, shape, c)
    # a large mean over a rank-5 matrix: its rounding in the mean is not a sixth direction
    L = rng.standard_normal((4096, 5)) @ rng.standard_normal((5, 64))
    assert int(backend.to_numpy(S.numerical_rank(backend.asarray(L + 10.0), center=True))) == 5


def test_centred_tolerance_covers_the_rounding_of_a_large_mean(backend, rng):
    # centring removes the mean, not the rounding its size brought: float32 storage of values
    # around 1e4 (~6e-4 per entry) or the float64 mean of values around 1e3 is not rank
    L = rng.standard_normal((4096, 5)) @ rng.standard_normal((5, 64))
    for X in ((L + 1e4).astype(np.float32), L + 1e3, L[:200] + 1e4):
        info = S.spectrum_info(backend.asarray(X), center=True)
        assert int(backend.to_numpy(info.rank)) == 5, (X.dtype, X.shape)
        if backend.name == "numpy":
            acc = S.GramAccumulator(center=True, chunk_rows=1000).update(X)
            assert acc.numerical_rank() == 5
    # a zero-mean matrix keeps the rule as written
    X = rng.standard_normal((2000, 50))
    s0 = float(S.singular_values(X, center=True)[0])
    assert float(S.spectrum_info(X, center=True).tol) == pytest.approx(np.sqrt(2000) * np.finfo(float).eps * s0, rel=1e-12)


def test_batched(backend, rng):
    X = rng.standard_normal((2, 3, 400, 24))
    X[0, 1] = rng.standard_normal((400, 3)) @ rng.standard_normal((3, 24))  # rank 3 element
    X[1, 2] = 0.0  # zero element
    er = S.effective_rank(backend.asarray(X))
    backend.check_type(er)
    er = backend.to_numpy(er)
    assert er.shape == (2, 3)
    sig = backend.to_numpy(S.singular_values(backend.asarray(X)))
    ranks = backend.to_numpy(S.numerical_rank(backend.asarray(X)))
    assert sig.shape == (2, 3, 24) and ranks.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            assert er[i, j] == pytest.approx(ref_erank(X[i, j]), rel=1e-9, abs=0)
            ref = ref_spectrum(X[i, j])
            assert ranks[i, j] == ref.size
            np.testing.assert_allclose(sig[i, j, : ref.size], ref, rtol=1e-9)
            assert np.all(sig[i, j, ref.size :] == 0)
    assert ranks[0, 1] == 3 and ranks[1, 2] == 0 and er[1, 2] == 0.0


def test_zero_matrix(backend):
    Z = backend.asarray(np.zeros((50, 8)))
    s = S.singular_values(Z)
    backend.check_type(s)
    assert tuple(s.shape) == (0,)
    assert float(backend.to_numpy(S.effective_rank(Z))) == 0.0
    assert int(backend.to_numpy(S.numerical_rank(Z))) == 0


def test_return_types_numpy():
    X = np.random.default_rng(0).standard_normal((100, 10))
    assert isinstance(S.effective_rank(X), np.float64)
    assert isinstance(S.effective_rank(X[None]), np.ndarray)
    assert S.singular_values(X.astype(np.float32)).dtype == np.float64


def test_torch_result_on_input_device(backend):
    if backend.name == "numpy":
        pytest.skip("torch only")
    torch = backend.torch
    X = backend.asarray(np.random.default_rng(1).standard_normal((300, 12)).astype(np.float32))
    for out in (S.singular_values(X), S.effective_rank(X), S.channel_informativeness(X, 3)):
        assert out.dtype == torch.float64 and out.device.type == backend.device.type


def test_integer_input(rng):
    X = rng.integers(-5, 5, size=(500, 20))
    assert S.effective_rank(X) == pytest.approx(ref_erank(X), rel=1e-9)


def test_sigma_vector_input(backend):
    s = backend.asarray(np.array([2.0, 2.0, 2.0, 0.0]))
    assert float(backend.to_numpy(S.effective_rank(s))) == pytest.approx(3.0, rel=1e-14)
    assert float(backend.to_numpy(S.effective_rank(backend.asarray(np.zeros(3))))) == 0.0
    with pytest.raises(ValueError, match="X_or_sigma"):
        S.effective_rank(backend.asarray(np.array([1.0, -1.0])))


@pytest.mark.parametrize("kw", [{"tol": 1.0}, {"tol": -1.0}, {"tol": 0.0}, {"center": True}])
def test_a_spectrum_refuses_what_applies_to_a_matrix(backend, kw):
    # they used to be ignored: tol=1.0 did not drop the 0.5, tol=-1.0 and center=True passed
    s = backend.asarray(np.array([3.0, 2.0, 0.5]))
    with pytest.raises(ValueError, match=f"{list(kw)[0]}.*applies to a matrix.*1-D vector of singular values"):
        S.effective_rank(s, **kw)
    with pytest.raises(ValueError, match="center=True applies to features; before is a 1-D vector"):
        S.rank_gain(s, s, center=True)


def test_user_tolerance(rng):
    X = (_orthonormal(rng, 500, 10) * np.logspace(0, -3, 10)) @ _orthonormal(rng, 10, 10).T
    assert int(S.numerical_rank(X, tol=0.0)) == 10
    sig = np.logspace(0, -3, 10)
    assert int(S.numerical_rank(X, tol=0.05)) == int(np.sum(sig > 0.05))


def test_tolerance_not_numpy_default(rng):
    # A float32 100k-style matrix: sigma_min/sigma_max ~ 1e-2 would be dropped by numpy's
    # max(N, D) * eps rule for huge N; our sqrt rule keeps it (docs/spectral.md, "Eq. 1 and the numerical rank").
    X = ((_orthonormal(rng, 4000, 8) * np.array([1, 1, 1, 1, 1, 1, 1, 1e-4])) @ _orthonormal(rng, 8, 8).T).astype(np.float32)
    assert int(S.numerical_rank(X)) == 8


def test_half_precision_tolerance_keeps_signal_and_cuts_storage_rounding(rng):
    # sqrt(max(N, D)) * eps alone is sigma_max itself for bfloat16 at 16,384 rows: every direction
    # but the first would be dropped. Half input is held to float32's rule and its storage rounding.
    torch = pytest.importorskip("torch")
    X = rng.standard_normal((16384, 64)) + 0.5
    for half in (torch.bfloat16, torch.float16):
        Xh = torch.from_numpy(X).to(half)
        assert int(S.numerical_rank(Xh)) == 64
        np.testing.assert_allclose(float(S.effective_rank(Xh)), float(S.effective_rank(Xh.double())), rtol=1e-9)
    assert int(S.numerical_rank(X.astype(np.float16))) == 64
    # a rank-5 product rounded to half precision: each entry moves by at most half an ulp, so the
    # directions the rounding adds are below (eps / 2) * ||X||_F (Weyl) and are cut
    low = rng.standard_normal((3000, 5)) @ rng.standard_normal((5, 48))
    assert int(S.numerical_rank(low.astype(np.float16))) == 5
    assert int(S.numerical_rank(torch.from_numpy(low).to(torch.bfloat16))) == 5
    assert int(S.numerical_rank(low.astype(np.float16).astype(np.float64))) == 48  # the same values, float64's rule
    # centred: the bound is the stored matrix's norm, not the centred one's (centring removes a
    # large mean, not the rounding its size brought: with the centred norm every noise direction
    # counted, rank 64 at a mean of 100)
    shifted = low + 100.0  # its 6 directions 37,900 and 470-270 against a bfloat16 tolerance of 148
    for half in (torch.bfloat16, torch.float16):
        Xh = torch.from_numpy(shifted).to(half)
        assert int(S.numerical_rank(Xh)) == 6 and int(S.numerical_rank(Xh, center=True)) == 5
        assert S.GramAccumulator(center=True).update(Xh).numerical_rank() == 5
        assert S.GramAccumulator().update(Xh).numerical_rank() == 6
    # float32 and float64: the rule as written, whatever ||X||_F
    for dt in (np.float32, np.float64):
        eps = float(np.finfo(dt).eps)
        assert S.rank_tolerance(2.0, 900, eps, fro=1e9) == S.rank_tolerance(2.0, 900, eps) == 30 * eps * 2.0
    eps16 = float(np.finfo(np.float16).eps)
    assert S.rank_tolerance(2.0, 900, eps16, fro=10.0) == 0.5 * eps16 * 10.0
    assert S.rank_tolerance(2.0, 900, eps16, fro=1e-9) == 30 * float(np.finfo(np.float32).eps) * 2.0


# ----------------------------------------------------------------------------------------
# Channel informativeness, low-informativeness sets, flatten_tokens
# ----------------------------------------------------------------------------------------


def test_informativeness_k_none_is_column_energy(backend, rng):
    X = rng.standard_normal((600, 30)).astype(np.float32)
    got = backend.to_numpy(S.channel_informativeness(backend.asarray(X)))
    np.testing.assert_allclose(got, (X.astype(np.float64) ** 2).sum(axis=0), rtol=1e-12)


def test_informativeness_k_equals_rank_is_column_energy(backend, rng):
    X = rng.standard_normal((600, 5)) @ rng.standard_normal((5, 30))
    full = backend.to_numpy(S.channel_informativeness(backend.asarray(X)))
    k5 = backend.to_numpy(S.channel_informativeness(backend.asarray(X), k=5))
    np.testing.assert_allclose(k5, full, rtol=1e-9)


def test_informativeness_top_k_matches_svd(backend, rng):
    X = rng.standard_normal((400, 20)) * np.linspace(1, 3, 20)
    _, s, vt = np.linalg.svd(X, full_matrices=False)
    ref = (s[:4, None] ** 2 * vt[:4] ** 2).sum(axis=0)
    got = backend.to_numpy(S.channel_informativeness(backend.asarray(X), k=4))
    np.testing.assert_allclose(got, ref, rtol=1e-9)
    centred = backend.to_numpy(S.channel_informativeness(backend.asarray(X + 7), center=True))
    np.testing.assert_allclose(centred, ((X - X.mean(0)) ** 2).sum(0), rtol=1e-9)


def test_informativeness_top_k_of_a_zero_column_is_exactly_zero(backend, rng):
    # A channel that is zero on every row (a ReLU that never fires) lies in the Gram matrix's null
    # space: its top-k score is exactly 0, not the eigensolver's rounding (~1e-31 here without the
    # rule), so Eq. 3's choice among several such channels is the lowest indices, whatever the
    # rounding of the computation that produced the rows.
    X = np.maximum(rng.standard_normal((50, 12)), 0)
    X[:, [2, 5, 9]] = 0
    for rows in (X, X[::-1].copy(), X[rng.permutation(50)] * (1 + 1e-7)):
        got = S.channel_informativeness(backend.asarray(rows), k=3)
        assert backend.to_numpy(got)[[2, 5, 9]].tolist() == [0.0, 0.0, 0.0]
        assert backend.to_numpy(S.low_informative_channels(got, k_prime=2)).tolist() == [2, 5]
        stat = S.channel_statistic(backend.asarray(rows), k=3)
        assert backend.to_numpy(S.informativeness_from_statistic(stat, k=3))[[2, 5, 9]].tolist() == [0.0] * 3
    acc = S.GramAccumulator().update(X)
    assert acc.channel_informativeness(k=3)[[2, 5, 9]].tolist() == [0.0] * 3
    # the live channels keep their top-k scores
    _, sv, vt = np.linalg.svd(X, full_matrices=False)
    live = [c for c in range(12) if c not in (2, 5, 9)]
    np.testing.assert_allclose(backend.to_numpy(S.channel_informativeness(backend.asarray(X), k=3))[live],
                               (sv[:3, None] ** 2 * vt[:3] ** 2).sum(0)[live], rtol=1e-9)


def test_informativeness_bad_k(rng):
    with pytest.raises(ValueError, match="k"):
        S.channel_informativeness(rng.standard_normal((10, 4)), k=5)


def test_low_informative_channels(backend):
    scores = backend.asarray(np.array([3.0, 1.0, 1.0, 2.0, 0.0, 1.0]))
    low = S.low_informative_channels(scores, k_prime=3)
    backend.check_type(low)
    assert backend.to_numpy(low).tolist() == [1, 2, 4]  # ties at 1.0: lower indices 1, 2 win
    assert backend.to_numpy(low).dtype == np.int64
    assert backend.to_numpy(S.low_informative_channels(scores, eta=1.0)).tolist() == [1, 2, 4, 5]
    assert backend.to_numpy(S.low_informative_channels(scores, k_prime=0)).tolist() == []
    with pytest.raises(ValueError, match="eta.*k_prime"):
        S.low_informative_channels(scores)
    with pytest.raises(ValueError, match="eta.*k_prime"):
        S.low_informative_channels(scores, eta=1.0, k_prime=2)
    with pytest.raises(ValueError, match="k_prime"):
        S.low_informative_channels(scores, k_prime=7)
    for eta in (0.0, -1.0):  # Definition 1's threshold is positive
        with pytest.raises(ValueError, match="eta"):
            S.low_informative_channels(scores, eta=eta)


def test_flatten_tokens(backend, rng):
    F = rng.standard_normal((2, 3, 4))
    mask = np.array([[True, True, False], [True, False, False]])
    flat = S.flatten_tokens(backend.asarray(F))
    backend.check_type(flat)
    np.testing.assert_array_equal(backend.to_numpy(flat), F.reshape(6, 4))
    valid = backend.to_numpy(S.flatten_tokens(backend.asarray(F), backend.asarray(mask)))
    np.testing.assert_array_equal(valid, np.stack([F[0, 0], F[0, 1], F[1, 0]]))
    with pytest.raises(ValueError, match="mask"):
        S.flatten_tokens(backend.asarray(F), backend.asarray(mask[:, :2]))
    with pytest.raises(ValueError, match="F"):
        S.flatten_tokens(backend.asarray(F[0]))


# ----------------------------------------------------------------------------------------
# Principal angles, injection angles, gains
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("p,q", [(4, 6), (6, 4), (5, 5)])
def test_principal_angles_match_scipy(backend, rng, p, q):
    A = rng.standard_normal((60, p))
    B = rng.standard_normal((60, q))
    got = backend.to_numpy(S.principal_angles(backend.asarray(A), backend.asarray(B)))
    np.testing.assert_allclose(got, scipy.linalg.subspace_angles(A, B)[::-1], rtol=1e-10, atol=1e-13)


def test_principal_angles_tiny(backend, rng):
    A = rng.standard_normal((80, 4))
    B = A @ rng.standard_normal((4, 4)) + 1e-9 * rng.standard_normal((80, 4))
    got = backend.to_numpy(S.principal_angles(backend.asarray(A), backend.asarray(B)))
    ref = scipy.linalg.subspace_angles(A, B)[::-1]
    assert np.all(ref < 1e-7)
    np.testing.assert_allclose(got, ref, rtol=1e-6)
    deg = backend.to_numpy(S.principal_angles(backend.asarray(A), backend.asarray(B), degrees=True))
    np.testing.assert_allclose(deg, np.rad2deg(ref), rtol=1e-6)


def test_principal_angles_bad_shapes(rng):
    with pytest.raises(ValueError, match="rows"):
        S.principal_angles(rng.standard_normal((5, 2)), rng.standard_normal((6, 2)))


def test_angles_refuse_dask_arrays(rng):
    da = pytest.importorskip("dask.array")
    X = da.from_array(rng.standard_normal((40, 6)), chunks=(10, 6))
    with pytest.raises(TypeError, match=r"principal_angles takes NumPy arrays or torch tensors, not a dask array \(A"):
        S.principal_angles(X, X[:, :2])
    with pytest.raises(TypeError, match=r"injection_angles .* not a dask array \(X"):
        S.injection_angles(X, X, np.array([0, 1]), 2)


def test_injection_angles(backend, rng):
    t = 400
    U = _orthonormal(rng, t, 8)
    X = U[:, :3] * np.array([10.0, 9.0, 8.0]) @ rng.standard_normal((3, 12)) + 1e-3 * rng.standard_normal((t, 12))
    Y = rng.standard_normal((t, 12))
    Y[:, 2] = U[:, 0]  # lies inside X's dominant subspace
    low = np.array([2, 5])
    res = S.injection_angles(backend.asarray(X), backend.asarray(Y), backend.asarray(low), k=3)
    per = backend.to_numpy(res.per_channel)
    assert per[0] < 0.2 and 60 < per[1] <= 90  # degrees
    principal = backend.to_numpy(res.principal)
    assert principal.shape == (2,) and principal[0] < 0.2
    assert float(backend.to_numpy(res.angle)) == pytest.approx(principal.mean())
    with pytest.raises(ValueError, match="low"):
        S.injection_angles(backend.asarray(X), backend.asarray(Y), backend.asarray(np.array([12])), k=3)


def test_rank_gain_and_harmonic_mean(backend, rng):
    X = rng.standard_normal((300, 2)) @ rng.standard_normal((2, 10))
    Y = rng.standard_normal((300, 10))
    g = S.rank_gain(backend.asarray(X), backend.asarray(Y))
    backend.check_type(g)
    assert float(backend.to_numpy(g)) == pytest.approx(ref_erank(Y) - ref_erank(X), rel=1e-9)
    assert float(S.rank_gain(2.0, 3.0, relative=True)) == pytest.approx(0.5)
    assert np.isnan(S.rank_gain(0.0, 3.0, relative=True))
    assert isinstance(S.rank_gain(2.0, 3.0, relative=True), np.float64)
    assert isinstance(S.harmonic_mean_gain(1.0, -1.0), np.float64)
    assert S.harmonic_mean_gain(1.0, 3.0) == pytest.approx(1.5)
    hm = S.harmonic_mean_gain(np.array([1.0, -1.0, 0.0, 2.0]), np.array([1.0, -1.0, 5.0, np.nan]))
    assert hm[0] == pytest.approx(1.0) and np.isnan(hm[1:]).all()


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.array([[np.nan, 1.0], [1.0, 1.0]]), "NaN"),
        (np.array([[np.inf, 1.0], [1.0, 1.0]]), "NaN"),
        (np.ones(3), "dimensions"),
        (np.ones((0, 3)), "empty"),
    ],
)
def test_bad_input(backend, bad, match):
    for fn in (S.singular_values, S.numerical_rank, S.channel_informativeness):
        with pytest.raises(ValueError, match=f"X.*{match}|{match}.*X|X must"):
            fn(backend.asarray(bad))


@pytest.mark.parametrize("shape", [(300, 8), (8, 300), (40, 30), (3, 200, 10)])
@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("center", [False, True])
def test_non_finite_on_every_route(backend, shape, value, center):
    # The Gram route detects NaN/Inf from the Gram diagonal instead of a separate scan.
    X = np.ones(shape)
    X[..., 1, 2] = value
    # the message names the first non-finite entry, where it is and what it is
    at = "row 1, column 2" if len(shape) == 2 else f"index {(0,) * (len(shape) - 2) + (1, 2)}"
    for fn in (S.effective_rank, S.singular_values):
        with pytest.raises(ValueError, match="X contains NaN or Inf") as err:
            fn(backend.asarray(X), center=center)
        assert str(err.value).endswith(f"; the first, {value}, at {at})")
    if len(shape) == 2:
        for k in (None, 2):
            with pytest.raises(ValueError, match="X contains NaN or Inf"):
                S.channel_informativeness(backend.asarray(X.astype(np.float32)), k, center=center)


def test_non_finite_message_of_half_precision_input():
    from rankfusion._validation import check_matrix

    x = np.ones((3, 2), dtype=np.float16)
    x[2, 0] = np.inf
    with pytest.raises(ValueError, match=r"dtype float16; the first, inf, at row 2, column 0\)$"):
        check_matrix(x, "X")
    torch = pytest.importorskip("torch")
    t = torch.ones(3, 2, dtype=torch.bfloat16)  # NumPy has no bfloat16: located with torch's own ops
    t[1, 1] = float("nan")
    with pytest.raises(ValueError, match=r"dtype torch.bfloat16; the first, nan, at row 1, column 1\)$"):
        check_matrix(t, "X")


def test_float64_squares_overflow_falls_back(rng):
    X = rng.standard_normal((600, 20))
    big = X * 1e200  # finite, but its squares overflow float64
    assert S.spectrum_info(big).route == "svd"
    assert float(S.effective_rank(big)) == pytest.approx(float(S.effective_rank(X)), rel=1e-9)


@pytest.mark.parametrize("scale", [1e-170, 1e-300])
def test_tiny_float64_values_are_not_lost_to_underflow(scale):
    # Squares of these underflow in the Gram matrix; the widened error band sends them to the SVD.
    X = np.random.default_rng(5).standard_normal((600, 20))
    assert float(S.effective_rank(X * scale)) == pytest.approx(float(S.effective_rank(X)), rel=1e-9)
    assert int(S.numerical_rank(X * scale)) == 20


def test_bad_tol():
    with pytest.raises(ValueError, match="tol"):
        S.effective_rank(np.eye(3), tol=-1.0)


@pytest.mark.parametrize("threshold", [0.0, float("inf")], ids=["numpy-gram", "torch-gram"])
def test_cpu_tensor_gram_routes_agree(monkeypatch, threshold):
    """Both CPU-tensor Gram routes (NumPy's rank-k update, torch's matmul) give the same spectrum."""
    torch = pytest.importorskip("torch")
    from rankfusion import _backend

    monkeypatch.setattr(_backend, "_NUMPY_GRAM_MIN_WORK", threshold)
    rng = np.random.default_rng(3)
    X = (rng.standard_normal((600, 40)) @ np.diag(np.logspace(0, -3, 40))).astype(np.float32)
    ref = np.linalg.svd(X.astype(np.float64), compute_uv=False)
    got = S.singular_values(torch.from_numpy(X))
    np.testing.assert_allclose(got.numpy(), ref[: got.shape[0]], rtol=1e-9)
    scores = S.channel_informativeness(torch.from_numpy(X), k=5)
    _, s, vt = np.linalg.svd(X.astype(np.float64), full_matrices=False)
    np.testing.assert_allclose(scores.numpy(), (s[:5, None] ** 2 * vt[:5] ** 2).sum(0), rtol=1e-9)


def test_informativeness_of_overflowing_entries():
    # k=None: the column energy, correctly rounded to inf; other columns keep their exact energies.
    X = np.array([[1e200, 1.0], [0.0, 2.0]])
    scores = S.channel_informativeness(X)
    assert np.isposinf(scores[0]) and scores[1] == 5.0
    # with k, the Gram matrix cannot be formed: one ValueError that says so
    with pytest.raises(ValueError, match="squares overflow"):
        S.channel_informativeness(X, k=1)


def test_injection_angles_take_the_rank_of_float32_channels_at_float32_precision():
    # Y's low channels are rank 2 (the third the sum of the first two) in float32: the copy's float64
    # epsilon kept the rounding of the sum as a third direction, a spurious angle near 90 degrees
    rng = np.random.default_rng(0)
    X = rng.standard_normal((500, 16)).astype(np.float32)
    Y = rng.standard_normal((500, 8)).astype(np.float32)
    Y[:, 2] = Y[:, 0] + Y[:, 1]
    res = S.injection_angles(X, Y, np.array([0, 1, 2]), k=4)
    assert res.principal.shape == (2,)
    # the same angles as with the two independent channels: Y's rounding (float32, ~1e-7 relative)
    # moves them by ~1e-5 degrees
    Uk = np.linalg.svd(X.astype(np.float64), full_matrices=False)[0][:, :4]
    np.testing.assert_allclose(res.principal, S.principal_angles(Uk, Y[:, [0, 1]].astype(np.float64), degrees=True), atol=1e-4)


def test_standardize_columns_at_extreme_scales_and_dominant_k_refuses_non_finite(rng):
    base = rng.standard_normal((50, 4))
    ref, _ = S.standardize_columns(base)
    for s in (1e200, 1e-170):  # a column at that scale: z-scores do not depend on it
        x = base.copy()
        x[:, 1] *= s
        z, constant = S.standardize_columns(x)
        assert constant.size == 0 and np.all(np.isfinite(z))
        np.testing.assert_allclose(z, ref, rtol=1e-12, atol=1e-12)
    for bad in ([3.0, 2.0, np.nan], [3.0, np.nan, 1.0], [np.inf, 1.0]):
        with pytest.raises(ValueError, match="sigma must be finite"):
            S.dominant_k(np.array(bad))


def test_injection_angles_of_an_ill_conditioned_x_take_the_exact_subspace(rng):
    # sigma_2 and sigma_3 of X near its rounding: the Gram route's U_k was 8 % off on the small angle
    n, d = 2000, 8
    U, V = _orthonormal(rng, n, d), _orthonormal(rng, d, d)
    X = (U * np.array([1, 2e-7, 1.8e-7, 5e-8, 4e-8, 3e-8, 2e-8, 1e-8])) @ V.T
    Y = rng.standard_normal((n, 4))
    got = S.injection_angles(X, Y, np.array([0, 1]), k=2).principal
    # against the constructed U_k: angles of two random directions, conditioned ~1 (1e-9 degrees)
    np.testing.assert_allclose(got, S.principal_angles(U[:, :2], Y[:, [0, 1]], degrees=True), atol=1e-6)
