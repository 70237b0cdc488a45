"""One training step with clear roles: after backward every layer's ``grads`` hold the true
gradient (PyTorch's meaning) with every optimizer and on every backend configuration; the
optimizer alone updates, plain SGD as one gemm per parameter; any Loss trains."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from backends.numpy_backend import NumpyBackend
from tests.conftest import COMPILED, GEMM, TOLERANCE, requires_compiled, requires_gemm

OPTIMIZERS = {
    "sgd": lambda: nnx.SGD(0.1),
    "momentum": lambda: nnx.SGD(0.1, momentum=0.9, nesterov=True),
    "adam": lambda: nnx.Adam(1e-2),
    "sgd-clipped": lambda: nnx.SGD(0.1, clip_norm=1e6),  # a hook that reads every gradient, scale 1
}


def network(backend, dtype="float64"):
    return nnx.Sequential(
        nnx.Dense(6, 9), nnx.ReLU(), nnx.Dense(9, 7), nnx.ReLU(), nnx.Dense(7, 4), backend=backend, seed=5, dtype=dtype
    )


def torch_gradients(weights, x, y):
    """The gradients of the mean cross-entropy of the same network, by PyTorch's autograd (float64)."""
    torch = pytest.importorskip(
        "torch", reason="PyTorch, the independent reference, is not installed: pip install -e '.[test,torch]'"
    )
    params = {k: torch.tensor(v, requires_grad=True) for k, v in weights.items()}
    h = torch.tensor(x)
    for i in (0, 2, 4):
        h = h @ params[f"layers.{i}.W"] + params[f"layers.{i}.b"]
        h = torch.relu(h) if i < 4 else h
    torch.nn.functional.cross_entropy(h, torch.tensor(y)).backward()
    return {k: p.grad.numpy() for k, p in params.items()}


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
def test_after_train_step_grads_equal_pytorch_autograd_at_the_pre_step_weights(backend, rng, optimizer):
    x, y = rng.standard_normal((11, 6)), rng.integers(0, 4, 11)
    model = network(backend)
    before = model.get_weights()
    expected = torch_gradients(before, x, y)
    for _ in range(2):  # the second step, from the weights the first one left
        before = model.get_weights()
        expected = torch_gradients(before, x, y)
        model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), OPTIMIZERS[optimizer]())
    for name, value, grad in model.named_parameters():
        got = backend.to_numpy(grad)
        np.testing.assert_allclose(got, expected[name], rtol=1e-10, atol=1e-10 * np.abs(expected[name]).max())
        assert not np.array_equal(backend.to_numpy(value), before[name]), f"{name} did not move"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_plain_sgd_step_is_w_minus_lr_times_the_gradient(backend, rng, dtype):
    x, y = rng.standard_normal((16, 6)).astype(dtype), rng.integers(0, 4, 16)
    model = network(backend, dtype)
    before = model.get_weights()
    model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.3))
    tol = TOLERANCE[dtype]
    for name, value, grad in model.named_parameters():
        expected = before[name] - 0.3 * backend.to_numpy(grad)
        np.testing.assert_allclose(backend.to_numpy(value), expected, rtol=tol, atol=tol)


class CountingBackend(NumpyBackend):
    """The NumPy backend, counting the calls that a step makes of the products and updates."""

    def __init__(self, *args):
        super().__init__(*args)
        self.calls = {"matmul": 0, "sgd_matmul_update": 0, "sgd_update": 0, "sum_rows": 0}

    def __getattribute__(self, name):
        calls = object.__getattribute__(self, "__dict__").get("calls")
        if calls is not None and name in calls:
            calls[name] += 1
        return super().__getattribute__(name)


