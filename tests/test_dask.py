"""Dask input to the spectral core, chunked stores and the Dask CLI route (the [scale] extra)."""

from __future__ import annotations

import json
import math
import socket
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from rankfusion import stores
from rankfusion import spectral as S
from rankfusion.cli import main
from rankfusion.cli import spectrum as spectrum_cli

da = pytest.importorskip("dask.array")
zarr = pytest.importorskip("zarr")

EPS64 = float(np.finfo(np.float64).eps)
pytestmark = pytest.mark.usefixtures("one_blas_thread")


def _features(rng, n=6000, d=48, dtype=np.float32, decay=1e-1):
    return (rng.standard_normal((n, d)) * np.geomspace(1.0, decay, d)).astype(dtype)


def _gram_band(n, d, smax):
    """Absolute agreement expected of two float64-Gram spectra that sum in different orders.

    Each eigenvalue of either Gram matrix is within ``(sqrt(n) + d) * eps * smax^2`` of the
    true sigma^2 (spectral._gram_error_radius); sigma_j then moves by that over ``2 sigma_j``.
    """
    return 2 * (math.sqrt(n) + d) * EPS64 * smax**2


def test_dask_spectrum_equals_numpy(rng):
    X = _features(rng)
    Xd = da.from_array(X, chunks=(700, X.shape[1]))  # 9 blocks: a two-level merge tree
    info_np, info_da = S.spectrum_info(X), S.spectrum_info(Xd)
    assert info_da.route == info_np.route == "gram"
    assert int(info_da.rank) == int(info_np.rank) == X.shape[1]
    s_np, s_da = info_np.sigma, info_da.sigma
    assert isinstance(s_da, np.ndarray)
    band = _gram_band(*X.shape, s_np[0]) / (2 * s_np[-1])
    np.testing.assert_allclose(s_da, s_np, rtol=0, atol=band)
    assert np.linalg.norm(s_da - s_np) / np.linalg.norm(s_np) < 1e-12
    e_np, e_da = S.effective_rank(X), S.effective_rank(Xd)
    assert isinstance(e_da, np.float64)
    assert abs(e_da - e_np) / e_np < 1e-12
    assert abs(S.effective_rank(Xd, center=True) - S.effective_rank(X, center=True)) / e_np < 1e-12
    np.testing.assert_allclose(S.singular_values(Xd), S.singular_values(X), rtol=0, atol=band)


def test_dask_column_means_in_one_pass_to_the_rounding_of_the_exact_mean(rng):
    from fractions import Fraction

    from rankfusion._backend import DaskOps

    # a constant column over uneven blocks gives its value back; centred it is no direction
    for value in (0.1, 1 / 3, 1e5 + 0.1):
        X = da.from_array(np.full((1003, 6), value), chunks=(97, 6))
        assert np.all(DaskOps.mean64(X, -2) == value)
        assert int(S.numerical_rank(X, center=True)) == 0
    # a large offset: each mean within one ulp of the exact (rational) mean
    X = rng.standard_normal((2000, 5)) + 1e4
    got = DaskOps.mean64(da.from_array(X, chunks=(333, 5)), 0)[0]
    for j in range(5):
        exact = float(sum(Fraction(v) for v in X[:, j]) / 2000)
        assert abs(got[j] - exact) <= np.spacing(exact), j
    # the data are read once: every row in one block task (dask may also call it on an empty meta)
    reads = []
    blocks = da.from_array(X, chunks=(500, 5)).map_blocks(lambda b: reads.append(b.shape[0]) or b, dtype=X.dtype)
    DaskOps.mean64(blocks, 0)
    assert sum(reads) == 2000


