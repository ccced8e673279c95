"""One rule for how many channels RTF blends, shared by the model, the analyses and the report."""

from __future__ import annotations

import numpy as np
import pytest

from rankfusion import featurefiles
from rankfusion.figures import theorem as theorem_family
from rankfusion.files import save_npz
from rankfusion.spectral import blended_channel_count, dominant_k
from rankfusion.theorem import default_k_prime

D = 32
RATIO = 0.1


def test_blended_channel_count_rule():
    assert blended_channel_count(0.1, 32) == 3  # not ceil(3.2) = 4
    assert blended_channel_count(0.3, 10) == 3  # 0.3 * 10 = 3.0000000000000004: ceil would give 4
    assert blended_channel_count(0.2, 32) == 6 and blended_channel_count(0.3, 32) == 10
    assert blended_channel_count(0.0, 32) == 0
    assert default_k_prime(32) == 3 and default_k_prime(4) == 1
    assert default_k_prime(32, 0.2) == 6  # a run's own ratio
    with pytest.raises(ValueError, match="exchange_ratio"):
        blended_channel_count(1.5, 32)
    with pytest.raises(ValueError, match="n_channels"):
        blended_channel_count(0.1, 0)


@pytest.fixture
def features(tmp_path, rng):
    # Column energies well apart, in a shuffled order, so the lowest three are unambiguous in
    # float32 and in float64 alike.
    scale = np.linspace(3.0, 0.05, D)[rng.permutation(D)]
    X = (rng.standard_normal((300, D)) * scale).astype(np.float32)
    Y = rng.standard_normal((300, D)).astype(np.float32)
    path = tmp_path / "f.npz"
    save_npz(path, {"rgb.before": X, "rgb.after": X, "depth.before": Y, "depth.after": Y},
             {"exchange_ratio": RATIO})
    expected = np.sort(np.argsort(scale)[:3])
    return featurefiles.load_features(path), X, Y, expected


def test_model_analysis_and_report_use_the_same_channels(features):
    torch = pytest.importorskip("torch")
    from rankfusion.model import RankEnhancingTokenFuser

    fs, X, Y, expected = features
    rtf = RankEnhancingTokenFuser(("rgb", "depth"), D, exchange_ratio=RATIO)
    mask = torch.ones(1, X.shape[0], dtype=torch.bool)
    model_set = rtf.select([torch.from_numpy(X)[None], torch.from_numpy(Y)[None]], mask)[0].numpy()
    assert rtf.k_prime == 3
    np.testing.assert_array_equal(model_set, expected)
    np.testing.assert_array_equal(featurefiles.blended_channels(X.astype(np.float64), RATIO), expected)
    angles = featurefiles.angle_table(fs, pairs=[("rgb", "depth")])
    assert angles["n_low"].tolist() == [3] and angles["channels"].tolist() == ["criterion"]  # none recorded
    rows = theorem_family.theorem_table(fs, [("rgb", "depth")], exchange_ratio=RATIO)
    assert rows["n_low"].tolist() == [3] and rows["channels"].tolist() == ["criterion"]
    # C_low given explicitly is still Definition 1's sublevel set of the column energy
    assert "definition-1" not in rows["failed"].iloc[0]
    # the report's Theorem 3.1 check blends exactly the model's channels
    from rankfusion.theorem import theorem_3_1

    X64 = X.astype(np.float64)
    rep = theorem_3_1(X64, Y.astype(np.float64), k=dominant_k(np.linalg.svd(X64, compute_uv=False)),
                      alpha=0.5, k_prime=blended_channel_count(RATIO, D), informativeness="full")
    np.testing.assert_array_equal(rep.low, expected)
    assert rows["erank_after"].iloc[0] == pytest.approx(rep.erank_after, rel=1e-9)


def test_analysis_refuses_a_ratio_that_blends_nothing(features):
    fs, X, _, _ = features
    with pytest.raises(ValueError, match=r"blends round\(0.01 \* 32\) = 0"):
        featurefiles.angle_table(fs, pairs=[("rgb", "depth")], exchange_ratio=0.01)


def test_dominant_k():
    assert dominant_k(np.array([3.0, 0.5, 0.1])) == 1  # 9 / 9.26 >= 0.9
    assert dominant_k(np.array([3.0, 1.0, 0.1])) == 2  # 9 / 10.01 < 0.9
    assert dominant_k(np.array([1.0, 1.0, 1.0]), energy=0.9) == 3
    assert dominant_k(np.array([1.0, 1.0, 1.0]), energy=0.5) == 2
    with pytest.raises(ValueError, match="sigma"):
        dominant_k(np.zeros(3))
    # a spectrum out of order (or with a negative value) is refused, not read as if sorted
    with pytest.raises(ValueError, match="descending"):
        dominant_k(np.array([1.0, 2.0, 3.0]))
    with pytest.raises(ValueError, match="non-negative"):
        dominant_k(np.array([3.0, 1.0, -0.5]))


def test_a_recorded_choice_is_what_the_analyses_blend(tmp_path, features):
    fs, X, Y, expected = features
    recorded = [0, 5, 31]  # not the criterion's set on these rows
    assert set(recorded) != set(expected.tolist())
    path = tmp_path / "g.npz"
    save_npz(path, dict(fs.arrays), {"exchange_ratio": RATIO, "blended_channels": {"rgb": [31, 0, 5]}})
    g = featurefiles.load_features(path)
    np.testing.assert_array_equal(g.blended("rgb"), recorded)
    assert g.blended("depth") is None
    angles = featurefiles.angle_table(g, pairs=[("rgb", "depth"), ("depth", "rgb")])
    assert angles["channels"].tolist() == ["run", "criterion"]
    by_hand = featurefiles.spectral.injection_angles(X.astype(np.float64), Y.astype(np.float64), np.array(recorded),
                                                     int(angles["k"].iloc[0]), degrees=True)
    assert angles["mean_angle_deg"].iloc[0] == pytest.approx(float(by_hand.angle), rel=1e-12)
    rows = theorem_family.theorem_table(g, [("rgb", "depth")])
    assert rows["channels"].tolist() == ["run"] and rows["n_low"].tolist() == [3]
    # an explicit ratio asks for the criterion at that ratio instead of the record
    assert featurefiles.angle_table(g, pairs=[("rgb", "depth")], exchange_ratio=0.2)["n_low"].tolist() == [6]


@pytest.mark.parametrize("bad", [[0, 0, 1], [0, 32], [-1], [1.0, 2.0], "0,1", [True], []])
def test_a_malformed_record_is_refused_naming_the_file(tmp_path, features, bad):
    fs, *_ = features
    path = tmp_path / "bad.npz"
    save_npz(path, dict(fs.arrays), {"blended_channels": {"rgb": bad}})
    with pytest.raises(ValueError, match=r"meta blended_channels\['rgb'\] in '.*bad.npz' must list one or more distinct"):
        featurefiles.load_features(path).blended("rgb")
