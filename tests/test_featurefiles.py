"""Tests of rankfusion.featurefiles on small feature files with known spectra."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from rankfusion import featurefiles, selection
from rankfusion._validation import InputError
from rankfusion.files import save_npz

N, D = 120, 16


def with_spectrum(sigmas, *, n=N, d=D, seed=0):
    """An (n, d) matrix whose singular values are exactly ``sigmas`` (random singular vectors)."""
    rng = np.random.default_rng(seed)
    r = len(sigmas)
    U, _ = np.linalg.qr(rng.standard_normal((n, r)))
    V, _ = np.linalg.qr(rng.standard_normal((d, r)))
    return (U * np.asarray(sigmas, dtype=np.float64)) @ V.T


def erank_of(sigmas):
    """Eq. 1 computed by hand from the singular values."""
    p = np.asarray(sigmas, dtype=np.float64)
    p = p / p.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


#: Spectra used by the fake files: a spiky "before" and flatter "after" spectra, so the gain of
#: each modality is known exactly.
SPIKY = [10.0, 3.0, 1.0, 0.5]
FLAT = [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]
FLATTER = [4.0, 4.0, 3.0, 3.0, 3.0, 2.0, 2.0, 1.0]
SPIKIER = [10.0, 1.0]


def make_file(path, pairs, *, obs=0.3, seed=1, meta_extra=None):
    """Write a feature file; ``pairs`` maps modality -> (before sigmas, after sigmas)."""
    arrays = {}
    for k, (mod, (b, a)) in enumerate(pairs.items()):
        arrays[f"{mod}.before"] = with_spectrum(b, seed=seed * 100 + 2 * k).astype(np.float32)
        arrays[f"{mod}.after"] = with_spectrum(a, seed=seed * 100 + 2 * k + 1).astype(np.float32)
    meta = {"run": f"run-{'-'.join(pairs)}-s{seed}", "split": "test", "obs_ratio": obs, "seed": seed,
            "modalities": list(pairs), "rtf": True, "config_hash": "abc", "dataset": "fake"}
    meta.update(meta_extra or {})
    save_npz(path, arrays, meta)
    return path


@pytest.fixture
def selection_files(tmp_path):
    """Three candidates for the anchor rgb: depth (both gain), mvrgb (both gain less), imu (imu loses)."""
    files = []
    for obs in (0.2, 0.3):
        files.append(make_file(tmp_path / f"depth-{obs}.npz", {"rgb": (SPIKY, FLATTER), "depth": (SPIKY, FLATTER)}, obs=obs))
        files.append(make_file(tmp_path / f"mvrgb-{obs}.npz", {"rgb": (SPIKY, FLAT), "mvrgb": (SPIKY, FLAT)}, obs=obs))
        files.append(make_file(tmp_path / f"imu-{obs}.npz", {"rgb": (SPIKY, FLATTER), "imu": (SPIKY, SPIKIER)}, obs=obs))
    return files


def test_pair_gains_match_hand_computed_effective_ranks(tmp_path):
    path = make_file(tmp_path / "f.npz", {"rgb": (SPIKY, FLAT), "depth": (SPIKY, FLATTER)})
    row = selection.pair_gains(featurefiles.load_features(path), "rgb", "depth")
    assert row["erank_anchor_before"] == pytest.approx(erank_of(SPIKY), rel=1e-4)
    assert row["erank_anchor_after"] == pytest.approx(erank_of(FLAT), rel=1e-4)
    ga, gc = erank_of(FLAT) - erank_of(SPIKY), erank_of(FLATTER) - erank_of(SPIKY)
    assert row["gain_anchor"] == pytest.approx(ga, rel=1e-3)
    assert row["gain_candidate"] == pytest.approx(gc, rel=1e-3)
    assert row["harmonic_mean"] == pytest.approx(2 * ga * gc / (ga + gc), rel=1e-3)


def test_modality_selection_ranks_mutual_gain_first_and_nan_last(selection_files):
    table = selection.modality_selection(selection_files, anchor="rgb")
    assert set(table["candidate"]) == {"depth", "mvrgb", "imu"}
    assert len(table) == 6
    summary = selection.summarize_selection(table)
    assert len(summary) == 6 and (summary["n_files"] == 1).all()
    imu = summary[summary["candidate"] == "imu"]
    assert imu["harmonic_mean"].isna().all()
    assert imu["note"].str.contains("gain of imu").all()
    ranking = selection.rank_candidates(summary)
    assert list(ranking["candidate"]) == ["depth", "mvrgb", "imu"]
    assert list(ranking["rank"]) == [1, 2, 3]
    assert ranking.loc[0, "wins"] == 2
    assert math.isnan(ranking.loc[2, "score"])
    assert "gain of imu" in ranking.loc[2, "reason"] and "obs 0.2" in ranking.loc[2, "reason"]
    assert ranking.loc[0, "reason"] == ""



def test_a_candidate_without_any_mutual_gain_ranks_after_one_with_some(tmp_path):
    # imu: one ratio, NaN there; depth: three ratios, finite at one. Fewer NaN ratios must not put a
    # candidate with no score at all above one with a score (it was ranked first, and the command then
    # said that every criterion is NaN)
    files = [make_file(tmp_path / "imu.npz", {"rgb": (SPIKY, FLATTER), "imu": (SPIKY, SPIKIER)}, obs=0.3)]
    for obs, after in ((0.2, SPIKIER), (0.3, FLATTER), (0.4, SPIKIER)):
        files.append(make_file(tmp_path / f"depth-{obs}.npz", {"rgb": (SPIKY, FLATTER), "depth": (SPIKY, after)},
                               obs=obs))
    ranking = selection.rank_candidates(selection.summarize_selection(selection.modality_selection(files)))
    assert list(ranking["candidate"]) == ["depth", "imu"]
    assert list(ranking["n_nan"]) == [2, 1] and math.isnan(ranking.loc[1, "score"])
    assert selection.compare_with_expected(ranking, "depth")["matches"] is True
    key = selection.criterion.ranking_key(ranking)
    assert key["depth"] > key["imu"]

def test_summary_averages_seeds(tmp_path):
    f1 = make_file(tmp_path / "a.npz", {"rgb": (SPIKY, FLAT), "depth": (SPIKY, FLAT)}, seed=1)
    f2 = make_file(tmp_path / "b.npz", {"rgb": (SPIKY, FLATTER), "depth": (SPIKY, FLATTER)}, seed=2)
    table = selection.modality_selection([f1, f2])
    summary = selection.summarize_selection(table)
    assert len(summary) == 1 and summary["n_files"].iloc[0] == 2
    assert summary["gain_anchor"].iloc[0] == pytest.approx(table["gain_anchor"].mean())
    # the seed spread of the score: std over the files of each file's own harmonic mean
    assert summary["harmonic_mean_std"].iloc[0] == pytest.approx(table["harmonic_mean"].std())
    assert summary["harmonic_mean_std"].iloc[0] > 0


def test_compare_with_expected():
    ranking = pd.DataFrame({"rank": [1, 2], "candidate": ["depth", "imu"], "score": [0.4, np.nan]})
    assert selection.compare_with_expected(ranking, "depth")["matches"] is True
    res = selection.compare_with_expected(ranking, "imu")
    assert res["matches"] is False and res["expected_rank"] == 2
    assert selection.compare_with_expected(ranking, None)["matches"] is None
    # every score NaN: the order is a tie-break, so no top candidate and no verdict (it said "matches")
    # a ranking without a score column, as this function took before scores could be NaN
    assert selection.compare_with_expected(ranking.drop(columns="score"), "depth")["matches"] is True
    undefined = ranking.assign(score=np.nan)
    for exp in ("depth", "imu"):
        res = selection.compare_with_expected(undefined, exp)
        assert res["matches"] is None and res["found"] is None and res["expected"] == exp


def test_load_features_errors_name_file_and_key(tmp_path):
    with pytest.raises(InputError, match="nothere.npz"):
        featurefiles.load_features(tmp_path / "nothere.npz")
    bad = tmp_path / "nopair.npz"
    save_npz(bad, {"rgb.before": np.ones((4, 3), np.float32)}, {"obs_ratio": 0.2})
    with pytest.raises(InputError, match="nopair.npz.*no '<modality>.before'"):
        featurefiles.load_features(bad)
    nan = tmp_path / "nan.npz"
    arr = np.ones((4, 3), np.float32)
    arr[0, 0] = np.nan
    save_npz(nan, {"rgb.before": arr, "rgb.after": np.ones((4, 3), np.float32)})
    with pytest.raises(InputError, match="'rgb.before'.*NaN"):
        featurefiles.load_features(nan)
    rows = tmp_path / "rows.npz"
    save_npz(rows, {"rgb.before": np.ones((4, 3)), "rgb.after": np.ones((5, 3))})
    with pytest.raises(InputError, match="row counts"):
        featurefiles.load_features(rows)
    # a modality's after narrower than its before gave a meaningless gain (-3.89) and exit 0
    width = tmp_path / "width.npz"
    save_npz(width, {"rgb.before": np.eye(50, 8), "rgb.after": np.eye(50, 8),
                     "depth.before": np.eye(50, 8), "depth.after": np.eye(50, 4)})
    with pytest.raises(InputError, match=r"'depth.after' in .*width.npz' has shape \(50, 4\), 'depth.before' \(50, 8\)"):
        featurefiles.load_features(width)


def test_modality_selection_errors(tmp_path):
    f = make_file(tmp_path / "f.npz", {"rgb": (SPIKY, FLAT), "depth": (SPIKY, FLAT)})
    with pytest.raises(InputError, match="anchor 'thermal'"):
        selection.modality_selection([f], anchor="thermal")
    only = make_file(tmp_path / "only.npz", {"rgb": (SPIKY, FLAT)})
    with pytest.raises(InputError, match="only the anchor"):
        selection.modality_selection([only])
    with pytest.raises(InputError, match="no feature files"):
        selection.modality_selection([])



@pytest.mark.parametrize("meta, needle", [({"noise": 0.1}, "meta.noise"), ({"noise": {"depth": "high"}}, "meta.noise"),
                                          ({"seed": [1]}, "meta.seed")])
def test_malformed_meta_is_one_error_line_naming_the_file(tmp_path, meta, needle):
    # these ended in a Python traceback (AttributeError, ValueError, or an unhashable seed in pandas)
    from click.testing import CliRunner

    from rankfusion.cli import main

    f = make_file(tmp_path / "f.npz", {"rgb": (SPIKY, FLATTER), "depth": (SPIKY, FLAT)}, meta_extra=meta)
    with pytest.raises(InputError, match=needle):
        selection.modality_selection([f])
    res = CliRunner().invoke(main, ["modality-select", str(f), "--out", str(tmp_path / "o")])
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert needle in lines[0] and repr(str(f)) in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_null_seed_counts_as_no_seed(tmp_path):
    f = make_file(tmp_path / "f.npz", {"rgb": (SPIKY, FLATTER), "depth": (SPIKY, FLAT)}, meta_extra={"seed": None})
    assert list(selection.modality_selection([f])["seed"]) == [""]

def test_normalized_spectrum_is_eq1_distribution():
    X = with_spectrum(FLAT)
    p = featurefiles.normalized_spectrum(X)
    assert p.sum() == pytest.approx(1.0)
    np.testing.assert_allclose(p, np.asarray(FLAT) / sum(FLAT), rtol=1e-6)
    assert np.exp(-(p * np.log(p)).sum()) == pytest.approx(erank_of(FLAT))
    with pytest.raises(ValueError, match="no non-zero singular value"):
        featurefiles.normalized_spectrum(np.zeros((5, 3)))


def test_spectra_of_and_stacked(tmp_path):
    f = featurefiles.load_features(make_file(tmp_path / "f.npz", {"rgb": (SPIKY, FLAT), "depth": (SPIKY, FLATTER)}))
    df = featurefiles.spectra_of(f, label="R3D")
    assert set(df["modality"]) == {"rgb", "depth"} and set(df["stage"]) == {"before", "after"}
    after = df[(df["modality"] == "depth") & (df["stage"] == "after")]
    assert after["erank"].iloc[0] == pytest.approx(erank_of(FLATTER), rel=1e-4)
    assert len(after) == len(FLATTER)
    assert featurefiles.stacked(f, ["rgb", "depth"], "after").shape == (N, 2 * D)


def test_angle_table_orthogonal_injection_is_90_degrees(tmp_path):
    rng = np.random.default_rng(0)
    # X lives on channels 0..3 only; Y puts independent energy on the low channels of X: the
    # injected columns are orthogonal (in expectation) to X's dominant left subspace.
    X = np.zeros((400, 10))
    X[:, :4] = rng.standard_normal((400, 4)) * [5, 4, 3, 2]
    Y = rng.standard_normal((400, 10))
    # Y's injected columns exactly orthogonal to X's column space.
    Q, _ = np.linalg.qr(X[:, :4])
    Y = Y - Q @ (Q.T @ Y)
    path = tmp_path / "ang.npz"
    save_npz(path, {"rgb.before": X.astype(np.float32), "rgb.after": X.astype(np.float32),
                    "depth.before": Y.astype(np.float32), "depth.after": Y.astype(np.float32)},
             {"exchange_ratio": 0.2})
    tab = featurefiles.angle_table(featurefiles.load_features(path), pairs=[("rgb", "depth")], k=4)
    assert tab["n_low"].iloc[0] == 2 and tab["k"].iloc[0] == 4
    assert tab["min_angle_deg"].iloc[0] == pytest.approx(90.0, abs=0.5) and tab["note"].iloc[0] == ""
    # injected channels that are zero on every row (dead ReLU channels) have no direction: NaN, said why
    Z = Y.copy()
    Z[:, 4:] = 0.0  # X's lowest-energy channels are 4..9, where Z is zero
    dead = tmp_path / "dead.npz"
    save_npz(dead, {"rgb.before": X.astype(np.float32), "rgb.after": X.astype(np.float32),
                    "depth.before": Z.astype(np.float32), "depth.after": Z.astype(np.float32)},
             {"exchange_ratio": 0.2})
    tab = featurefiles.angle_table(featurefiles.load_features(dead), pairs=[("rgb", "depth")], k=4)
    assert np.isnan(tab["mean_angle_deg"].iloc[0])
    assert tab["note"].iloc[0] == "depth's 2 injected channels are zero on every row"
    with pytest.raises(ValueError, match="exchange_ratio"):
        featurefiles.angle_table(featurefiles.load_features(path), exchange_ratio=0.0)


def test_relative_change_and_calibration():
    X = np.ones((4, 3))
    assert featurefiles.relative_change(X, 2 * X) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="same shape"):
        featurefiles.relative_change(X, np.ones((3, 3)))
    # A linear response r = 2.5 * sigma is hit in one update; a mildly non-linear one converges.
    res = featurefiles.calibrate_sigma(lambda s: 2.5 * s, [0.1, 0.3])
    assert [r["sigma"] for r in res] == pytest.approx([0.04, 0.12])
    res = featurefiles.calibrate_sigma(lambda s: 2.0 * s + 3.0 * s * s, [0.2], rtol=0.01, iters=8)
    assert res[0]["achieved"] == pytest.approx(0.2, rel=0.01)
    with pytest.raises(ValueError, match="targets"):
        featurefiles.calibrate_sigma(lambda s: s, [-0.1])


def test_gains_table(tmp_path):
    f = featurefiles.load_features(make_file(tmp_path / "f.npz", {"rgb": (SPIKY, FLAT), "depth": (FLAT, SPIKY)}))
    g = featurefiles.gains_table(f).set_index("modality")
    assert g.loc["rgb", "gain"] > 0 > g.loc["depth", "gain"]


def test_manifest_merge_waits_for_the_lock_and_keeps_both_entries(tmp_path):
    import json
    import threading
    from types import SimpleNamespace

    from rankfusion.figures import write_manifest
    from rankfusion.files import entry_lock

    profile = SimpleNamespace(model={}, train={}, seeds=(0,), obs_ratios=(0.2,))
    cache = SimpleNamespace(manifest_runs=lambda keys: [], fingerprint="f")
    ctx = SimpleNamespace(out=tmp_path, cache=cache, anchor="rgb", partner="depth", data_root=tmp_path,
                          profile=profile)

    def result(name):
        return {name: SimpleNamespace(files=[f"{name}.png"], run_keys=[], caches=[], params={}, findings={},
                                      seconds=0.0)}

    path = tmp_path / "manifest.json"
    with entry_lock(path):  # another process merging at this moment
        other = threading.Thread(target=write_manifest, args=(ctx, result("b")))
        other.start()
        other.join(timeout=1.0)
        assert other.is_alive() and not path.exists()  # it waits instead of reading a stale manifest
        from rankfusion.figures.manifest import _merge_manifest

        _merge_manifest(ctx, path, result("a"), "")  # the holder's own merge
    other.join(timeout=30)
    assert not other.is_alive()
    assert sorted(json.loads(path.read_text())["figures"]) == ["a", "b"]
