"""Unit tests for rankfusion.theorem, and the counterexamples to Theorem 3.1 as regression tests.

The counterexamples (docs/theory.md, "Counterexamples") satisfy Definition 1 and all four
assumptions as the paper states them, yet ERank(X') <= ERank(X). Each is checked here under
the conventions for which it is valid, and against a brute-force numpy.linalg.svd ERank.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rankfusion import spectral
from rankfusion._validation import InputError
from rankfusion.theorem import (
    VERDICT_FAILS,
    VERDICT_NOT_RISEN,
    VERDICT_ROSE,
    majorization_check,
    theorem_3_1,
)


def erank_bf(M):
    s = np.linalg.svd(np.asarray(M, dtype=np.float64), compute_uv=False)
    s = s[s > math.sqrt(max(M.shape)) * np.finfo(np.float64).eps * s[0]]
    p = s / s.sum()
    return float(np.exp(-np.sum(p * np.log(p))))


def blend(X, Y, low, alpha):
    Xp = np.array(X, dtype=np.float64)
    a = np.broadcast_to(np.asarray(alpha, dtype=np.float64), (len(low),))
    Xp[:, low] = a * Xp[:, low] + (1 - a) * np.asarray(Y, dtype=np.float64)[:, low]
    return Xp


# Orthonormal, zero-mean Haar vectors of R^8 (columns): every column built from them is zero-mean.
HAAR8 = np.stack([v / np.linalg.norm(v) for v in (
    [1, -1, 0, 0, 0, 0, 0, 0], [0, 0, 1, -1, 0, 0, 0, 0], [0, 0, 0, 0, 1, -1, 0, 0], [0, 0, 0, 0, 0, 0, 1, -1],
    [1, 1, -1, -1, 0, 0, 0, 0], [0, 0, 0, 0, 1, 1, -1, -1], [1, 1, 1, 1, -1, -1, -1, -1],
)], axis=1).astype(np.float64)


def assert_counterexample(rep, X, Y, low, alpha):
    assert rep.failed == (), [(c.name, c.slack) for c in rep.assumptions if not c.holds]
    assert rep.verdict == VERDICT_NOT_RISEN
    assert not rep.sufficient_condition.holds
    # brute force agrees that ERank did not rise
    assert erank_bf(blend(X, Y, low, alpha)) <= erank_bf(X) * (1 + 1e-12)


# ----------------------------------------------------------------------------- counterexamples

# Counterexample 1 (Step 4 fails): blanking a weak channel. x_1 is replaced by a tiny signal
# outside col(X); every assumption holds with room to spare, ERank 1.5692 -> 1.0107.
CE1_X = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
CE1_Y = np.array([[0.0, 0.005], [0.0, 0.005], [0.0, -0.005], [0.0, -0.005]])


@pytest.mark.parametrize("informativeness", ["topk", "full"])
@pytest.mark.parametrize("residual", ["rank", "complement"])
def test_counterexample_1_weak_channel_blanked(informativeness, residual):
    rep = theorem_3_1(CE1_X, CE1_Y, k=1, alpha=0.0, low=[1], informativeness=informativeness, residual=residual)
    assert_counterexample(rep, CE1_X, CE1_Y, [1], 0.0)
    assert rep.erank_before == pytest.approx(1.569193, abs=1e-6)
    assert rep.erank_after == pytest.approx(1.010736, abs=1e-6)
    assert rep.assumption("assumption-3").slack > 0.47
    assert not rep.assumption("eq47").holds  # ||X'||_F^2 fell: Step 4's Eq. 47 is false here


def test_counterexample_1_with_explicit_constants():
    """Not only in the limit of tightest constants: beta = 0.1, epsilon = 2, eta = 2 work too."""
    rep = theorem_3_1(CE1_X, CE1_Y, k=1, alpha=0.0, low=[1], informativeness="full",
                      beta=0.1, epsilon=2.0, eta=2.0, gamma=0.5)
    assert_counterexample(rep, CE1_X, CE1_Y, [1], 0.0)
    assert set(rep.constant_sources.values()) == {"given"}


# Counterexample 2 (Step 1 fails): a large injection along the residual direction u_2 into a
# dead channel. Assumption 3 does not bound beta, so ||Delta||_2 = 70.7 >> delta_k / 2 = 2.83.
CE2_X = np.array([[5.0, 0.0, 0.0], [-5.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, -1.0, 0.0]])
CE2_Y = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [0.0, 0.0, 50.0], [0.0, 0.0, -50.0]])


def test_counterexample_2_large_beta():
    rep = theorem_3_1(CE2_X, CE2_Y, k=1, alpha=0.0, low=[2], informativeness="full")
    assert_counterexample(rep, CE2_X, CE2_Y, [2], 0.0)
    assert rep.erank_before == pytest.approx(1.569193, abs=1e-6)
    assert rep.erank_after == pytest.approx(1.356080, abs=1e-6)
    assert not rep.assumption("eq11").holds and not rep.assumption("eq12").holds
    assert rep.beta == pytest.approx(50 * math.sqrt(2))


def test_counterexample_2_under_topk():
    # With top-k informativeness channel 1 (orthogonal to u_1) also has I_c = 0 and so belongs
    # to C_low; alpha_1 = 1 leaves it unchanged.
    alpha = np.array([1.0, 1.0, 0.0])
    rep = theorem_3_1(CE2_X, CE2_Y, k=1, alpha=alpha, eta=1e-12, informativeness="topk")
    assert rep.low.tolist() == [1, 2]
    assert_counterexample(rep, CE2_X, CE2_Y, [1, 2], alpha[[1, 2]])


# Counterexample 3 (Step 5 fails): every proof step the report evaluates holds (Eqs. 11, 12,
# 39, 47, 49) and ERank still falls: energy added to the leading residual direction, whose
# p_2 = 0.75 / 2.25 > 1 / ERank(X), sharpens the normalised spectrum.
CE3_SIGMA = np.array([1.0, 0.75, 0.25, 0.25])
CE3_X = np.zeros((8, 5))
CE3_X[:, :4] = HAAR8[:, :4] * CE3_SIGMA
CE3_Y = np.zeros((8, 5))
CE3_Y[:, 4] = 0.12 * HAAR8[:, 1]


@pytest.mark.parametrize("informativeness", ["topk", "full"])
def test_counterexample_3_step5(informativeness):
    if informativeness == "topk":  # channels 1-3 are orthogonal to u_1: in C_low, kept by alpha = 1
        low, alpha = [1, 2, 3, 4], np.array([1.0, 1.0, 1.0, 0.0])
    else:
        low, alpha = [4], 0.0
    rep = theorem_3_1(CE3_X, CE3_Y, k=1, alpha=alpha, low=low, informativeness=informativeness)
    assert_counterexample(rep, CE3_X, CE3_Y, low, alpha)
    assert rep.erank_before == pytest.approx(3.369922, abs=1e-6)
    assert rep.erank_after == pytest.approx(3.368208, abs=1e-6)
    # Eq. 11 is the paper's bound sqrt|C_low| (beta + sqrt eta); with top-k informativeness
    # |C_low| = 4 and that bound (0.24) exceeds delta_k / 2, though ||Delta||_2 itself does not
    steps = ("eq11", "eq12", "eq39", "eq47", "eq49") if informativeness == "full" else ("eq12", "eq39", "eq47", "eq49")
    for step in steps:
        assert rep.assumption(step).holds, step
    # the injected energy went exactly where the proof wants it: the residual spectrum
    assert rep.sigma_after[0] == pytest.approx(1.0)
    assert rep.sigma_after[1] == pytest.approx(math.hypot(0.75, 0.12))


# Counterexample 4 (equality): flipping the sign of a weak channel (y_c = -x_c, alpha = 0) is
# an orthogonal change of basis: the spectrum and ERank are unchanged, "> " fails.
def test_counterexample_4_sign_flip():
    rep = theorem_3_1(CE1_X, -CE1_X, k=1, alpha=0.0, low=[1], informativeness="topk")
    assert_counterexample(rep, CE1_X, -CE1_X, [1], 0.0)
    np.testing.assert_allclose(rep.sigma_after, rep.sigma, rtol=1e-14)
    assert abs(rep.erank_change) < 1e-12


def test_counterexample_found_by_hypothesis():
    """The shrunk example of tests/properties (search with the statement's conventions)."""
    X = np.array([[0.0497167422308071, 0.05217682790712399], [0.19453737350811345, -0.01499097412531527],
                  [0.2747725126873539, 1.33670341276512], [-0.5190266284262742, -1.3738892665469287]])
    Y = np.zeros_like(X)
    rep = theorem_3_1(X, Y, k=1, alpha=0.0, k_prime=1)
    assert rep.low.tolist() == [0]
    assert_counterexample(rep, X, Y, [0], 0.0)
    assert rep.erank_before == pytest.approx(1.4174112, abs=1e-6) and rep.erank_after == pytest.approx(1.0)


# ----------------------------------------------------------------------------- sufficient condition


def test_corollary_dead_channel_orthogonal_injection():
    """Zero channels + injection orthogonal to col(X) with ||W||_2 <= sigma_r: ERank must rise."""
    X = np.zeros((8, 5))
    X[:, :3] = HAAR8[:, :3] * np.array([3.0, 1.0, 0.5])
    Y = np.zeros((8, 5))
    Y[:, 3] = 0.4 * HAAR8[:, 4]
    Y[:, 4] = 0.3 * HAAR8[:, 5]
    rep = theorem_3_1(X, Y, k=1, alpha=0.0, low=[3, 4], informativeness="full")
    assert rep.sufficient_condition.holds and rep.sufficient_condition.slack > 0
    assert rep.verdict == VERDICT_ROSE
    assert rep.erank_after > rep.erank_before


def test_majorization_check_known_cases():
    assert majorization_check([1.0], [1.0, 1.0]).holds  # (1) majorizes (1/2, 1/2)
    assert majorization_check([3.0, 1.0], [2.0, 2.0]).holds
    assert not majorization_check([2.0, 2.0], [3.0, 1.0]).holds
    assert not majorization_check([2.0, 1.0], [4.0, 2.0]).holds  # same normalised spectrum: not strict
    assert not majorization_check([1.0, 1.0], [1.0]).holds  # rank fell
    c = majorization_check([3.0, 2.0, 1.0], [3.0, 2.0, 1.0, 1.0])
    assert c.holds and c.slack == pytest.approx(min(3 / 6 - 3 / 7, 5 / 6 - 5 / 7))


# ----------------------------------------------------------------------------- quantities


@pytest.fixture
def generic(rng):
    X = rng.standard_normal((30, 8)) @ np.diag([5, 4, 3, 2, 1, 0.5, 0.1, 0.05])
    Y = rng.standard_normal((30, 8))
    return X, Y


def test_quantities_agree_with_spectral(generic):
    X, Y = generic
    rep = theorem_3_1(X, Y, k=3, alpha=0.3, k_prime=2)
    np.testing.assert_allclose(rep.sigma, spectral.singular_values(X), rtol=1e-10)
    np.testing.assert_allclose(rep.informativeness_topk, spectral.channel_informativeness(X, 3), rtol=1e-8)
    np.testing.assert_allclose(rep.column_energy, spectral.channel_informativeness(X), rtol=1e-12)
    assert rep.erank_before == pytest.approx(float(spectral.effective_rank(X)), rel=1e-10)
    Xp = blend(X, Y, rep.low, 0.3)
    assert rep.erank_after == pytest.approx(float(spectral.effective_rank(Xp)), rel=1e-10)
    assert rep.low.tolist() == spectral.low_informative_channels(rep.informativeness, k_prime=2).tolist()


def test_a_zero_column_has_top_k_informativeness_exactly_zero(generic):
    # a channel zero on every row (a dead ReLU) scores exactly 0 under Definition 1 (the SVD's
    # rounding gives ~1e-31 otherwise), so k' = 2 of three such channels are the lowest indices
    X, Y = generic
    X = X.copy()
    X[:, [1, 4, 6]] = 0
    rep = theorem_3_1(X, Y, k=3, alpha=0.3, k_prime=2)
    assert rep.informativeness_topk[[1, 4, 6]].tolist() == [0.0, 0.0, 0.0]
    assert rep.low.tolist() == [1, 4]


def test_full_informativeness_is_column_energy_and_topk_at_rank(generic):
    X, Y = generic
    full = theorem_3_1(X, Y, k=8, alpha=0.5, k_prime=1, informativeness="full")
    np.testing.assert_allclose(full.informativeness, (X**2).sum(0), rtol=1e-12)
    # Definition 1 with k = r is the column energy (Sec. 4.2)
    np.testing.assert_allclose(full.informativeness_topk, full.column_energy, rtol=1e-9)


def test_tightest_constants_and_sources(generic):
    X, Y = generic
    rep = theorem_3_1(X, Y, k=2, alpha=0.25, k_prime=3)
    src = rep.constant_sources
    assert (src["eta"], src["beta"], src["epsilon"], src["gamma"], src["low"]) == (
        "tightest", "tightest", "tightest", "tightest", "k_prime")
    low = rep.low
    assert rep.beta == pytest.approx(np.linalg.norm(Y[:, low], axis=0).max())
    D = blend(X, Y, low, 0.25) - X
    assert rep.epsilon == pytest.approx((D**2).sum()) == pytest.approx(rep.delta_fro_sq)
    assert rep.eta == pytest.approx(rep.informativeness[low].max())
    assert rep.gamma == pytest.approx(rep.alignment_ratio.max())
    assert rep.delta_spectral == pytest.approx(np.linalg.norm(D, 2))
    assert rep.x_dot_delta == pytest.approx(np.sum(X * D))
    # Eq. 18: y_c splits into dominant + residual + outside col(X)
    np.testing.assert_allclose(rep.y_dominant_sq + rep.y_residual_sq + rep.y_outside_sq, rep.y_norm**2, rtol=1e-9)


def test_given_constants_are_used(generic):
    X, Y = generic
    rep = theorem_3_1(X, Y, k=2, alpha=0.25, k_prime=3, beta=1e-3, epsilon=1e9, gamma=0.5)
    a1 = rep.assumption("assumption-1")
    assert not a1.holds and a1.slack == pytest.approx(1e-3 - rep.y_norm.max())
    assert not rep.assumption("assumption-2").holds
    assert rep.verdict == VERDICT_FAILS and "assumption-1" in rep.failed
    assert rep.constant_sources["beta"] == "given"


def test_alpha_one_means_no_modification(generic):
    X, Y = generic
    rep = theorem_3_1(X, Y, k=2, alpha=1.0, k_prime=2)
    assert rep.delta_fro_sq == 0.0 and rep.erank_change == 0.0
    assert rep.verdict == VERDICT_FAILS and "assumption-2" in rep.failed


def test_alpha_per_channel_forms_agree(generic):
    X, Y = generic
    a = theorem_3_1(X, Y, k=2, alpha=np.array([0.1, 0.9]), k_prime=2)
    full = np.ones(8)
    full[a.low] = [0.1, 0.9]
    b = theorem_3_1(X, Y, k=2, alpha=full, k_prime=2)
    assert a.erank_after == b.erank_after
    np.testing.assert_array_equal(a.alpha, b.alpha)


def test_eta_defines_sublevel_set(generic):
    X, Y = generic
    I = theorem_3_1(X, Y, k=2, alpha=0.5, k_prime=1).informativeness
    eta = float(np.sort(I)[3])
    rep = theorem_3_1(X, Y, k=2, alpha=0.5, eta=eta)
    assert rep.low.tolist() == np.flatnonzero(I <= eta).tolist()
    assert rep.assumption("definition-1").holds
    # an explicit low that is not a sublevel set fails Definition 1
    top = int(np.argmax(I))
    bad = theorem_3_1(X, Y, k=2, alpha=0.5, low=[top])
    assert not bad.assumption("definition-1").holds and "definition-1" in bad.failed


def test_zero_mean_check_and_center_y(generic):
    X, Y = generic
    Y = Y + 3.0
    rep = theorem_3_1(X, Y, k=2, alpha=0.5, k_prime=2)
    assert not rep.assumption("assumption-1-zero-mean").holds
    cen = theorem_3_1(X, Y, k=2, alpha=0.5, k_prime=2, center_y=True)
    assert cen.assumption("assumption-1-zero-mean").holds
    assert any("centred" in n for n in cen.notes)


def test_residual_complement_is_never_harder(generic):
    X, Y = generic
    X = X[:, :6] @ np.diag([1, 1, 1, 1, 0, 0.0])  # rank 4: col(X) misses part of every y_c
    a = theorem_3_1(X, Y[:, :6], k=2, alpha=0.5, k_prime=2, residual="rank")
    b = theorem_3_1(X, Y[:, :6], k=2, alpha=0.5, k_prime=2, residual="complement")
    np.testing.assert_array_equal(a.low, b.low)
    assert np.all(b.y_residual_sq > a.y_residual_sq)
    assert b.gamma < a.gamma


def test_k_equal_rank_and_rank_deficient():
    X = np.zeros((6, 4))
    X[:, :2] = np.array([[1, 0], [-1, 0], [0, 1], [0, -1], [0, 0], [0, 0]], dtype=float) * [2.0, 1.0]
    Y = np.zeros((6, 4))
    Y[:, 3] = [0, 0, 0, 0, 1, -1]
    rep = theorem_3_1(X, Y, k=2, alpha=0.0, low=[3])
    assert rep.rank == 2 and rep.sigma_k1 == 0.0 and rep.delta_k == pytest.approx(1.0 * math.sqrt(2))
    assert rep.y_residual_sq.tolist() == [0.0] and rep.y_outside_sq[0] == pytest.approx(2.0)


def test_torch_input(backend, generic):
    X, Y = generic
    ref = theorem_3_1(X, Y, k=2, alpha=0.5, k_prime=2)
    rep = theorem_3_1(backend.asarray(X), backend.asarray(Y), k=2, alpha=0.5, k_prime=2)
    assert rep.erank_after == pytest.approx(ref.erank_after, rel=1e-12)
    assert rep.verdict == ref.verdict


def test_float32_input_uses_float32_tolerance(rng):
    X = (rng.standard_normal((50, 3)) @ rng.standard_normal((3, 6))).astype(np.float32)
    rep = theorem_3_1(X, rng.standard_normal((50, 6)).astype(np.float32), k=1, alpha=0.5, k_prime=2)
    assert rep.rank == 3


def test_to_dict_is_strict_json(generic):
    X, Y = generic
    rep = theorem_3_1(X, Y, k=2, alpha=0.5, k_prime=2, gamma=0.1)
    d = json.loads(rep.to_json())
    assert d["verdict"] == rep.verdict and len(d["assumptions"]) == 6
    assert d["assumptions"][0]["name"] == "definition-1"
    assert d["sufficient_condition"]["name"] == "sufficient-condition"


def test_infinite_alignment_ratio_is_reported_and_serialised():
    # y_1 lies in the dominant subspace only (k = 1 of rank 2 ... its residual part is 0)
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 0.1], [0.0, -0.1]])
    Y = np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 0.0], [0.0, 0.0]])
    rep = theorem_3_1(X, Y, k=1, alpha=0.0, low=[1])
    assert math.isinf(rep.gamma) and not rep.assumption("assumption-4").holds
    d = json.loads(rep.to_json())
    assert d["gamma"] == "inf"


