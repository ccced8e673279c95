"""The `dynamics` figure family: rank over epochs with / without RTF from RUN/ranks.csv."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from rankfusion.cli import main  # noqa: E402


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    from rankfusion.data import synthesize

    root = tmp_path_factory.mktemp("micro") / "data"
    return synthesize(root, seed=3, split_fractions=(0.7, 0.15, 0.15),
                      n_videos=8, min_frames=40, max_frames=60, channels={"rgb": 8, "depth": 8})


@pytest.mark.slow  # trains three quick-profile runs (~40 s on 2 idle cores)
def test_figures_only_dynamics(micro_data, tmp_path):
    out, cache = tmp_path / "figs", tmp_path / "cache"
    args = ["figures", "--data", str(micro_data), "--out", str(out), "--cache", str(cache), "--profile", "quick",
            "--quiet", "--only", "dynamics"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    fig = json.loads((out / "manifest.json").read_text())["figures"]["dynamics"]
    assert {"dynamics.png", "dynamics.pdf", "dynamics.csv", "dynamics.md", "dynamics_ranks.csv",
            "dynamics_moc.csv"} <= set(fig["files"])
    assert {r["name"] for r in fig["runs"]} == {"rgb+depth", "rgb+depth W/O RTF"}
    assert fig["params"]["regenerated"] == []  # runs trained now carry their ranks.csv
    ranks = pd.read_csv(out / "dynamics_ranks.csv")
    assert set(ranks["model"]) == {"with RTF", "without RTF"}
    assert sorted(set(ranks["epoch"])) == [0, 1]  # quick profile: initialisation + 1 epoch
    plain = ranks[ranks["model"] == "without RTF"].pivot_table(index=["epoch", "modality"], columns="stage",
                                                               values="effective_rank")
    np.testing.assert_array_equal(plain["before"], plain["after"])  # without RTF the fuser is absent
    summary = pd.read_csv(out / "dynamics.csv")
    row = summary[(summary["model"] == "with RTF") & (summary["name"] == "fused")].iloc[0]
    per = ranks[(ranks["model"] == "with RTF") & (ranks["name"] == "fused")].set_index("epoch")["effective_rank"]
    # tables are written with 6 significant digits
    assert row["change"] == pytest.approx(per[1] - per[0], abs=2e-6 * per.abs().max())
    assert "reliance" in fig["findings"]

    # a cached run made before the monitor existed: its ranks are regenerated, identically
    run_dir = next(p for p in (cache / "runs").iterdir() if p.is_dir() and (p / "ranks.csv").exists())
    before = pd.read_csv(run_dir / "ranks.csv")
    (run_dir / "ranks.csv").unlink()
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    fig = json.loads((out / "manifest.json").read_text())["figures"]["dynamics"]
    assert len(fig["params"]["regenerated"]) == 1
    assert not any(p.name.endswith(".ranks-tmp") for p in (cache / "runs").iterdir())
    after = pd.read_csv(run_dir / "ranks.csv")
    cols = ["epoch", "name", "n_rows", "numerical_rank", "effective_rank"]
    pd.testing.assert_frame_equal(before[cols], after[cols])


def test_plot_dynamics_draws_seed_bands():
    from rankfusion import plots

    rows, moc = [], []
    for model in ("with RTF", "without RTF"):
        for seed in (1, 10, 13452):
            for epoch in range(4):
                moc.append({"model": model, "seed": seed, "epoch": epoch, "val_moc": 10.0 + epoch + seed % 3})
                for m in ("rgb", "depth"):
                    for stage in ("before", "after"):
                        rows.append({"model": model, "seed": seed, "epoch": epoch, "modality": m, "stage": stage,
                                     "effective_rank": 20.0 - epoch + (seed % 5) * 0.1})
                rows.append({"model": model, "seed": seed, "epoch": epoch, "modality": "fused", "stage": "stacked",
                             "effective_rank": 30.0 - epoch})
    fig = plots.plot_dynamics(pd.DataFrame(rows), pd.DataFrame(moc), modalities=["rgb", "depth"])
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == ["rgb tokens", "depth tokens", "stacked tokens", "validation MoC"]
    assert len(axes[0].collections) == 3  # one band per curve (3 seeds)
    assert "3 seeds" in fig._suptitle.get_text()
    plots.close(fig)


def _ranks(changes: dict, init: dict, seeds=(0, 1, 2)) -> pd.DataFrame:
    """ranks.csv rows: per (model, name) ERank at epoch 0 and 5 for each seed."""
    rows = []
    for (model, name), ch in changes.items():
        for s, c in zip(seeds, ch):
            rows.append({"model": model, "seed": s, "epoch": 0, "name": name, "effective_rank": init[(model, name)] + s})
            rows.append({"model": model, "seed": s, "epoch": 5, "name": name,
                         "effective_rank": init[(model, name)] + s + c})
    return pd.DataFrame(rows)


def test_report_section_calls_only_changes_the_paired_test_resolves():
    from rankfusion import stats
    from rankfusion.figures import FigureResult
    from rankfusion.figures.dynamics import _dynamics_summary
    from rankfusion.report import dynamics_section

    changes = {("with RTF", "rgb/after"): [-5.0, -4.0, -6.0], ("with RTF", "fused"): [0.5, 2.5, -1.5],
               ("without RTF", "fused"): [3.0, 3.5, 2.5]}
    init = {("with RTF", "rgb/after"): 20.0, ("with RTF", "fused"): 30.0, ("without RTF", "fused"): 30.0}
    moc = pd.DataFrame([{"model": m, "seed": s, "epoch": 5, "val_moc": v} for m, v in
                        (("with RTF", 30.0), ("without RTF", 25.0)) for s in (0, 1, 2)])
    summary = _dynamics_summary(_ranks(changes, init), moc)
    # the test is the paired t of final against initial ERank (the same run twice), Holm over rows
    keys = list(zip(summary["model"], summary["name"]))
    p = [stats.compare(np.array(init[k]) + np.arange(3) + changes[k], np.array(init[k]) + np.arange(3),
                       paired=True).p for k in keys]
    assert summary["p"].tolist() == pytest.approx(p)
    assert summary["p_holm"].tolist() == pytest.approx(stats.adjust(p, "holm").tolist())
    res = FigureResult("dynamics", params={"n_videos": 16, "obs_ratio": 0.3}, tables={"summary": summary})
    text = "\n".join(dynamics_section(res, n_seeds=3))
    # the last epoch's MoC is set apart from the best-validation checkpoints every other section evaluates
    assert "These are the last epoch's weights; every other section evaluates each run's best-validation" in text
    # each change with its 95 % interval (the paired t's, over the seeds' changes)
    cis = {k: stats.compare(np.array(changes[k]), np.zeros(3), paired=True).ci for k in keys}

    def ci(k):
        return f"95 % CI [{cis[k][0]:+.2f}, {cis[k][1]:+.2f}]"

    assert (f"with RTF, rgb/after: 21.00 -> 16.00 (-5.00 +- 1.00, {ci(('with RTF', 'rgb/after'))}; falls, p = "
            in text)
    # an unresolved change says what the design could have detected, in the family Holm adjusted over
    flat = stats.compare(np.array(init[("with RTF", "fused")]) + np.arange(3) + changes[("with RTF", "fused")],
                         np.array(init[("with RTF", "fused")]) + np.arange(3), paired=True)
    assert (f"with RTF, fused: 31.00 -> 31.50 (+0.50 +- 2.00, {ci(('with RTF', 'fused'))}; unresolved (detectable from "
            f"{flat.mde_in_family(3):.2f} under Holm over 3; {flat.mde:.2f} unadjusted), p = ") in text
    assert f"without RTF, fused: 31.00 -> 34.00 (+3.00 +- 0.50, {ci(('without RTF', 'fused'))}; rises, p = " in text
    assert summary["ci_low"].tolist() == pytest.approx([cis[k][0] for k in keys])
    assert "with RTF 30.00 %, without RTF 25.00 %" in text
    one = _dynamics_summary(_ranks({k: v[:1] for k, v in changes.items()}, init, seeds=(0,)), moc)
    text1 = "\n".join(dynamics_section(FigureResult("dynamics", params={"n_videos": 16, "obs_ratio": 0.3,
                                                                     "n_tests": one.attrs["n_tests"]},
                                                     tables={"summary": one}), n_seeds=1))
    assert "falls" not in text1 and "rises" not in text1  # one seed: no test, nothing resolved
    # ... and no family: it said "Holm over the 3 distinct tests" when none was run
    assert one.attrs["n_tests"] == 0 and "Holm over the 0 distinct tests" in text1
    assert "; unresolved (one seed))" in text1


def test_identical_rows_are_one_test_in_the_holm_family():
    from rankfusion import stats
    from rankfusion.figures.dynamics import _dynamics_summary

    # without RTF a modality's tokens after the fuser are its tokens before: the same values, one test
    changes = {("without RTF", "rgb/before"): [-5.0, -4.0, -6.5], ("without RTF", "rgb/after"): [-5.0, -4.0, -6.5],
               ("without RTF", "fused"): [0.5, 2.5, -1.0]}
    init = {k: 20.0 for k in changes}
    moc = pd.DataFrame([{"model": "without RTF", "seed": s, "epoch": 5, "val_moc": 30.0} for s in (0, 1, 2)])
    summary = _dynamics_summary(_ranks(changes, init), moc)
    assert summary.attrs["n_tests"] == 2
    # a row without spread is no test: the family counts what Holm adjusted over
    flat = _dynamics_summary(_ranks({**changes, ("without RTF", "fused"): [1.0, 1.0, 1.0]}, init), moc)
    assert flat.attrs["n_tests"] == 1
    assert flat.set_index("name").loc["fused", "verdict"] == "unresolved (no spread)"
    p = dict(zip(summary["name"], summary["p"]))
    holm = dict(zip(summary["name"], summary["p_holm"]))
    assert p["rgb/before"] == p["rgb/after"]
    want = stats.adjust([p["rgb/before"], p["fused"]], "holm")
    assert [holm["rgb/before"], holm["rgb/after"], holm["fused"]] == pytest.approx([want[0], want[0], want[1]])
