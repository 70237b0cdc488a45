"""Shared fixtures: ``backend`` runs a test on every backend; GPU cases are marked ``gpu`` and skip
with a reason when CuPy or a CUDA device is missing."""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend, unavailable_reason
from backends.numpy_backend import NumpyBackend

CUPY_MISSING = unavailable_reason("cupy")
requires_gpu = pytest.mark.skipif(CUPY_MISSING is not None, reason=f"no GPU backend: {CUPY_MISSING}")
BACKENDS = [
    pytest.param("numpy", id="numpy"),
    pytest.param("numpy-plain", id="numpy-plain"),  # NumPy's kernels only, as without the compiled ones
    pytest.param("cupy", id="cupy", marks=[pytest.mark.gpu, requires_gpu]),
]


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each available backend in turn (CuPy cases skip without a GPU)."""
    return NumpyBackend(kernels=None) if request.param == "numpy-plain" else get_backend(request.param)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