def test_report_is_frozen(generic):
    X, Y = generic
    rep = theorem_3_1(X, Y, k=2, alpha=0.5, k_prime=2)
    with pytest.raises(Exception):
        rep.verdict = "x"


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(alpha=1.5, k_prime=2), r"alpha must be in \[0, 1\], got 1.5"),
        (dict(alpha=-0.1, k_prime=2), r"alpha must be in \[0, 1\], got -0.1"),
        (dict(alpha=float("nan"), k_prime=2), r"alpha"),
        (dict(alpha=np.array([0.5, 2.0]), k_prime=2), r"alpha must be in \[0, 1\], got 2.0"),
        (dict(alpha=np.ones(3) * 0.5, k_prime=2), r"alpha must be a scalar or have one value per channel"),
        (dict(alpha=0.5), r"give one of low, eta or k_prime"),
        (dict(alpha=0.5, low=[0], k_prime=1), r"either low or k_prime"),
        (dict(alpha=0.5, eta=1.0, k_prime=1), r"either eta or k_prime"),
        (dict(alpha=0.5, low=[9]), r"low contains channel 9"),
        (dict(alpha=0.5, low=[1, 1]), r"low names channel 1 more than once"),
        (dict(alpha=0.5, k_prime=0), r"k_prime must be in"),
        (dict(alpha=0.5, k_prime=2, informativeness="top"), r"informativeness must be one of"),
        (dict(alpha=0.5, k_prime=2, beta=0.0), r"beta must be > 0"),
        (dict(alpha=0.5, k_prime=2, epsilon=-1.0), r"epsilon must be > 0"),
        (dict(alpha=0.5, eta=0.0), r"eta must be > 0"),
    ],
)
def test_bad_arguments(generic, kwargs, match):
    X, Y = generic
    kwargs.setdefault("k", 2)
    with pytest.raises(ValueError, match=match):
        theorem_3_1(X, Y, **kwargs)


