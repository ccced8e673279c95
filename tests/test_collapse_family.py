"""The collapse figure family: collapse index, tested claims, remedies as run options, outputs, report."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from rankfusion import report
from rankfusion.figures import FigureContext, make_figures
from rankfusion.figures.collapse import (ARMS, BASELINE, EVERY_LEVEL, PARTNER_ALONE, CollapsePoint, CollapseResult,
                                         _cells, arm_args, comparisons, jobs, remedies_table, write_remedies)
from rankfusion.figures.common import FigureResult
from rankfusion.profiles import get_profile
from rankfusion.runcache import RunCache
from rankfusion.stats import adjust

SEEDS = (1, 2, 3, 4, 5)


def _points(level, arm, gains, moc=50.0, erank=float("nan"), reliance=None):
    out = []
    for s, g in zip(SEEDS, gains):
        rel = () if reliance is None else (("rgb", 1.0), ("depth", reliance[s - 1]))
        out.append(CollapsePoint(level, arm, s, moc + s, g, erank if math.isnan(erank) else erank + 0.1 * s, rel))
    return out


def _toy():
    pts = []
    pts += _points(0.0, PARTNER_ALONE, [10, 11, 12, 9, 8])
    pts += _points(1.0, PARTNER_ALONE, [10, 12, 8, 11, 9])
    pts += _points(0.0, BASELINE, [9, 10, 11, 10, 10], erank=5.0, reliance=[12, 13, 14, 12, 13])
    pts += _points(1.0, BASELINE, [0, 1, -1, 0.5, -0.5], erank=5.0, reliance=[0, 1, -1, 0.5, 0.2])
    pts += _points(1.0, "R3D (RTF)", [0.5, -0.5, 1, 0, 0], erank=6.0, reliance=[0, 1, 0, 0.5, 0.2])
    pts += _points(1.0, "plain + modality dropout", [9, 10, 11, 10, 9], erank=5.0, reliance=[10, 11, 12, 10, 9])
    return pts


def test_collapse_index_is_against_the_partner_alones_mean_at_the_same_level():
    cells = {(c.level, c.arm, c.quantity): c for c in _cells(_toy())}
    attain1 = np.mean([10, 12, 8, 11, 9])
    ci = cells[(1.0, BASELINE, "collapse_index")]
    assert ci.values == pytest.approx(tuple(100 * (1 - g / attain1) for g in [0, 1, -1, 0.5, -0.5]), rel=1e-12)
    assert ci.n_seeds == 5 and ci.mean == pytest.approx(np.mean(ci.values), rel=1e-12)
    assert ci.sd == pytest.approx(np.std(ci.values, ddof=1), rel=1e-12)
    # the partner alone has no collapse index; a fused arm's ERank and reliance are cells of their own
    assert (1.0, PARTNER_ALONE, "collapse_index") not in cells
    assert cells[(1.0, "R3D (RTF)", "erank_fused")].mean == pytest.approx(6.3, rel=1e-12)
    assert cells[(0.0, BASELINE, "reliance depth")].values == (12, 13, 14, 12, 13)


def test_comparisons_are_welch_tests_with_the_claimed_direction():
    cells = _cells(_toy())
    comps = comparisons(cells, (0.0, 1.0), "depth")
    by = {(c.level, c.claim): c for c in comps}
    # collapse: plain fusion's decidable gain below the partner alone's, at K = 1 and not at K = 0
    c1 = by[(1.0, "plain fusion uses depth below what it attains alone")]
    ref = sps.ttest_ind([0, 1, -1, 0.5, -0.5], [10, 12, 8, 11, 9], equal_var=False)
    assert c1.sign == -1 and c1.test.test == "Welch t" and c1.test.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert c1.test.diff == pytest.approx(0.0 - 10.0)
    p_holm = adjust([c.test.p for c in comps], "holm")
    row = c1.row(p_holm[comps.index(c1)], len(comps))
    assert row["verdict"] == "holds" and row["a"] == BASELINE and row["b"] == PARTNER_ALONE
    c0 = by[(0.0, "plain fusion uses depth below what it attains alone")]
    row0 = c0.row(p_holm[comps.index(c0)], len(comps))
    assert row0["verdict"] == "unresolved"
    assert row0["mde_holm"] == c0.test.mde_at(0.05 / len(comps)) and row0["mde_holm"] > row0["mde"] == c0.test.mde
    # the reliance drop from the lowest to the highest level, labelled with the levels
    drop = by[(1.0, "plain fusion relies less on depth at K=1 than at K=0")]
    assert drop.a == f"{BASELINE} at K=1" and drop.b == f"{BASELINE} at K=0"
    assert drop.test.diff == pytest.approx(np.mean([0, 1, -1, 0.5, 0.2]) - np.mean([12, 13, 14, 12, 13]))
    # remedies against plain fusion at the highest level: dropout resolved above, RTF not
    assert by[(1.0, "modality dropout reduces collapse (uses depth more than plain fusion)")].row(0.001, len(comps))["verdict"] \
        == "holds"
    rtf = by[(1.0, "RTF reduces collapse (uses depth more than plain fusion)")]
    assert rtf.sign == +1 and rtf.row(1.0, len(comps))["verdict"] == "unresolved"
    er = by[(1.0, "RTF raises the effective rank of the fused features")]
    assert er.test.diff == pytest.approx(1.0, rel=1e-9)
    # an arm that was not trained gives no comparison (no unimodal heads in the toy)
    assert not any("unimodal heads" in c.claim for c in comps)


def test_remedies_table_and_report_section():
    pts = _toy()
    cells = _cells(pts)
    comps = comparisons(cells, (0.0, 1.0), "depth")
    res = CollapseResult(tuple(pts), tuple(cells), tuple(comps), tuple(adjust([c.test.p for c in comps], "holm")),
                         (0.0, 1.0), "depth")
    tab = remedies_table(res).set_index("arm")
    assert list(tab.index) == list(ARMS)
    assert tab.loc[BASELINE, "MoC"] == f"{np.mean([51, 52, 53, 54, 55]):.2f} ± {np.std([51, 52, 53, 54, 55], ddof=1):.2f}"
    assert tab.loc["plain + unimodal heads", "MoC"] == "-" and tab.loc["plain + unimodal heads", "seeds"] == 0
    # each remedy's gain over plain fusion with its interval and Holm p; none for the baseline itself
    drop = next(c for c in comps if c.a == "plain + modality dropout" and c.quantity == "decidable_gain")
    assert tab.loc["plain + modality dropout", "gain vs plain fusion [95 % CI]"] == (
        f"{drop.test.diff:+.2f} [{drop.test.ci[0]:+.2f}, {drop.test.ci[1]:+.2f}]")
    assert tab.loc[BASELINE, "gain vs plain fusion [95 % CI]"] == "-" and tab.loc[PARTNER_ALONE, "Holm p"] == "-"

    class Fig:
        data, params = res, {"data_seed": 0}

    text = "\n".join(report.collapse_section(Fig()))
    assert "## Modality collapse and its remedies" in text and "figures/collapse.png" in text
    assert "| plain fusion uses depth below what it attains alone | 1 |" in text and "holds" in text
    assert "| < 0.001 | < 0.001 | holds |" in text  # a p-value below 0.001 keeps its "<"
    rows = report.collapse_claim_rows(Fig())
    assert all(r[1].startswith("collapse K=") for r in rows) and not any("accuracy" in r[0] for r in rows)
    # in the claims table the collapse rows keep the Holm p of their own family: each test is
    # adjusted once, not again over the dose sweeps' tests
    claims = "\n".join(report.claims_section({"collapse": Fig()}, anchor="rgb", partner="depth"))
    assert f"the {res.family} tests of the collapse section" in claims
    for (claim, setting, t, sign, p_holm), line in zip(rows, [r for r in claims.splitlines() if "collapse K=" in r]):
        assert line.startswith(f"| {claim} | {setting} |")
        assert f"| {report.verdicts.p_cell(p_holm)} (collapse family) |" in line


def test_remedy_options_go_to_the_training_config(tmp_path):
    (tmp_path / "d").mkdir()
    cache = RunCache(tmp_path / "d", tmp_path / "c", get_profile("quick"), fingerprint="x")
    plain = cache.config(["rgb", "depth"], rtf=False)
    cfg = cache.config(["rgb", "depth"], rtf=False, unimodal_heads=1.0, ogm=0.5, modality_dropout=(("rgb", 0.5),))
    assert cfg.train.unimodal_heads == 1.0 and cfg.train.ogm == 0.5 and cfg.train.modality_dropout == {"rgb": 0.5}
    assert cfg.model == plain.model and cfg.config_hash() != plain.config_hash()
    # at their defaults the remedies leave the run (its hash, hence its folder) unchanged
    assert cache.config(["rgb", "depth"], rtf=False, unimodal_heads=0.0).config_hash() == plain.config_hash()
    # jobs that carry a per-modality dropout compare equal when equal (plans drop repeats by equality)
    j = cache.job(["rgb", "depth"], 1, rtf=False, modality_dropout=(("rgb", 0.5),))
    assert j == cache.job(["rgb", "depth"], 1, rtf=False, modality_dropout=(("rgb", 0.5),))
    assert j != cache.job(["rgb", "depth"], 1, rtf=False, modality_dropout=(("rgb", 0.25),))


def test_arms_of_a_context():
    class Ctx:
        anchor, partner, pair = "rgb", "depth", ["rgb", "depth"]

    assert arm_args(Ctx, "plain + modality dropout") == (["rgb", "depth"],
                                                         {"rtf": False, "modality_dropout": (("rgb", 0.5),)})
    assert arm_args(Ctx, PARTNER_ALONE) == (["depth"], {})
    assert set(EVERY_LEVEL) <= set(ARMS) and BASELINE in EVERY_LEVEL and PARTNER_ALONE in EVERY_LEVEL


@pytest.mark.slow
def test_collapse_family_quick(tmp_path):
    from rankfusion.data import synthesize

    prof = get_profile("quick")
    data = synthesize(tmp_path / "data", seed=0, **prof.synth)
    ctx = FigureContext.open(data, out=tmp_path / "figs", cache_dir=tmp_path / "cache", profile="quick",
                             progress=False)
    planned = [rs for rs in jobs(ctx)]
    # plain fusion and the partner alone at both levels; RTF and the three remedies at the highest
    assert len(planned) == 2 * len(EVERY_LEVEL) + (len(ARMS) - len(EVERY_LEVEL))
    res = make_figures(ctx, only=["collapse"], progress=False)["collapse"]
    for f in ("collapse.png", "collapse.pdf", "collapse_remedies.md", "collapse_comparisons.md", "collapse_cells.csv",
              "collapse_runs.csv", "collapse_ranks.csv"):
        assert (tmp_path / "figs" / f).is_file() and f in res.files
    runs = pd.read_csv(tmp_path / "figs" / "collapse_runs.csv")
    assert len(runs) == len(planned)  # one seed in the quick profile
    # the quick collapse datasets have cut points only depth decides: the decidable gain is measured
    meta = json.loads((ctx.cache.cache_dir / "collapse" / "s1-k1" / "synth.json").read_text())
    assert meta["partner_only"]["cuts_test"] > 0 and meta["config"]["collapse"] == 1.0
    assert runs["decidable_gain"].notna().all()
    ranks = pd.read_csv(tmp_path / "figs" / "collapse_ranks.csv")
    assert set(ranks["arm"]) == {BASELINE, PARTNER_ALONE} and (ranks["epoch"] == 0).any()
    manifest = json.loads((tmp_path / "figs" / "manifest.json").read_text())
    assert len(manifest["figures"]["collapse"]["runs"]) == len(planned)


def test_remedies_markdown_names_its_test_and_holm_family(tmp_path):
    # collapse_remedies.md read on its own: its Holm p must say which test and over how many comparisons
    pts = _toy()
    cells = _cells(pts)
    comps = comparisons(cells, (0.0, 1.0), "depth")
    res = CollapseResult(tuple(pts), tuple(cells), tuple(comps), tuple(adjust([c.test.p for c in comps], "holm")),
                         (0.0, 1.0), "depth")
    fig = FigureResult("collapse")
    write_remedies(tmp_path, fig, res)
    text = (tmp_path / "collapse_remedies.md").read_text()
    assert fig.files == ["collapse_remedies.md"]
    assert text.startswith("| arm |") and "Holm p" in text.splitlines()[0]
    note = text.rstrip().splitlines()[-1]
    assert "Welch" in note and f"Holm-adjusted over the {res.family} tested comparisons" in note and res.family > 1


@pytest.mark.parametrize("family, partner, why", [
    # the cut points the collapse family scores the partner on are those only depth can decide; a
    # partner that sees the anchor's hint (mvrgb) would be scored there as if it were depth
    ("collapse", "mvrgb", "decides its partner-only cut points"),
    # the dose dials move only depth: rgb+imu was swept silently (flat)
    ("dose", "imu", "its complementarity and imbalance dials move"),
])
def test_generator_families_refuse_a_partner_their_dials_do_not_act_on(tmp_path, family, partner, why):
    import importlib

    from rankfusion._validation import InputError
    from rankfusion.data import synthesize

    data = synthesize(tmp_path / "data", seed=0, **get_profile("quick").synth)
    ctx = FigureContext.open(data, out=tmp_path / "figs", cache_dir=tmp_path / "cache", profile="quick",
                             progress=False, partner=partner)
    with pytest.raises(InputError, match=f"the {family} family needs partner 'depth' .*{why}.*got partner "
                                         f"'{partner}'") as err:
        importlib.import_module(f"rankfusion.figures.{family}").jobs(ctx)
    assert "--partner depth" in str(err.value)
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir())  # refused before any dataset is generated


def test_figures_refuse_a_collapse_context_before_making_any_family(tmp_path):
    # one worker makes the families in order; the refusal still comes first, before the spectra
    # family trains its runs, and leaves no output folder behind
    from rankfusion._validation import InputError
    from rankfusion.data import synthesize

    data = synthesize(tmp_path / "data", seed=0, **get_profile("quick").synth)
    ctx = FigureContext.open(data, out=tmp_path / "figs", cache_dir=tmp_path / "cache", profile="quick",
                             progress=False, partner="mvrgb")
    with pytest.raises(InputError, match="partner 'mvrgb'"):
        make_figures(ctx, only=["spectra", "collapse"], workers=1, progress=False)
    assert not (tmp_path / "figs").exists()
    assert not list((tmp_path / "cache").rglob("*.pt"))  # nothing trained


def test_a_quantity_undefined_for_every_seed_keeps_its_comparison():
    # R3D's decidable gain NaN for every seed at the highest K: its cell is absent; the comparison used
    # to vanish from the family (whose size then shrank); it is listed as a test of no seed
    pts = [dataclasses.replace(p, decidable_gain=float("nan")) if p.arm == "R3D (RTF)" and p.level == 1.0 else p
           for p in _toy()]
    comps = comparisons(_cells(pts), (0.0, 1.0), "depth")
    assert len(comps) == len(comparisons(_cells(_toy()), (0.0, 1.0), "depth"))
    rtf = next(c for c in comps if c.claim == "RTF reduces collapse (uses depth more than plain fusion)")
    assert (rtf.test.n_a, rtf.test.n_b) == (0, 5) and rtf.row(1.0, len(comps))["verdict"] == "unresolved (no seed with a value)"
