"""`rankfusion spectrum`: table, JSON, plot, streaming of memory-mapped .npy files, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion import spectral
from rankfusion.cli import main
from rankfusion.files import save_npz


# Small matrices on a shared machine: see the fixture in conftest.py.
pytestmark = pytest.mark.usefixtures("one_blas_thread")


@pytest.fixture
def feats(tmp_path, rng):
    path = tmp_path / "feats.npz"
    arrays = {
        "rgb.before": (rng.standard_normal((4, 50, 3)) @ rng.standard_normal((3, 16))).astype(np.float32),
        "rgb.after": rng.standard_normal((200, 16)).astype(np.float32),
    }
    save_npz(path, arrays, {"run": "t", "modalities": ["rgb"]})
    return path, arrays


def run(*args):
    return CliRunner().invoke(main, ["spectrum", *map(str, args)])


def test_table(feats):
    path, arrays = feats
    res = run(path)
    assert res.exit_code == 0, res.output
    assert "rgb.before" in res.output and "rgb.after" in res.output and "meta" not in res.output
    assert "flattened" in res.output  # the 3-D array is reported as flattened
    erank = float(spectral.effective_rank(arrays["rgb.after"]))
    # the table prints 4 decimals of its own computation: compare the number, not the digits
    row = next(line for line in res.output.splitlines() if line.startswith("rgb.after "))
    assert float(row.split()[3]) == pytest.approx(erank, abs=0.5e-4 + 1e-9 * erank)


def test_json_and_keys(feats):
    path, arrays = feats
    res = run(path, "--json", "--key", "rgb.before", "--top", "2", "--center")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    (entry,) = out["arrays"]
    assert entry["key"] == "rgb.before" and entry["shape"] == [4, 50, 16]
    assert entry["matrix_shape"] == [200, 16] and entry["flattened"] is True
    X = arrays["rgb.before"].reshape(200, 16)
    assert entry["numerical_rank"] == int(spectral.numerical_rank(X, center=True))
    assert entry["effective_rank"] == pytest.approx(float(spectral.effective_rank(X, center=True)), rel=1e-12)
    assert len(entry["top_singular_values"]) == 2


def test_a_streamed_nan_is_named_by_its_row_and_column(tmp_path):
    a = np.ones((300, 4), dtype=np.float32)
    a[123, 2] = np.inf
    np.save(tmp_path / "a.npy", a)
    res = run(tmp_path / "a.npy", "--chunk-rows", "50")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: array 'a' in {str(tmp_path / 'a.npy')!r} holds a non-finite value (inf) at row 123, column 2"]


def test_a_key_named_twice_is_refused(feats):
    path, _ = feats
    res = run(path, "--key", "rgb.after", "--key", "rgb.before", "--key", "rgb.after")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == ["Error: --key 'rgb.after' is given more than once; name each array once"]


def test_plot(feats, tmp_path):
    path, _ = feats
    for name in ("spec.png", "spec.pdf"):
        out = tmp_path / name
        res = run(path, "--plot", out)
        assert res.exit_code == 0, res.output
        assert out.stat().st_size > 1000
    assert (tmp_path / "spec.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "spec.pdf").read_bytes()[:4] == b"%PDF"
    assert not list(tmp_path.glob(".spec*"))  # no temporary leftovers


def test_npy_streamed_matches_in_memory(tmp_path, rng):
    X = (rng.standard_normal((3000, 6)) @ rng.standard_normal((6, 24)) + rng.standard_normal(24)).astype(np.float32)
    path = tmp_path / "big.npy"
    np.save(path, X)
    for center in (False, True):
        args = [path, "--json", "--chunk-rows", 700] + (["--center"] if center else [])
        res = run(*args)
        assert res.exit_code == 0, res.output
        entry = json.loads(res.stdout)["arrays"][0]
        assert entry["method"] == "streamed" and entry["key"] == "big"
        assert entry["numerical_rank"] == int(spectral.numerical_rank(X, center=center))
        assert entry["effective_rank"] == pytest.approx(float(spectral.effective_rank(X, center=center)), rel=1e-9)
    res = run(path, "--json")
    assert json.loads(res.stdout)["arrays"][0]["method"] == "exact"


def test_streamed_float64_of_deficient_rank_reports_the_exact_rank(tmp_path, rng):
    # float64 rank 5: the Gram matrix's rounding eigenvalues (below its error radius) are zeros,
    # as the exact route finds; the note still counts the 59 directions the Gram cannot certify.
    X = rng.standard_normal((3000, 5)) @ rng.standard_normal((5, 64))
    path = tmp_path / "r5.npy"
    np.save(path, X)
    exact = json.loads(run(path, "--json").stdout)["arrays"][0]
    res = run(path, "--json", "--chunk-rows", 1000)
    assert res.exit_code == 0, res.output
    streamed = json.loads(res.stdout)["arrays"][0]
    assert (exact["method"], streamed["method"]) == ("exact", "streamed")
    assert streamed["numerical_rank"] == exact["numerical_rank"] == 5
    assert streamed["n_ambiguous"] == 59
    # Eq. 1 on 5 Gram-resolved values: within log(5) * delta / sigma_5^2 relative (delta: the
    # accumulator's error radius; tests/test_spectral_stream.py)
    rel = np.log(5) * spectral.GramAccumulator().update(X).error_radius() / streamed["top_singular_values"][4] ** 2
    assert streamed["effective_rank"] == pytest.approx(exact["effective_rank"], rel=rel)


@pytest.mark.parametrize("scale", [1e-166, 1e-310, 1e200])
def test_streamed_tiny_and_huge_values_match_in_memory(tmp_path, rng, scale):
    # |x| ~ 1e-166 squares underflow float64 and 1e-310 are denormals; 1e200 squares overflow.
    # The in-memory route falls back to a scaling SVD; the streamed route rescales its chunks.
    X = rng.standard_normal((22, 64)) * scale
    path = tmp_path / "tiny.npy"
    np.save(path, X)
    exact = json.loads(run(path, "--json").stdout)["arrays"][0]
    res = run(path, "--json", "--chunk-rows", 5)
    assert res.exit_code == 0, res.output
    streamed = json.loads(res.stdout)["arrays"][0]
    assert (exact["method"], streamed["method"]) == ("exact", "streamed")
    assert exact["numerical_rank"] == 22 and streamed["numerical_rank"] == 22
    assert streamed["n_ambiguous"] == 0
    assert streamed["effective_rank"] == pytest.approx(exact["effective_rank"], rel=1e-9)
    np.testing.assert_allclose(streamed["top_singular_values"], exact["top_singular_values"], rtol=1e-9)
    row = next(line for line in run(path, "--chunk-rows", 5).output.splitlines() if line.startswith("tiny "))
    assert int(row.split()[2]) == 22
    assert float(row.split()[3]) == pytest.approx(exact["effective_rank"], abs=0.5e-4 + 1e-9 * exact["effective_rank"])


@pytest.mark.parametrize(
    "setup,match",
    [
        ("missing", "does not exist"),
        ("corrupt", "cannot read"),
        ("badkey", "'nope' not found"),
        ("nonnumeric", "not numeric"),
        ("nan", "NaN"),
        ("badplot", "unsupported image format"),
    ],
)
def test_errors(tmp_path, setup, match):
    path = tmp_path / "f.npz"
    extra = []
    if setup == "corrupt":
        path.write_bytes(b"not a zip file")
    elif setup in ("badkey", "badplot"):
        np.savez(path, a=np.ones((4, 3)))
        extra = ["--key", "nope"] if setup == "badkey" else ["--plot", tmp_path / "x.unknownfmt"]
    elif setup == "nonnumeric":
        np.savez(path, a=np.array([["x", "y"], ["z", "w"]]))
    elif setup == "nan":
        a = np.ones((4, 3))
        a[1, 1] = np.nan
        np.savez(path, a=a)
    res = run(path, *extra)
    assert res.exit_code == 2
    assert match in res.stderr and "Traceback" not in res.output
    assert len(res.stderr.strip().splitlines()) == 1


def test_no_matrix(tmp_path):
    path = tmp_path / "v.npz"
    np.savez(path, v=np.arange(3.0))
    res = run(path)
    assert res.exit_code == 2 and "no 2-D" in res.stderr


@pytest.mark.parametrize("array, reason", [(np.arange(5.0), "shape (5,) is not a matrix"),
                                           (np.zeros((0, 4)), "shape (0, 4) is empty")])
def test_no_matrix_prints_only_the_error_line(tmp_path, array, reason):
    path = tmp_path / "v.npz"
    np.savez(path, v=array)
    res = run(path)
    assert res.exit_code == 2
    assert res.stderr == f"Error: no 2-D (or higher), non-empty numeric array in '{path}' ('v': {reason})\n"


def test_skipped_array_is_noted_only_on_success(tmp_path):
    path = tmp_path / "mixed.npz"
    np.savez(path, v=np.arange(5.0), m=np.ones((5, 3)))
    res = run(path)
    assert res.exit_code == 0 and "skipping 'v': shape (5,) is not a matrix" in res.stderr
    (tmp_path / "afile").write_text("x")
    res = run(path, "--plot", tmp_path / "afile" / "x.png")
    assert res.exit_code == 2 and len(res.stderr.strip().splitlines()) == 1 and "skipping" not in res.stderr


def test_text_array_is_skipped_by_default_and_refused_by_name(tmp_path):
    # a paired file (what modality-select --paired reads) with string class labels: "every numeric
    # array" skips the labels with a note; naming them with --key is an error naming the array
    path = tmp_path / "paired.npz"
    np.savez(path, rgb=np.random.default_rng(0).standard_normal((20, 4)), labels=np.array(["a", "b"] * 10))
    res = run(path)
    assert res.exit_code == 0, res.stderr
    assert "skipping 'labels': not numeric (dtype <U1)" in res.stderr and "rgb" in res.stdout
    res = run(path, "--key", "labels")
    assert res.exit_code == 2 and res.stderr == f"Error: array 'labels' in '{path}' is not numeric (dtype <U1)\n"


def test_an_object_array_is_skipped_by_default_and_named_when_asked_for(tmp_path):
    # labels saved from a pandas column are an object array: NumPy refuses to load it without
    # unpickling, and the whole file was "cannot read ...: Object arrays cannot be loaded ..."
    path = tmp_path / "paired.npz"
    np.savez(path, rgb=np.random.default_rng(0).standard_normal((20, 4)), labels=np.array(["a", "b"] * 10, dtype=object))
    res = run(path)
    assert res.exit_code == 0, res.stderr
    assert "skipping 'labels': Python objects (dtype object; save it with .astype(str))" in res.stderr
    res = run(path, "--key", "labels")
    assert res.exit_code == 2 and res.stderr == (
        f"Error: array 'labels' in '{path}' holds Python objects (dtype object, e.g. strings from a pandas column), "
        "which are not read (loading them would run pickled code): save it with .astype(str) for text or "
        ".astype(float) for numbers\n")


def test_npy_array_has_one_name_the_file_stem(tmp_path, rng):
    path = tmp_path / "big.npy"
    np.save(path, rng.standard_normal((20, 4)))
    for extra in ([], ["--key", "big"]):
        res = run(path, "--json", *extra)
        assert res.exit_code == 0, res.output
        assert [a["key"] for a in json.loads(res.stdout)["arrays"]] == ["big"]
    for key in ("array", "nope"):
        res = run(path, "--key", key)
        assert res.exit_code == 2
        assert res.stderr == (f"Error: key '{key}' not found in '{path}'; a .npy file holds one array, named by "
                              "the file's stem: 'big'\n")


def test_upper_case_suffix_is_read_by_content(tmp_path, rng):
    x = rng.standard_normal((20, 4))
    upper = tmp_path / "X.NPY"
    np.save(tmp_path / "x.npy", x)
    (tmp_path / "x.npy").rename(upper)
    res = CliRunner().invoke(main, ["spectrum", str(upper), "--json"])
    assert res.exit_code == 0, res.output
    got = json.loads(res.output)["arrays"][0]
    assert got["key"] == "X" and got["numerical_rank"] == 4
    z = tmp_path / "F.NPZ"
    np.savez(tmp_path / "f.npz", a=x)
    (tmp_path / "f.npz").rename(z)
    res = CliRunner().invoke(main, ["spectrum", str(z), "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["arrays"][0]["key"] == "a"


def test_random_bytes_are_not_a_valid_npy(tmp_path):
    bad = tmp_path / "noise.npy"
    bad.write_bytes(np.random.default_rng(0).bytes(256))
    res = CliRunner().invoke(main, ["spectrum", str(bad)])
    assert res.exit_code == 2
    assert res.output == f"Error: cannot read '{bad}': not a valid .npy file (no NumPy header)\n"
    assert "pickle" not in res.output


def test_help_says_what_happens_without_a_scheduler():
    from rankfusion.cli.spectrum import IN_MEMORY_MAX_BYTES

    out = " ".join(CliRunner().invoke(main, ["spectrum", "--help"]).output.split())
    assert (f"with none, an array of up to {IN_MEMORY_MAX_BYTES >> 30} GiB is read into memory and a larger one "
            "goes through dask's local threaded scheduler") in out


def test_chunk_rows_goes_by_the_file_content_not_its_name(tmp_path, rng):
    # the refusal looked at the suffix: a .npy file under another name was refused, an .npz named
    # .npy was accepted and the option ignored
    X = rng.standard_normal((300, 6))
    np.save(tmp_path / "a.npy", X)
    (tmp_path / "a.npy").rename(tmp_path / "a.dat")
    res = run(tmp_path / "a.dat", "--json", "--chunk-rows", 100)
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["arrays"][0]["method"] == "streamed"
    np.savez(tmp_path / "z.npz", x=X)
    (tmp_path / "z.npz").rename(tmp_path / "fake.npy")
    res = run(tmp_path / "fake.npy", "--chunk-rows", 100)
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: --chunk-rows applies to .npy files (read through a memory map), not to {str(tmp_path / 'fake.npy')!r}"]


@pytest.mark.parametrize("option", [["--standardize"], ["--convention", "diff-erank"]])
def test_a_float64_transform_of_float32_data_keeps_the_float32_tolerance(tmp_path, option):
    # z-scores and centred unit rows are float64 copies of float32 data: their rounding noise is
    # float32's, and float64's epsilon counted it as rank (rank 64 for a rank-5 matrix)
    rng = np.random.default_rng(0)
    low = (rng.standard_normal((2000, 5)) @ rng.standard_normal((5, 64))).astype(np.float32)
    np.save(tmp_path / "r5.npy", low)
    res = run(tmp_path / "r5.npy", "--json", *option)
    assert res.exit_code == 0, res.output
    (row,) = json.loads(res.output)["arrays"]
    assert row["numerical_rank"] == 5
    # the same rank through the Python function, and from the float64 copy when told its precision
    z = spectral.standardize_columns(low)[0] if option == ["--standardize"] else spectral.convention_matrix(low, "diff-erank")[0]
    assert int(spectral.spectrum_info(z).rank) == 64
    assert int(spectral.spectrum_info(z, data_eps=float(np.finfo(np.float32).eps)).rank) == 5
    with pytest.raises(ValueError, match="data_eps must be a machine epsilon in"):
        spectral.spectrum_info(z, data_eps=1.5)
    if option != ["--standardize"]:
        assert int(spectral.spectrum_info(low, center=False).rank) == 5
        np.testing.assert_allclose(float(spectral.effective_rank(low, convention="diff-erank")), row["effective_rank"], rtol=1e-12)
