"""The dose-response figure family: verdicts, typed results, tables, figure and report section."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from rankfusion.figures import (DOSE_MODELS, RESOLVE_SD, DoseCell, DoseResult, _compare, _dose_run_args,
                                dose_comparisons, dose_settings)
from rankfusion.pipeline import get_profile


def _cell(model, mean, sd, q="moc", level=1.0, n=3):
    return DoseCell("complementarity", level, model, q, mean, sd, n)


def test_verdict_needs_two_sd_of_the_noisier_model():
    a, b = _cell("plain fusion", 30.0, 1.0), _cell("anchor only", 25.0, 2.0)
    c = _compare("complementarity", 1.0, "x", "moc", a, b)
    # sd_ref is the larger of the two seed sds: 5 points = 2.5 x 2.0 -> resolved
    assert c.sd_ref == 2.0 and c.ratio == 2.5 and c.resolved and c.verdict == "resolved: a > b"
    c = _compare("complementarity", 1.0, "x", "moc", _cell("a", 25.0, 3.0), b)
    assert not c.resolved and c.verdict == "unresolved" and c.diff == 0.0
    c = _compare("complementarity", 1.0, "x", "moc", _cell("a", 20.9, 2.0), _cell("b", 25.0, 0.5))
    assert c.resolved and c.diff < 0 and c.verdict == "resolved: a < b"  # 4.1 >= 2 x 2.0
    c = _compare("complementarity", 1.0, "x", "moc", _cell("a", 28.9, 2.0), _cell("b", 25.0, 0.5))
    assert not c.resolved  # 3.9 < 2 x 2.0
    one = _compare("complementarity", 1.0, "x", "moc", _cell("a", 90.0, float("nan"), n=1),
                   _cell("b", 10.0, float("nan"), n=1))
    assert not one.resolved and one.verdict == "unresolved (one seed)"
    assert RESOLVE_SD == 2.0


def test_comparisons_cover_models_erank_and_reliance():
    cells = [_cell("anchor only", 20.0, 1.0), _cell("plain fusion", 30.0, 1.0), _cell("R3D", 31.0, 1.0),
             _cell("plain fusion", 40.0, 0.5, "erank_fused"), _cell("R3D", 42.0, 0.5, "erank_fused"),
             _cell("plain fusion", 3.0, 1.0, "reliance depth"), _cell("R3D", 9.0, 1.0, "reliance depth")]
    comps = {c.comparison: c for c in dose_comparisons(cells, ["rgb", "depth"])}
    assert comps["fusion helps (plain fusion - anchor only)"].resolved
    assert not comps["RTF helps (R3D - plain fusion)"].resolved
    assert comps["RTF raises effective rank (R3D - plain fusion)"].diff == 2.0
    assert comps["RTF changes reliance on depth (R3D - plain fusion)"].resolved
    assert "RTF changes reliance on rgb (R3D - plain fusion)" not in comps  # no such cells


def test_dose_settings_of_the_profiles():
    full = dose_settings(get_profile("full"))
    comp = [lv for d, lv, _ in full if d == "complementarity"]
    imb = [lv for d, lv, _ in full if d == "imbalance"]
    assert len(comp) >= 4 and 0.0 in comp and 1.0 in comp and len(imb) >= 3
    for dial, level, dials in full:
        assert dials[dial] == level and set(dials) >= {"complementarity", "imbalance"}
    assert get_profile("full").seeds == (1, 10, 13452)


@pytest.mark.slow
def test_dose_family_quick(tmp_path):
    pytest.importorskip("torch")
    from click.testing import CliRunner

    from rankfusion.cli import main
    from rankfusion.figures import FigureContext, _dose_cache, make_figures
    from rankfusion.pipeline import RunCache
    from rankfusion.data.synth import prepare_dataset
    from rankfusion.report import build_report

    prof = get_profile("quick")
    data = prepare_dataset(tmp_path / "data", prof.synth, seed=0)
    cache = RunCache(data, tmp_path / "cache", prof, progress=False)
    ctx = FigureContext(cache, tmp_path / "fig")
    res = make_figures(ctx, only=["dose"], progress=False)["dose"]
    dose = res.data
    assert isinstance(dose, DoseResult)
    settings = dose_settings(prof)
    assert len(dose.points) == len(settings) * len(DOSE_MODELS) * len(prof.seeds)
    # the wide anchor's trunk is as wide as the pair's stacked tokens (M x D)
    mods, opts = _dose_run_args(ctx, "anchor only, fused width")
    pair_cfg = cache.config(ctx.pair).model
    assert mods == [ctx.anchor] and opts["d_model"] == len(ctx.pair) * pair_cfg.d_model
    for p in dose.points:
        assert 0.0 <= p.moc <= 100.0
        fused = not p.model.startswith("anchor only")
        assert (len(p.reliance) == 2) == fused and np.isfinite(p.erank_fused) == fused
    # the oracle of every setting comes from the dataset's synth.json, in percent
    roots = set()
    for dial, level, dials in settings:
        root = _dose_cache(ctx, dials).data_root
        roots.add(root)
        meta = json.loads((root / "synth.json").read_text())
        assert all(meta["config"][k] == v for k, v in dials.items())
        orc = {s: v for d, lv, s, v in dose.oracle if (d, lv) == (dial, level)}
        assert math.isclose(orc["rgb+depth"], 100 * meta["oracle"]["rgb+depth"])
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
    text = build_report(ctx, {"dose": res}, theorem=None, spectrum=None, seconds=1.0, profile_name="quick",
                        dataset_summary={"videos": 1, "frames": 1, "classes": 1, "modalities": ["rgb"]})
    assert "## Dose-response" in text and "## The paper's claims on this data" in text
    assert "figures/dose.png" in text and text.count("| unresolved |") >= 4
    # the CLI regenerates the family from the cache (nothing retrained)
    r = CliRunner().invoke(main, ["figures", "--data", str(data), "--out", str(tmp_path / "fig2"), "--only", "dose",
                                  "--profile", "quick", "--cache", str(tmp_path / "cache"), "--quiet",
                                  "--workers", "1"])
    assert r.exit_code == 0, r.output
    m2 = json.loads((tmp_path / "fig2" / "manifest.json").read_text())
    assert all(run["reused"] for run in m2["figures"]["dose"]["runs"])


def test_claims_section_states_holds_contradicted_unresolved():
    from types import SimpleNamespace

    from rankfusion.report import claims_section, dose_section

    cells = []
    for lv, fused in ((0.0, 20.0), (1.0, 40.0)):
        cells += [_cell("anchor only", 30.0, 1.0, level=lv), _cell("plain fusion", fused, 1.0, level=lv),
                  _cell("R3D", fused + 1.0, 1.0, level=lv)]
    comps = tuple(dose_comparisons(cells, ["rgb", "depth"]))
    points = tuple(SimpleNamespace(dial="complementarity", level=c.level) for c in cells)
    dose = DoseResult(points, tuple(cells), comps, (("complementarity", 1.0, "rgb+depth", 70.0),),
                      dials={"base": {"imbalance": 1.0}})
    results = {"dose": SimpleNamespace(data=dose)}
    text = "\n".join(claims_section(results, anchor="rgb", partner="depth"))
    rows = [r for r in text.splitlines() if r.startswith("| fusion helps")]
    # complementarity 0: plain fusion 10 points below the anchor (10 sd) -> contradicted;
    # complementarity 1: 10 points above -> holds; RTF's +1 point (1 sd) -> unresolved
    assert rows[0].endswith("| contradicted |") and "| 0 |" in rows[0]
    assert rows[1].endswith("| holds |") and "| 1 |" in rows[1]
    assert all(r.endswith("| unresolved |") for r in text.splitlines() if r.startswith("| RTF helps"))
    sec = "\n".join(dose_section(dose, anchor="rgb", partner="depth"))
    assert "40.00 ± 1.00" in sec and "| 70.00 |" in sec and "+10.00 (10.0 sd; resolved: a > b)" in sec
