"""Effective-rank conventions: each against a direct transcription of its published formula."""

from __future__ import annotations

import numpy as np
import pytest

from rankfusion import spectral as S

pytestmark = pytest.mark.usefixtures("one_blas_thread")


# ----------------------------------------------------------------------------------------
# Transcriptions: the formulas as their sources write them, in plain NumPy, one SVD each
# ----------------------------------------------------------------------------------------


def _svals(x):
    return np.linalg.svd(np.asarray(x, dtype=np.float64), compute_uv=False)


def t_paper(x):
    # Eq. 1: p_j = sigma_j(Z) / ||Z||_*, j = 1..rank(Z), ERank = exp(-sum p log p)
    s = _svals(x)
    s = s[s > np.sqrt(max(x.shape)) * np.finfo(np.float64).eps * s[0]]
    p = s / s.sum()
    return np.exp(-np.sum(p * np.log(p)))


def t_roy_vetterli(x):
    # all Q = min(M, N) singular values, p_k = sigma_k / ||sigma||_1, 0 log 0 = 0
    s = _svals(x)
    p = s / np.sum(np.abs(s))
    terms = np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0)
    return np.exp(-np.sum(terms))


def t_rankme(x, eps=1e-7):
    # RankMe(Z) = exp(-sum_{k<=min(N,K)} p_k log p_k), p_k = sigma_k / ||sigma||_1 + eps
    s = _svals(x)
    p = s / np.sum(s) + eps
    return np.exp(-np.sum(p * np.log(p)))


def t_covariance(x, eps=1e-7):
    # eigenvalues of the centred covariance (PCA explained-variance ratios), + eps, entropy
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / (x.shape[0] - 1)
    lam = np.sort(np.clip(np.linalg.eigvalsh(cov), 0.0, None))[::-1][: min(x.shape)]
    ratio = lam / lam.sum()
    p = ratio / np.sum(np.abs(ratio)) + eps
    return np.exp(-np.sum(p * np.log(p)))


def t_diff_erank(x):
    # rows centred, each scaled to unit norm, A = Z^T Z / N, eigenvalues of A / tr(A), nansum
    z = x - x.mean(axis=0)
    z = z / np.linalg.norm(z, axis=1, keepdims=True)
    a = z.T @ z / z.shape[0]
    lam = np.linalg.svd(a / np.trace(a), compute_uv=False)  # symmetric PSD: eigenvalues
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.nansum(lam * np.log(lam))
    return np.exp(h)


def t_monai(x):
    # centred SVD, p = sv / sum(sv), ERank = exp(-sum p log p), divided by min(N - 1, D)
    s = _svals(x - x.mean(axis=0))
    p = s / s.sum()
    safe = np.maximum(p, np.finfo(np.float64).tiny)
    er = np.exp(-np.sum(p * np.log(safe)))
    return er / min(x.shape[0] - 1, x.shape[1])


TRANSCRIPTIONS = {
    "paper": t_paper,
    "roy-vetterli": t_roy_vetterli,
    "rankme": t_rankme,
    "covariance": t_covariance,
    "diff-erank": t_diff_erank,
    "monai": t_monai,
}


def _fixed_matrices():
    rng = np.random.default_rng(20240607)
    scales = np.logspace(0, -3, 12)
    return {
        "tall_gaussian": rng.standard_normal((200, 12)),           # Gram route
        "wide_gaussian": rng.standard_normal((10, 80)),            # Gram route of the short side
        "near_square_offset": rng.standard_normal((30, 24)) + 3.0,  # SVD route, a dominant mean
        "decaying_spectrum": rng.standard_normal((150, 12)) * scales,
        "rank4": rng.standard_normal((120, 4)) @ rng.standard_normal((4, 16)),
        "worked_example": np.array([[3.0, 1.0, 0.0], [1.0, 2.0, 1.0], [0.0, 1.0, 1.0], [2.0, 0.0, 1.0]]),
    }


MATRICES = _fixed_matrices()


@pytest.mark.parametrize("name", sorted(MATRICES))
@pytest.mark.parametrize("convention", list(S.CONVENTIONS))
def test_convention_matches_its_transcription(convention, name):
    x = MATRICES[name]
    got = float(S.effective_rank(x, convention=convention))
    want = float(TRANSCRIPTIONS[convention](x))
    assert abs(got - want) <= 1e-12, (convention, name, got, want)


def test_every_convention_is_transcribed():
    assert set(TRANSCRIPTIONS) == set(S.CONVENTIONS)


