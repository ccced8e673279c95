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
    assert set(js["agreement"]) == {"spearman", "ci", "p", "exact", "backed", "alpha"}
    assert [c["name"] for c in js["candidates"]] == ["b", "c"]
    for c in js["candidates"]:
        assert set(c) == {"name", "criterion", "control_mean", "control_std", "control_p", "excess", "noise_like",
                          "task_gain", "task_gain_ci", "rank_criterion", "rank_controlled"}
        assert isinstance(c["noise_like"], bool) and isinstance(c["task_gain"], float)
    # two candidates: a rank correlation over two points says nothing, so it is null
    assert js["agreement"] == {"spearman": None, "ci": None, "p": None, "exact": None, "backed": None, "alpha": None}


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
                  "modality 'b'", "'b_0'", "oops")


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
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--folds", "1"], "folds")
    _expect_error(tmp_path, ["--paired", p, "--anchor", "a", "--width", "4"], "width", "no channel")
