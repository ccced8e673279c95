"""``rankfusion modality-select --paired``: output, --json schema and every bad input (one line, exit 2)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from rankfusion.cli import main

#: The smallest settings that still run every stage (speed: the CLI is what is under test here).
FAST = ["--folds", "2", "--seeds", "0", "--surrogates", "19", "--steps", "5", "--width", "10", "--quiet"]


def _mods(n=40, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 2
    return {"a": rng.standard_normal((n, 3)), "b": rng.standard_normal((n, 2)) + y[:, None],
            "c": rng.standard_normal((n, 4))}, y


def _npz(tmp_path, mods, y, name="paired.npz", key="labels"):
    path = tmp_path / name
    np.savez(path, **mods, **({key: y} if y is not None else {}))
    return path


def _run(args):
    return CliRunner().invoke(main, ["modality-select", *args], catch_exceptions=False)


def test_paired_npz_writes_table_json_and_figure(tmp_path):
    mods, y = _mods()
    out = tmp_path / "sel"
    res = _run(["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    assert "rank_criterion" in res.output and "criterion vs task gain" in res.output
    for f in ("modality_evidence.csv", "modality_evidence.json", "modality_evidence.png", "modality_evidence.pdf"):
        assert (out / f).is_file(), f
    table = pd.read_csv(out / "modality_evidence.csv")
    assert list(table["candidate"]) == ["b", "c"]


def test_paired_json_has_exactly_the_schema(tmp_path):
    mods, y = _mods()
    res = _run(["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a", "--out", str(tmp_path / "o"),
                "--json", *FAST])
    assert res.exit_code == 0, res.output
    js = json.loads(res.output)  # nothing but JSON on stdout
    assert set(js) == {"anchor", "candidates", "agreement"}
    assert set(js["agreement"]) == {"spearman", "ci", "p", "exact", "backed", "alpha", "alternative"}
    assert [c["name"] for c in js["candidates"]] == ["b", "c"]
    for c in js["candidates"]:
        assert set(c) == {"name", "criterion", "control_mean", "control_std", "control_p", "excess", "noise_like",
                          "task_gain", "task_gain_ci", "rank_criterion", "rank_controlled"}
        assert isinstance(c["noise_like"], bool) and isinstance(c["task_gain"], float)
    # two candidates: a rank correlation over two points says nothing, so it is null
    assert js["agreement"] == {"spearman": None, "ci": None, "p": None, "exact": None, "backed": None, "alpha": None,
                                "alternative": None}


def test_paired_csv_with_modality_globs(tmp_path):
    mods, y = _mods()
    df = pd.DataFrame({**{f"a_{i}": mods["a"][:, i] for i in range(3)},
                       **{f"b_{i}": mods["b"][:, i] for i in range(2)}, "cls": np.where(y, "yes", "no")})
    path = tmp_path / "paired.csv"
    df.to_csv(path, index=False)
    res = _run(["--paired", str(path), "--modality", "a=a_*", "--modality", "b=b_*", "--labels", "cls",
                "--anchor", "a", "--out", str(tmp_path / "o"), "--json", *FAST])
    assert res.exit_code == 0, res.output
    assert [c["name"] for c in json.loads(res.output)["candidates"]] == ["b"]


def _expect_error(tmp_path, args, *needles):
    out = tmp_path / "never"
    res = CliRunner().invoke(main, ["modality-select", *FAST, *args, "--out", str(out)])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for n in needles:
        assert n in lines[0], lines[0]
    assert not out.exists()  # nothing written
    return lines[0]


def test_bad_row_counts(tmp_path):
    mods, y = _mods()
    mods["c"] = mods["c"][:-1]
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a"], "modality 'c'", "rows")


def test_bad_single_class(tmp_path):
    mods, _ = _mods()
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, np.zeros(40))), "--anchor", "a"],
                  "labels", "single class")


def test_bad_single_class_is_printed_plainly(tmp_path):
    mods, _ = _mods()
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, np.ones(40, dtype=np.int64))), "--anchor", "a"],
                  "have a single class (1):")


def test_bad_zero_variance(tmp_path):
    mods, y = _mods()
    mods["b"] = np.full((40, 2), 3.0)
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a"], "modality 'b'", "zero variance")


@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_bad_non_finite(tmp_path, value):
    mods, y = _mods()
    mods["c"][5, 2] = value
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a"], "modality 'c'",
                  "row 5, column 2")


def test_bad_anchor(tmp_path):
    mods, y = _mods()
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "rgb"], "anchor 'rgb'",
                  "paired.npz")


def test_bad_width_zero(tmp_path):
    mods, y = _mods()
    mods["b"] = np.zeros((40, 0))
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a"], "modality 'b'", "width 0")


def test_bad_missing_labels_key(tmp_path):
    mods, y = _mods()
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y, key="target")), "--anchor", "a"],
                  "labels key 'labels'", "--labels")


def test_bad_csv_cell_names_the_modality(tmp_path):
    mods, y = _mods()
    df = pd.DataFrame({"a_0": mods["a"][:, 0], "b_0": mods["b"][:, 0].astype(object), "labels": y})
    df.loc[7, "b_0"] = "oops"
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    _expect_error(tmp_path, ["--paired", str(path), "--modality", "a=a_*", "--modality", "b=b_*", "--anchor", "a"],
                  "modality 'b'", "'b_0'", "oops", "at data row 8 (rows counted from 1 after the header)")



@pytest.mark.parametrize("cell, what", [("", "an empty cell"), ("inf", "a non-finite cell (inf)")])
def test_bad_csv_missing_or_infinite_cell_names_its_column_and_row(tmp_path, cell, what):
    # it was reported by the modality's array indices ("row 7, column 1"), 0-based and not the table's column
    mods, y = _mods()
    df = pd.DataFrame({"a_0": mods["a"][:, 0], "b_0": mods["b"][:, 0], "b_1": mods["b"][:, 1].astype(object),
                       "labels": y})
    df.loc[7, "b_1"] = cell
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    _expect_error(tmp_path, ["--paired", str(path), "--modality", "a=a_*", "--modality", "b=b_*", "--anchor", "a"],
                  "modality 'b'", "'b_1'", what, "at data row 8 (rows counted from 1 after the header)")


@pytest.mark.parametrize("name, needle", [("folder", "is a folder"), ("missing.csv", "does not exist")])
def test_bad_paired_path_that_is_no_file(tmp_path, name, needle):
    # without --modality it was called "a table: name its modalities with --modality"
    (tmp_path / "folder").mkdir()
    line = _expect_error(tmp_path, ["--paired", str(tmp_path / name), "--anchor", "a"], repr(str(tmp_path / name)),
                         needle)
    assert "--modality" not in line


@pytest.mark.parametrize("value", [",", " "])
def test_bad_empty_candidates_list_is_named_as_such(tmp_path, value):
    # it read "no candidate modality in 'paired.npz': only the anchor", which the file does not hold
    mods, y = _mods()
    line = _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a", "--candidates", value],
                         "--candidates", "names no modality")
    assert "only the anchor" not in line

def test_paired_parquet_with_modality_globs(tmp_path):
    pytest.importorskip("pyarrow")  # the [parquet] extra; CI installs it
    mods, y = _mods()
    df = pd.DataFrame({**{f"a_{i}": mods["a"][:, i] for i in range(3)},
                       **{f"b_{i}": mods["b"][:, i] for i in range(2)}, "labels": y})
    path = tmp_path / "paired.parquet"
    df.to_parquet(path)
    res = _run(["--paired", str(path), "--modality", "a=a_*", "--modality", "b=b_*",
                "--anchor", "a", "--out", str(tmp_path / "o"), "--json", *FAST])
    assert res.exit_code == 0, res.output
    assert [c["name"] for c in json.loads(res.output)["candidates"]] == ["b"]


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    # pandas imports pyarrow lazily: a None entry makes that import fail as if it were absent
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    path = tmp_path / "t.parquet"
    path.write_bytes(b"PAR1")
    _expect_error(tmp_path, ["--paired", str(path), "--modality", "a=a_*", "--anchor", "a"], "rankfusion[parquet]")


def test_bad_option_combinations(tmp_path):
    mods, y = _mods()
    p = str(_npz(tmp_path, mods, y))
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--modality", "a=x*"], "--modality", ".npz")
    _expect_error(tmp_path, [p, "--paired", p], "not both", "FEATURES and --paired")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--candidates", "zz"], "candidate 'zz'")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--folds", "1"], "Error: --folds must be in [2, 1000], got 1")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--surrogates", "5"], "Error: --surrogates must be at least 19")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--steps", "0"], "Error: --steps must be at least 1, got 0")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--width", "4"], "width", "no channel")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--seeds", "20000000000000000"],
                  "Error: --seeds must be in [0, 4294967295], got 20000000000000000")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--seeds", "0,0"], "--seeds", "without repeats",
                  "[0, 0]")
    # options the probe route does not read are refused, not ignored
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--expected", "b"], "--expected is not used with --paired")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--profile", "quick", "--device", "cpu"],
                  "--profile and --device are not used with --paired")


def _evidence(tmp_path, mods, y, name, *extra):
    path = _npz(tmp_path, mods, y, name=name)
    res = _run(["--paired", str(path), "--anchor", "a", "--out", str(tmp_path / f"o-{name}"), "--json", *FAST,
                "--steps", "20", *extra])
    assert res.exit_code == 0, res.output
    return {c["name"]: c for c in json.loads(res.output)["candidates"]}


def _assert_same_evidence(got, ref):
    assert set(got) == set(ref)
    for name, c in ref.items():
        # accuracies are multiples of 1/rows: equal task gains differ at most by rounding
        assert got[name]["task_gain"] == pytest.approx(c["task_gain"], abs=1e-12), name
        assert got[name]["criterion"] is not None, name
        assert got[name]["criterion"] == pytest.approx(c["criterion"], rel=1e-6), name
        assert got[name]["control_mean"] == pytest.approx(c["control_mean"], rel=1e-6, abs=1e-9), name


@pytest.mark.parametrize("modality,scale", [("a", 1e300), ("b", 1e160), ("c", 1e-310), ("a", 1e-200)])
def test_paired_results_do_not_depend_on_the_scale_of_a_modality(tmp_path, recwarn, modality, scale):
    # standardising squares the values: without an exact rescale first, x1e300 overflows and
    # x1e-200 or denormals underflow, and the probe sees zeros or NaN
    mods, y = _mods()
    mods["a"] = mods["a"] + 0.5 * y[:, None]
    ref = _evidence(tmp_path, mods, y, "ref.npz")
    scaled = dict(mods, **{modality: mods[modality] * scale})
    _assert_same_evidence(_evidence(tmp_path, scaled, y, "scaled.npz"), ref)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_paired_csv_column_of_extreme_magnitude(tmp_path):
    mods, y = _mods()
    ref = _evidence(tmp_path, mods, y, "ref.npz", "--candidates", "b")
    df = pd.DataFrame({**{f"a_{i}": mods["a"][:, i] * (1e300 if i == 0 else 1.0) for i in range(3)},
                       **{f"b_{i}": mods["b"][:, i] for i in range(2)}, "labels": y})
    path = tmp_path / "big.csv"
    df.to_csv(path, index=False, float_format="%.17g")
    res = _run(["--paired", str(path), "--modality", "a=a_*", "--modality", "b=b_*", "--anchor", "a",
                "--out", str(tmp_path / "o"), "--json", *FAST, "--steps", "20"])
    assert res.exit_code == 0, res.output
    _assert_same_evidence({c["name"]: c for c in json.loads(res.output)["candidates"]}, ref)


def test_paired_string_labels_in_an_npz(tmp_path):
    mods, y = _mods()
    ref = _evidence(tmp_path, mods, y, "ints.npz")
    got = _evidence(tmp_path, mods, np.where(y == 1, "yes", "no"), "strings.npz")
    _assert_same_evidence(got, ref)


def test_bad_zero_rows(tmp_path):
    mods = {"a": np.zeros((0, 3)), "b": np.zeros((0, 2))}
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, np.zeros(0))), "--anchor", "a"],
                  "modality 'a'", "has no rows")
    path = tmp_path / "header.csv"
    path.write_text("a_0,b_0,labels\n")
    _expect_error(tmp_path, ["--paired", str(path), "--modality", "a=a_*", "--modality", "b=b_*", "--anchor", "a"],
                  "modality 'a'", "has no rows")


@pytest.mark.parametrize("labels", [np.linspace(0.0, 1.0, 40), np.array([f"id{i}" for i in range(40)])])
def test_bad_every_class_a_single_row(tmp_path, labels):
    mods, _ = _mods()
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, labels)), "--anchor", "a"],
                  "labels", "every row its own class", "40 classes over 40 rows")


def test_bad_two_rows_of_two_classes(tmp_path):
    mods, _ = _mods(n=2)
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, np.array([0, 1]))), "--anchor", "a"],
                  "every row its own class", "2 classes over 2 rows")


def test_bad_folds_above_the_smallest_class(tmp_path):
    mods, y = _mods()
    p = str(_npz(tmp_path, mods, y))
    line = _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--folds", "41"], "folds=41 (--folds)",
                         "20 row(s) of the smallest class", "40 rows, 2 classes")
    assert "use at most 20" in line
    y3 = y.copy()
    y3[:3] = 7  # a third class of 3 rows
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y3, name="y3.npz")), "--anchor", "a",
                             "--folds", "4"], "folds=4 (--folds)", "3 row(s) of the smallest class 7")
    y1 = y.copy()
    y1[0] = 7  # a class of one row: no number of folds can work, and the message does not offer one
    line = _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y1, name="y1.npz")), "--anchor", "a"],
                         "the smallest class 7", "has a single row", "drop that class or merge it")
    assert "use at most" not in line


def test_bad_candidate_named_twice(tmp_path):
    mods, y = _mods()
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a", "--candidates", "b,b"],
                  "candidate 'b' is named more than once")


def test_bad_pattern_matching_only_the_label_column(tmp_path):
    mods, y = _mods()
    df = pd.DataFrame({"a_0": mods["a"][:, 0], "b_0": mods["b"][:, 0], "lab": y})
    path = tmp_path / "t.csv"
    df.to_csv(path, index=False)
    _expect_error(tmp_path, ["--paired", str(path), "--labels", "lab", "--modality", "a=a_*", "--modality", "b=la*",
                             "--anchor", "a"], "modality 'b'", "matches only 'lab'", "the label column (--labels)")


def test_paired_interrupted_run_leaves_no_completion_marker(tmp_path, monkeypatch):
    from rankfusion import plots

    mods, y = _mods()
    p, out = str(_npz(tmp_path, mods, y)), tmp_path / "sel"
    assert _run(["--paired", p, "--anchor", "a", "--out", str(out), *FAST]).exit_code == 0
    assert (out / "modality_evidence.json").is_file()

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # stands for a kill between the table and the figure

    monkeypatch.setattr(plots, "save_figure", killed)
    res = CliRunner().invoke(main, ["modality-select", "--paired", p, "--anchor", "a", "--out", str(out), *FAST])
    assert res.exit_code != 0
    # the new table is there, the old figure too: without the JSON the folder says "incomplete"
    assert (out / "modality_evidence.csv").is_file() and not (out / "modality_evidence.json").exists()


def test_paired_says_what_noise_like_means_for_an_undefined_criterion(tmp_path):
    # a one-column anchor and a 30-column noise candidate: the candidate's own effective rank falls
    # through RTF (blended with the anchor's rank-1 tokens), so its criterion is undefined (here by a
    # wide margin: its gain is -0.37)
    rng = np.random.default_rng(3)
    y = np.arange(40) % 2
    mods = {"a": rng.standard_normal((40, 1)) + y[:, None], "d": rng.standard_normal((40, 30))}
    out = tmp_path / "o"
    res = _run(["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a", "--out", str(out), *FAST])
    assert res.exit_code == 0, res.output
    row = pd.read_csv(out / "modality_evidence.csv").iloc[0]
    assert np.isnan(row["criterion"]) and row["noise_like"]
    (note,) = [line for line in res.output.splitlines() if line.startswith("no criterion for")]
    assert note.startswith("no criterion for d (a gain through RTF <= 0")
    assert note.endswith(f"(d {row['task_gain']:+.3f} [{row['task_gain_lo']:+.3f}, {row['task_gain_hi']:+.3f}])")
    # every criterion defined: no note
    mods, y = _mods()
    res = _run(["--paired", str(_npz(tmp_path, mods, y, name="p2.npz")), "--anchor", "a", "--out",
                str(tmp_path / "o2"), *FAST])
    assert not pd.read_csv(tmp_path / "o2" / "modality_evidence.csv")["criterion"].isna().any()
    assert "no criterion for" not in res.output


def test_the_command_s_probe_defaults_are_probe_config_s():
    # the command keeps its own literals so that `rankfusion --help` need not import the probe
    from rankfusion.cli import main
    from rankfusion import selection
    from rankfusion.selection import ProbeConfig

    params = {p.name: p.default for p in main.commands["modality-select"].params}
    cfg = ProbeConfig()
    assert (params["folds"], params["steps"], params["width"]) == (cfg.folds, cfg.steps, cfg.width)
    # --surrogates left out is the level's least, as ProbeConfig's default
    assert params["surrogates"] is None and selection.min_surrogates() == cfg.n_surrogates == 19
    assert tuple(int(s) for s in params["seeds"].split(",")) == cfg.seeds


def test_repeated_candidates_with_data_are_refused_before_any_training(tmp_path):
    from click.testing import CliRunner

    from rankfusion.cli import main

    (tmp_path / "data").mkdir()
    res = CliRunner().invoke(main, ["modality-select", "--data", str(tmp_path / "data"), "--candidates", "depth,depth",
                                    "--cache", str(tmp_path / "cache")])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: candidate 'depth' is named more than once in --candidates; name each candidate once"]
    assert not (tmp_path / "cache").exists()


def test_a_tables_labels_are_read_as_written(tmp_path):
    # "01" and "1" are two classes (read as numbers they merged into one); numbers keep their order
    # (2 before 10), as before
    mods, y = _mods()
    got = {}
    for name, labels in (("words", ("a", "b")), ("digits", ("01", "1")), ("numbers", ("2", "10"))):
        df = pd.DataFrame({**{f"{m}_{j}": x[:, j] for m, x in mods.items() for j in range(x.shape[1])},
                           "labels": np.where(y == 1, labels[1], labels[0])})
        path = tmp_path / f"{name}.csv"
        df.to_csv(path, index=False)
        res = _run(["--paired", str(path), *[f"--modality={m}={m}_*" for m in mods], "--anchor", "a",
                    "--out", str(tmp_path / f"o-{name}"), "--json", *FAST, "--steps", "20"])
        assert res.exit_code == 0, res.output
        got[name] = {c["name"]: c for c in json.loads(res.output)["candidates"]}
    _assert_same_evidence(got["digits"], got["words"])
    _assert_same_evidence(got["numbers"], got["words"])


def test_bad_probe_width_that_blends_no_channel_says_which_width_would(tmp_path):
    # --width 4 at the probe's exchange ratio (0.1) blends round(0.4) = 0 channels; the command has
    # no option for the ratio, so the line names --width and the smallest width that blends one
    mods, y = _mods()
    _expect_error(tmp_path, ["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a", "--width", "4"],
                  "--width 4", "--width 6 or more")
    res = _run(["--paired", str(_npz(tmp_path, mods, y)), "--anchor", "a", "--width", "4"])
    assert "raise width or exchange_ratio" not in res.output
