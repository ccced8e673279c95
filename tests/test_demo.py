"""The quick end-to-end demo (slow: about a minute on 2 cores)."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rankfusion.cli import main
from rankfusion.figures import FAMILIES


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path):
    out = tmp_path / "demo"
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--quiet", "--workers", "2"])
    assert res.exit_code == 0, res.output
    assert re.search(r"wall time: \d+\.\d s, CPU time \d+\.\d s \(2 workers\)", res.output)
    assert "modality ranking by the criterion's point scores:" in res.output
    # the first place is stated with its test, and one seed never resolves it
    line = next(ln for ln in res.output.splitlines() if ln.startswith("modality ranking"))
    assert "first place: lead over " not in line or "unresolved" in line.split("first place:")[1]
    report = (out / "report.md").read_text()
    for section in ("Modality selection", "Spectra before and after fusion", "Noise robustness",
                    "Exchange ratio", "Complementarity angles", "Ablations",
                    "Dose-response: complementarity and imbalance", "The paper's claims on this data",
                    "Timelines (Fig. 8)"):
        assert f"## {section}" in report
    # every embedded image exists and is non-empty
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report)
    assert len(images) >= 7
    for img in images:
        assert (out / img).stat().st_size > 1000
    manifest = json.loads((out / "figures" / "manifest.json").read_text())
    assert set(manifest["figures"]) == set(FAMILIES)
    for entry in manifest["figures"].values():
        assert entry["runs"] and all(len(r["config_hash"]) == 12 for r in entry["runs"])
        assert all((out / "figures" / f).exists() for f in entry["files"])
    # the per-run values behind the report's tests are committed with the figures
    figs = out / "figures"
    abl, abl_runs = pd.read_csv(figs / "ablation.csv"), pd.read_csv(figs / "ablation_runs.csv")
    assert list(abl_runs.columns) == ["variant", "seed", "moc"]
    means = abl_runs.groupby("variant", sort=False)["moc"].mean()
    np.testing.assert_allclose(means.loc[abl["variant"]].to_numpy(), abl["mean"].to_numpy(), rtol=1e-5)
    mod_runs = pd.read_csv(figs / "modality_runs.csv")
    assert {"candidate", "seed", "score", "moc", "base", "gain"} <= set(mod_runs.columns)
    assert set(mod_runs["candidate"]) == set(pd.read_csv(figs / "modality_ranking.csv")["candidate"])
    np.testing.assert_allclose(mod_runs["gain"], mod_runs["moc"] - mod_runs["base"], rtol=1e-5, atol=1e-4)
    info = json.loads((out / "demo.json").read_text())
    # every modality but the anchor is a candidate (mvrgb, noise, imu, text and depth)
    assert info["profile"] == "quick" and len(info["ranking"]) == 5 and info["workers"] == 2
    assert info["cpu_seconds"] > 0
    # the ranking quoted in the report is the computed one
    section = report.split("## Modality selection")[1].split("##")[0]
    assert info["ranking"][0] in section
    # the task evidence of the same runs, one seed: no interval
    assert "Task evidence: MoC gain of each pairing over rgb alone at the pairs' trunk width" in section
    assert "[n/a: fewer than two seeds an arm, or no spread]" in section and "NaN" not in section.split("Task evidence")[1].split("\n")[0]
    # a second run reuses the dataset and every run: nothing is retrained
    res = CliRunner().invoke(main, ["demo", "--out", str(out), "--quick", "--quiet"])
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "figures" / "manifest.json").read_text())
    assert all(r["reused"] for e in manifest["figures"].values() for r in e["runs"])


def test_the_demo_leaves_a_data_folder_it_did_not_make_alone(tmp_path):
    from rankfusion._validation import InputError
    from rankfusion.data.synth import prepare_dataset

    mine = tmp_path / "data"
    mine.mkdir()
    (mine / "notes.txt").write_text("my own data\n")
    with pytest.raises(InputError, match=r"'.*data' exists and is not a synthetic dataset rankfusion made"):
        prepare_dataset(mine, {"n_videos": 6, "min_frames": 20, "max_frames": 30})
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]
    (mine / "notes.txt").unlink()  # an empty folder, or a synthetic dataset with other settings, is the demo's
    prepare_dataset(mine, {"n_videos": 6, "min_frames": 20, "max_frames": 30})
    (mine / "synth.json").write_text("[1]\n")  # unreadable settings: made again
    prepare_dataset(mine, {"n_videos": 6, "min_frames": 20, "max_frames": 30})
    assert isinstance(json.loads((mine / "synth.json").read_text()), dict)