@pytest.mark.parametrize(
    "kernels, gemm, inner",
    [
        pytest.param(COMPILED, GEMM, 0, marks=[requires_compiled, requires_gemm], id="one-gemm"),
        pytest.param(None, None, 6, id="product-then-update"),  # the contract's generic two steps
    ],
)
def test_plain_sgd_updates_each_parameter_by_its_product_and_never_forms_its_gradient(rng, kernels, gemm, inner):
    backend = CountingBackend(kernels, gemm)
    model = network(backend, "float32")
    x, y = backend.asarray(rng.standard_normal((32, 6)).astype(np.float32)), backend.asarray(rng.integers(0, 4, 32))
    nnx.train_step(model, x, y, nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.1))
    # forward: 3 products; backward: 2 input gradients (none below the first layer); step: one
    # product update per parameter (W ← W − lr·xᵀ·dy, b ← b − lr·1ᵀ·dy), no row sums
    assert backend.calls == {"matmul": 5 + inner, "sgd_matmul_update": 6, "sgd_update": inner, "sum_rows": 0}
    grads = [g for _, _, g in model.named_parameters()]  # reading them computes them, once
    assert backend.calls["matmul"] == 8 + inner and backend.calls["sum_rows"] == 3 and len(grads) == 6


def test_momentum_reads_the_gradients_and_takes_no_product_update(rng):
    backend = CountingBackend(None)
    model = network(backend, "float32")
    x, y = backend.asarray(rng.standard_normal((32, 6)).astype(np.float32)), backend.asarray(rng.integers(0, 4, 32))
    nnx.train_step(model, x, y, nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.1, momentum=0.9))
    assert backend.calls["sgd_matmul_update"] == 0 and backend.calls["matmul"] == 8


class HalfSquaredError(nnx.Loss):
    """mean_i ½‖outputs_i − targets_i‖²: a regression loss written against the Loss protocol."""

    def compute(self, backend, outputs, targets):
        grad = self.grad_buffer(backend, outputs)
        backend.xp.subtract(outputs, targets, out=grad)
        n = outputs.shape[0]
        value = (grad * grad).sum() / (2 * n)
        grad /= n
        return value, grad

    def check_targets(self, targets, outputs_shape, name="targets"):
        targets = np.asarray(targets, np.float64)
        if targets.shape != outputs_shape:
            raise nnx.errors.ShapeError(f"{name} must have shape {outputs_shape}; got {targets.shape}")
        return targets


def test_any_loss_trains_and_evaluates_a_regression_without_accuracy(rng):
    x = rng.standard_normal((256, 3))
    y = x @ np.array([[1.0, -2.0], [0.5, 0.0], [0.0, 3.0]]) + 0.25
    model = nnx.Sequential(nnx.Dense(3, 2), backend="numpy", dtype="float64")
    loss = HalfSquaredError()
    history = model.fit(x, y, loss=loss, optimizer=nnx.SGD(0.1), epochs=40, batch_size=32, validation_data=(x, y))
    assert history.accuracy == [] and history.val_accuracy == []
    result = model.evaluate(x, y, loss=loss)
    assert set(result) == {"loss"} and result["loss"] < 1e-6 and history.val_loss[-1] == result["loss"]
    np.testing.assert_allclose(model.get_weights()["layers.0.b"], [0.25, 0.25], atol=1e-3)
    with pytest.raises(nnx.errors.ShapeError, match=r"y must have shape \(256, 2\); got \(256,\)"):
        model.fit(x, y[:, 0], loss=loss, optimizer=nnx.SGD(0.1), epochs=1)


def test_to_moves_the_weights_to_another_backend_object_and_training_goes_on_there(rng):
    """A real move (a new backend instance, new arrays), then steps with the same optimizer
    update the new arrays, not the old ones."""
    x, y = rng.standard_normal((16, 6)), rng.integers(0, 4, 16)
    model, optimizer = network("numpy"), nnx.SGD(0.1)
    model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), optimizer)
    weights, old_arrays = model.get_weights(), list(model.parameters())
    target = NumpyBackend(None)
    assert model.to(target) is model and model.backend is target
    assert all(new is not old for new, old in zip(model.parameters(), old_arrays, strict=True))
    for name, w in model.get_weights().items():
        np.testing.assert_array_equal(w, weights[name])
    model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), optimizer)
    assert all(not np.array_equal(w, weights[name]) for name, w in model.get_weights().items())
