"""Thread limits: NumPy's BLAS pool and torch's intra-op pool (rankfusion.threads)."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info, threadpool_limits

from rankfusion import threads
from rankfusion.monitor import RankMonitor

torch = pytest.importorskip("torch")


def _blas() -> set[int]:
    return {d["num_threads"] for d in threadpool_info() if d["user_api"] == "blas"}


def test_blas_threads_limits_numpy_blas_and_restores_it():
    assert _blas(), "NumPy's BLAS reports no thread pool"
    with threadpool_limits(2, user_api="blas"):  # a known outer setting, on any machine
        assert _blas() == {2}
        with threads.blas_threads(1):
            assert _blas() == {1}
        assert _blas() == {2}


def test_limited_threads_sets_torch_and_blas_and_restores_both():
    old = torch.get_num_threads()
    with threadpool_limits(2, user_api="blas"):
        with threads.limited_threads(1):
            assert torch.get_num_threads() == 1 and _blas() == {1}
        assert _blas() == {2}
    assert torch.get_num_threads() == old


def test_set_threads_keeps_both_and_checks_its_argument():
    old = torch.get_num_threads()
    with threadpool_limits(2, user_api="blas"):
        try:
            threads.set_threads(1)
            assert torch.get_num_threads() == 1 and _blas() == {1}
            threads.set_threads(None)  # leaves both as they are
            assert torch.get_num_threads() == 1 and _blas() == {1}
        finally:
            torch.set_num_threads(old)
    with pytest.raises(ValueError, match="threads"):
        threads.set_threads(0)
    with pytest.raises(ValueError, match="threads"):
        with threads.blas_threads(0):
            pass


def test_monitor_reads_its_spectra_with_one_blas_thread(monkeypatch):
    seen = []
    original = RankMonitor._summary

    def spy(self, w, step):
        seen.append(_blas())
        return original(self, w, step)

    monkeypatch.setattr(RankMonitor, "_summary", spy)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU())
    with threadpool_limits(2, user_api="blas"):
        with RankMonitor(model, {"lin": model[0]}, every=None) as mon:
            model(torch.from_numpy(np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)))
            rows = mon.record()
        assert _blas() == {2}
    assert [r["name"] for r in rows] == ["lin"] and seen == [{1}]
