"""`rankfusion theorem`: table and JSON output, exit 0 whatever the verdict, exit 2 on bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion.cli import main
from rankfusion.files import save_npz


@pytest.fixture
def feats(tmp_path, rng):
    X = rng.standard_normal((120, 10)) @ np.diag(np.linspace(4, 0.05, 10))
    Y = rng.standard_normal((120, 10))
    Y -= Y.mean(0)
    # counterexample 1 of docs/theory.md, padded to the feature-file layout
    ce_x = np.array([[5.0, 0.0], [-5.0, 0.0], [0.0, 1.0], [0.0, -1.0]], dtype=np.float32)
    ce_y = np.array([[0.0, 0.005], [0.0, 0.005], [0.0, -0.005], [0.0, -0.005]], dtype=np.float32)
    path = tmp_path / "feats.npz"
    save_npz(path, {
        "rgb.before": X.astype(np.float32), "depth.before": Y.astype(np.float32),
        "rgb.tokens": X.reshape(6, 20, 10).astype(np.float32),
        "short.before": X[:50].astype(np.float32), "nan.before": np.full((120, 10), np.nan, np.float32),
        "vec": np.arange(10.0), "ce.x": ce_x, "ce.y": ce_y,
    }, {"run": "test"})
    return path


def run(*args):
    return CliRunner().invoke(main, ["theorem", *map(str, args)])


def test_table_output(feats):
    res = run(feats, "--x", "rgb.before", "--y", "depth.before", "--k", "3", "--k-prime", "2")
    assert res.exit_code == 0, res.output
    out = res.output
    for text in ("Theorem 3.1", "definition-1", "assumption-4", "ERank(X)", "verdict:", "sufficient condition",
                 "eq12", "|P_dom y|^2"):
        assert text in out
    assert "|C_low| = 2" in out


def test_json_output_and_defaults(feats):
    res = run(feats, "--x", "rgb.before", "--y", "depth.before", "--json")
    assert res.exit_code == 0, res.output
    payload = json.loads(res.output)
    rep = payload["report"]
    assert payload["x"] == "rgb.before" and rep["n_low"] == 1  # default k' = max(1, round(0.1 * D)), as R3D blends
    assert rep["constant_sources"]["beta"] == "tightest"
    assert rep["verdict"] in ("holds-and-rank-rose", "holds-but-rank-did-not-rise", "assumption-fails")
    assert 1 <= rep["k"] <= rep["rank"]


def test_counterexample_exits_zero(feats):
    res = run(feats, "--x", "ce.x", "--y", "ce.y", "--k", "1", "--low", "1", "--alpha", "0",
              "--informativeness", "full", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)["report"]
    assert rep["verdict"] == "holds-but-rank-did-not-rise"
    assert rep["erank_after"] < rep["erank_before"]


def test_options_pass_through(feats):
    res = run(feats, "--x", "rgb.before", "--y", "depth.before", "--k", "2", "--eta", "1e9", "--alpha",
              ",".join(["0.5"] * 10), "--beta", "100", "--epsilon", "1e-9", "--gamma", "0.9",
              "--residual", "complement", "--center-y", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)["report"]
    assert rep["n_low"] == 10 and rep["beta"] == 100.0 and rep["gamma"] == 0.9
    assert rep["constant_sources"]["epsilon"] == "given" and rep["residual_convention"] == "complement"


def test_token_arrays_are_flattened(feats):
    res = run(feats, "--x", "rgb.tokens", "--y", "depth.before", "--k", "2", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["report"]["shape"] == [120, 10]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--x", "missing", "--y", "depth.before"], "key 'missing' not found"),
        (["--x", "rgb.before", "--y", "short.before"], "must have the same shape"),
        (["--x", "rgb.before", "--y", "nan.before"], "'nan.before'"),
        (["--x", "rgb.before", "--y", "depth.before", "--k", "11"], "k (numerical rank of X is 10) must be in [1, 10], got 11"),
        (["--x", "rgb.before", "--y", "depth.before", "--k", "0"], "must be in [1, 10], got 0"),
        (["--x", "rgb.before", "--y", "depth.before", "--alpha", "1.5"], "--alpha must be in [0, 1], got 1.5"),
        (["--x", "rgb.before", "--y", "depth.before", "--alpha", "0.2,-0.5"], "--alpha must be in [0, 1], got -0.5"),
        (["--x", "rgb.before", "--y", "depth.before", "--k-prime", "99"], "--k-prime must be in [1, "),
        (["--x", "rgb.before", "--y", "depth.before", "--eta", "-1"], "--eta must be > 0.0, got -1.0"),
        (["--x", "rgb.before", "--y", "depth.before", "--alpha", "x"], "alpha must be a number"),
        (["--x", "rgb.before", "--y", "depth.before", "--k-prime", "2", "--eta", "1"], "at most one of"),
        (["--x", "rgb.before", "--y", "depth.before", "--low", "3,99"], "--low contains channel 99"),
        (["--x", "rgb.before", "--y", "depth.before", "--low", "3,4,3"], "--low names channel 3 more than once"),
        (["--x", "rgb.before", "--y", "depth.before", "--epsilon", "-1"], "--epsilon must be > 0.0, got -1.0"),
        (["--x", "rgb.before", "--y", "depth.before", "--low", "a"], "--low must be comma-separated"),
        (["--x", "vec", "--y", "vec"], "'vec'"),
        (["--x", "rgb.before", "--y", "depth.before", "--beta", "0"], "--beta must be > 0"),
    ],
)
def test_bad_input_exits_2(feats, args, message):
    res = run(feats, *args)
    assert res.exit_code == 2, res.output
    assert message in res.output
    assert "Traceback" not in res.output
    assert len([ln for ln in res.output.splitlines() if ln.startswith("Error:")]) == 1


def test_missing_file_exits_2(tmp_path):
    res = run(tmp_path / "nope.npz", "--x", "a", "--y", "b")
    assert res.exit_code == 2 and "does not exist" in res.output


def test_help_lists_command():
    res = CliRunner().invoke(main, ["--help"])
    assert "theorem" in res.output


@pytest.mark.parametrize("scale", [1e-200, 5e-320, 1e160])
def test_theorem_cli_on_tiny_and_huge_values(tmp_path, rng, scale):
    X = rng.standard_normal((60, 10)) @ np.diag(np.linspace(4, 0.05, 10))
    Y = rng.standard_normal((60, 10))
    path = tmp_path / "f.npz"
    np.savez(path, x=X * scale, y=Y * scale)
    res = run(path, "--x", "x", "--y", "y", "--k", "3", "--k-prime", "2", "--json")
    assert res.exit_code == 0, res.output
    rep = json.loads(res.output)["report"]
    ref = json.loads(run(_save(tmp_path / "g.npz", X, Y), "--x", "x", "--y", "y", "--k", "3", "--k-prime", "2",
                         "--json").output)["report"]
    assert rep["verdict"] == ref["verdict"] and rep["low"] == ref["low"]
    if scale > 1e-300:  # denormal inputs carry only a few bits: compare truth values only
        assert rep["erank_before"] == pytest.approx(ref["erank_before"], rel=1e-9)


def _save(path, X, Y):
    np.savez(path, x=X, y=Y)
    return path


def test_default_blends_the_channels_the_file_records_else_its_ratio(tmp_path, rng):
    X = rng.standard_normal((80, 20)) @ np.diag(np.linspace(3, 0.1, 20))
    Y = rng.standard_normal((80, 20))
    arrays = {"rgb.before": X.astype(np.float32), "depth.before": Y.astype(np.float32)}
    rec = tmp_path / "rec.npz"
    save_npz(rec, arrays, {"exchange_ratio": 0.1, "blended_channels": {"rgb": [7, 1]}})
    res = CliRunner().invoke(main, ["theorem", str(rec), "--x", "rgb.before", "--y", "depth.before", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["report"]["low"] == [1, 7]
    assert json.loads(res.stdout)["report"]["constant_sources"]["low"] == "recorded"
    assert res.stderr.strip() == "C_low: the 2 channels the run blended for 'rgb' (recorded in the file)"
    text = CliRunner().invoke(main, ["theorem", str(rec), "--x", "rgb.before", "--y", "depth.before"]).stdout
    assert "C_low (recorded): |C_low| = 2: [1, 7]" in text.splitlines()
    # a failing check prints its error line only (the note came first)
    res = CliRunner().invoke(main, ["theorem", str(rec), "--x", "rgb.before", "--y", "depth.before", "--k", "0"])
    assert res.exit_code == 2 and res.stderr.startswith("Error: ") and len(res.stderr.splitlines()) == 1
    # nothing recorded for depth: k' from the file's ratio, 0.3 * 20 = 6 channels
    ratio = tmp_path / "ratio.npz"
    save_npz(ratio, arrays, {"exchange_ratio": 0.3})
    res = CliRunner().invoke(main, ["theorem", str(ratio), "--x", "depth.before", "--y", "rgb.before", "--json"])
    assert res.exit_code == 0, res.output
    assert len(json.loads(res.stdout)["report"]["low"]) == 6 and res.stderr == ""
    # an explicit choice wins over the record
    res = CliRunner().invoke(main, ["theorem", str(rec), "--x", "rgb.before", "--y", "depth.before", "--k-prime", "3",
                                    "--json"])
    assert len(json.loads(res.stdout)["report"]["low"]) == 3


def test_a_bad_recorded_ratio_exits_2_naming_the_file(tmp_path, rng):
    X = rng.standard_normal((40, 10))
    path = tmp_path / "bad.npz"
    save_npz(path, {"a": X, "b": X}, {"exchange_ratio": 2.0})
    res = CliRunner().invoke(main, ["theorem", str(path), "--x", "a", "--y", "b"])
    assert res.exit_code == 2
    assert "meta exchange_ratio in" in res.output and "bad.npz" in res.output


def test_shape_and_rank_errors_name_the_file(tmp_path):
    # they said "in the feature file" / named only the array, leaving the file to guess
    path = tmp_path / "f.npz"
    save_npz(path, {"a": np.ones((50, 8), np.float32), "b": np.ones((40, 8), np.float32),
                    "z": np.zeros((50, 8), np.float32)})
    res = run(path, "--x", "a", "--y", "b")
    assert res.exit_code == 2
    assert res.output == (f"Error: arrays 'a' (50, 8) and 'b' (40, 8) in {str(path)!r} must have the same shape\n")
    res = run(path, "--x", "z", "--y", "a")
    assert res.exit_code == 2
    assert res.output == f"Error: array 'z' in {str(path)!r} has numerical rank 0 (all zero)\n"


def test_errors_of_the_check_itself_name_the_arrays_the_file_and_the_option(tmp_path):
    # "X has numerical rank 0", "k (numerical rank of X is 8) ...", "zero_mean_tol must be >= 0.0"
    # named neither the file nor the arrays, nor the option as it is typed
    path = tmp_path / "f.npz"
    rng = np.random.default_rng(0)
    save_npz(path, {"z": np.zeros((50, 8), np.float32), "a": rng.standard_normal((50, 8)).astype(np.float32),
                    "b": rng.standard_normal((50, 8)).astype(np.float32)})
    where = f"X = 'a', Y = 'b' in {str(path)!r}: "
    for args, msg in ((["--k", "99"], "--k (numerical rank of X is 8) must be in [1, 8], got 99"),
                      (["--zero-mean-tol", "-1"], "--zero-mean-tol must be >= 0.0, got -1.0"),
                      (["--alpha", "0.1,0.2"], "--alpha must be a scalar or have one value per channel (8) or per "
                                               "blended channel (1), got 2 values")):
        res = run(path, "--x", "a", "--y", "b", *args)
        assert res.exit_code == 2 and res.output == f"Error: {where}{msg}\n", res.output
    res = run(path, "--x", "z", "--y", "a", "--k", "1")
    assert res.exit_code == 2 and res.output == (f"Error: X = 'z', Y = 'a' in {str(path)!r}: X has numerical rank 0 "
                                                 "(all singular values <= tol); Theorem 3.1 needs rank >= 1\n")


def test_a_file_of_a_run_that_blended_nothing_says_so(tmp_path):
    # exchange_ratio 0 is a valid run (no channel blended); it was refused as "must be > 0.0"
    path = tmp_path / "none.npz"
    X = np.random.default_rng(0).standard_normal((50, 8)).astype(np.float32)
    save_npz(path, {"a": X, "b": X}, {"exchange_ratio": 0.0})
    res = run(path, "--x", "a", "--y", "b")
    assert res.exit_code == 2 and res.output == (
        f"Error: {str(path)!r} comes from a run that blended no channel (exchange_ratio 0): nothing to check by "
        "default; choose channels with --low, --k-prime or --eta\n")
    assert run(path, "--x", "a", "--y", "b", "--k-prime", "1").exit_code == 0


@pytest.mark.parametrize("low", ["", " , "])
def test_empty_low_is_refused_not_an_empty_c_low(feats, low):
    # --low "" (an empty shell variable) names no channel: an error, not a check of an empty C_low
    res = run(feats, "--x", "rgb.before", "--y", "depth.before", "--low", low)
    assert res.exit_code == 2
    assert res.output.startswith("Error: --low") and "names no channel" in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_bad_alpha_names_the_option(feats):
    res = run(feats, "--x", "rgb.before", "--y", "depth.before", "--alpha", "abc")
    assert res.exit_code == 2
    assert "--alpha must be a number" in res.output and "'abc'" in res.output
