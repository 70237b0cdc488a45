"""Each backend kernel, and the fused loss against the plain NumPy composition."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.compare import plain_numpy_loss
from benchmarks.conftest import synced

N, IN, OUT = 1024, 1024, 1024


@pytest.fixture
def arrays(backend):
    rng = np.random.default_rng(0)
    make = lambda *shape: backend.asarray(rng.standard_normal(shape).astype(np.float32))  # noqa: E731
    return {"x": make(N, IN), "w": make(IN, OUT), "b": make(OUT), "y": make(N, OUT), "g": make(N, OUT)}


def test_matmul(benchmark, backend, arrays):
    out = backend.empty((N, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.matmul(arrays["x"], arrays["w"], out)))


def test_matmul_transposed_weight_gradient(benchmark, backend, arrays):
    out = backend.empty((IN, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.matmul(arrays["x"].T, arrays["g"], out)))


def test_bias_relu(benchmark, backend, arrays):
    benchmark(synced(backend, lambda: backend.bias_relu(arrays["y"], arrays["b"])))


def test_relu_backward(benchmark, backend, arrays):
    out = backend.empty((N, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.relu_backward(arrays["g"], arrays["y"], out)))


def test_sgd_update(benchmark, backend, arrays):
    scratch = backend.empty((IN, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.sgd_update(arrays["w"], arrays["w"], 1e-9, scratch)))


@pytest.fixture
def logits(backend):
    rng = np.random.default_rng(0)
    n, c = 4096, 1000
    return backend.asarray(rng.standard_normal((n, c)).astype(np.float32) * 3), backend.asarray(rng.integers(0, c, n))


def test_fused_loss(benchmark, backend, logits):
    z, y = logits
    d = backend.empty(z.shape, np.float32)
    ws = backend.loss_workspace(*z.shape, np.float32)
    value = benchmark(synced(backend, lambda: backend.softmax_cross_entropy(z, y, d, ws)))
    plain_value, plain_d = plain_numpy_loss(backend.xp, z, y)
    assert float(value) == pytest.approx(float(plain_value), rel=1e-5)
    np.testing.assert_allclose(backend.to_numpy(d), backend.to_numpy(plain_d), rtol=1e-5, atol=1e-9)


def test_plain_composition_loss(benchmark, backend, logits):
    z, y = logits
    benchmark(synced(backend, lambda: plain_numpy_loss(backend.xp, z, y)))