@pytest.mark.parametrize("k", [0, 9, -1])
def test_k_out_of_range(generic, k):
    X, Y = generic
    with pytest.raises(ValueError, match=r"k \(numerical rank of X is 8\) must be in \[1, 8\]"):
        theorem_3_1(X, Y, k=k, alpha=0.5, k_prime=1)


def test_bad_matrices(generic):
    X, Y = generic
    with pytest.raises(ValueError, match="same shape"):
        theorem_3_1(X, Y[:, :5], k=1, alpha=0.5, k_prime=1)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        theorem_3_1(Xn, Y, k=1, alpha=0.5, k_prime=1)
    with pytest.raises(ValueError, match="Y must have at least 2"):
        theorem_3_1(X, Y[0], k=1, alpha=0.5, k_prime=1)
    with pytest.raises(ValueError, match="numerical rank 0"):
        theorem_3_1(np.zeros_like(X), Y, k=1, alpha=0.5, k_prime=1)
    with pytest.raises(TypeError, match="k"):
        theorem_3_1(X, Y, k=1.5, alpha=0.5, k_prime=1)


def test_unchanged_blend_gives_exactly_zero_change(generic):
    """X' equal to X bit for bit (y_c = x_c) has X's spectrum by construction: change exactly 0."""
    X, _ = generic
    rep = theorem_3_1(X, X.copy(), k=2, alpha=0.5, k_prime=3)
    assert rep.delta_fro_sq == 0.0 and rep.erank_change == 0.0
    np.testing.assert_array_equal(rep.sigma_after, rep.sigma)