def test_conventions_differ_where_their_definitions_differ():
    x = MATRICES["near_square_offset"]
    vals = {c: float(S.effective_rank(x, convention=c)) for c in S.CONVENTIONS}
    # the offset dominates the uncentred spectrum: centring raises the rank a lot
    assert vals["covariance"] > vals["rankme"] + 1.0
    # sigma^2 concentrates the distribution: below the sigma form of the same centred matrix
    assert vals["covariance"] < vals["monai"] * min(x.shape[0] - 1, x.shape[1])
    assert 0.0 < vals["monai"] <= 1.0


def test_rankme_eps_counts_every_padded_zero():
    x = MATRICES["rank4"]  # rank 4 in min(N, D) = 16: twelve zero singular values
    sigma = S.singular_values(x)
    assert sigma.shape == (4,)
    from_sigma = float(S.rank_of_spectrum(sigma, "rankme", shape=x.shape))
    assert abs(from_sigma - t_rankme(x)) <= 1e-12
    # without the shape the twelve zeros are missing, and each adds -eps log eps to the entropy
    short = float(S.rank_of_spectrum(sigma, "rankme"))
    assert np.isclose(np.log(from_sigma) - np.log(short), -12 * 1e-7 * np.log(1e-7), rtol=1e-6)


def test_eps_override_and_zero_matrix():
    x = MATRICES["tall_gaussian"]
    assert abs(float(S.effective_rank(x, convention="rankme", eps=1e-5)) - t_rankme(x, 1e-5)) <= 1e-12
    for c in S.CONVENTIONS:
        assert float(S.effective_rank(np.zeros((5, 3)), convention=c)) == 0.0
        # a constant matrix: centred conventions see nothing, uncentred ones one direction
        const = float(S.effective_rank(np.full((5, 3), 2.0), convention=c))
        assert const == (0.0 if S.CONVENTIONS[c].center else pytest.approx(1.0, abs=1e-5))


def test_torch_and_batched_inputs_agree_with_numpy(backend):
    x = MATRICES["tall_gaussian"]
    batch = np.stack([x[:150], 2.0 * x[:150, ::-1], MATRICES["decaying_spectrum"]])
    for c in S.CONVENTIONS:
        got = backend.to_numpy(S.effective_rank(backend.asarray(batch), convention=c))
        want = [TRANSCRIPTIONS[c](b) for b in batch]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_bad_convention_arguments():
    x = MATRICES["tall_gaussian"]
    with pytest.raises(ValueError, match="convention must be one of"):
        S.effective_rank(x, convention="rankMe")
    with pytest.raises(ValueError, match="center=True"):
        S.effective_rank(x, convention="monai", center=True)
    with pytest.raises(ValueError, match="needs the matrix"):
        S.effective_rank(S.singular_values(x), convention="covariance")
    with pytest.raises(ValueError, match="eps"):
        S.effective_rank(x, convention="rankme", eps=-1.0)


def test_paper_with_an_eps_centres_when_asked():
    # center=True with eps under the default convention was refused with a message blaming 'paper'
    x = MATRICES["tall_gaussian"] + 3.0
    centred = x - x.mean(axis=0)
    got = float(S.effective_rank(x, center=True, eps=1e-7))
    assert abs(got - t_rankme(centred, 1e-7)) <= 1e-12
    assert abs(got - float(S.effective_rank(x, eps=1e-7))) > 1e-3  # the centring is not ignored


@pytest.mark.parametrize("convention", ["paper", "roy-vetterli", "rankme"])  # uncentred: sigma of X itself
def test_rank_of_spectrum_refuses_what_is_no_spectrum(backend, convention):
    # NaN and negative "singular values" used to come out as 0.0, the all-zero matrix's value
    for bad, what in (([3.0, np.nan, 1.0], "sigma contains NaN or Inf"), ([3.0, -1.0], "sigma: singular values must be >= 0")):
        with pytest.raises(ValueError, match=what):
            S.rank_of_spectrum(backend.asarray(np.array(bad)), convention, shape=(10, 4))
    # a valid spectrum is still the transcription's
    sigma = S.singular_values(MATRICES["tall_gaussian"])
    got = float(S.rank_of_spectrum(backend.asarray(sigma), convention, shape=MATRICES["tall_gaussian"].shape))
    want = float(S.effective_rank(MATRICES["tall_gaussian"], convention=convention))
    assert abs(got - want) <= 1e-12


def test_standardize_columns_zero_scores_and_constant_columns():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((50, 4)) * [1.0, 1e6, 1e-6, 1.0] + [0.0, 5.0, 0.0, 0.0]
    x[:, 3] = 0.1  # constant: its float64 mean is not exactly 0.1, yet it must come out zero
    z, constant = S.standardize_columns(x)
    assert constant.tolist() == [3]
    assert np.all(z[:, 3] == 0.0)
    np.testing.assert_allclose(z[:, :3].mean(axis=0), 0.0, atol=1e-14)
    np.testing.assert_allclose(z[:, :3].std(axis=0), 1.0, rtol=1e-14)