def test_dask_channel_informativeness_equals_numpy(rng):
    X = _features(rng, n=3000, d=24)
    Xd = da.from_array(X, chunks=(500, 8))  # column chunks are merged into one
    # Column energies: float64 sums of n exact float32 squares in another order.
    np.testing.assert_allclose(S.channel_informativeness(Xd), S.channel_informativeness(X), rtol=X.shape[0] * EPS64)
    for k in (1, 5, 24):
        a, b = S.channel_informativeness(Xd, k=k), S.channel_informativeness(X, k=k)
        # Top-k sums of eigenpairs of two Grams that differ by the rounding band; the spectrum
        # has distinct eigenvalues (scales over a decade), so the subspaces are well separated.
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-9 * b.max())
    np.testing.assert_allclose(S.channel_informativeness(Xd, center=True), S.channel_informativeness(X, center=True),
                               rtol=1e-12)


def test_dask_fallback_is_exact_for_an_ill_conditioned_input(rng):
    n, d = 4000, 30
    X = rng.standard_normal((n, 3)) @ rng.standard_normal((3, d))
    X[:, 7] += 1e-9 * rng.standard_normal(n)  # a singular value the Gram matrix cannot resolve
    Xd = da.from_array(X, chunks=(450, d))
    info_np, info_da = S.spectrum_info(X), S.spectrum_info(Xd)
    assert info_np.route == "svd" and info_da.route == "svd" and info_da.n_fallback == 1
    assert int(info_da.rank) == int(info_np.rank) == 4
    # Both are backward stable (TSQR's R vs a float64 SVD): agreement to ~eps * sigma_max.
    atol = 10 * math.sqrt(n) * EPS64 * info_np.sigma[0]
    np.testing.assert_allclose(info_da.sigma, info_np.sigma, rtol=0, atol=atol)
    assert info_da.sigma[3] == pytest.approx(info_np.sigma[3], rel=1e-5)  # the tiny one, ~5e-8 sigma_max


def test_dask_near_square_goes_to_tsqr(rng):
    X = rng.standard_normal((90, 70))
    Xd = da.from_array(X, chunks=(25, 70))  # blocks with fewer rows than columns
    info = S.spectrum_info(Xd)
    assert info.route == "svd"
    np.testing.assert_allclose(info.sigma, S.spectrum_info(X).sigma, rtol=0, atol=100 * EPS64 * info.sigma[0])


def test_dask_bad_inputs(rng):
    with pytest.raises(ValueError, match="X: a dask array must be 2-D"):
        S.effective_rank(da.zeros((4, 5, 3), chunks=2))
    with pytest.raises(ValueError, match="must be tall"):
        S.effective_rank(da.zeros((3, 10), chunks=2))
    X = _features(rng, n=200, d=8).astype(np.float64)
    X[150, 2] = np.nan
    X[170, 0] = np.inf
    # located by row and column, as for an in-memory array (one more pass, on the error path only)
    with pytest.raises(ValueError, match=r"X contains NaN or Inf .*; the first, nan, at row 150, column 2\)"):
        S.effective_rank(da.from_array(X, chunks=(50, 8)))
    X[150, 2] = 0.0
    with pytest.raises(ValueError, match=r"the first, inf, at row 170, column 0\)"):
        S.effective_rank(da.from_array(X, chunks=(50, 8)))
    with pytest.raises(TypeError, match="must be a real numeric array"):
        S.effective_rank(da.from_array(np.array([["a", "b"]] * 4)))
    with pytest.raises(TypeError, match="A and B must both be"):
        S.principal_angles(da.ones((4, 2)), np.ones((4, 2)))
    with pytest.raises(TypeError, match="before and after must both be"):
        S.rank_gain(da.ones((8, 2), chunks=4), np.ones((8, 2)))


def test_localcluster_zarr_spectrum_equals_in_memory(tmp_path, rng):
    distributed = pytest.importorskip("distributed")
    X = _features(rng, n=5000, d=32)
    z = zarr.create_array(tmp_path / "f.zarr", shape=X.shape, chunks=(600, 32), dtype="f4")
    z[:] = X
    label, x = stores.open_store(tmp_path / "f.zarr")
    assert label == "f" and x.chunks[0][0] == 600
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                                  dashboard_address=None) as cluster, distributed.Client(cluster):
        info = S.spectrum_info(x)
    ref = S.spectrum_info(X)
    assert np.linalg.norm(info.sigma - ref.sigma) / np.linalg.norm(ref.sigma) < 1e-12
    e, e_ref = S.effective_rank(info.sigma), S.effective_rank(ref.sigma)
    assert abs(e - e_ref) / e_ref < 1e-12


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------


