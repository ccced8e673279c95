"""Each figure function returns a labelled figure and writes non-empty PNG and PDF files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rankfusion import featurefiles, plots

from test_featurefiles import FLAT, FLATTER, SPIKY, make_file  # noqa: E402  (tests/ is on sys.path)


def _labels(fig):
    axes = [ax for ax in fig.axes if ax.get_visible()]
    xl = [ax.get_xlabel() for ax in axes]
    yl = [ax.get_ylabel() for ax in axes]
    legend = [t.get_text() for ax in axes if ax.get_legend() for t in ax.get_legend().get_texts()]
    return xl, yl, legend


def _written(fig, tmp_path, name):
    paths = plots.save_figure(fig, tmp_path / name)
    assert [p.suffix for p in paths] == [".png", ".pdf"]
    for p in paths:
        assert p.stat().st_size > 1000
    assert paths[0].read_bytes()[:4] == b"\x89PNG" and paths[1].read_bytes()[:4] == b"%PDF"
    # atomic writes leave no temporary files behind
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    plots.close(fig)


def test_palette_is_fixed_per_modality():
    assert plots.color("rgb") == plots.PALETTE["rgb"] != plots.color("depth")
    assert plots.color("thermal") == plots.color("thermal")  # stable for unknown names


def test_plot_spectra(tmp_path):
    f = featurefiles.load_features(make_file(tmp_path / "f.npz", {"rgb": (SPIKY, FLAT), "depth": (SPIKY, FLATTER)}))
    df = featurefiles.spectra_of(f)
    plain = featurefiles.spectra_of(f, stages=("before",)).assign(stage="plain")
    fig = plots.plot_spectra(pd.concat([df, plain]))
    xl, yl, legend = _labels(fig)
    assert all("component index" in x for x in xl)
    assert all("normalised singular value" in y for y in yl)
    assert any(t.startswith("rgb before fusion") for t in legend)
    assert any(t.startswith("depth after RTF") for t in legend)
    assert any(t.startswith("rgb plain fusion") for t in legend)
    assert fig.axes[0].get_yscale() == "log"
    line = [ln for ln in fig.axes[0].get_lines()][0]
    assert line.get_color() == plots.PALETTE["rgb"]
    _written(fig, tmp_path, "spectra")


def test_plot_modality_selection_draws_nan_bars(tmp_path):
    summary = pd.DataFrame({
        "anchor": "rgb", "candidate": ["depth", "imu", "depth", "imu"], "obs_ratio": [0.2, 0.2, 0.3, 0.3],
        "gain_anchor": [1.0, 0.5, 1.2, -0.1], "gain_candidate": [0.8, 0.2, 0.9, 0.3],
        "harmonic_mean": [0.89, 0.29, 1.03, np.nan],
    })
    fig = plots.plot_modality_selection(summary)
    xl, yl, legend = _labels(fig)
    assert "observation ratio" in xl[0] and "harmonic mean" in yl[0]
    assert "rgb + depth" in legend and "rgb + imu" in legend
    assert "gain of rgb" in xl[1]
    assert any(t.get_text() == "NaN" for t in fig.axes[0].texts)
    _written(fig, tmp_path, "selection")


def test_plot_noise(tmp_path):
    rows, moc = [], []
    for nm in ("depth", "rgb"):
        for lv, s in (("clean", 0.0), ("small", 0.1), ("large", 0.3)):
            for mod in ("rgb", "depth"):
                rows.append({"noisy_modality": nm, "level": lv, "sigma": s, "modality": mod, "gain": 1 - s})
            for model in ("with RTF", "without RTF"):
                moc.append({"noisy_modality": nm, "level": lv, "sigma": s, "model": model, "moc": 40 - 10 * s})
    fig = plots.plot_noise_gains(pd.DataFrame(rows))
    xl, yl, legend = _labels(fig)
    assert "noise on depth" in xl[0] and "ERank gain" in yl[0]
    assert {"gain of rgb", "gain of depth"} <= set(legend)
    _written(fig, tmp_path, "noise_gains")
    fig = plots.plot_noise_moc(pd.DataFrame(moc))
    xl, yl, legend = _labels(fig)
    assert "MoC" in yl[0] and {"with RTF", "without RTF"} <= set(legend)
    _written(fig, tmp_path, "noise_moc")


def test_plot_exchange_ratio_ablation_and_angles(tmp_path):
    ex = pd.DataFrame({"exchange_ratio": [0.1, 0.2, 0.3] * 2, "obs_ratio": [0.2] * 3 + [0.3] * 3,
                       "moc": [30, 32, 31, 35, 36, 34]})
    fig = plots.plot_exchange_ratio(ex)
    xl, yl, legend = _labels(fig)
    assert xl[0] == "exchange ratio (%)" and "MoC" in yl[0] and len(legend) == 2
    _written(fig, tmp_path, "exchange")
    ab = pd.DataFrame({"variant": ["R3D", "W/O RTF"] * 2, "obs_ratio": [0.2, 0.2, 0.3, 0.3], "moc": [30, 25, 33, 28]})
    fig = plots.plot_ablation(ab)
    xl, yl, legend = _labels(fig)
    assert "variant" in xl[0] and "MoC" in yl[0] and len(legend) == 2
    _written(fig, tmp_path, "ablation")
    ang = pd.DataFrame({"direction": ["rgb <- depth", "depth <- rgb"], "source": ["depth", "rgb"],
                        "mean_angle_deg": [60.0, 55.0], "min_angle_deg": [40.0, 30.0], "max_angle_deg": [80.0, 85.0]})
    fig = plots.plot_angles(ang)
    xl, yl, legend = _labels(fig)
    assert "degrees" in yl[0] and "injected from depth" in legend
    _written(fig, tmp_path, "angles")


def test_save_figure_rejects_unknown_format(tmp_path):
    fig = plots.plot_exchange_ratio(pd.DataFrame({"exchange_ratio": [0.1], "obs_ratio": [0.2], "moc": [1.0]}))
    with pytest.raises(ValueError, match="formats"):
        plots.save_figure(fig, tmp_path / "x", formats=("gif",))
    plots.close(fig)


def test_plot_selection_evidence_marks_nan_and_noise_like():
    table = pd.DataFrame({
        "candidate": ["depth", "noise"], "gain_anchor": [0.3, -0.1], "gain_candidate": [0.4, 0.5],
        "control_gain_anchor": [0.1, 0.1], "control_gain_candidate": [0.2, 0.2], "criterion": [0.34, float("nan")],
        "control_mean": [0.1, 0.15], "control_std": [0.05, 0.1], "control_values": ["0.1;0.15;nan", "0.2;0.1;0.15"],
        "control_p": [0.25, 1.0],
        "noise_like": [False, True], "task_gain": [0.1, -0.01], "task_gain_lo": [0.05, -0.04],
        "task_gain_hi": [0.15, 0.02], "task_gain_plain": [0.09, -0.02]})
    from rankfusion import stats

    ag = stats.agreement([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])
    fig = plots.plot_selection_evidence(table, anchor="rgb", agreement=ag)
    axes = fig.axes
    assert len(axes) == 3
    texts = [t.get_text() for t in axes[1].texts]
    assert "NaN" in texts and texts.count("noise-like, p = 1.000") == 1 and "p = 0.250" in texts
    assert "Spearman(H, gain) = +1.00, permutation p = 0.167" in axes[2].get_title()
    plots.close(fig)


def test_plot_noise_with_seed_spread(tmp_path):
    rows = [{"noisy_modality": "depth", "level": lv, "sigma": s, "modality": m, "gain": 1 - s, "gain_std": 0.1}
            for lv, s in (("clean", 0.0), ("large", 0.3)) for m in ("rgb", "depth")]
    moc = [{"noisy_modality": "depth", "level": lv, "sigma": s, "model": model, "moc": 40 - 10 * s, "moc_std": 2.0}
           for lv, s in (("clean", 0.0), ("large", 0.3)) for model in ("with RTF", "without RTF")]
    fig = plots.plot_noise_gains(pd.DataFrame(rows))
    assert "std over seeds" in fig.axes[0].get_title()
    _written(fig, tmp_path, "noise_gains_sd")
    fig = plots.plot_noise_moc(pd.DataFrame(moc))
    assert "std over seeds" in fig.axes[0].get_title()
    _written(fig, tmp_path, "noise_moc_sd")


def test_plot_dose(tmp_path):
    cells, oracle = [], []
    for dial, levels in (("complementarity", (0.0, 0.5, 1.0)), ("imbalance", (1.0, 3.0, 9.0))):
        for lv in levels:
            for model in ("anchor only", "plain fusion", "R3D"):
                cells.append({"dial": dial, "level": lv, "model": model, "quantity": "moc", "mean": 30 + lv,
                              "sd": 1.5, "n_seeds": 3})
                if model != "anchor only":
                    for m in ("rgb", "depth"):
                        cells.append({"dial": dial, "level": lv, "model": model, "quantity": f"reliance {m}",
                                      "mean": 5.0, "sd": 1.0, "n_seeds": 3})
            for sub, v in (("rgb", 50.0), ("rgb+depth", 60.0 + 10 * lv)):
                oracle.append({"dial": dial, "level": lv, "subset": sub, "oracle_pct": v})
    fig = plots.plot_dose(pd.DataFrame(cells), pd.DataFrame(oracle))
    xl, yl, legend = _labels(fig)
    assert xl == ["complementarity", "imbalance", "imbalance"]
    assert {"anchor only (MoC)", "plain fusion (MoC)", "R3D (MoC)", "oracle rgb (next-action acc.)",
            "oracle rgb+depth (next-action acc.)", "depth, R3D", "rgb, plain fusion"} <= set(legend)
    assert all("std over seeds" in ax.get_title() for ax in fig.axes)
    _written(fig, tmp_path, "dose")
    # an oracle at one level only (the demo's: complementarity 1) is a point: drawn with a marker
    one = pd.DataFrame([o for o in oracle if o["level"] == 1.0 and o["dial"] == "complementarity"])
    fig = plots.plot_dose(pd.DataFrame(cells), one)
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_label().startswith("oracle")]
    assert len(lines) == 2 and all(len(ln.get_xdata()) == 1 and ln.get_marker() not in ("None", "", None)
                                   for ln in lines)
