"""The dose-response figure family: verdicts, typed results, tables, figure and report section."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from scipy import stats as sps

from rankfusion.figures.dose import (DOSE_MODELS, DoseCell, DoseResult, _compare, dataset_root, dose_comparisons,
                                     dose_settings, run_args)
from rankfusion.profiles import get_profile


def _cell(model, mean, sd, q="moc", level=1.0, n=3, dial="complementarity"):
    # n seeds with exactly this mean and sample sd (n = 3: mean - sd, mean, mean + sd)
    z = np.array([-1.0, 0.0, 1.0]) if n == 3 else np.linspace(-1, 1, n)
    vals = (mean,) if n == 1 else tuple(mean + sd * z / np.std(z, ddof=1))
    return DoseCell(dial, level, model, q, mean, sd if n > 1 else float("nan"), n, vals)


def test_verdict_is_welchs_test_over_seeds():
    a, b = _cell("plain fusion", 30.0, 1.0), _cell("anchor only", 25.0, 2.0)
    c = _compare("complementarity", 1.0, "x", "moc", a, b)
    ref = sps.ttest_ind(a.values, b.values, equal_var=False)
    assert c.test.test == "Welch t" and c.test.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert c.diff == pytest.approx(5.0) and c.resolved == (ref.pvalue < 0.05) and c.resolved
    assert c.verdict.startswith("resolved (Welch t") and c.verdict.endswith(" unadjusted)")
    c = _compare("complementarity", 1.0, "x", "moc", _cell("a", 25.0, 3.0), b)
    assert not c.resolved and c.verdict.startswith("unresolved (Welch t") and c.diff == pytest.approx(0.0, abs=1e-12)
    # 3.9 points against sds 2.0 and 0.5 with 3 seeds each: the old 2-sd rule called it a near miss;
    # Welch's t says p ~ 0.07: unresolved, and the verdict states the detectable difference
    c = _compare("complementarity", 1.0, "x", "moc", _cell("a", 28.9, 2.0), _cell("b", 25.0, 0.5))
    assert 0.05 < c.test.p < 0.1 and not c.resolved and f"detectable from {c.test.mde:.2f}" in c.verdict
    row = c.row()
    assert row["ci_low"] < 0 < row["ci_high"] and row["mde"] > c.diff and row["test"] == "Welch t"
    one = _compare("complementarity", 1.0, "x", "moc", _cell("a", 90.0, 0.0, n=1), _cell("b", 10.0, 0.0, n=1))
    assert not one.resolved and one.verdict == "unresolved (one seed)"


def test_comparisons_cover_models_erank_and_reliance():
    cells = [_cell("anchor only", 20.0, 1.0), _cell("plain fusion", 30.0, 1.0), _cell("R3D", 31.0, 1.0),
             _cell("plain fusion", 40.0, 0.5, "erank_fused"), _cell("R3D", 42.0, 0.5, "erank_fused"),
             _cell("plain fusion", 3.0, 1.0, "reliance depth"), _cell("R3D", 9.0, 1.0, "reliance depth")]
    comps = {c.comparison: c for c in dose_comparisons(cells, ["rgb", "depth"])}
    assert comps["fusion helps (plain fusion - anchor only)"].resolved
    assert not comps["RTF helps (R3D - plain fusion)"].resolved
    assert comps["RTF raises effective rank (R3D - plain fusion)"].diff == 2.0
    assert comps["RTF changes reliance on depth (R3D - plain fusion)"].resolved
    # no reliance on rgb for either model (every seed's value undefined): listed, a test of no seed
    assert comps["RTF changes reliance on rgb (R3D - plain fusion)"].verdict == "unresolved (no seed with a value)"


def test_dose_settings_of_the_profiles():
    full = dose_settings(get_profile("full"))
    comp = [lv for d, lv, _ in full if d == "complementarity"]
    imb = [lv for d, lv, _ in full if d == "imbalance"]
    assert len(comp) >= 4 and 0.0 in comp and 1.0 in comp and len(imb) >= 3
    for dial, level, dials in full:
        assert dials[dial] == level and set(dials) >= {"complementarity", "imbalance"}
    assert get_profile("full").seeds == (1, 10, 13452, 7, 42)


@pytest.mark.slow
def test_dose_family_quick(tmp_path):
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from rankfusion.cli import main
    from rankfusion.figures import FigureContext, make_figures
    from rankfusion.data.synth import prepare_dataset
    from rankfusion.report import build_report

    prof = get_profile("quick")
    data = prepare_dataset(tmp_path / "data", prof.synth, seed=0)
    ctx = FigureContext.open(data, out=tmp_path / "fig", cache_dir=tmp_path / "cache", profile=prof, progress=False)
    res = make_figures(ctx, only=["dose"], progress=False)["dose"]
    dose = res.data
    assert isinstance(dose, DoseResult)
    settings = dose_settings(prof)
    assert len(dose.points) == len(settings) * len(DOSE_MODELS) * len(prof.seeds)
    # the wide anchor's trunk is as wide as the pair's stacked tokens (M x D)
    mods, opts = run_args(ctx, "anchor only, fused width")
    pair_cfg = ctx.cache.config(ctx.pair).model
    assert mods == [ctx.anchor] and opts["d_model"] == len(ctx.pair) * pair_cfg.d_model
    for p in dose.points:
        assert 0.0 <= p.moc <= 100.0
        fused = not p.model.startswith("anchor only")
        assert (len(p.reliance) == 2) == fused and np.isfinite(p.erank_fused) == fused
    # the oracle of every setting comes from the dataset's synth.json, in percent
    roots = set()
    for dial, level, dials in settings:
        root = dataset_root(ctx, dials)
        roots.add(root)
        meta = json.loads((root / "synth.json").read_text())
        assert all(meta["config"][k] == v for k, v in dials.items())
        orc = {s: v for d, lv, s, v in dose.oracle if (d, lv) == (dial, level)}
        if meta["oracle_exact_share"] >= 1.0:
            assert math.isclose(orc["rgb+depth"], 100 * meta["oracle"]["rgb+depth"])
        else:  # only a loose bound there: not drawn
            assert orc == {}
    # the base point of both sweeps is the figures' own dataset (its runs are shared); the other
    # settings have a dataset each
    assert data.resolve() in roots and len(roots) == len({tuple(sorted(d.items())) for _, _, d in settings})
    # one seed: every verdict is "unresolved (one seed)", never a finding
    assert dose.comparisons and all(c.verdict == "unresolved (one seed)" for c in dose.comparisons)
    for f in ("dose.png", "dose.pdf", "dose_comparisons.csv", "dose_comparisons.md", "dose_moc.md",
              "dose_reliance.md", "dose_oracle.csv", "dose_runs.csv", "dose_cells.csv"):
        assert (tmp_path / "fig" / f).stat().st_size > 0, f
    comps = pd.read_csv(tmp_path / "fig" / "dose_comparisons.csv")
    assert len(comps) == len(dose.comparisons) and set(comps["verdict"]) == {"unresolved (one seed)"}
    manifest = json.loads((tmp_path / "fig" / "manifest.json").read_text())
    assert len(manifest["figures"]["dose"]["runs"]) == len(dose.points)
    text = build_report(ctx, {"dose": res}, seconds=1.0, profile_name="quick",
                        dataset_summary={"videos": 1, "frames": 1, "classes": 1, "modalities": ["rgb"]})
    assert "## Dose-response" in text and "## The paper's claims on this data" in text
    assert "figures/dose.png" in text and text.count("| unresolved (one seed) |") >= 4
    # the CLI regenerates the family from the cache (nothing retrained)
    r = CliRunner().invoke(main, ["figures", "--data", str(data), "--out", str(tmp_path / "fig2"), "--only", "dose",
                                  "--profile", "quick", "--cache", str(tmp_path / "cache"), "--quiet",
                                  "--workers", "1"])
    assert r.exit_code == 0, r.output
    m2 = json.loads((tmp_path / "fig2" / "manifest.json").read_text())
    assert all(run["reused"] for run in m2["figures"]["dose"]["runs"])


def test_claims_section_states_holds_contradicted_unresolved():
    from types import SimpleNamespace

    from rankfusion import stats
    from rankfusion.report import claims_section, dose_section

    cells = []
    for dial, lv, fused in (("complementarity", 0.0, 20.0), ("complementarity", 1.0, 40.0), ("imbalance", 1.0, 40.0)):
        cells += [_cell("anchor only", 30.0, 1.0, level=lv, dial=dial),
                  _cell("plain fusion", fused, 1.0, level=lv, dial=dial),
                  _cell("R3D", fused + 1.0, 1.0, level=lv, dial=dial)]
    comps = tuple(dose_comparisons(cells, ["rgb", "depth"]))
    points = tuple(SimpleNamespace(dial=c.dial, level=c.level) for c in cells)
    dose = DoseResult(points, tuple(cells), comps, (("complementarity", 1.0, "rgb+depth", 70.0),),
                      dials={"base": {"complementarity": 1.0, "imbalance": 1.0}})
    results = {"dose": SimpleNamespace(data=dose)}
    text = "\n".join(claims_section(results, anchor="rgb", partner="depth"))
    rows = [r for r in text.splitlines() if r.startswith("| fusion helps")]
    # complementarity 1 at the base imbalance 1 is imbalance 1: the same runs, listed once
    assert len(rows) == 2 and "| complementarity 1 = imbalance 1 (same runs) |" in rows[1]
    # complementarity 0: plain fusion 10 points below the anchor -> contradicted; complementarity 1:
    # 10 points above -> holds; RTF's +1 point with sd 1 over 3 seeds -> unresolved, with its mde
    assert rows[0].endswith("| contradicted |") and "| complementarity 0 |" in rows[0]
    assert rows[1].endswith("| holds |")
    rtf = [r for r in text.splitlines() if r.startswith("| RTF helps")]
    assert len(rtf) == 2 and all("| unresolved (detectable from " in r for r in rtf)
    # the family: 4 distinct tests, Holm-adjusted; the table shows raw and adjusted p
    assert "family of the 4 tests" in text
    fam = [c.test for c in comps if c.comparison in ("fusion helps (plain fusion - anchor only)",
                                                     "RTF helps (R3D - plain fusion)")
           and not (c.dial == "imbalance")]
    adj = stats.adjust([t.p for t in fam], "holm")
    held = [r for r in rows if r.endswith("| holds |")][0]
    i = [j for j, c in enumerate(fam) if c.diff > 5][0]
    assert f"| {format(adj[i], '.3f') if adj[i] >= 0.001 else '< 0.001'} | holds |" in held
    sec = "\n".join(dose_section(dose, anchor="rgb", partner="depth"))
    assert "40.00 ± 1.00" in sec and "| 70.00 |" in sec and "+10.00 [" in sec and "resolved (Welch t" in sec



def test_a_quantity_undefined_for_every_seed_keeps_its_comparison():
    # every seed's reliance of R3D NaN: the cell is absent; the comparison used to vanish (and the
    # claims family to shrink); it is now listed as a test of no seed
    cells = [_cell(m, 40.0, 1.0) for m in ("anchor only", "plain fusion", "R3D")]
    cells += [_cell("plain fusion", 5.0, 1.0, q="reliance depth")]
    comps = {c.comparison: c for c in dose_comparisons(cells, ["depth"])}
    rel = comps["RTF changes reliance on depth (R3D - plain fusion)"]
    assert (rel.test.n_a, rel.test.n_b) == (0, 3) and rel.verdict == "unresolved (no seed with a value)"
    # a model that did not run at the level gives no comparison
    assert not any("fused width" in k for k in comps)


def test_a_model_whose_moc_is_undefined_for_every_seed_keeps_its_comparisons():
    # "anchor only" has only a MoC cell: all its seeds NaN removed its comparisons entirely
    from rankfusion.figures.dose import DosePoint, _cells

    pts = [DosePoint("complementarity", 1.0, "anchor only", s, float("nan"), float("nan")) for s in (1, 2, 3)]
    pts += [DosePoint("complementarity", 1.0, m, s, 40.0 + s + (m == "R3D"), 10.0 + s, (("depth", 1.0 * s),))
            for m in ("plain fusion", "R3D") for s in (1, 2, 3)]
    comps = {c.comparison: c for c in dose_comparisons(_cells(pts), ["depth"])}
    fusion = comps["fusion helps (plain fusion - anchor only)"]
    assert (fusion.test.n_a, fusion.test.n_b) == (3, 0) and fusion.verdict == "unresolved (no seed with a value)"
