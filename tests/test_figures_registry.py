"""The figure registry: every family says which runs it reads (``jobs``) and makes its figure from
those runs (``make``); ``plan_jobs`` is their union, so every family trains in the process pool."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

import pytest

from rankfusion import runcache
from rankfusion.figures import FAMILIES, FigureContext, RunSet, check_names, plan_jobs

ROOT = Path(__file__).resolve().parents[1]

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    from rankfusion.data import synthesize

    root = tmp_path_factory.mktemp("registry")
    data = synthesize(root / "data", seed=3, split_fractions=(0.5, 0.2, 0.3), n_videos=10, min_frames=40,
                      max_frames=60, channels={"rgb": 8, "depth": 8, "imu": 4})
    return FigureContext.open(data, out=root / "figs", cache_dir=root / "cache", profile="quick", progress=False)


def _dedupe(jobs):
    out = []
    for j in jobs:
        if j not in out:
            out.append(j)
    return out


def test_every_family_has_jobs_and_make():
    assert list(FAMILIES)[:10] == ["spectra", "modality", "noise", "exchange", "angles", "ablation", "dose",
                                   "collapse", "dynamics", "timeline"]
    assert {"theorem", "spectrum"} <= set(FAMILIES)
    for name, module in FAMILIES.items():
        for fn in ("jobs", "make"):
            f = getattr(module, fn, None)
            assert callable(f), f"family {name!r} has no {fn}(ctx)"
            assert list(inspect.signature(f).parameters)[0] == "ctx", (name, fn)
        assert module.__doc__ and module.__doc__.strip().splitlines()[0], f"family {name!r} has no docstring"


def test_plan_is_the_union_of_the_families_jobs(ctx):
    per_family = {n: [j for s in FAMILIES[n].jobs(ctx) for j in s.jobs()] for n in FAMILIES}
    assert plan_jobs(ctx, list(FAMILIES)) == _dedupe([j for n in FAMILIES for j in per_family[n]])
    assert plan_jobs(ctx, None) == plan_jobs(ctx, list(FAMILIES))  # none named: every family
    for n, jobs in per_family.items():
        assert plan_jobs(ctx, [n]) == _dedupe(jobs), n
        # every family trains, so `--only F --workers 2` has its runs trained in the pool
        assert jobs, f"family {n!r} plans no run"
        assert all(isinstance(s, RunSet) and s.seeds and s.cache is not None for s in FAMILIES[n].jobs(ctx)), n
    # the same run asked for by several families is planned once
    planned = plan_jobs(ctx, list(FAMILIES))
    assert len(planned) == len(_dedupe(planned)) < sum(map(len, per_family.values()))


def test_the_pair_without_rtf_is_one_run_for_every_family(ctx):
    without = {(s.name, s.modalities, s.overrides) for n in ("spectra", "noise", "ablation", "dynamics", "timeline")
               for s in FAMILIES[n].jobs(ctx) if dict(s.overrides).get("rtf") is False}
    assert without == {(f"{ctx.anchor}+{ctx.partner} W/O RTF", tuple(ctx.pair), (("rtf", False),))}


class _Stop(Exception):
    pass


def test_make_reads_only_planned_runs(ctx, monkeypatch):
    # make asks the cache for runs; every run it asks for (before its first export) is one of its
    # planned jobs, under the same label (checked without training: the cache is stopped at the
    # first export)
    asked = []

    def run(self, name, modalities, seed=1, **overrides):
        asked.append((str(self.run_dir(modalities, seed, **overrides)), name))
        return runcache.RunRecord(name, self.run_dir(modalities, seed, **overrides), "h", seed,
                                  {"modalities": list(modalities), **overrides}, reused=True)

    def stop(*args, **kwargs):
        raise _Stop

    monkeypatch.setattr(runcache.RunCache, "run", run)
    monkeypatch.setattr(runcache.RunCache, "train_seeds", lambda self, *a, **k: [])
    for name in ("evaluate", "features", "reliance"):
        monkeypatch.setattr(runcache.RunCache, name, stop)
    monkeypatch.setattr("rankfusion.figures.timeline._predictions", stop)
    monkeypatch.setattr("rankfusion.figures.dynamics._run_ranks", stop)
    for n, module in FAMILIES.items():
        asked.clear()
        with pytest.raises(_Stop):
            module.make(ctx)
        planned = {str(j.run_dir()) for j in plan_jobs(ctx, [n])}
        labels = {s.name for s in module.jobs(ctx)}
        assert asked, n
        assert {d for d, _ in asked} <= planned and {label for _, label in asked} <= labels, n


def test_unknown_family_is_one_clear_error():
    from rankfusion._validation import InputError

    assert check_names(["noise", "spectra", "noise"]) == ["noise", "spectra"]
    with pytest.raises(InputError, match="--only must be among .*'histogram'"):
        check_names(["histogram"])


def test_committed_tables_name_no_local_folder():
    # run folders and feature files are written relative to the run cache, so a committed table
    # reads the same on every machine
    for path in sorted((ROOT / "figures").glob("*.csv")):
        with open(path, newline="") as fh:
            for row in csv.reader(fh):
                assert not any(cell.startswith("/") for cell in row), (path.name, row)


def test_the_cli_help_lists_every_family():
    from rankfusion.cli.experiments import _FAMILY_HELP

    assert _FAMILY_HELP.split(", ") == list(FAMILIES)


def test_markdown_tables_show_p_values_as_the_report_does(tmp_path):
    import pandas as pd

    from rankfusion.figures import FigureResult
    from rankfusion.figures.common import table

    df = pd.DataFrame({"diff": [1.234, -0.5, 2.0], "p": [0.0123, 0.0004, float("nan")],
                       "p_holm": [0.0369, 0.0012, float("nan")]})
    res = FigureResult("x")
    table(tmp_path, df, "t", res, markdown=True)
    rows = (tmp_path / "t.md").read_text().splitlines()[2:]
    # two decimals would print 0.01 / 0.00: p-values keep the report's form
    assert rows == ["| 1.23 | 0.012 | 0.037 |", "| -0.50 | < 0.001 | 0.001 |", "| 2.00 | NaN | NaN |"]
    assert pd.read_csv(tmp_path / "t.csv")["p"].tolist()[:2] == [0.0123, 0.0004]  # the CSV keeps the numbers


def test_test_tables_say_their_test_and_family_under_the_table(tmp_path):
    import pandas as pd

    from rankfusion import stats
    from rankfusion.figures import FigureResult
    from rankfusion.figures.collapse import CollapseComparison, CollapseResult, comparisons_note
    from rankfusion.figures.common import table
    from rankfusion.figures.dose import COMPARISONS_NOTE
    from rankfusion.figures.dynamics import summary_note

    df = pd.DataFrame({"diff": [1.0], "p": [0.048]})
    table(tmp_path, df, "t", FigureResult("x"), markdown=True, note=COMPARISONS_NOTE)
    lines = (tmp_path / "t.md").read_text().splitlines()
    assert lines[2] == "| 1.00 | 0.048 |" and lines[-1] == COMPARISONS_NOTE and lines[-2] == ""
    assert "not adjusted for multiplicity here" in COMPARISONS_NOTE
    tests = [stats.compare([0.0, 1.0, -1.0], [1.0, 2.0, 3.0]), stats.compare([1.0], [1.0, 2.0])]
    comps = tuple(CollapseComparison(1.0, "c", "moc", "a", "b", +1, t) for t in tests)
    res = CollapseResult((), (), comps, tuple(stats.adjust([t.p for t in tests])), (0.0, 1.0), "depth")
    assert "p_holm: Holm over the 1 comparisons of this table with two seeds or more an arm and some spread" in comparisons_note(res)
    assert "at 0.05/1 and at 0.05" in comparisons_note(res)
    # with one seed an arm nothing is tested: the note said "Holm over the 1 comparisons"
    none = CollapseResult((), (), comps[1:], (float("nan"),), (0.0, 1.0), "depth")
    assert none.family == 0
    assert comparisons_note(none).startswith("no comparison of this table has two seeds or more an arm and some "
                                             "spread (one seed): none is tested")
    flat = CollapseResult((), (), (CollapseComparison(1.0, "c", "moc", "a", "b", +1, stats.compare([10.0] * 3, [0.0] * 3)),),
                          (float("nan"),), (0.0, 1.0), "depth")
    assert "(no spread): none is tested" in comparisons_note(flat)
    summary = pd.DataFrame({"model": ["a", "a", "b"]})
    summary.attrs["n_tests"] = 2
    assert "Holm over the 2 distinct tests of the 3 rows" in summary_note(summary)