def test_report_format_is_the_command_output(generic):
    X, Y = generic
    rep = theorem_3_1(X, Y, k=2, alpha=0.5, k_prime=2)
    text = rep.format(source="demo")
    assert text.splitlines()[0] == "Theorem 3.1 on demo  (T=30, D=8)"
    assert f"verdict: {rep.verdict}" in text and "assumption-3" in text


@pytest.mark.parametrize("e", [-700, -1000, 560])
def test_theorem_is_scale_safe(e):
    # tiny (1e-211, 1e-301) and huge (1e168) entries: sigma^2 under- or overflows float64 unless
    # the computation is rescaled; the assertions are scale-invariant, so every truth value and
    # ERank must equal the unscaled ones, and lengths / energies scale as 2**e / 4**e
    rng = np.random.default_rng(3)
    X = rng.standard_normal((40, 8)) @ np.diag(np.linspace(3, 0.2, 8))
    Y = rng.standard_normal((40, 8))
    base = theorem_3_1(X, Y, k=2, alpha=0.3, k_prime=2)
    rep = theorem_3_1(np.ldexp(X, e), np.ldexp(Y, e), k=2, alpha=0.3, k_prime=2)
    assert rep.verdict == base.verdict and rep.failed == base.failed
    assert [c.holds for c in rep.assumptions + rep.proof_steps] == [c.holds for c in base.assumptions + base.proof_steps]
    np.testing.assert_array_equal(rep.low, base.low)
    # same computation at a power-of-two scale: equal up to LAPACK's scale-dependent branches, if any
    np.testing.assert_allclose(rep.erank_before, base.erank_before, rtol=1e-12)
    np.testing.assert_allclose(rep.erank_after, base.erank_after, rtol=1e-12)
    np.testing.assert_allclose(np.ldexp(rep.sigma, -e), base.sigma, rtol=1e-12)
    np.testing.assert_allclose(rep.delta_k, np.ldexp(base.delta_k, e), rtol=1e-12)
    if e < 0:  # energies of 1e168-sized entries exceed float64 in the original units (reported as inf)
        np.testing.assert_allclose(rep.delta_fro_sq, np.ldexp(base.delta_fro_sq, 2 * e), rtol=1e-12)
        a3, b3 = rep.assumption("assumption-3"), base.assumption("assumption-3")
        np.testing.assert_allclose(a3.slack, np.ldexp(b3.slack, e), rtol=1e-12)
    else:
        assert rep.delta_fro_sq == np.inf
    assert any("scaled by 2**" in n for n in rep.notes)