def _run(*args, env=None):
    return CliRunner().invoke(main, ["spectrum", *map(str, args)], env=env)


def test_cli_spectrum_of_a_zarr_store_and_an_hdf5_file(tmp_path, rng, monkeypatch):
    X = _features(rng, n=3000, d=16)
    z = zarr.create_array(tmp_path / "feat.zarr", shape=X.shape, chunks=(400, 16), dtype="f4")
    z[:] = X
    ref = S.singular_values(X)
    no_env = {"RANKFUSION_SCHEDULER": "", "DASK_SCHEDULER_ADDRESS": ""}
    res = _run(tmp_path / "feat.zarr", "--json", env=no_env)
    assert res.exit_code == 0, res.output
    (arr,) = json.loads(res.output)["arrays"]
    # A small store without a scheduler is read into memory: the in-memory result exactly.
    assert arr["key"] == "feat" and arr["shape"] == [3000, 16] and arr["method"] == "in memory (gram)"
    assert arr["effective_rank"] == float(S.effective_rank(ref))
    # Above the in-memory budget the store goes through dask.
    monkeypatch.setattr(spectrum_cli, "IN_MEMORY_MAX_BYTES", 0)
    res = _run(tmp_path / "feat.zarr", "--json", env=no_env)
    assert res.exit_code == 0, res.output
    (arr,) = json.loads(res.output)["arrays"]
    assert arr["method"] == "dask (gram)"
    assert arr["numerical_rank"] == ref.size
    assert arr["effective_rank"] == pytest.approx(float(S.effective_rank(ref)), rel=1e-12)
    np.testing.assert_allclose(arr["top_singular_values"], ref[:5], rtol=1e-12)
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "feat.h5", "w") as f:
        f.create_dataset("group/rgb", data=X, chunks=(500, 16))
        f.create_dataset("labels", data=np.arange(3))
    res = _run(tmp_path / "feat.h5", "--key", "group/rgb")
    assert res.exit_code == 0, res.output
    assert f"{float(S.effective_rank(ref)):.4f}" in res.output


