"""Each backend kernel, and the fused loss against the plain NumPy composition."""

from __future__ import annotations

import numpy as np
import pytest

from backends import reference
from backends.contract import AdamStep
from benchmarks.compare import plain_numpy_loss
from benchmarks.conftest import synced

N, IN, OUT = 1024, 1024, 1024


@pytest.fixture
def arrays(backend):
    rng = np.random.default_rng(0)
    host = {
        name: rng.standard_normal(shape).astype(np.float32)
        for name, shape in [("x", (N, IN)), ("w", (IN, OUT)), ("b", (OUT,)), ("y", (N, OUT)), ("g", (N, OUT))]
    }
    host["y"] = np.maximum(host["y"], 0)  # a ReLU output
    return host, {name: backend.asarray(a) for name, a in host.items()}


def rows(backend, a, k=8):
    """The first k rows on the host: enough to check a result without slowing the suite."""
    return backend.to_numpy(a[:k])


def test_matmul(benchmark, backend, arrays):
    host, dev = arrays
    out = backend.empty((N, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.matmul(dev["x"], dev["w"], out)))
    np.testing.assert_allclose(rows(backend, out), host["x"][:8] @ host["w"], rtol=1e-4, atol=1e-3)


def test_matmul_transposed_weight_gradient(benchmark, backend, arrays):
    host, dev = arrays
    out = backend.empty((IN, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.matmul(dev["x"].T, dev["g"], out)))
    np.testing.assert_allclose(rows(backend, out), host["x"].T[:8] @ host["g"], rtol=1e-4, atol=1e-3)


def test_bias_relu(benchmark, backend, arrays):
    _, dev = arrays
    benchmark(synced(backend, lambda: backend.bias_relu(dev["y"], dev["b"])))
    assert rows(backend, dev["y"]).min() >= 0


def test_relu_backward(benchmark, backend, arrays):
    host, dev = arrays
    out = backend.empty((N, OUT), np.float32)
    mask = backend.empty((N, OUT), bool)
    benchmark(synced(backend, lambda: backend.relu_backward(dev["g"], dev["y"], out, mask)))
    np.testing.assert_array_equal(rows(backend, out), np.where(host["y"][:8] > 0, host["g"][:8], 0))


def check_one_step(backend, param, step, expected_of):
    """After the timed runs: one more step, whose change of the first rows of ``param`` must be
    the one ``expected_of(rows before)`` gives (so a wrong sign or a no-op fails)."""
    before = rows(backend, param).astype(np.float64)
    step()
    after, expected = rows(backend, param), expected_of(before)
    assert np.abs(expected - before).max() > 1e-3  # a step large enough to see
    np.testing.assert_allclose(after - before, expected - before, rtol=1e-3, atol=1e-4)


def test_sgd_update(benchmark, backend, arrays):
    host, dev = arrays
    scratch = backend.empty((IN, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.sgd_update(dev["w"], dev["g"][:IN], 1e-9, scratch)))
    g = host["g"][:8].astype(np.float64)
    check_one_step(
        backend, dev["w"], lambda: backend.sgd_update(dev["w"], dev["g"][:IN], 0.5, scratch), lambda w: w - 0.5 * g
    )


def test_sgd_matmul_update(benchmark, backend, arrays):
    """The folded SGD step W ← W − lr·xᵀ·g, against test_matmul_transposed_weight_gradient followed
    by test_sgd_update."""
    host, dev = arrays
    scratch = backend.empty((IN, OUT), np.float32)
    benchmark(synced(backend, lambda: backend.sgd_matmul_update(dev["w"], dev["x"].T, dev["g"], 1e-9, scratch)))
    product = host["x"].T[:8].astype(np.float64) @ host["g"]
    check_one_step(
        backend,
        dev["w"],
        lambda: backend.sgd_matmul_update(dev["w"], dev["x"].T, dev["g"], 1e-3, scratch),
        lambda w: w - 1e-3 * product,
    )


def test_adam_update(benchmark, backend, arrays):
    host, dev = arrays
    p, g = dev["w"].reshape(-1), dev["g"][:IN].reshape(-1)
    m, v, scratch = (
        backend.zeros(p.shape, np.float32),
        backend.zeros(p.shape, np.float32),
        backend.empty(p.shape, np.float32),
    )
    benchmark(
        synced(backend, lambda: backend.adam_update(p, g, m, v, AdamStep(1e-9, 0.9, 0.999, 1e-8, 1.0, False), scratch))
    )
    m_rows, v_rows = (backend.to_numpy(a[: 8 * OUT]).astype(np.float64).reshape(8, OUT) for a in (m, v))
    hyper = (1e-2, 0.9, 0.999, 1e-8, 1.0)
    check_one_step(
        backend,
        dev["w"],
        lambda: backend.adam_update(p, g, m, v, AdamStep(*hyper, False), scratch),
        lambda w: reference.adam_update(w, host["g"][:8].astype(np.float64), m_rows, v_rows, *hyper)[0],
    )


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
