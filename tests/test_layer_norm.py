"""LayerNorm: value and gradients (input, gamma, beta) equal PyTorch's autograd in float64 on every
backend configuration, alone, first in a network and inside one; finite differences agree; a size
that does not match the layer before raises ShapeError when the model is built."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ConfigError, ShapeError
from tests.helpers import numerical_gradient, relative_error
from tests.torch_reference import assert_close, torch_or_skip, torch_outputs_and_gradients


def built(backend, features, rng, eps=1e-5, dtype=np.float64):
    """A LayerNorm with random gamma and beta (not the ones and zeros it starts with)."""
    layer = nnx.LayerNorm(features, eps)
    layer.build(backend, dtype, np.random.default_rng(0))
    for key in ("gamma", "beta"):
        backend.copy_into(layer.params[key], backend.asarray(rng.standard_normal(features).astype(dtype)))
    return layer


@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_layer_norm_value_and_gradients_equal_pytorch_autograd(backend, rng, eps):
    torch = torch_or_skip()
    layer = built(backend, 23, rng, eps)
    x, g = rng.standard_normal((17, 23)) * 4 + 3, rng.standard_normal((17, 23))
    x[0] = 2.5  # a constant row: var = 0, so only eps keeps it finite
    y = backend.to_numpy(layer.forward(backend.asarray(x))).copy()
    dx = backend.to_numpy(layer.backward(backend.asarray(g)))
    xt = torch.tensor(x, requires_grad=True)
    gamma, beta = (torch.tensor(backend.to_numpy(layer.params[k]), requires_grad=True) for k in ("gamma", "beta"))
    yt = torch.nn.functional.layer_norm(xt, (23,), gamma, beta, eps)
    yt.backward(torch.tensor(g))
    assert_close(y, yt.detach().numpy(), "value")
    assert_close(dx, xt.grad.numpy(), "dx")
    assert_close(backend.to_numpy(layer.grads["gamma"]), gamma.grad.numpy(), "dgamma")
    assert_close(backend.to_numpy(layer.grads["beta"]), beta.grad.numpy(), "dbeta")


@pytest.mark.parametrize("where", ["first", "inside"])
def test_networks_with_layer_norm_have_pytorchs_outputs_and_gradients(backend, rng, where):
    torch = torch_or_skip()
    layers = {
        "first": [nnx.LayerNorm(6), nnx.Dense(6, 9), nnx.ReLU(), nnx.Dense(9, 4)],
        "inside": [nnx.Dense(6, 9), nnx.LayerNorm(9), nnx.ReLU(), nnx.Dense(9, 7), nnx.LayerNorm(7), nnx.Dense(7, 4)],
    }[where]
    model = nnx.Sequential(*layers, backend=backend, seed=3, dtype="float64")
    weights = model.get_weights()
    for name in weights:
        if name.endswith(("gamma", "beta")):
            weights[name] = rng.standard_normal(weights[name].shape)
    model.set_weights(weights)
    x, y = rng.standard_normal((11, 6)) * 2 + 1, rng.integers(0, 4, 11)
    outputs, expected = torch_outputs_and_gradients(
        model, x, lambda h: torch.nn.functional.cross_entropy(h, torch.tensor(y))
    )
    assert_close(backend.to_numpy(model.forward(backend.asarray(x))), outputs, "outputs")
    model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), nnx.Adam(1e-3))
    assert {name for name, _, _ in model.named_parameters()} == set(expected)
    for name, _, grad in model.named_parameters():
        assert_close(backend.to_numpy(grad), expected[name], name)


def test_layer_norm_backward_matches_finite_differences(cpu_backend, rng):
    backend = cpu_backend
    layer = built(backend, 7, rng)
    x, g = rng.standard_normal((5, 7)) * 2, rng.standard_normal((5, 7))
    gamma, beta = (backend.to_numpy(layer.params[k]).copy() for k in ("gamma", "beta"))

    def f():
        backend.copy_into(layer.params["gamma"], backend.asarray(gamma))
        backend.copy_into(layer.params["beta"], backend.asarray(beta))
        return float((backend.to_numpy(layer.forward(backend.asarray(x))) * g).sum())

    numeric = {
        "x": numerical_gradient(f, x),
        "gamma": numerical_gradient(f, gamma),
        "beta": numerical_gradient(f, beta),
    }
    f()
    dx = backend.to_numpy(layer.backward(backend.asarray(g)))
    assert relative_error(dx, numeric["x"]) <= 1e-6
    assert relative_error(backend.to_numpy(layer.grads["gamma"]), numeric["gamma"]) <= 1e-6
    assert relative_error(backend.to_numpy(layer.grads["beta"]), numeric["beta"]) <= 1e-6


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_fresh_layer_norm_gives_rows_of_mean_zero_and_variance_one(backend, rng, dtype):
    layer = nnx.LayerNorm(64)
    layer.build(backend, dtype, np.random.default_rng(0))
    np.testing.assert_array_equal(backend.to_numpy(layer.params["gamma"]), np.ones(64))
    np.testing.assert_array_equal(backend.to_numpy(layer.params["beta"]), np.zeros(64))
    y = backend.to_numpy(layer.forward(backend.asarray((rng.standard_normal((9, 64)) * 50 + 7).astype(dtype))))
    assert y.dtype == np.dtype(dtype)
    np.testing.assert_allclose(y.mean(axis=1), 0, atol=1e-5)
    np.testing.assert_allclose(y.var(axis=1), 1, rtol=1e-4)  # biased variance, eps = 1e-5 against ~2500


def test_a_layer_norm_whose_size_differs_from_the_layer_before_raises_shape_error_at_construction():
    with pytest.raises(ShapeError, match="LayerNorm expects 6 features; its input has 5"):
        nnx.Sequential(nnx.Dense(4, 5), nnx.ReLU(), nnx.LayerNorm(6))
    with pytest.raises(ShapeError, match="LayerNorm expects 3 features; its input has 4"):  # the first Dense's 4
        nnx.Sequential(nnx.LayerNorm(3), nnx.Dense(4, 2))


@pytest.mark.parametrize(
    "args, message",
    [
        ((0,), "features must be an integer >= 1; got 0"),
        ((4.0,), "features must be an integer >= 1; got 4.0"),
        ((4, 0.0), "eps must be a finite number > 0; got 0.0"),
        ((4, float("inf")), "eps must be a finite number > 0; got inf"),
    ],
)
def test_bad_layer_norm_settings_raise_config_error(args, message):
    with pytest.raises(ConfigError, match=message):
        nnx.LayerNorm(*args)


def test_layer_norm_reports_its_parameters():
    model = nnx.Sequential(nnx.Dense(4, 8), nnx.LayerNorm(8), nnx.Dense(8, 2), backend="numpy")
    assert model.count_params() == 4 * 8 + 8 + 2 * 8 + 8 * 2 + 2
    assert "LayerNorm(features=8, eps=1e-05)" in model.summary()
    assert sorted(model.get_weights()) == [
        "layers.0.W",
        "layers.0.b",
        "layers.1.beta",
        "layers.1.gamma",
        "layers.2.W",
        "layers.2.b",
    ]