def test_theorem_refuses_scales_float64_cannot_hold_together():
    rng = np.random.default_rng(3)
    X = rng.standard_normal((20, 4))
    with pytest.raises(InputError, match=r"X and Y differ in scale too much.*max \|X\| = .*e-200"):
        theorem_3_1(X * 1e-200, rng.standard_normal((20, 4)) * 1e200, k=1, alpha=0.5, k_prime=1)


def test_theorem_checker_takes_the_toolkit_s_half_precision_tolerance():
    # ERank(X) of the checker is spectral.effective_rank's also for float16 input (it kept
    # sqrt(max(N, D)) * eps16 * sigma_max, which drops real directions at 16,384 rows)
    from rankfusion import spectral

    rng = np.random.default_rng(0)
    X = (rng.standard_normal((16384, 16)) * np.logspace(0, -1.5, 16)).astype(np.float16)
    Y = rng.standard_normal((16384, 16)).astype(np.float16)
    res = theorem_3_1(X, Y, k=2, alpha=0.5, low=[0, 1])
    assert res.erank_before == pytest.approx(float(spectral.effective_rank(X)), rel=1e-9)


def _centred_orthonormal(T, m, seed=0):
    rng = np.random.default_rng(seed)
    return np.linalg.qr(np.c_[np.ones(T), rng.standard_normal((T, m))])[0][:, 1:]


