"""`rankfusion spectrum --convention / --standardize`: the JSON records both, errors are one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion import spectral
from rankfusion.cli import main
from rankfusion.files import save_npz

pytestmark = pytest.mark.usefixtures("one_blas_thread")


def run(*args):
    return CliRunner().invoke(main, ["spectrum", *map(str, args)])


@pytest.fixture
def scaled(tmp_path):
    """Columns on wildly different scales, one of them constant."""
    rng = np.random.default_rng(11)
    x = rng.standard_normal((120, 6)) * [1e4, 1.0, 0.1, 1.0, 3.0, 1.0] + [0.0, 0.0, 0.0, 50.0, 0.0, 0.0]
    x[:, 5] = 7.25
    path = tmp_path / "scaled.npz"
    save_npz(path, {"view": x}, {"run": "t"})
    return path, x


@pytest.mark.parametrize("convention", list(spectral.CONVENTIONS))
def test_json_records_the_convention_and_its_value(scaled, convention):
    path, x = scaled
    res = run(path, "--json", "--convention", convention)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["convention"] == convention and out["standardize"] is False
    (entry,) = out["arrays"]
    assert entry["convention"] == convention
    assert entry["center"] is spectral.CONVENTIONS[convention].center
    want = float(spectral.effective_rank(x, convention=convention))
    assert entry["effective_rank"] == pytest.approx(want, rel=1e-12)


def test_standardize_records_constant_columns_and_lifts_the_dominated_rank(scaled):
    path, x = scaled
    raw = json.loads(run(path, "--json").stdout)["arrays"][0]
    res = run(path, "--json", "--standardize")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    entry = out["arrays"][0]
    assert out["standardize"] is True and entry["standardize"] is True
    assert entry["constant_columns"] == [5]
    z, constant = spectral.standardize_columns(x)
    assert entry["effective_rank"] == pytest.approx(float(spectral.effective_rank(z)), rel=1e-12)
    assert entry["numerical_rank"] == 5  # the constant column is zero
    # one column at 1e4 dominates the raw spectrum; standardised, the five live columns count
    assert raw["effective_rank"] < 1.1 and entry["effective_rank"] > 4.0
    table = run(path, "--standardize").output
    assert "standardized columns" in table and "constant columns set to zero by --standardize: [5]" in table


def test_center_with_another_convention_is_one_line(scaled):
    path, _ = scaled
    res = run(path, "--center", "--convention", "monai")
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        "Error: --center applies to --convention paper; 'monai' fixes its own centring"]


def test_streamed_diff_erank_is_refused_in_one_line(tmp_path):
    x = np.random.default_rng(0).standard_normal((40, 4))
    path = tmp_path / "big.npy"
    np.save(path, x)
    res = run(path, "--chunk-rows", "10", "--convention", "diff-erank")
    assert res.exit_code == 2
    (line,) = res.output.strip().splitlines()
    assert line.startswith("Error: --convention diff-erank needs array") and "--chunk-rows 40" in line
    ok = run(path, "--chunk-rows", "40", "--convention", "diff-erank", "--json")
    assert ok.exit_code == 0, ok.output
    got = json.loads(ok.stdout)["arrays"][0]["effective_rank"]
    assert got == pytest.approx(float(spectral.effective_rank(x, convention="diff-erank")), rel=1e-12)


def test_streamed_rankme_pads_the_spectrum(tmp_path):
    rng = np.random.default_rng(1)
    # float32 rank 3 of min(N, D) = 8: its rounding noise sits far below the Gram error band
    x = (rng.standard_normal((60, 3)) @ rng.standard_normal((3, 8))).astype(np.float32)
    path = tmp_path / "low.npy"
    np.save(path, x)
    res = run(path, "--chunk-rows", "20", "--convention", "rankme", "--json")
    assert res.exit_code == 0, res.output
    entry = json.loads(res.stdout)["arrays"][0]
    assert entry["method"] == "streamed" and entry["numerical_rank"] == 3
    # Gram-accurate streaming: singular values to ~1e-7 relative, far below the eps terms
    want = float(spectral.effective_rank(x, convention="rankme"))
    assert entry["effective_rank"] == pytest.approx(want, rel=1e-9)


def test_zarr_store_records_convention_and_standardize(tmp_path):
    zarr = pytest.importorskip("zarr")
    pytest.importorskip("dask")
    x = np.random.default_rng(2).standard_normal((300, 8)) * np.r_[1.0, 1e3, np.ones(6)]
    z = zarr.open_array(str(tmp_path / "a.zarr"), mode="w", shape=x.shape, chunks=(100, 8), dtype="f8")
    z[:] = x
    for convention in ("monai", "diff-erank"):
        res = run(tmp_path / "a.zarr", "--json", "--convention", convention)
        assert res.exit_code == 0, res.output
        entry = json.loads(res.stdout)["arrays"][0]
        assert entry["convention"] == convention and entry["center"] is True
        want = float(spectral.effective_rank(x, convention=convention))
        assert entry["effective_rank"] == pytest.approx(want, rel=1e-12)
    res = run(tmp_path / "a.zarr", "--json", "--standardize")
    entry = json.loads(res.stdout)["arrays"][0]
    assert entry["standardize"] is True and entry["constant_columns"] == []
    zs, _ = spectral.standardize_columns(x)
    assert entry["effective_rank"] == pytest.approx(float(spectral.effective_rank(zs)), rel=1e-12)
