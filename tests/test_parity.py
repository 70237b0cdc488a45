"""NumPy ↔ CuPy parity of whole models and of what only the GPU kernels do (each kernel against
its reference is in tests/test_kernels.py, on every backend).

Tolerances: conftest.TOLERANCE per dtype, times 10 for a loss and 100 for gradients through
three layers; the 50-step float32 loss curve within 1e-4 relative. Every case here needs a GPU
and skips with the reason when CuPy or a device is missing.
"""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from backends import get_backend, reference
from tests.conftest import CUPY_MISSING, TOLERANCE

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(CUPY_MISSING is not None, reason=f"no GPU backend: {CUPY_MISSING}"),
]
RTOL = TOLERANCE


@pytest.fixture(scope="module")
def gpu():
    return get_backend("cupy")


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return request.param


def check_loss(gpu, z, y, z_device=None):
    """The CuPy loss of z (or of z_device, the same values in another layout) against the reference."""
    d = gpu.empty(z.shape, z.dtype)
    value = gpu.softmax_cross_entropy(gpu.asarray(z) if z_device is None else z_device, gpu.asarray(y), d)
    ref_value, ref_d = reference.softmax_cross_entropy(np.ascontiguousarray(z), y)
    rtol = RTOL[z.dtype.name]
    assert float(value) == pytest.approx(ref_value, rel=rtol * 10, abs=rtol)
    np.testing.assert_allclose(gpu.to_numpy(d), ref_d, rtol=rtol * 10, atol=rtol / z.shape[0])


def test_fused_loss_marks_a_label_out_of_range_as_nan(gpu):
    d = gpu.empty((2, 3), np.float32)
    value = gpu.softmax_cross_entropy(gpu.asarray(np.zeros((2, 3), np.float32)), gpu.asarray(np.array([0, 3])), d)
    assert np.isnan(float(value))


def three_layer(backend, dtype="float32"):
    return nnx.Sequential(
        nnx.Dense(20, 32),
        nnx.ReLU(),
        nnx.Dense(32, 16),
        nnx.ReLU(),
        nnx.Dense(16, 5),
        backend=backend,
        seed=7,
        dtype=dtype,
    )


def test_a_whole_forward_and_backward_pass_matches_numpy(rng, dtype):
    x, y = rng.standard_normal((64, 20)).astype(dtype), rng.integers(0, 5, 64)
    results = {}
    for name in ("numpy", "cupy"):
        model = three_layer(name, dtype)
        be = model.backend
        loss = nnx.SparseCategoricalCrossentropy()
        value, dlogits = loss.compute(be, model.forward(be.asarray(x)), be.asarray(y))
        model.backward(dlogits)
        results[name] = (float(value), {k: be.to_numpy(g) for k, _, g in model.named_parameters()})
    assert results["cupy"][0] == pytest.approx(results["numpy"][0], rel=RTOL[dtype] * 10)
    for key, grad in results["numpy"][1].items():
        np.testing.assert_allclose(results["cupy"][1][key], grad, rtol=RTOL[dtype] * 100, atol=RTOL[dtype])


def test_fifty_training_steps_give_the_same_loss_curve():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((50 * 32, 20)).astype(np.float32), rng.integers(0, 5, 50 * 32)
    curves = {}
    for name in ("numpy", "cupy"):
        model, loss, opt = three_layer(name), nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.05, momentum=0.9)
        curves[name] = [model.train_step(x[i : i + 32], y[i : i + 32], loss, opt) for i in range(0, len(x), 32)]
    np.testing.assert_allclose(curves["cupy"], curves["numpy"], rtol=1e-4)


def test_fit_evaluate_and_predict_take_cupy_arrays_and_to_moves_models():
    import cupy

    (x, y), (xt, yt) = nnx.datasets.load_digits()
    model = nnx.Sequential(nnx.Dense(64, 64), nnx.ReLU(), nnx.Dense(64, 10), backend="cupy")
    model.fit(
        cupy.asarray(x),
        cupy.asarray(y),
        loss=nnx.SparseCategoricalCrossentropy(),
        optimizer=nnx.SGD(0.1),
        epochs=20,
        batch_size=32,
    )
    on_gpu = model.evaluate(cupy.asarray(xt), cupy.asarray(yt))
    assert on_gpu["accuracy"] >= 0.95
    probs = model.predict(cupy.asarray(xt))
    assert isinstance(probs, np.ndarray)
    np.testing.assert_allclose(model.to("numpy").predict(xt), probs, rtol=1e-4, atol=1e-6)
    assert model.evaluate(xt, yt)["accuracy"] == pytest.approx(on_gpu["accuracy"], abs=2 / len(yt))
