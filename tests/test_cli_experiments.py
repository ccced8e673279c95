"""CLI tests of modality-select, figures, robustness and demo (CliRunner), incl. bad input -> exit 2."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
from click.testing import CliRunner

from rankfusion.cli import main

from test_featurefiles import FLAT, FLATTER, SPIKIER, SPIKY, make_file  # noqa: E402  (tests/ is on sys.path)


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def err(result):
    return result.stderr if hasattr(result, "stderr") and result.stderr else result.output


@pytest.fixture
def files(tmp_path):
    return [
        make_file(tmp_path / "depth.npz", {"rgb": (SPIKY, FLATTER), "depth": (SPIKY, FLATTER)}, obs=0.2),
        make_file(tmp_path / "mvrgb.npz", {"rgb": (SPIKY, FLAT), "mvrgb": (SPIKY, FLAT)}, obs=0.2),
        make_file(tmp_path / "imu.npz", {"rgb": (SPIKY, FLATTER), "imu": (SPIKY, SPIKIER)}, obs=0.2),
    ]


def test_modality_select_from_feature_files(files, tmp_path):
    out = tmp_path / "sel"
    res = run("modality-select", *files, "--out", out, "--expected", "depth")
    assert res.exit_code == 0, res.output
    assert "top candidate by point score: depth; expected (--expected): depth -> matches" in res.output
    # the order of point scores is no finding: the lead is tested, here on one file (seed) each
    assert "; its lead over mvrgb: " in res.output
    assert ", unresolved (one seed) (unadjusted, a screen: the pair is the ranking's top two)" in res.output
    for name in ("modality_selection.csv", "modality_ranking.csv", "modality_selection.png", "modality_selection.pdf",
                 "modality_selection.md", "modality_selection_files.csv"):
        assert (out / name).stat().st_size > 0
    ranking = (out / "modality_ranking.csv").read_text().splitlines()
    assert ranking[1].startswith("1,depth") and ranking[3].startswith("3,imu")
    assert "harmonic mean NaN" in ranking[3]


def test_modality_select_json_from_feature_files(files, tmp_path):
    res = run("modality-select", *files, "--out", tmp_path / "o", "--json")
    assert res.exit_code == 0, res.output
    js = json.loads(res.output)
    assert set(js) == {"anchor", "candidates", "agreement"} and js["anchor"] == "rgb"
    assert [c["name"] for c in js["candidates"]] == ["depth", "mvrgb", "imu"]
    for c in js["candidates"]:
        # feature files of another model: no noise control, no task evidence
        assert c["control_mean"] is None and c["noise_like"] is None and c["task_gain"] is None
        assert c["rank_controlled"] == c["rank_criterion"]
    assert js["candidates"][2]["criterion"] is None  # imu's harmonic mean is NaN
    assert js["agreement"] == {"spearman": None, "ci": None, "p": None, "exact": None, "backed": None, "alpha": None,
                                "alternative": None}


def test_modality_select_reports_a_mismatch(files, tmp_path):
    res = run("modality-select", *files, "--out", tmp_path / "o", "--expected", "imu")
    assert res.exit_code == 0
    assert "expected (--expected): imu -> does NOT match (expected ranks 3)" in res.output


@pytest.mark.parametrize("args, message", [
    ((), "no input"),
    (("--candidates", "depth", "X.npz"), "--candidates needs --data"),
    (("--data", "nowhere"), "--data folder 'nowhere' does not exist"),
])
def test_modality_select_bad_arguments(args, message, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = run("modality-select", *args)
    assert res.exit_code == 2
    assert message in err(res)


def test_modality_select_refuses_an_unknown_expected(files, tmp_path):
    res = run("modality-select", *files, "--out", tmp_path / "o", "--expected", "foo")
    assert res.exit_code == 2 and not (tmp_path / "o").exists()
    assert err(res).strip() == "Error: expected 'foo' is not a candidate; candidates: ['depth', 'mvrgb', 'imu']"


def test_modality_select_from_data_refuses_an_unknown_expected_before_training(micro_data, tmp_path):
    res = run("modality-select", "--data", micro_data, "--cache", tmp_path / "c", "--profile", "quick", "--quiet",
              "--out", tmp_path / "o", "--expected", "foo")
    assert res.exit_code == 2 and "expected 'foo' is not a candidate" in err(res)
    assert not (tmp_path / "c").exists() and not (tmp_path / "o").exists()


def test_modality_select_refuses_paired_only_options_on_other_routes(files, micro_data, tmp_path):
    res = run("modality-select", *files, "--folds", 3, "--out", tmp_path / "o")
    assert res.exit_code == 2 and err(res) == "Error: --folds needs --paired (with FEATURES or --data there is no fusion probe)\n"
    res = run("modality-select", *files, "--seeds", "1", "--width", 32, "--jobs", 2, "--out", tmp_path / "o")
    assert res.exit_code == 2 and "--seeds, --width and --jobs need --paired" in err(res)
    for opt, value in (("--labels", "y"), ("--surrogates", 19), ("--steps", 100)):
        res = run("modality-select", "--data", micro_data, "--cache", tmp_path / "c", opt, value, "--out", tmp_path / "o")
        assert res.exit_code == 2 and f"{opt} needs --paired" in err(res), opt
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
    # the R3D route's options with files: nothing is trained, so they would be ignored
    res = run("modality-select", *files, "--cache", tmp_path / "c", "--out", tmp_path / "o")
    assert res.exit_code == 2 and err(res) == ("Error: --cache is not used with FEATURES "
                                               "(the files are read, no run is trained)\n")
    assert not (tmp_path / "o").exists() and not (tmp_path / "c").exists()
    # nor does it fit anything or show progress: --threads and --quiet would be ignored
    for opt in (("--threads", "3"), ("--quiet",)):
        res = run("modality-select", *files, *opt, "--out", tmp_path / "o")
        assert res.exit_code == 2 and err(res) == (f"Error: {opt[0]} is not used with FEATURES "
                                                   "(the files are read, no run is trained)\n")
    assert not (tmp_path / "o").exists()
    res = run("modality-select", *files, "--out", tmp_path / "o")  # the defaults alone are no error
    assert res.exit_code == 0, res.output


def test_modality_select_bad_files(files, tmp_path):
    res = run("modality-select", tmp_path / "missing.npz")
    assert res.exit_code == 2 and "missing.npz" in err(res) and "does not exist" in err(res)
    res = run("modality-select", *files, "--anchor", "thermal")
    assert res.exit_code == 2 and "anchor 'thermal'" in err(res) and "depth.npz" in err(res)
    res = run("modality-select", files[0], "--data", tmp_path)
    assert res.exit_code == 2 and "not both" in err(res)
    garbage = tmp_path / "garbage.npz"
    garbage.write_text("not a zip")
    res = run("modality-select", garbage)
    assert res.exit_code == 2 and "garbage.npz" in err(res)
    # the error is one line, never a traceback
    assert "Traceback" not in res.output and len(err(res).strip().splitlines()) == 1


def test_modality_select_refuses_files_that_are_not_seeds(files, tmp_path):
    # the same run, seed and ratio twice (a copy), or clean and noisy files: not seeds to average
    copy = tmp_path / "copy.npz"
    copy.write_bytes(files[0].read_bytes())
    pairs = {"rgb": (SPIKY, FLATTER), "depth": (SPIKY, FLATTER)}
    noisy = make_file(tmp_path / "noisy.npz", pairs, obs=0.3, meta_extra={"noise": {"depth": 0.15}})
    for other, message in ((copy, "same run, seed and observation ratio"), (noisy, "different noise")):
        out = tmp_path / f"sel-{other.stem}"
        res = run("modality-select", files[0], other, "--out", out)
        line = err(res).strip()
        assert res.exit_code == 2 and len(line.splitlines()) == 1 and line.startswith("Error:"), res.output
        assert message in line and "depth.npz" in line and other.name in line
        assert not out.exists()


def test_figures_and_robustness_bad_arguments(tmp_path):
    res = run("figures", "--data", tmp_path / "nodata", "--out", tmp_path / "f")
    assert res.exit_code == 2 and "nodata" in err(res)
    res = run("figures", "--data", tmp_path, "--only", "histogram", "--out", tmp_path / "f")
    assert res.exit_code == 2 and "--only must be among" in err(res) and "histogram" in err(res)
    res = run("robustness", "--data", tmp_path / "nodata")
    assert res.exit_code == 2 and "nodata" in err(res)
    res = run("figures", "--out", tmp_path / "f")  # --data is required: click's own usage error
    assert res.exit_code == 2 and "--data" in err(res)


@pytest.fixture(scope="module")
def micro_data(tmp_path_factory):
    from rankfusion.data import synthesize

    root = tmp_path_factory.mktemp("micro") / "data"
    return synthesize(root, seed=3, split_fractions=(0.7, 0.15, 0.15), n_videos=6, min_frames=40, max_frames=60,
                      channels={"rgb": 8, "depth": 8, "imu": 4})


def test_figures_cli_writes_manifest_and_reuses_runs(micro_data, tmp_path):
    out, cache = tmp_path / "figs", tmp_path / "cache"
    args = ("figures", "--data", micro_data, "--out", out, "--cache", cache, "--profile", "quick", "--quiet",
            "--only", "spectra", "--only", "angles")
    res = run(*args)
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["figures"]) == {"spectra", "angles"}
    spec = manifest["figures"]["spectra"]
    assert {"spectra.png", "spectra.pdf", "spectra.csv", "spectra_erank.csv"} <= set(spec["files"])
    assert {r["seed"] for r in spec["runs"]} == {1}
    assert set(spec["findings"]["erank"]) >= {"rgb before", "rgb after", "depth plain", "fused (RTF) after"}
    assert all(len(r["config_hash"]) == 12 for r in spec["runs"])
    assert spec["git_commit"] and spec["command"].startswith("rankfusion figures")
    assert manifest["partner"] == "depth"
    # the data folder relative to the manifest's: no folder of this machine in a file meant to be shared
    assert (out / spec["dataset"]["root"]).resolve() == Path(micro_data).resolve()
    assert not Path(spec["dataset"]["root"]).is_absolute()
    assert not any(r["reused"] for r in spec["runs"])
    res = run(*args)  # unchanged inputs: nothing is retrained
    assert res.exit_code == 0, res.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(r["reused"] for r in manifest["figures"]["spectra"]["runs"])
    # an entry that --only leaves alone, its root absolute as older versions wrote it: made relative
    manifest["figures"]["angles"]["dataset"]["root"] = str(Path(micro_data).resolve())
    (out / "manifest.json").write_text(json.dumps(manifest))
    res = run(*args[:-2])
    assert res.exit_code == 0, res.output
    angles = json.loads((out / "manifest.json").read_text())["figures"]["angles"]
    assert not Path(angles["dataset"]["root"]).is_absolute()
    assert (out / angles["dataset"]["root"]).resolve() == Path(micro_data).resolve()


def test_figures_bad_partner(micro_data, tmp_path):
    res = run("figures", "--data", micro_data, "--out", tmp_path / "f", "--partner", "text", "--profile", "quick")
    assert res.exit_code == 2 and "partner 'text'" in err(res)


def test_demo_bad_out(tmp_path):
    target = tmp_path / "afile"
    target.write_text("x")
    res = run("demo", "--out", target, "--quick", "--quiet")
    assert res.exit_code == 2 and "afile" in err(res)


def test_unavailable_device_fails_before_any_output(micro_data, tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    res = run("demo", "--out", tmp_path / "dq", "--quick", "--quiet", "--device", "cuda", "--workers", 1)
    assert res.exit_code == 2 and err(res).strip() == (
        "Error: device 'cuda' requested but CUDA is not available on this machine")
    assert not (tmp_path / "dq").exists()
    res = run("figures", "--data", micro_data, "--out", tmp_path / "f", "--only", "spectra", "--device", "cuda",
              "--cache", tmp_path / "cc", "--profile", "quick", "--quiet", "--workers", 1)
    assert res.exit_code == 2 and "CUDA is not available" in err(res)
    assert not (tmp_path / "f").exists() and not (tmp_path / "cc").exists()


@pytest.fixture(scope="module")
def micro_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("micro_cache")


def test_modality_select_from_data(micro_data, micro_cache, tmp_path):
    out = tmp_path / "sel"
    res = run("modality-select", "--data", micro_data, "--cache", micro_cache, "--profile", "quick", "--quiet",
              "--candidates", "depth,imu", "--out", out)
    assert res.exit_code == 0, res.output
    assert "expected by construction: depth" in res.output
    ranking = (out / "modality_ranking.csv").read_text()
    assert "depth" in ranking and "imu" in ranking
    manifest = json.loads((out / "manifest.json").read_text())
    # the pairings and the anchor alone at their trunk width (the task evidence's baseline)
    runs = manifest["figures"]["modality"]["runs"]
    assert {r["name"] for r in runs} == {"rgb+depth", "rgb+imu", "rgb alone, fused width"}
    # the quick profile's D is 16: the anchor alone gets 2 x 16
    assert [r["overrides"].get("d_model") for r in runs if "+" not in r["name"]] == [32]
    found = manifest["figures"]["modality"]["findings"]
    assert set(found["task_gain"]) == {"depth", "imu"} and found["agreement"] is None  # two candidates: untested
    # the recorded command runs as recorded: it held the defaults of --folds, --labels, ... which this
    # route refuses when given
    argv = shlex.split(manifest["figures"]["modality"]["command"])
    assert argv[:2] == ["rankfusion", "modality-select"] and "--folds" not in argv and "--labels" not in argv
    again = run(*argv[1:], "--quiet")
    assert again.exit_code == 0, again.output
    assert "task evidence: MoC(rgb+depth) - MoC(rgb) =" in res.output
    # the quick profile's one seed: no interval, said in words (not "[+nan, +nan]")
    assert "(Welch interval over seeds: n/a, fewer than two seeds an arm, or no spread)" in res.output and "[+nan" not in res.output
    res = run("modality-select", "--data", micro_data, "--cache", micro_cache, "--profile", "quick", "--quiet",
              "--candidates", "depth,imu", "--out", out, "--json")
    js = json.loads(res.output)
    assert {c["name"] for c in js["candidates"]} == {"depth", "imu"}
    assert all(isinstance(c["task_gain"], float) for c in js["candidates"])  # MoC points over the anchor alone
    res = run("modality-select", "--data", micro_data, "--cache", micro_cache, "--profile", "quick",
              "--candidates", "thermal", "--out", out)
    assert res.exit_code == 2 and "candidate 'thermal'" in err(res)


def test_robustness_from_data(micro_data, micro_cache, tmp_path):
    out = tmp_path / "rob"
    res = run("robustness", "--data", micro_data, "--cache", micro_cache, "--profile", "quick", "--quiet",
              "--out", out, "--noise-seed", "3")
    assert res.exit_code == 0, res.output
    assert "sigma_rms_units" in res.output and "without RTF" in res.output
    assert res.output.rstrip().splitlines()[-1] == (f"wrote {out}/noise_sigmas, noise_gains, noise_moc (.csv/.md), the "
                                                    f"figures and manifest.json; runs cached in {micro_cache}")
    sig = (out / "noise_sigmas.csv").read_text().splitlines()
    assert len(sig) == 5  # header + (depth, rgb) x (small, large)
    assert all(line.split(",")[-2] == "3" for line in sig[1:])  # the noise seed is recorded
    for name in ("noise_gains.png", "noise_gains.pdf", "noise_moc.png", "noise_moc.pdf"):
        assert (out / name).stat().st_size > 1000
    noisy = sorted(d for d in (micro_cache / "noisy").iterdir() if not d.name.startswith("."))  # not the locks
    assert noisy and all((d / "noise.json").exists() for d in noisy)


def test_noisy_dataset_is_seeded_and_touches_only_the_test_split(micro_data, tmp_path):
    import numpy as np

    from rankfusion.data import open_dataset
    from rankfusion.data.noisy import noisy_dataset

    a = noisy_dataset(micro_data, tmp_path / "a", "depth", 0.5, seed=7)
    b = noisy_dataset(micro_data, tmp_path / "b", "depth", 0.5, seed=7)
    c = noisy_dataset(micro_data, tmp_path / "c", "depth", 0.5, seed=8)
    clean, da, db, dc = (open_dataset(r) for r in (micro_data, a, b, c))
    test, train = clean.split("test")[0], clean.split("train")[0]
    np.testing.assert_array_equal(da.features(test, "depth"), db.features(test, "depth"))
    assert not np.array_equal(da.features(test, "depth"), dc.features(test, "depth"))
    assert not np.array_equal(da.features(test, "depth"), clean.features(test, "depth"))
    np.testing.assert_array_equal(da.features(train, "depth"), clean.features(train, "depth"))
    np.testing.assert_array_equal(da.features(test, "rgb"), clean.features(test, "rgb"))
    rec = json.loads((a / "noise.json").read_text())
    assert rec["sigma"] == 0.5 and rec["seed"] == 7 and rec["std"] == pytest.approx(0.5 * rec["rms"])
    with pytest.raises(ValueError, match="modality 'thermal'"):
        noisy_dataset(micro_data, tmp_path / "d", "thermal", 0.5)


@pytest.mark.parametrize("meta", ["[1, 2]", "42"])
def test_modality_select_meta_not_an_object(files, tmp_path, meta):
    import numpy as np

    arrays = dict(np.load(files[0]))
    arrays["meta"] = np.array(meta)
    bad = tmp_path / "badmeta.npz"
    np.savez(bad, **arrays)
    out = tmp_path / "o"
    res = run("modality-select", bad, *files[1:], "--out", out)
    assert res.exit_code == 2
    kind = "list" if meta.startswith("[") else "int"
    assert res.output == f"Error: metadata 'meta' of '{bad}' must be a JSON object ({{...}}), got {kind} {meta}\n"
    assert not out.exists()


def test_figures_failing_before_any_family_leaves_no_output_folder(micro_data, tmp_path, monkeypatch):
    from rankfusion import figures
    from rankfusion._validation import InputError

    def fail(ctx):
        raise InputError("video 'v0': modality 'rgb' has a non-finite value at frame 0")

    monkeypatch.setattr(figures.FAMILIES["spectra"], "make", fail)
    res = run("figures", "--data", micro_data, "--out", tmp_path / "f", "--only", "spectra",
              "--cache", tmp_path / "cc", "--profile", "quick", "--quiet", "--workers", 1)
    assert res.exit_code == 2 and err(res) == "Error: video 'v0': modality 'rgb' has a non-finite value at frame 0\n"
    assert not (tmp_path / "f").exists()
    # an output folder that was there before is left in place
    (tmp_path / "g").mkdir()
    res = run("figures", "--data", micro_data, "--out", tmp_path / "g", "--only", "spectra",
              "--cache", tmp_path / "cc", "--profile", "quick", "--quiet", "--workers", 1)
    assert res.exit_code == 2 and (tmp_path / "g").is_dir()


def test_modality_table_names_the_run_folder_of_a_moved_cache(micro_data, tmp_path):
    # a feature file records the absolute run folder it was exported from; once the cache is copied
    # (as a reviewer copies the demo's), the table must still name the run inside the cache it read
    import csv
    import shutil

    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "cache"
    args = ("modality-select", "--data", micro_data, "--profile", "quick", "--quiet", "--candidates", "depth")
    res = run(*args, "--cache", first, "--out", tmp_path / "sel1")
    assert res.exit_code == 0, res.output
    shutil.copytree(first, moved)
    shutil.rmtree(first)
    res = run(*args, "--cache", moved, "--out", tmp_path / "sel2")
    assert res.exit_code == 0, res.output
    assert all(r["reused"] for r in json.loads((tmp_path / "sel2" / "manifest.json").read_text())
               ["figures"]["modality"]["runs"])
    for sel in ("sel1", "sel2"):
        rows = list(csv.DictReader((tmp_path / sel / "modality_selection_files.csv").open()))
        assert rows and all(r["run"].startswith("runs/") and r["file"].startswith(r["run"] + "/features/")
                            for r in rows), rows
    assert ((tmp_path / "sel1" / "modality_selection_files.csv").read_text()
            == (tmp_path / "sel2" / "modality_selection_files.csv").read_text())


def test_modality_select_gives_no_verdict_when_every_criterion_is_nan(tmp_path):
    # both candidates lose effective rank through fusion: no harmonic mean, so the order is a
    # tie-break; it used to print "matches" / "does NOT match" on it
    files = [make_file(tmp_path / "depth.npz", {"rgb": (SPIKY, FLAT), "depth": (FLAT, SPIKY)}, obs=0.2),
             make_file(tmp_path / "imu.npz", {"rgb": (SPIKY, FLAT), "imu": (FLATTER, SPIKY)}, obs=0.2)]
    for expected in ("depth", "imu"):
        res = run("modality-select", *files, "--out", tmp_path / f"o-{expected}", "--expected", expected)
        assert res.exit_code == 0, res.output
        assert "match" not in res.output
        assert (f"no top candidate: every criterion is NaN (a gain <= 0, no mutual enhancement), so the order is a "
                f"tie-break and says nothing about {expected}, expected (--expected)") in res.output


def test_surrogates_help_states_the_level_and_the_count_the_library_uses():
    # the help is written without importing scipy (a fast --help), so its numbers are literals:
    # they must be the inference layer's level and the selection's default count
    from rankfusion import stats
    from rankfusion.selection.surrogates import min_surrogates

    text = " ".join(run("modality-select", "--help").output.split())
    n = min_surrogates()
    assert f"alpha {stats.ALPHA}" in text and f"smallest p is 1/{n + 1} (default {n})" in text
