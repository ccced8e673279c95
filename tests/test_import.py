"""CSV importer: layout written, windows, chunks, and every bad-input message (nothing half-written)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion._validation import InputError
from rankfusion.cli import main
from rankfusion.data import import_csv, open_dataset
from rankfusion.data.importer import parse_modality_specs


def _csv(path, n=12, *, label=None, extra=""):
    label = label or (lambda t: "walk" if t < n // 2 else "sit")
    rows = ["time,acc_x,acc_y,gyro_x,label" + extra]
    for t in range(n):
        rows.append(f"{t},{t},{2 * t},{-t},{label(t)}")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.fixture
def three(tmp_path):
    return [_csv(tmp_path / f"rec{i}.csv") for i in range(3)]


def test_unnamed_columns_are_not_a_repeated_name(tmp_path):
    # an exported index column has no name; two of them are two columns, not one named twice
    files = [_csv(tmp_path / f"r{i}.csv") for i in range(3)]
    for f in files:
        lines = f.read_text().splitlines()
        f.write_text("\n".join([",," + lines[0]] + [f"{i},{i}," + ln for i, ln in enumerate(lines[1:])]) + "\n")
    ds = open_dataset(import_csv(files, tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label"))
    assert ds.modalities == ["acc"] and ds.classes == ["sit", "walk"]


def test_labels_and_cells_are_what_the_file_says(tmp_path):
    # only an empty cell is missing: an action called "null" or "NA" is a class, not a gap
    files = [_csv(tmp_path / f"r{i}.csv", label=lambda t: "null" if t % 3 == 0 else ("NA" if t % 3 == 1 else "walk"))
             for i in range(3)]
    ds = open_dataset(import_csv(files, tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label"))
    assert ds.classes == ["NA", "null", "walk"]


def test_import_basic(three, tmp_path):
    out = import_csv(three, tmp_path / "ds", modalities={"acc": "acc_*", "gyro": ["gyro_*"]}, label_column="label")
    ds = open_dataset(out)
    rep = ds.validate()
    assert ds.classes == ["sit", "walk"] and ds.modalities == ["acc", "gyro"]
    assert rep.n_videos == 3 and rep.splits == {"train": 1, "val": 1, "test": 1}
    np.testing.assert_array_equal(ds.features("rec1", "acc")[:3], [[0, 0], [1, 2], [2, 4]])
    assert ds.labels("rec0").tolist() == [1] * 6 + [0] * 6
    meta = json.loads((out / "import.json").read_text())
    assert meta["modalities"] == {"acc": ["acc_x", "acc_y"], "gyro": ["gyro_x"]}


def test_window_and_chunk(tmp_path):
    # one recording of 30 rows: labels walk*5 sit*25; chunk 15 -> 2 videos of 5 frames; window 3:
    #   chunk 0 rows 0-14: windows (w w w) (w w s) (s s s) ... -> walk, walk, sit, sit, sit
    #   chunk 1 rows 15-29: all sit
    # plus a 3rd file so the three splits get a video each
    f = _csv(tmp_path / "long.csv", 30, label=lambda t: "walk" if t < 5 else "sit")
    g = _csv(tmp_path / "other.csv", 6)
    out = import_csv([f, g], tmp_path / "ds", modalities={"acc": "acc_x"}, label_column="label", window=3, chunk=15)
    ds = open_dataset(out)
    assert sorted(ds.videos) == ["long_c000", "long_c001", "other_c000"]
    assert [ds.classes[i] for i in ds.labels("long_c000")] == ["walk", "walk", "sit", "sit", "sit"]
    # window means of acc_x = t: (0+1+2)/3 = 1, (3+4+5)/3 = 4, ...
    np.testing.assert_allclose(ds.features("long_c000", "acc")[:, 0], [1, 4, 7, 10, 13])


def test_a_tail_chunk_too_short_to_train_on_joins_the_chunk_before_it(tmp_path):
    # 40 rows, chunk 15, window 3: pieces of 15, 15 and 10 rows = 5, 5 and 3 frames; a video of 3
    # frames has no observed frame at ratio 0.2, so train refused the dataset; it joins chunk 1
    f = _csv(tmp_path / "long.csv", 40)
    g = _csv(tmp_path / "other.csv", 6)
    ds = open_dataset(import_csv([f, g], tmp_path / "ds", modalities={"acc": "acc_x"}, label_column="label",
                                 window=3, chunk=15))
    assert sorted(ds.videos) == ["long_c000", "long_c001", "other_c000"]
    assert ds.n_frames("long_c001") == 8  # rows 15-39: 25 rows, 8 windows of 3 (the last row dropped)
    np.testing.assert_allclose(ds.features("long_c001", "acc")[:, 0], [16 + 3 * i for i in range(8)])


def test_window_tie_takes_first_label(tmp_path):
    files = [_csv(tmp_path / f"r{i}.csv", 4, label=lambda t: ["b", "a", "a", "b"][t]) for i in range(3)]
    out = import_csv(files, tmp_path / "ds", modalities={"acc": "acc_x"}, label_column="label", window=2)
    ds = open_dataset(out)
    # windows (b a) -> tie -> b (first seen), (a b) -> a
    assert [ds.classes[i] for i in ds.labels("r0")] == ["b", "a"]


def test_video_column(tmp_path):
    p = tmp_path / "all.csv"
    lines = ["subj,acc_x,label"] + [f"{s},{t},{'x' if t % 2 else 'y'}" for s in ("s1", "s2", "s3") for t in range(4)]
    p.write_text("\n".join(lines) + "\n")
    out = import_csv([p], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label", video_column="subj")
    assert sorted(open_dataset(out).videos) == ["s1", "s2", "s3"]


@pytest.mark.parametrize(
    "mutate, kwargs, message",
    [
        (None, {"label_column": "lbl"}, "label column 'lbl' not found in .*rec0.csv"),
        (None, {"modalities": {"mag": "mag_*"}}, "modality 'mag': pattern 'mag_\\*' matches no column of .*rec0.csv"),
        (None, {"modalities": {"a": "acc_*", "b": "acc_x"}}, "column 'acc_x' .* matches modalities 'a' and 'b'"),
        (None, {"modalities": {"a": "*"}}, "matches the label column 'label'"),
        (lambda s: s.replace("\n3,3,6,", "\n3,oops,6,"), {}, "rec1.csv.*column 'acc_x' has a non-numeric cell 'oops' at data row 4"),
        (lambda s: s.replace(",walk\n", ",\n", 1), {}, "rec1.csv.*label column 'label' has a gap .* data row 1"),
        (lambda s: s.replace("\n2,2,4,", "\n2,,4,"), {}, "rec1.csv.*column 'acc_x' has an empty cell at data row 3"),
        (lambda s: s.replace("\n2,2,4,", "\n2,nan,4,"), {}, "rec1.csv.*column 'acc_x' has a NaN cell 'nan' at data row 3"),
        # a header that names a column twice: pandas would read the second as 'acc_x.1', which the
        # file does not have, and 'acc_*' would match it
        (lambda s: s.replace("time,acc_x,acc_y,", "time,acc_x,acc_x,"), {},
         "rec1.csv': the header names column 'acc_x' twice \\(columns 2 and 3\\)"),
        (lambda s: s.replace("time,acc_x,acc_y,gyro_x,label", "label,acc_x,acc_y,gyro_x,label"), {},
         "rec1.csv': the header names column 'label' twice \\(columns 1 and 5\\)"),
    ],
)
def test_bad_input(three, tmp_path, mutate, kwargs, message):
    if mutate is not None:
        three[1].write_text(mutate(three[1].read_text()))
    args = {"modalities": {"acc": "acc_*"}, "label_column": "label", **kwargs}
    with pytest.raises(InputError, match=message):
        import_csv(three, tmp_path / "ds", **args)
    assert not (tmp_path / "ds").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("suffix", [".csv", ".csv.gz", ".tsv"])
def test_bad_cell_names_its_line_where_pandas_skipped_lines(three, tmp_path, suffix):
    # pandas skips blank and whitespace-only lines and reads a quoted cell across lines: the data
    # row of the bad cell is not on line row + 2
    import gzip

    sep = "\t" if suffix == ".tsv" else ","
    lines = ["time,acc_x,acc_y,gyro_x,label", "", "0,0,0,0,walk", "   ", '1,1,2,-1,"walk"', "2,2,oops,-2,sit"]
    text = "\n".join(line.replace(",", sep) for line in lines) + "\n"
    path = tmp_path / f"odd{suffix}"
    if suffix.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    with pytest.raises(InputError, match=r"column 'acc_y' has a non-numeric cell 'oops' at data row 3 \(line 6\)$"):
        import_csv([three[0], three[1], path], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    # a label cell spanning two lines (refused) starts on the line named, and moves later rows' lines
    path = tmp_path / "quoted.csv"
    path.write_text('time,acc_x,acc_y,gyro_x,label\n0,0,0,0,walk\n1,1,2,-1,"walk\nfast"\n')
    with pytest.raises(InputError, match=r"line break 'walk\\nfast' at data row 2 \(line 3\);"):
        import_csv([three[0], three[1], path], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    path.write_text('time,acc_x,acc_y,gyro_x,label\n0,0,"0\n",0,walk\n1,,2,-1,walk\n')
    with pytest.raises(InputError, match=r"column 'acc_x' has an empty cell at data row 2 \(line 4\)$"):
        import_csv([three[0], three[1], path], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    assert not (tmp_path / "ds").exists()


def test_bad_cell_of_a_parquet_file_names_no_line(three, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"acc_x": [0.0, float("nan")], "acc_y": [1.0, 2.0], "label": ["a", "b"]}).to_parquet(path)
    # a Parquet file has no empty cells: a NaN is named as such
    with pytest.raises(InputError, match=r"t.parquet': column 'acc_x' has a NaN \(missing\) value at data row 2$"):
        import_csv([three[0], three[1], path], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    pd.DataFrame({"acc_x": [0.0, 1.0], "label": ["a", None]}).to_parquet(path)
    with pytest.raises(InputError, match=r"label column 'label' has a gap \(empty cell\) at data row 2$"):
        import_csv([three[0], three[1], path], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")


def test_too_few_videos_and_parquet(tmp_path):
    f = _csv(tmp_path / "one.csv")
    with pytest.raises(InputError, match="need at least 3 videos.*--chunk"):
        import_csv([f], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    pq = tmp_path / "t.parquet"
    pq.write_bytes(b"PAR1")
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(InputError, match="needs pyarrow"):
            import_csv([pq], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    with pytest.raises(InputError, match="does not exist"):
        import_csv([tmp_path / "missing.csv"], tmp_path / "ds", modalities={"acc": "a"}, label_column="label")


def test_cli_import(three, tmp_path):
    out = tmp_path / "ds"
    res = CliRunner().invoke(main, ["data", "import-csv", *map(str, three), "--out", str(out), "--label-column",
                                    "label", "--modality", "acc=acc_*", "--modality", "gyro='gyro_*'"])
    assert res.exit_code == 0, res.output
    assert "wrote" in res.output and "channels  acc 2, gyro 1" in res.output
    res = CliRunner().invoke(main, ["data", "import-csv", *map(str, three), "--out", str(tmp_path / "x"),
                                    "--label-column", "label", "--modality", "mag=mag_*"])
    assert res.exit_code == 2 and "modality 'mag'" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["data", "import-csv", str(three[0]), "--out", str(tmp_path / "x"),
                                    "--label-column", "label", "--modality", "acc"])
    assert res.exit_code == 2 and "NAME=PATTERN" in res.output
    res = CliRunner().invoke(main, ["data", "import-csv", str(three[0]), "--out", str(tmp_path / "x"),
                                    "--label-column", "label", "--modality", "acc=acc_*", "--modality", "acc=gyro_*"])
    assert res.exit_code == 2 and "--modality 'acc' given twice" in res.output and not (tmp_path / "x").exists()


@pytest.mark.parametrize("extra, message", [
    (["--window", "0"], "--window must be at least 1, got 0"),
    (["--chunk", "2", "--window", "3"], "--chunk (2) must be at least --window (3)"),
    (["--split", "0.5,0.5"], "--split must be 3 non-negative numbers summing to 1, got (0.5, 0.5)"),
    (["--split", "nan,0.5,0.5"], "--split must be 3 non-negative numbers summing to 1, got (nan, 0.5, 0.5)"),
])
def test_cli_import_options_are_named_as_typed_and_checked_before_reading(three, tmp_path, extra, message):
    # checked before any table is read: the missing file behind them is not reached
    res = CliRunner().invoke(main, _import_args([*three, tmp_path / "missing.csv"], tmp_path / "ds", *extra))
    assert res.exit_code == 2 and res.output == f"Error: {message}\n", res.output
    # the Python function names its own parameters
    with pytest.raises(InputError, match="^split_fractions must be"):
        import_csv(three, tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label", split_fractions=(1, 0))
    assert not (tmp_path / "ds").exists()


def test_modality_specs_keep_order_and_refuse_a_name_twice():
    assert parse_modality_specs(["b=x_*", "a='y_*',z"]) == {"b": ["x_*"], "a": ["y_*", "z"]}
    assert list(parse_modality_specs(["b=x", "a=y"])) == ["b", "a"]
    with pytest.raises(InputError, match="--modality 'a' given twice"):
        parse_modality_specs(["a=x", "b=y", "a=z"])


def _import_args(files, out, *extra):
    return ["data", "import-csv", *map(str, files), "--out", str(out), "--label-column", "label",
            "--modality", "acc=acc_*", *extra]


def _tree(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("bad", ["newline", "overflow"])
def test_cli_import_force_validates_before_replacing(three, tmp_path, bad):
    out = tmp_path / "ds"
    assert CliRunner().invoke(main, _import_args(three, out)).exit_code == 0
    before = _tree(out)
    if bad == "newline":
        # a quoted label cell spanning two lines: groundTruth/ would read it back as two frames
        three[1].write_text('time,acc_x,acc_y,gyro_x,label\n0,0,0,0,"walk\nfast"\n1,1,2,-1,sit\n')
        expect = (f"Error: '{three[1]}': label column 'label' has a label with a line break 'walk\\nfast' at data row 1 "
                  "(line 2); "
                  "labels must be one line")
    else:
        three[1].write_text("time,acc_x,acc_y,gyro_x,label\n0,1e300,0,0,walk\n1,1,2,-1,sit\n")
        expect = (f"Error: '{three[1]}': column 'acc_x' has a value (1e+300) beyond the float32 range "
                  "(|x| <= 3.4e38) at data row 1 (line 2)")
    res = CliRunner().invoke(main, _import_args(three, out, "--force"))
    assert res.exit_code == 2, res.output
    assert res.output == expect + "\n", res.output
    assert _tree(out) == before  # the old dataset is intact
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    # without --force into a new folder: nothing is left behind, so a corrected re-run is not refused
    res = CliRunner().invoke(main, _import_args(three, tmp_path / "new"))
    assert res.exit_code == 2 and not (tmp_path / "new").exists()


def test_import_validates_the_written_dataset_before_the_rename(tmp_path, monkeypatch):
    # a problem only the full check sees (here: a feature turned non-finite on the way to disk)
    # must stop the import before the old dataset is replaced
    from rankfusion.data import layout

    three = [_csv(tmp_path / f"rec{i}.csv") for i in range(3)]
    out = import_csv(three, tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    before = _tree(out)
    real_save = np.save

    def save_nan(file, arr, *a, **k):
        arr = np.array(arr, dtype=np.float32)
        arr[0, 0] = np.nan
        return real_save(file, arr, *a, **k)

    monkeypatch.setattr(layout.np, "save", save_nan)
    with pytest.raises(InputError, match=r"modality 'acc' has a non-finite value") as info:
        import_csv(three, out, modalities={"acc": "acc_*"}, label_column="label", overwrite=True)
    assert ".~" not in str(info.value)
    monkeypatch.undo()
    assert _tree(out) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_cli_import_folder_as_input(three, tmp_path):
    res = CliRunner().invoke(main, _import_args([tmp_path], tmp_path / "ds"))
    assert res.exit_code == 2
    assert res.output == f"Error: input file '{tmp_path}' is a folder, expected a CSV, TSV or Parquet file\n"
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("name", ["rec.json", "rec.txt", "rec", "rec.gz", "rec.parquet.gz"])
def test_cli_import_refuses_an_unknown_table_format(three, tmp_path, name):
    # a table is read by its suffix: anything else was read as CSV, whatever it held
    path = tmp_path / name
    path.write_bytes(three[0].read_bytes())
    res = CliRunner().invoke(main, _import_args([path, *three[1:]], tmp_path / "ds"))
    assert res.exit_code == 2
    assert res.output.startswith(f"Error: input file {str(path)!r}: unknown table format "), res.output
    assert res.output.endswith("expected .csv or .tsv (optionally .gz), .parquet or .pq\n") and res.output.count("\n") == 1
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("split_set", ["a/b", "x.y", ""])
def test_a_split_set_that_is_no_plain_name_is_refused_up_front(three, tmp_path, split_set):
    res = CliRunner().invoke(main, ["data", "import-csv", *map(str, three), "--out", str(tmp_path / "ds"),
                                    "--label-column", "label", "--modality", "acc=acc_*", "--split-set", split_set])
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: --split-set must be a plain name without '.' or '/', got {split_set!r}"]
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("where", ["same", "parent"])
def test_cli_import_force_refuses_an_out_that_holds_the_input_files(tmp_path, where):
    # --force replaces OUT: were the CSV files inside it, they would be deleted with it
    src = tmp_path / "srcdir"
    src.mkdir()
    files = [_csv(src / f"rec{i}.csv") for i in range(3)]
    before = {f: f.read_text() for f in files}
    out = src if where == "same" else tmp_path
    res = CliRunner().invoke(main, ["data", "import-csv", *map(str, files), "--out", str(out), "--force",
                                    "--label-column", "label", "--modality", "acc=acc_*"])
    assert res.exit_code == 2
    assert res.output == (f"Error: cannot write {str(out)!r}: it holds the input {str(files[0])!r}, which replacing it "
                          "would delete; "
                          "write to another folder\n")
    assert {f: f.read_text() for f in files} == before
    assert sorted(p.name for p in src.iterdir()) == ["rec0.csv", "rec1.csv", "rec2.csv"]


def test_import_into_a_new_folder_inside_the_input_folder_is_fine(three, tmp_path):
    out = import_csv(three, tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")
    out = import_csv(three, tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label", overwrite=True)
    assert open_dataset(out).videos and all(f.is_file() for f in three)


def test_labels_and_video_ids_are_read_as_text(tmp_path):
    # labels 01, 02, 10 were read as numbers (classes '1', '2', '10'); video ids 01 and 1 were
    # one recording
    p = tmp_path / "all.csv"
    rows = [("01", "01"), ("01", "02"), ("1", "10"), ("1", "10"), ("001", "02"), ("001", "01")]
    p.write_text("subj,acc_x,label\n" + "".join(f"{v},{t},{lab}\n" for t, (v, lab) in enumerate(rows)))
    ds = open_dataset(import_csv([p], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label",
                                 video_column="subj"))
    assert ds.classes == ["01", "02", "10"]
    assert sorted(ds.videos) == ["001", "01", "1"]
    assert [ds.classes[i] for i in ds.labels("01")] == ["01", "02"]
    np.testing.assert_array_equal(ds.features("1", "acc")[:, 0], [2, 3])


def test_parquet_label_and_video_columns_stored_as_numbers_become_their_text(three, tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    path = tmp_path / "t.parquet"
    pd.DataFrame({"subj": [7, 7, 8, 8, 9, 9], "acc_x": [0.0, 1, 2, 3, 4, 5], "label": [1, 2, 1, 1, 2, 2]}).to_parquet(path)
    ds = open_dataset(import_csv([path], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label",
                                 video_column="subj"))
    assert ds.classes == ["1", "2"] and sorted(ds.videos) == ["7", "8", "9"]


def test_a_video_whose_rows_are_not_together_is_refused(tmp_path):
    p = tmp_path / "all.csv"
    p.write_text("subj,acc_x,label\n" + "".join(f"{v},{t},x\n" for t, v in enumerate("aabbacc")))
    with pytest.raises(InputError) as err:
        import_csv([p], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label", video_column="subj")
    assert str(err.value) == (f"{str(p)!r}: video column 'subj': the rows of video 'a' are not together (data row 2 "
                              "(line 3), then data row 5 (line 6)); keep each video's rows in one block")
    assert not (tmp_path / "ds").exists()


def test_a_video_id_too_long_for_a_file_name_is_named_with_its_column(tmp_path):
    # it failed in the hidden temporary folder: "File name too long: '.o3.~.../groundTruth/sss...txt'"
    p = tmp_path / "all.csv"
    long = "s" * 252
    p.write_text("subj,acc_x,label\n" + "".join(f"{v},{t},x\n" for t, v in enumerate(["a", "b", long, long])))
    with pytest.raises(InputError) as err:
        import_csv([p], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label", video_column="subj")
    assert str(err.value) == (f"video id {'s' * 50!r}... (from {long!r} in video column 'subj' of {str(p)!r}) is too "
                              "long for a file name: '<video>.txt' would be 256 bytes, at most 255 are allowed; "
                              "shorten it")
    assert list(tmp_path.iterdir()) == [p]
    p.write_text(p.read_text().replace(long, "s" * 251))  # 255 bytes with '.txt': fine
    assert len(open_dataset(import_csv([p], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label",
                                       video_column="subj")).videos) == 3


def test_two_video_ids_that_make_one_name_point_at_the_column(tmp_path):
    # 'a b' and 'a_b' both become video a_b: the message said to rename the input files
    p = tmp_path / "all.csv"
    p.write_text("subj,acc_x,label\n" + "".join(f"{v},{t},x\n" for t, v in enumerate(["a b", "a_b", "c"])))
    with pytest.raises(InputError) as err:
        import_csv([p], tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label", video_column="subj")
    assert str(err.value) == (f"video name 'a_b' comes from two recordings, 'a b' in video column 'subj' of {str(p)!r} "
                              f"and 'a_b' in video column 'subj' of {str(p)!r}; make the values of that column differ "
                              "in letters, digits, '_', '.' or '-' (other characters become '_')")
    files = [_csv(tmp_path / n) for n in ("r 1.csv", "r_1.csv", "r2.csv")]
    with pytest.raises(InputError, match=r"make the file names differ"):
        import_csv(files, tmp_path / "ds", modalities={"acc": "acc_*"}, label_column="label")


def test_the_video_column_cannot_be_the_label_column(three, tmp_path):
    res = CliRunner().invoke(main, _import_args(three, tmp_path / "ds", "--video-column", "label"))
    assert res.exit_code == 2
    assert res.output == ("Error: --video-column and --label-column name the same column 'label': the videos must "
                          "come from another column\n")
    assert not (tmp_path / "ds").exists()


def test_integer_labels_keep_their_numeric_order(tmp_path):
    # read as text, labels 2, 10, 3 sorted as strings: mapping 0 10, 1 2, 2 3
    from rankfusion.data.importer import class_order

    assert class_order({"2", "10", "3"}) == ["2", "3", "10"]
    assert class_order({"1", "01", "-1"}) == ["-1", "01", "1"]
    assert class_order({"walk", "10", "2"}) == ["10", "2", "walk"]
    files = [_csv(tmp_path / f"r{i}.csv", 12, label=lambda t: ["2", "10", "3"][t % 3]) for i in range(3)]
    ds = open_dataset(import_csv(files, tmp_path / "ds", modalities={"acc": "acc_x"}, label_column="label"))
    assert list(ds.classes) == ["2", "3", "10"]