def test_cli_a_nan_in_a_store_read_through_dask_is_named_by_row_and_column(tmp_path, monkeypatch):
    X = np.ones((3000, 16), dtype=np.float32)
    X[2345, 7] = np.nan
    z = zarr.create_array(tmp_path / "bad.zarr", shape=X.shape, chunks=(500, 16), dtype="f4")
    z[:] = X
    monkeypatch.setattr(spectrum_cli, "IN_MEMORY_MAX_BYTES", 0)
    res = _run(tmp_path / "bad.zarr", env={"RANKFUSION_SCHEDULER": "", "DASK_SCHEDULER_ADDRESS": ""})
    assert res.exit_code == 2
    assert res.output.strip().splitlines() == [
        f"Error: array 'bad' in {str(tmp_path / 'bad.zarr')!r}: X contains NaN or Inf values (array of shape "
        "(3000, 16) and dtype float32; the first, nan, at row 2345, column 7)"]


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_store_bad_inputs(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    zarr.create_array(tmp_path / "vec.zarr", shape=(10,), dtype="f4")[:] = 1.0
    zarr.create_array(tmp_path / "txt.zarr", shape=(4, 2), dtype="bool")
    good = zarr.create_array(tmp_path / "ok.zarr", shape=(40, 3), dtype="f4")
    good[:] = 1.0
    (tmp_path / "plain").mkdir()
    np.savez(tmp_path / "f.npz", a=np.ones((4, 2)))
    monkeypatch.setattr(stores, "CONNECT_TIMEOUT_S", 0.5)
    cases = [
        ((tmp_path / "vec.zarr",), "has shape (10,)"),
        ((tmp_path / "txt.zarr",), "need a 2-D numeric array"),
        ((tmp_path / "missing.zarr",), "does not exist"),
        ((tmp_path / "plain",), "is not a zarr store (it has no zarr.json, .zarray, .zgroup)"),
        ((tmp_path / "ok.zarr", "--key", "nope"), "has no array 'nope'"),
        ((tmp_path / "ok.zarr", "--scheduler", f"tcp://127.0.0.1:{_free_port()}"), "cannot reach the Dask scheduler"),
        ((tmp_path / "f.npz", "--scheduler", "tcp://127.0.0.1:1"), "--scheduler applies to zarr/HDF5 stores"),
        # it was ignored silently for stores and .npz files
        ((tmp_path / "ok.zarr", "--chunk-rows", "10"), "--chunk-rows applies to .npy files"),
        ((tmp_path / "f.npz", "--chunk-rows", "10"), "--chunk-rows applies to .npy files"),
    ]
    for args, msg in cases:
        res = _run(*args)
        assert res.exit_code == 2, (args, res.output)
        lines = res.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error: ") and msg in lines[0], (args, res.output)
    # The environment variable is honoured like --scheduler, and named when its address fails
    res = _run(tmp_path / "ok.zarr", env={"RANKFUSION_SCHEDULER": f"tcp://127.0.0.1:{_free_port()}"})
    line = _one_error_line(res)
    assert "cannot reach the Dask scheduler" in line and line.endswith("(the address comes from $RANKFUSION_SCHEDULER)")


def test_cli_names_the_missing_extra(tmp_path, monkeypatch):
    zarr.create_array(tmp_path / "ok.zarr", shape=(40, 3), dtype="f4")[:] = 1.0
    for mod in ("dask", "dask.array"):
        monkeypatch.setitem(sys.modules, mod, None)  # import dask -> ImportError, as when absent
    res = _run(tmp_path / "ok.zarr")
    assert res.exit_code == 2
    assert res.output.strip() == "Error: dask is not installed; it comes with the [scale] extra: pip install 'rankfusion[scale]'"
    # a folder that is no store is named as such: installing the extra would not help
    (tmp_path / "plain").mkdir()
    res = _run(tmp_path / "plain")
    assert res.exit_code == 2 and "is not a zarr store" in res.output and "extra" not in res.output


def _one_error_line(res):
    lines = res.output.strip().splitlines()
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    return lines[0]


def test_cli_every_array_of_an_hdf5_file_is_seen(tmp_path, rng):
    h5py = pytest.importorskip("h5py")
    a, b = _features(rng, n=300, d=8), _features(rng, n=200, d=6, decay=1e-3)
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f.create_dataset("a", data=a)
        f.create_dataset("b", data=b)
        f.create_dataset("grp/c", data=a[:, :4])
    line = _one_error_line(_run(tmp_path / "two.h5"))
    assert "holds 3 arrays ['a', 'b', 'grp/c']; choose one with --key" in line
    for key, x in (("b", b), ("grp/c", a[:, :4])):
        res = _run(tmp_path / "two.h5", "--key", key, "--json")
        assert res.exit_code == 0, res.output
        (arr,) = json.loads(res.output)["arrays"]
        assert arr["key"] == key and arr["shape"] == list(x.shape)
        assert arr["effective_rank"] == pytest.approx(float(S.effective_rank(x)), rel=1e-12)


def test_an_hdf5_file_is_not_held_open_by_open_store(tmp_path, rng):
    # the h5py.File was closed only when its last reference went: a refused key's traceback (or
    # the lazy array) kept it open, and HDF5 refuses to rewrite a file that is open
    h5py = pytest.importorskip("h5py")
    x = _features(rng, n=1000, d=5)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(64, 5))
        f.create_dataset("v", data=x[:, 0])
    with pytest.raises(stores.InputError, match="need a 2-D numeric array") as refused:
        stores.open_store(path, "v")
    label, arr = stores.open_store(path, "x")
    assert refused.value.__traceback__ is not None and label == "x"
    assert arr.numblocks == (1, 1)  # 16 stored chunks of 64 rows in one block: one opening of the file
    np.testing.assert_array_equal(arr.compute(), x)  # read, and the file closed again
    with h5py.File(path, "w") as f:  # raised OSError ("already open") while the file was held
        f.create_dataset("x", data=2 * x)
    np.testing.assert_array_equal(arr.compute(), 2 * x)  # a lazy array reads the file as it is now


