"""Shared fixtures: ``backend`` runs a test on every backend configuration: the three CPU ones
(compiled kernels with the BLAS gemm, compiled without it, NumPy only) and CuPy. A configuration
that this machine cannot run skips with the reason (CuPy without a GPU; the compiled ones where
the C extension was not built, which NNX_REQUIRE_COMPILED=1 turns into an error).

Tolerances for comparing a backend with a reference are stated once, in ``TOLERANCE``.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from backends import get_backend, unavailable_reason
from backends.blas import find_gemm
from backends.compiled import UNAVAILABLE
from backends.numpy_backend import COMPILED, NumpyBackend
from tests.stand_in import STAND_IN  # (under NNX_FAKE_GPU=1: the CuPy stand-in, before any import of cupy)

if os.environ.get("NNX_REQUIRE_COMPILED") == "1" and COMPILED is None:
    raise RuntimeError(f"NNX_REQUIRE_COMPILED=1 but the compiled CPU kernels cannot be used: {UNAVAILABLE}")

CUPY_MISSING = unavailable_reason("cupy")
requires_gpu = pytest.mark.skipif(CUPY_MISSING is not None, reason=f"no GPU backend: {CUPY_MISSING}")
requires_compiled = pytest.mark.skipif(COMPILED is None, reason="the compiled CPU kernels were not built")
GEMM = find_gemm()
requires_gemm = pytest.mark.skipif(GEMM is None, reason="no BLAS gemm found in this process")

# Relative tolerance (and absolute, scaled to values of order 1) of a kernel against its float64
# reference, per dtype. float32: a kernel's sums of K terms in any order are within γ_K ≈ K·u of
# the exact sum of magnitudes (u = 2**-24 = 6e-8; Higham, eq. 3.5), and the tests' kernels sum at
# most ~100 terms of order-1 operands: 1e-5 ≈ 168·u. float64: the same with u = 1.1e-16, 1e-12.
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def make_backend(config: str):
    """The backend of a configuration name (see BACKENDS)."""
    if config == "numpy":
        return NumpyBackend(COMPILED, GEMM)
    if config == "numpy-nogemm":
        return NumpyBackend(COMPILED, None)
    if config == "numpy-plain":
        return NumpyBackend(None)
    return get_backend(config)


CPU_CONFIGS = [
    pytest.param("numpy", id="numpy", marks=[requires_compiled, requires_gemm]),
    pytest.param("numpy-nogemm", id="numpy-nogemm", marks=requires_compiled),  # conda, Debian, macOS arm64
    pytest.param("numpy-plain", id="numpy-plain"),  # NumPy's kernels only, as without a C compiler
]
BACKENDS = [*CPU_CONFIGS, pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, requires_gpu])]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each backend configuration in turn (those this machine cannot run skip with the reason)."""
    return make_backend(request.param)


@pytest.fixture(params=CPU_CONFIGS)
def cpu_backend(request):
    """Each CPU backend configuration in turn."""
    return make_backend(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


_GPU_OUTCOMES: dict[str, int] = {}


def pytest_runtest_logreport(report):
    """Count the outcomes of GPU-marked tests (their call phase, or the setup that skipped them)."""
    if "gpu" in report.keywords and (report.when == "call" or report.outcome == "skipped"):
        _GPU_OUTCOMES[report.outcome] = _GPU_OUTCOMES.get(report.outcome, 0) + 1


def pytest_terminal_summary(terminalreporter):
    if _GPU_OUTCOMES:
        where = "on the CuPy stand-in" if STAND_IN else "on this machine"
        counts = ", ".join(f"{n} {outcome}" for outcome, n in sorted(_GPU_OUTCOMES.items()))
        terminalreporter.write_line(f"GPU-marked tests {where}: {counts}")


def pytest_sessionfinish(session, exitstatus):
    """Under the stand-in, a GPU test that skipped for want of a GPU is a failure: the stand-in is one."""
    if STAND_IN and CUPY_MISSING is not None and exitstatus == 0:
        session.exitstatus = 1
        print(f"\nNNX_FAKE_GPU=1, but the CuPy stand-in could not be used: {CUPY_MISSING}")