def test_a_rise_the_certificate_proves_is_a_rise_below_rise_rtol_too():
    # a blend of a tiny Y into a dead channel: ERank rises by 1.35e-11 (relative 4.9e-12, far above
    # rounding), below rise_rtol = 1e-9: the verdict read "did not rise" beside a certificate of a rise
    Q = _centred_orthonormal(8, 5)
    X = np.zeros((8, 4))
    X[:, 0], X[:, 1], X[:, 2] = 3 * Q[:, 0], 2 * Q[:, 1], Q[:, 2]
    Y = np.zeros((8, 4))
    Y[:, 3] = 1e-12 * Q[:, 3]
    rep = theorem_3_1(X, Y, k=3, alpha=0.0, low=[3])
    assert rep.sufficient_condition.holds and 0 < rep.erank_change < 1e-9 * rep.erank_before
    assert rep.rose and rep.verdict == "holds-and-rank-rose"


def test_the_rank_of_x_does_not_depend_on_ys_dtype():
    # a float32 X of rank 2 beside a float64 Y: X's float32 rounding directions counted as rank (5)
    # and the verdict flipped from "assumption-4 fails" to "rose"
    rng = np.random.default_rng(3)
    Q = _centred_orthonormal(40, 6, seed=3)
    X = (Q[:, :2] @ rng.standard_normal((2, 6))).astype(np.float32)
    X[:, 5] = 0
    X -= X.mean(0)
    Y = np.zeros((40, 6))
    Y[:, 5] = 1e-3 * rng.standard_normal(40)
    Y[:, 5] -= Y[:, 5].mean()
    reps = [theorem_3_1(X, Y.astype(d), k=2, alpha=0.0, low=[5]) for d in (np.float32, np.float64)]
    assert [r.rank for r in reps] == [2, 2] and reps[0].verdict == reps[1].verdict == "assumption-fails"


