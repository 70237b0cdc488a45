"""The backend contract: selection, transfer, and every kernel against its NumPy reference."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

import backends
from backends import BackendUnavailable, get_backend, reference
from tests.conftest import CUPY_MISSING

TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


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


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def test_matmul_into_a_buffer_matches_the_reference_with_transposed_views(backend, rng, dtype):
    a, b = rng.standard_normal((9, 7)).astype(dtype), rng.standard_normal((9, 5)).astype(dtype)
    ad, bd = backend.asarray(a), backend.asarray(b)
    out = backend.empty((7, 5), dtype)
    backend.matmul(ad.T, bd, out)
    np.testing.assert_allclose(backend.to_numpy(out), reference.matmul(a.T, b), rtol=TOLERANCE[dtype], atol=1e-6)
    out2 = backend.empty((9, 9), dtype)
    backend.matmul(ad, ad.T, out2)
    np.testing.assert_allclose(backend.to_numpy(out2), reference.matmul(a, a.T), rtol=TOLERANCE[dtype], atol=1e-6)


def test_elementwise_kernels_match_the_reference(backend, rng, dtype):
    y, b, g = (rng.standard_normal(s).astype(dtype) for s in [(8, 6), (6,), (8, 6)])
    tol = TOLERANCE[dtype]
    yd = backend.asarray(y.copy())
    backend.bias_add(yd, backend.asarray(b))
    np.testing.assert_allclose(backend.to_numpy(yd), reference.bias_add(y, b), rtol=tol)
    yd = backend.asarray(y.copy())
    backend.bias_relu(yd, backend.asarray(b))
    np.testing.assert_allclose(backend.to_numpy(yd), reference.bias_relu(y, b), rtol=tol)
    out = backend.empty(y.shape, dtype)
    backend.relu(backend.asarray(y), out)
    np.testing.assert_array_equal(backend.to_numpy(out), reference.relu(y))
    r = reference.relu(y)  # relu_backward takes the ReLU's output
    mask = backend.empty(y.shape, bool)
    backend.relu_backward(backend.asarray(g), backend.asarray(r), out, mask)
    np.testing.assert_array_equal(backend.to_numpy(out), reference.relu_backward(g, r))
    gd = backend.asarray(g.copy())
    backend.relu_backward(gd, backend.asarray(r), gd, mask)  # in place
    np.testing.assert_array_equal(backend.to_numpy(gd), reference.relu_backward(g, r))
    s = backend.empty((6,), dtype)
    backend.sum_rows(backend.asarray(g), s)
    np.testing.assert_allclose(backend.to_numpy(s), reference.sum_rows(g), rtol=tol, atol=tol)


def test_sgd_update_and_count_correct_match_the_reference(backend, rng, dtype):
    p, g = rng.standard_normal((5, 4)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype)
    pd, gd = backend.asarray(p.copy()), backend.asarray(g.copy())
    backend.sgd_update(pd, gd, 0.3, backend.empty(p.shape, dtype))
    np.testing.assert_allclose(backend.to_numpy(pd), reference.sgd_update(p, g, 0.3), rtol=TOLERANCE[dtype])
    np.testing.assert_array_equal(backend.to_numpy(gd), g)  # the gradient is left alone
    pd = backend.asarray(p.copy())
    backend.sgd_update(pd, gd, 0.3, gd)  # scratch may be the gradient itself
    np.testing.assert_allclose(backend.to_numpy(pd), reference.sgd_update(p, g, 0.3), rtol=TOLERANCE[dtype])
    labels = rng.integers(0, 4, 5)
    assert int(backend.count_correct(backend.asarray(p), backend.asarray(labels))) == reference.count_correct(p, labels)


def test_gather_rows_takes_the_indexed_rows(backend, rng, dtype):
    x, index = rng.standard_normal((9, 4)).astype(dtype), rng.permutation(9)[:5]
    out = backend.empty((5, 4), dtype)
    backend.gather_rows(backend.asarray(x), backend.asarray(index), out)
    np.testing.assert_array_equal(backend.to_numpy(out), x[index])
    labels = backend.empty((5,), np.int64)
    backend.gather_rows(backend.asarray(np.arange(9) * 10), backend.asarray(index), labels)
    np.testing.assert_array_equal(backend.to_numpy(labels), index * 10)


@pytest.mark.parametrize("a_transposed", [True, False], ids=["xT", "x"])
def test_sgd_matmul_update_matches_the_reference(backend, rng, dtype, a_transposed):
    """param -= lr·a·b, with a as a transposed view (as Dense passes xᵀ) or a plain array."""
    a = rng.standard_normal((7, 5)).astype(dtype)
    a = np.ascontiguousarray(a.T).T if a_transposed else a  # same values, column-major memory
    b, p = rng.standard_normal((5, 3)).astype(dtype), rng.standard_normal((7, 3)).astype(dtype)
    pd = backend.asarray(p.copy())
    backend.sgd_matmul_update(pd, backend.asarray(a), backend.asarray(b), 0.3, backend.empty(p.shape, dtype))
    tol = TOLERANCE[dtype]
    np.testing.assert_allclose(backend.to_numpy(pd), reference.sgd_matmul_update(p, a, b, 0.3), rtol=tol, atol=tol)


def test_fused_loss_kernel_matches_the_reference(backend, rng, dtype):
    z = (rng.standard_normal((32, 17)) * 6).astype(dtype)
    y = rng.integers(0, 17, 32)
    d = backend.empty(z.shape, dtype)
    value = backend.softmax_cross_entropy(backend.asarray(z), backend.asarray(y), d)
    ref_value, ref_d = reference.softmax_cross_entropy(z, y)
    assert float(value) == pytest.approx(ref_value, rel=TOLERANCE[dtype])
    np.testing.assert_allclose(backend.to_numpy(d), ref_d, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype] * 1e-2)


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
