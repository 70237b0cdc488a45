"""Fixtures of the benchmark suite: every available backend, with GPU cases marked and skipped
with the reason where CuPy or a device is missing, and the CPU backend also without its compiled
kernels ("numpy-plain") and with them but without the BLAS gemm ("numpy-nogemm"), to compare
them in one run. Timed functions synchronise the device."""

from __future__ import annotations

import pytest

from backends import get_backend, unavailable_reason
from backends.numpy_backend import COMPILED, NumpyBackend

GPU_MISSING = unavailable_reason("cupy")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """The suite's benchmark defaults (kept out of addopts, so that plain pytest runs without the
    plugin); options given on the command line win."""
    if not config.pluginmanager.hasplugin("benchmark"):
        return
    option, given = config.option, " ".join(config.invocation_params.args)
    if "--benchmark-warmup" not in given:
        option.benchmark_warmup = True
    if "--benchmark-min-rounds" not in given:
        option.benchmark_min_rounds = 7
    if "--benchmark-columns" not in given:
        option.benchmark_columns = ["min", "median", "max", "iqr", "rounds"]


@pytest.fixture(
    params=[
        pytest.param("numpy", id="numpy"),
        pytest.param("numpy-nogemm", id="numpy-nogemm"),
        pytest.param("numpy-plain", id="numpy-plain"),
        pytest.param(
            "cupy",
            id="cupy",
            marks=[
                pytest.mark.gpu,
                pytest.mark.skipif(GPU_MISSING is not None, reason=f"no GPU backend: {GPU_MISSING}"),
            ],
        ),
    ]
)
def backend(request):
    if request.param == "numpy-plain":
        return NumpyBackend(None)
    if request.param == "numpy-nogemm":
        return NumpyBackend(COMPILED, None)
    return get_backend(request.param)


def synced(backend, fn):
    """fn followed by a device synchronisation, so a GPU timing measures the work, not the launch."""

    def run():
        result = fn()
        backend.synchronize()
        return result

    return run