def test_a_tie_at_sigma_k_within_rounding_is_no_gap():
    # sigma = (2, 1, 1) and k = 2: the computed delta_k (~1e-16) passed Assumption 3, and the verdict
    # then depended on the basis rounding chose inside the tied eigenspace
    Q = _centred_orthonormal(12, 4)
    X = np.zeros((12, 4))
    X[:, 0], X[:, 1], X[:, 2] = 2 * Q[:, 0], Q[:, 1], Q[:, 2]
    for d in (Q[:, 1], Q[:, 2], Q[:, 1] + Q[:, 2]):
        Y = np.zeros((12, 4))
        Y[:, 3] = 0.01 * d
        rep = theorem_3_1(X, Y, k=2, alpha=0.0, low=[3])
        assert rep.delta_k == 0.0 and "assumption-3" in rep.failed
        assert any("delta_k is taken as 0 (the top-k subspace is not determined)" in n for n in rep.notes)


def test_definition_1_names_a_dead_channel_left_outside_c_low():
    # two dead channels, one blended: eta = 0 does not give "the same C_low" (it would take both);
    # the note said it did, and lhs/rhs showed the inside side (0, 0) beside a negative slack
    Q = _centred_orthonormal(20, 5)
    X = np.zeros((20, 5))
    X[:, 0], X[:, 1], X[:, 2] = 3 * Q[:, 0], 2 * Q[:, 1], Q[:, 2]
    Y = 0.01 * Q
    rep = theorem_3_1(X, Y, k=2, alpha=0.5, low=[3])
    d1 = rep.assumption("definition-1")
    assert not d1.holds and d1.slack == d1.rhs - d1.lhs
    assert not any("any small eta > 0 gives the same C_low" in n for n in rep.notes)
    assert any(n.startswith("channel 4 is not in C_low but has I_c = 0 <= eta = 0") for n in rep.notes)
    # both dead channels blended: the limit eta -> 0+ does give C_low, and the note says so
    rep = theorem_3_1(X, Y, k=2, alpha=0.5, low=[3, 4])
    assert rep.assumption("definition-1").holds and any("any small eta > 0 gives the same C_low" in n for n in rep.notes)


def test_a_float32_y_does_not_cut_a_float64_xs_small_singular_values():
    # the least precise input's rounding unit took a float64 X of singular values 1 ... 1e-10 from
    # rank 16 to 9 beside a float32 Y: X's rank is its own dtype's
    rng = np.random.default_rng(4)
    U = np.linalg.qr(rng.standard_normal((64, 16)))[0]
    V = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    X = U @ np.diag(np.logspace(0, -10, 16)) @ V.T
    Y = rng.standard_normal((64, 16))
    ranks = [theorem_3_1(X, Y.astype(d), k=2, alpha=0.5, k_prime=4).rank for d in (np.float32, np.float64)]
    assert ranks == [16, 16]
