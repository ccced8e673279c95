"""Shared fixtures: every backend through one fixture (numpy, torch-cpu, cuda when present)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from hypothesis import HealthCheck, settings

# Hypothesis profiles: "default" (CI and `make test`) and "long" (the serious counterexample
# searches), selected with RANKFUSION_HYPOTHESIS_PROFILE=long.
settings.register_profile(
    "default", max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=20_000, deadline=None, suppress_health_check=list(HealthCheck)
)
settings.load_profile(os.environ.get("RANKFUSION_HYPOTHESIS_PROFILE", "default"))


def _backends():
    params = [pytest.param("numpy", id="numpy")]
    try:
        import torch
    except ImportError:  # torch is optional for the numeric core
        return params
    params.append(pytest.param("torch-cpu", id="torch-cpu"))
    cuda = torch.cuda.is_available()
    params.append(
        pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not cuda, reason="no CUDA device"))
    )
    return params


class Backend:
    """Converts NumPy arrays to the backend under test and back."""

    def __init__(self, name: str):
        self.name = name
        if name != "numpy":
            import torch

            self.torch = torch
            self.device = torch.device("cuda" if name == "cuda" else "cpu")

    def asarray(self, x):
        if self.name == "numpy":
            return np.asarray(x)
        return self.torch.as_tensor(np.asarray(x), device=self.device)

    def to_numpy(self, x):
        if self.name == "numpy":
            return np.asarray(x)
        if isinstance(x, self.torch.Tensor):
            return x.detach().cpu().numpy()
        return np.asarray(x)

    def check_type(self, x):
        """Assert ``x`` came back on the backend's own type and device."""
        if self.name == "numpy":
            assert isinstance(x, (np.ndarray, np.generic)), type(x)
        else:
            assert isinstance(x, self.torch.Tensor), type(x)
            assert x.device.type == self.device.type, x.device


@pytest.fixture(params=_backends())
def backend(request):
    return Backend(request.param)


@pytest.fixture(scope="module")
def one_blas_thread():
    """One BLAS/torch thread while a module's tests run (``pytest.mark.usefixtures``).

    The test machine is shared by several processes; multi-threaded BLAS calls on small
    matrices then spin-wait for descheduled threads and run 10-100x slower than on one thread.
    """
    import contextlib

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: only a speed-up
        threadpool_limits = None
    try:
        import torch
    except ImportError:
        torch = None
    old = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(1) if threadpool_limits else contextlib.nullcontext():
        yield
    if torch is not None:
        torch.set_num_threads(old)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