def test_cli_nested_zarr_keys_are_reachable(tmp_path, rng):
    x, y = _features(rng, n=120, d=5), _features(rng, n=90, d=3)
    root = zarr.open_group(tmp_path / "g.zarr", mode="w")
    root.create_group("sub").create_array("x", shape=x.shape, dtype="f4")[:] = x
    root.create_array("y", shape=y.shape, dtype="f4")[:] = y
    assert "holds 2 arrays ['sub/x', 'y']" in _one_error_line(_run(tmp_path / "g.zarr"))
    res = _run(tmp_path / "g.zarr", "--key", "sub/x", "--json")
    assert res.exit_code == 0, res.output
    (arr,) = json.loads(res.output)["arrays"]
    assert arr["key"] == "sub/x" and arr["shape"] == [120, 5]
    assert arr["effective_rank"] == pytest.approx(float(S.effective_rank(x)), rel=1e-12)


def test_cli_a_one_array_store_answers_to_the_name_it_is_labelled_with(tmp_path, rng):
    # the table labels it "features" (the store's name); --key features said "it has ['']"
    x = _features(rng, n=120, d=5)
    zarr.create_array(tmp_path / "features.zarr", shape=x.shape, dtype="f4")[:] = x
    plain = _run(tmp_path / "features.zarr", "--json")
    named = _run(tmp_path / "features.zarr", "--key", "features", "--json")
    assert plain.exit_code == named.exit_code == 0, named.output
    assert json.loads(named.output)["arrays"] == json.loads(plain.output)["arrays"]
    assert json.loads(named.output)["arrays"][0]["key"] == "features"
    assert "has no array 'other'; it has ['features']" in _one_error_line(_run(tmp_path / "features.zarr", "--key", "other"))


@pytest.mark.parametrize("through_dask", [False, True])
def test_cli_a_damaged_zarr_chunk_is_one_error_line(tmp_path, monkeypatch, through_dask):
    z = zarr.create_array(tmp_path / "bad.zarr", shape=(40, 3), chunks=(10, 3), dtype="f4")
    z[:] = np.arange(120, dtype="f4").reshape(40, 3)
    (chunk,) = [p for p in (tmp_path / "bad.zarr").rglob("*") if p.is_file() and p.parts[-2:] == ("1", "0")]
    chunk.write_bytes(b"not a zstd frame" * 4)
    if through_dask:
        monkeypatch.setattr(spectrum_cli, "IN_MEMORY_MAX_BYTES", 0)
    line = _one_error_line(_run(tmp_path / "bad.zarr", env={"RANKFUSION_SCHEDULER": "", "DASK_SCHEDULER_ADDRESS": ""}))
    assert f"in store {str(tmp_path / 'bad.zarr')!r}" in line and "rows 10..20" in line


def _serve_once(reply, seconds=15.0):
    """A throwaway server on 127.0.0.1 that answers its connections with ``reply(conn)`` and stops by itself."""
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(4)
    srv.settimeout(seconds)

    def serve():
        with srv:
            try:
                while True:
                    conn, _ = srv.accept()
                    with conn:
                        conn.settimeout(seconds)
                        try:
                            reply(conn)
                        except OSError:
                            pass
            except OSError:  # the accept timed out: stop
                pass

    threading.Thread(target=serve, daemon=True).start()
    return f"tcp://127.0.0.1:{srv.getsockname()[1]}"


def _junk(conn):
    conn.sendall(b"\xff" * 64 + b"not a dask frame" * 64)


