"""Backend selection and transfer (every kernel against its reference: tests/test_kernels.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import backends
from backends import BackendUnavailable, get_backend
from tests.conftest import CUPY_MISSING


def test_unknown_backend_name_is_rejected_with_the_choices():
    with pytest.raises(ValueError, match=r"backend must be one of 'numpy', 'cupy', 'auto'; got 'tpu'"):
        get_backend("tpu")


@pytest.mark.skipif(CUPY_MISSING is None, reason="CuPy and a GPU are present")
def test_cupy_without_a_gpu_stack_raises_backend_unavailable_saying_what_is_missing():
    with pytest.raises(BackendUnavailable, match="cupy"):
        get_backend("cupy")
    assert get_backend("auto").name == "numpy"
    assert backends.available_backends() == ["numpy"]
    assert "cupy" in backends.unavailable_reason("cupy") and backends.unavailable_reason("numpy") is None


def test_nnx_backend_environment_variable_sets_the_default(monkeypatch):
    monkeypatch.setenv("NNX_BACKEND", "numpy")
    assert get_backend().name == "numpy"
    monkeypatch.setenv("NNX_BACKEND", "bogus")
    with pytest.raises(ValueError, match="'bogus'"):
        get_backend()


def test_backends_never_imports_nnx_and_nnx_imports_without_cupy():
    code = (
        "import sys, backends; backends.get_backend('numpy'); assert 'nnx' not in sys.modules;import nnx; print('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "ok"
    source = "\n".join(p.read_text() for p in Path(backends.__file__).parent.glob("*.py"))
    assert "import nnx" not in source and "from nnx" not in source


def test_transfer_round_trips(backend, rng):
    host = rng.standard_normal((3, 4)).astype(np.float32)
    device = backend.asarray(host)
    assert backend.is_array(device)
    np.testing.assert_array_equal(backend.to_numpy(device), host)
    backend.synchronize()


class FakeCudaError(Exception):
    pass


def fake_cupy(device_count):
    """A stand-in for the cupy module whose runtime reports no driver (an exception) or a device count."""

    def get_device_count():
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    runtime = SimpleNamespace(getDeviceCount=get_device_count)
    return SimpleNamespace(cuda=SimpleNamespace(runtime=runtime))


@pytest.mark.parametrize(
    "device_count, message",
    [
        (FakeCudaError("cudaErrorInsufficientDriver: CUDA driver version is insufficient"), "needs an NVIDIA driver"),
        (0, "needs a CUDA device; none is visible"),
    ],
)
def test_cupy_without_a_driver_or_a_device_says_which_is_missing(monkeypatch, device_count, message):
    from backends import cupy_backend

    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(device_count))
    cupy_backend.cupy_backend.cache_clear()
    try:
        with pytest.raises(BackendUnavailable, match=message):
            get_backend("cupy")
    finally:
        cupy_backend.cupy_backend.cache_clear()
