"""The `timeline` figure family (Fig. 8): ground truth vs predicted future per test video."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from rankfusion.cli import main  # noqa: E402
from rankfusion.figures import timeline  # noqa: E402


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    from rankfusion.data import synthesize

    root = tmp_path_factory.mktemp("micro") / "data"
    return synthesize(root, seed=3, split_fractions=(0.5, 0.2, 0.3),
                      n_videos=10, min_frames=40, max_frames=60, channels={"rgb": 8, "depth": 8})


@pytest.mark.slow  # trains three quick-profile runs (~40 s on 2 idle cores)
def test_figures_only_timeline(micro_data, tmp_path):
    from rankfusion.figures import FigureContext, timeline
    from rankfusion.metrics import MoCAccumulator

    out, cache = tmp_path / "figs", tmp_path / "cache"
    args = ["figures", "--data", str(micro_data), "--out", str(out), "--cache", str(cache), "--profile", "quick",
            "--quiet", "--only", "timeline"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    fig = json.loads((out / "manifest.json").read_text())["figures"]["timeline"]
    assert {"timeline.png", "timeline.pdf", "timeline.csv"} <= set(fig["files"])
    assert {r["name"] for r in fig["runs"]} == {"rgb+depth", "rgb+depth W/O RTF", "rgb"}
    table = pd.read_csv(out / "timeline.csv")
    assert len(table) == fig["findings"]["n_videos"] >= 2
    np.testing.assert_allclose(table["diff"], table["moc with RTF"] - table["moc without RTF"], atol=1e-4)
    shown = fig["findings"]["videos"]
    by = table.set_index("video")["diff"]
    assert by[shown["largest"]] == by.max() and by[shown["smallest"]] == by.min()
    assert set(table.loc[table["shown as"].notna(), "video"]) == set(shown.values())

    # the per-video predictions are the ones MoC scores: pooled, they give the cached MoC grid
    ctx = FigureContext.open(micro_data, out=out, cache_dir=cache, profile="quick", progress=False)
    (rec,) = timeline.jobs(ctx)[0].records()
    preds = timeline._predictions(ctx, rec, ctx.obs)
    grid = ctx.cache.evaluate(rec)
    betas = tuple(sorted(grid["beta"].unique()))
    acc = MoCAccumulator(_n_classes(micro_data), betas=betas)
    for gt, _, pred in preds.values():
        acc.add(gt, ctx.obs, pred)
    pooled = 100.0 * acc.result().loc[round(ctx.obs, 6)]
    want = grid[np.isclose(grid["obs_ratio"], ctx.obs)].set_index("beta")["moc"]
    np.testing.assert_allclose(pooled.to_numpy(), want.loc[list(betas)].to_numpy(), rtol=0, atol=1e-9)


def _n_classes(root):
    from rankfusion.data import open_dataset

    return len(open_dataset(root).classes)


def test_plot_timelines_draws_rows_cut_and_legend():
    from rankfusion import plots

    classes = ["a", "b", "c", "d"]
    gt = np.array([0] * 10 + [1] * 10 + [2] * 10)
    panels = [{"title": "v1", "gt": gt, "past": 9,
               "rows": [("with RTF", np.array([0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 4, 4, 4, 4, 4])),
                        ("without RTF", np.array([0] * 15)), ("anchor alone", np.array([2] * 15))]},
              {"title": "v2", "gt": gt[:20], "past": 6, "rows": [("with RTF", np.array([1] * 10))]}]
    fig = plots.plot_timelines(panels, classes, obs=0.3)
    axes = fig.axes
    assert len(axes) == 2
    assert [t.get_text() for t in axes[0].get_yticklabels()] == ["ground truth", "with RTF", "without RTF",
                                                                  "anchor alone"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["a", "b", "c"]  # d never appears; 4 is NONE
    assert axes[0].get_xlim() == (0.0, 30.0)
    plots.close(fig)


def test_report_section_names_each_video_once():
    from rankfusion.figures import FigureResult
    from rankfusion.figures.timeline import TimelineResult
    from rankfusion.report import timeline_section

    res = FigureResult("timeline")
    res.data = TimelineResult(videos={"largest": "a", "median": "a", "smallest": "b"},
                              moc={"a": {"with RTF": 60.0, "without RTF": 50.0, "anchor alone": 40.0},
                                   "b": {"with RTF": 30.0, "without RTF": 35.0, "anchor alone": 20.0}},
                              obs=0.3, seed=1, n_videos=2, mean_diff=2.5)
    lines = timeline_section(res)
    assert lines[0] == "## Timelines (Fig. 8)" and "figures/timeline.png" in lines[2]
    assert "among 2" in lines[4] and "+2.50 points" in lines[4]
    assert lines[5].startswith("- largest and median: a, MoC with RTF 60.00 %")
    assert lines[6].startswith("- smallest: b, MoC with RTF 30.00 %, without RTF 35.00 %")


def test_every_family_plans_its_runs_for_the_pool(micro_data, tmp_path):
    # each family's runs are planned, so `--only F --workers 2` trains them in the pool
    from rankfusion import figures

    ctx = figures.FigureContext.open(micro_data, out=tmp_path / "figs", cache_dir=tmp_path / "cache",
                                     profile="quick", progress=False)
    for name in figures.FAMILIES:
        assert figures.plan_jobs(ctx, [name]), f"family {name!r} plans no run"
    dyn = {(j.modalities, j.overrides) for j in figures.plan_jobs(ctx, ["dynamics"])}
    assert dyn == {(tuple(ctx.pair), ()), (tuple(ctx.pair), (("rtf", False),))}


def test_videos_without_a_scored_frame_are_not_ranked():
    # a NaN difference sorted last and was shown as the "largest" one
    tab = pd.DataFrame({"video": ["a", "b", "c", "d"], "diff": [1.0, float("nan"), -2.0, 0.5]})
    assert timeline.choose_videos(tab, "none") == dict(zip(timeline.TIMELINE_ROLES, ("a", "d", "c")))
    with pytest.raises(ValueError, match="^none scored$"):
        timeline.choose_videos(tab.assign(diff=float("nan")), "none scored")