def _http(conn):
    # an HTTP server waits for a request line ending in CRLF, which a Dask client never sends
    data = b""
    while b"\r\n" not in data:
        chunk = conn.recv(4096)
        if not chunk:
            return
        data += chunk
    conn.sendall(b"HTTP/1.0 400 Bad Request\r\n\r\n")


@pytest.mark.parametrize("reply,msg", [(_junk, "did not answer as a Dask scheduler"),
                                       (_http, "cannot reach the Dask scheduler")])
def test_cli_a_server_that_is_not_a_scheduler_is_one_error_line(tmp_path, monkeypatch, reply, msg):
    import time

    pytest.importorskip("distributed")
    zarr.create_array(tmp_path / "ok.zarr", shape=(40, 3), dtype="f4")[:] = 1.0
    monkeypatch.setattr(stores, "CONNECT_TIMEOUT_S", 2)
    address = _serve_once(reply)
    start = time.monotonic()
    line = _one_error_line(_run(tmp_path / "ok.zarr", "--scheduler", address))
    assert msg in line and address in line
    assert time.monotonic() - start < 10  # bounded by the handshake timeout, with room for a loaded machine


def test_cli_a_real_scheduler_passes_the_handshake(tmp_path, rng):
    distributed = pytest.importorskip("distributed")
    X = _features(rng, n=400, d=6)
    zarr.create_array(tmp_path / "ok.zarr", shape=X.shape, chunks=(100, 6), dtype="f4")[:] = X
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp",
                                  dashboard_address=None) as cluster:
        res = _run(tmp_path / "ok.zarr", "--json", "--scheduler", cluster.scheduler_address)
    assert res.exit_code == 0, res.output
    (arr,) = json.loads(res.stdout)["arrays"]
    assert arr["method"] == "dask (gram)"
    assert arr["effective_rank"] == pytest.approx(float(S.effective_rank(X)), rel=1e-12)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_a_zarr_store_with_missing_chunks_is_refused_not_read_as_fill_values(tmp_path, rng, zarr_format):
    # A lost chunk (rows 2000..2999) once read as 1,000 rows of the fill value: zeros with no
    # word of it (erank 14.056 for 14.074), or NaN blamed on the data.
    import shutil

    X = _features(rng, n=4000, d=16, dtype=np.float64) + 1.0
    path = tmp_path / "miss.zarr"
    fill = 0.0 if zarr_format == 3 else math.nan
    zarr.create_array(path, shape=X.shape, chunks=(1000, 16), dtype="f8", zarr_format=zarr_format,
                      fill_value=fill)[:] = X
    assert stores.open_store(path)[1].shape == X.shape  # every chunk there: read as before
    chunk = path / "c" / "2" if zarr_format == 3 else path / "2.0"
    shutil.rmtree(chunk) if chunk.is_dir() else chunk.unlink()
    want = (f"array 'miss.zarr' in store {str(path)!r}: 1 of 4 chunks are missing and would read as the fill value "
            f"{fill!r} (zarr also leaves out a chunk written entirely of the fill value when write_empty_chunks=False, "
            "zarr 3's default: if so, rewrite the store with write_empty_chunks=True)")
    with pytest.raises(stores.InputError) as err:
        stores.open_store(path)
    assert str(err.value) == want
    line = _one_error_line(_run(path, env={"RANKFUSION_SCHEDULER": "", "DASK_SCHEDULER_ADDRESS": ""}))
    assert line == f"Error: {want}"


def test_a_zarr_chunk_of_fill_values_is_stored_only_with_write_empty_chunks(tmp_path, rng):
    # zarr 3 leaves out an all-fill chunk by default: refused, as a lost one; rewritten with
    # write_empty_chunks=True every chunk is stored and the store is read.
    X = _features(rng, n=400, d=6)
    X[100:200] = 0.0
    for name, config in (("default.zarr", None), ("all.zarr", {"write_empty_chunks": True})):
        zarr.create_array(tmp_path / name, shape=X.shape, chunks=(100, 6), dtype="f4", config=config)[:] = X
    with pytest.raises(stores.InputError, match=r"1 of 4 chunks are missing .* write_empty_chunks=True\)$"):
        stores.open_store(tmp_path / "default.zarr")
    label, x = stores.open_store(tmp_path / "all.zarr")
    assert float(S.effective_rank(x)) == pytest.approx(float(S.effective_rank(X)), rel=1e-12)


