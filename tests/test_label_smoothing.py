"""SparseCategoricalCrossentropy(label_smoothing=ε): PyTorch's meaning, value and gradient equal
to its autograd in float64 on every backend configuration (the compiled and CUDA kernels, which
know no smoothing, plus one correction pass); ε = 0 is the plain loss, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ConfigError
from tests.torch_reference import assert_close, torch_or_skip


@pytest.mark.parametrize("n, c", [(1, 2), (13, 1), (29, 10), (8, 300)])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.35, 1.0])
def test_smoothed_loss_value_and_gradient_equal_pytorch_autograd(backend, rng, smoothing, n, c):
    torch = torch_or_skip()
    logits, labels = rng.standard_normal((n, c)) * 5, rng.integers(0, c, n)
    value, grad = nnx.SparseCategoricalCrossentropy(label_smoothing=smoothing)(
        backend.asarray(logits), labels, backend=backend
    )
    zt = torch.tensor(logits, requires_grad=True)
    expected = torch.nn.functional.cross_entropy(zt, torch.tensor(labels), label_smoothing=smoothing)
    expected.backward()
    assert_close(value, expected.item(), "value")
    assert_close(backend.to_numpy(grad), zt.grad.numpy(), "gradient")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_smoothing_zero_is_the_plain_loss_bit_for_bit(backend, rng, dtype):
    logits, labels = backend.asarray((rng.standard_normal((16, 7)) * 4).astype(dtype)), rng.integers(0, 7, 16)
    plain_value, plain_grad = nnx.SparseCategoricalCrossentropy()(logits, labels, backend=backend)
    plain_grad = backend.to_numpy(plain_grad).copy()
    value, grad = nnx.SparseCategoricalCrossentropy(label_smoothing=0.0)(logits, labels, backend=backend)
    assert value == plain_value
    np.testing.assert_array_equal(backend.to_numpy(grad), plain_grad)


def test_smoothed_gradient_rows_sum_to_zero_and_huge_logits_stay_finite(backend):
    logits = backend.asarray(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]]))
    value, grad = nnx.SparseCategoricalCrossentropy(label_smoothing=0.1)(logits, np.array([1, 0]), backend=backend)
    d = backend.to_numpy(grad)
    assert np.isfinite(value) and np.isfinite(d).all()
    np.testing.assert_allclose(d.sum(axis=1), 0, atol=1e-12)
    # each row: logsumexp(z) − (1 − ε)·z_y − ε·mean_j z_j
    expected_row0 = 1e4 - 0.9 * (-1e4) - 0.1 * 0.0
    expected_row1 = (1e4 + np.log(2)) - 0.9 * (-1e4) - 0.1 * (1e4 / 3)
    assert value == pytest.approx((expected_row0 + expected_row1) / 2, rel=1e-12)


def test_a_network_trains_with_label_smoothing_through_fit(rng):
    x = rng.standard_normal((200, 4))
    y = (x[:, 0] > 0).astype(np.int64) + 2 * (x[:, 1] > 0)
    model = nnx.Sequential(nnx.Dense(4, 16), nnx.LeakyReLU(), nnx.Dense(16, 4), backend="numpy", seed=0)
    loss = nnx.SparseCategoricalCrossentropy(label_smoothing=0.1)
    model.fit(x, y, loss=loss, optimizer=nnx.Adam(1e-2), epochs=30, batch_size=50)
    assert model.evaluate(x, y, loss=loss)["accuracy"] >= 0.95


@pytest.mark.parametrize("bad", [-0.1, 1.5, float("nan"), True, "0.1"])
def test_label_smoothing_outside_0_1_raises_config_error(bad):
    with pytest.raises(ConfigError, match=r"label_smoothing must be a number in \[0, 1\]; got"):
        nnx.SparseCategoricalCrossentropy(label_smoothing=bad)


def test_the_loss_shows_its_smoothing():
    assert repr(nnx.SparseCategoricalCrossentropy()) == "SparseCategoricalCrossentropy()"
    assert repr(nnx.SparseCategoricalCrossentropy(0.1)) == "SparseCategoricalCrossentropy(label_smoothing=0.1)"