def test_open_store_takes_a_str_path(tmp_path, rng):
    z = zarr.create_array(tmp_path / "g.zarr", shape=(40, 6), chunks=(10, 6), dtype="f4")
    z[:] = rng.standard_normal((40, 6)).astype(np.float32)
    label, x = stores.open_store(str(tmp_path / "g.zarr"))
    assert label == "g" and x.shape == (40, 6)


def test_each_opening_of_a_store_gets_its_own_graph_name(tmp_path, rng):
    # dask keys blocks by the graph name; it held id() of the array, which CPython reuses once the
    # array is freed (20 openings gave 14 names), so a store rewritten and reopened could be
    # served blocks a scheduler still held for the old contents
    import gc

    z = zarr.create_array(tmp_path / "n.zarr", shape=(8, 3), chunks=(4, 3), dtype="f8")
    z[:] = rng.standard_normal((8, 3))
    names = []
    for _ in range(20):
        names.append(stores.open_store(tmp_path / "n.zarr")[1].name)
        gc.collect()
    assert len(set(names)) == 20


def test_cli_diff_erank_of_a_store_read_through_dask_equals_in_memory(tmp_path, rng, monkeypatch):
    # it used to be refused ("needs array ... in memory") though the library computes it lazily
    X = _features(rng, n=3000, d=16) + 2.0
    zarr.create_array(tmp_path / "feat.zarr", shape=X.shape, chunks=(400, 16), dtype="f4")[:] = X
    no_env = {"RANKFUSION_SCHEDULER": "", "DASK_SCHEDULER_ADDRESS": ""}
    monkeypatch.setattr(spectrum_cli, "IN_MEMORY_MAX_BYTES", 0)
    res = _run(tmp_path / "feat.zarr", "--json", "--convention", "diff-erank", env=no_env)
    assert res.exit_code == 0, res.output
    (arr,) = json.loads(res.output)["arrays"]
    assert arr["method"] == "dask (gram)"
    want = float(S.effective_rank(X.astype(np.float64), convention="diff-erank"))
    # a well-conditioned float64 Gram matrix summed in another order: agreement far inside 1e-10
    assert arr["effective_rank"] == pytest.approx(want, rel=1e-10)
    # --standardize still needs the array in memory: one line naming the array and the store
    line = _one_error_line(_run(tmp_path / "feat.zarr", "--standardize", env=no_env))
    assert line.startswith("Error: --standardize needs array 'feat'") and "feat.zarr" in line
    bad = X.copy()
    bad[2345, 7] = np.nan
    zarr.create_array(tmp_path / "bad.zarr", shape=X.shape, chunks=(400, 16), dtype="f4")[:] = bad
    line = _one_error_line(_run(tmp_path / "bad.zarr", "--convention", "diff-erank", env=no_env))
    assert "row 2345, column 7" in line and "bad" in line


@pytest.mark.parametrize("var", ["RANKFUSION_SCHEDULER", "DASK_SCHEDULER_ADDRESS"])
def test_cli_a_bad_scheduler_address_names_the_variable_it_came_from(tmp_path, var):
    pytest.importorskip("distributed")
    zarr.create_array(tmp_path / "ok.zarr", shape=(40, 3), dtype="f4")[:] = 1.0
    env = {"RANKFUSION_SCHEDULER": "", "DASK_SCHEDULER_ADDRESS": "", var: "notanaddress"}
    line = _one_error_line(_run(tmp_path / "ok.zarr", env=env))
    assert line.startswith(f"Error: ${var} 'notanaddress' is not a Dask scheduler address")
    line = _one_error_line(_run(tmp_path / "ok.zarr", "--scheduler", "notanaddress", env=env))
    assert line.startswith("Error: --scheduler 'notanaddress' is not a Dask scheduler address")
