"""Tanh, Sigmoid, GELU (exact and tanh) and LeakyReLU: value and gradients equal PyTorch's autograd
in float64 on every backend configuration, alone and inside a trained network; finite differences
agree; bad settings raise ConfigError."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from nnx.errors import ConfigError
from tests.helpers import numerical_gradient, relative_error
from tests.torch_reference import assert_close, torch_layer, torch_or_skip, torch_outputs_and_gradients

ACTIVATIONS = {
    "Tanh": nnx.Tanh,
    "Sigmoid": nnx.Sigmoid,
    "GELU": nnx.GELU,
    "GELU-tanh": lambda: nnx.GELU(approximate="tanh"),
    "LeakyReLU": nnx.LeakyReLU,
    "LeakyReLU-0.2": lambda: nnx.LeakyReLU(negative_slope=0.2),
    "LeakyReLU-negative": lambda: nnx.LeakyReLU(negative_slope=-0.5),
    "LeakyReLU-steep": lambda: nnx.LeakyReLU(negative_slope=3.0),  # above 1: min(x, a·x)
}


def inputs(rng, shape=(17, 23)):
    """Normal inputs of scale 3, with zeros, large values and tiny ones in the first row."""
    x = rng.standard_normal(shape) * 3
    x[0, :7] = [0.0, 40.0, -40.0, 1e-3, -1e-3, 12.0, -12.0]
    return x


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_value_and_input_gradient_equal_pytorch_autograd(backend, rng, name):
    torch = torch_or_skip()
    layer = ACTIVATIONS[name]()
    layer.build(backend, np.float64, np.random.default_rng(0))
    x, g = inputs(rng), rng.standard_normal((17, 23))
    y = backend.to_numpy(layer.forward(backend.asarray(x))).copy()
    dx = backend.to_numpy(layer.backward(backend.asarray(g)))
    xt = torch.tensor(x, requires_grad=True)
    yt = torch_layer(layer, {}, xt)
    yt.backward(torch.tensor(g))
    assert_close(y, yt.detach().numpy(), f"{name} value")
    assert_close(dx, xt.grad.numpy(), f"{name} input gradient")


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_a_network_with_the_activation_has_pytorchs_outputs_and_gradients(backend, rng, name):
    torch = torch_or_skip()
    model = nnx.Sequential(
        nnx.Dense(6, 9), ACTIVATIONS[name](), nnx.Dense(9, 7), ACTIVATIONS[name](), nnx.Dense(7, 4),
        backend=backend, seed=3, dtype="float64",
    )  # fmt: skip
    x, y = rng.standard_normal((11, 6)), rng.integers(0, 4, 11)
    outputs, expected = torch_outputs_and_gradients(
        model, x, lambda h: torch.nn.functional.cross_entropy(h, torch.tensor(y))
    )
    assert_close(backend.to_numpy(model.forward(backend.asarray(x))), outputs, "outputs")
    model.train_step(x, y, nnx.SparseCategoricalCrossentropy(), nnx.SGD(0.1))
    for param, _, grad in model.named_parameters():
        assert_close(backend.to_numpy(grad), expected[param], param)


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_activation_backward_matches_finite_differences(cpu_backend, rng, name):
    backend, layer = cpu_backend, ACTIVATIONS[name]()
    layer.build(backend, np.float64, np.random.default_rng(0))
    x = rng.standard_normal((5, 7)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # away from LeakyReLU's kink, where finite differences straddle it
    g = rng.standard_normal(x.shape)

    def f():
        return float((backend.to_numpy(layer.forward(backend.asarray(x))) * g).sum())

    numeric = numerical_gradient(f, x)
    f()
    assert relative_error(backend.to_numpy(layer.backward(backend.asarray(g))), numeric) <= 1e-6


def test_sigmoid_and_gelu_stay_finite_and_saturate_for_huge_inputs(backend):
    x = backend.asarray(np.array([[1e4, -1e4, 800.0, -800.0]]))
    for layer, expected in [(nnx.Sigmoid(), [[1.0, 0.0, 1.0, 0.0]]), (nnx.GELU(), [[1e4, 0.0, 800.0, 0.0]])]:
        layer.build(backend, np.float64, np.random.default_rng(0))
        y = backend.to_numpy(layer.forward(x))
        dx = backend.to_numpy(layer.backward(backend.asarray(np.ones((1, 4)))))
        np.testing.assert_array_equal(y, expected)
        assert np.isfinite(dx).all()


def test_activations_keep_float32_in_float32(backend, rng):
    x = backend.asarray(inputs(rng).astype(np.float32))
    for name, make in ACTIVATIONS.items():
        layer = make()
        layer.build(backend, np.float32, np.random.default_rng(0))
        y = layer.forward(x)
        dx = layer.backward(backend.asarray(np.ones(x.shape, np.float32)))
        assert y.dtype == dx.dtype == np.float32, name
        expected = ACTIVATIONS[name]()
        expected.build(backend, np.float64, np.random.default_rng(0))
        reference = backend.to_numpy(expected.forward(backend.asarray(backend.to_numpy(x).astype(np.float64))))
        np.testing.assert_allclose(backend.to_numpy(y), reference, rtol=1e-5, atol=1e-5 * np.abs(reference).max())


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: nnx.GELU("erf"), 'approximate must be "none" or "tanh"; got \'erf\''),
        (lambda: nnx.LeakyReLU(float("nan")), "negative_slope must be a finite number; got nan"),
        (lambda: nnx.LeakyReLU("0.1"), "negative_slope must be a finite number; got '0.1'"),
    ],
)
def test_bad_activation_settings_raise_config_error_naming_them(make, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        make()


def test_activations_are_exported_and_show_their_settings():
    assert repr(nnx.GELU("tanh")) == "GELU(approximate='tanh')"
    assert repr(nnx.LeakyReLU(0.2)) == "LeakyReLU(negative_slope=0.2)"
    assert repr(nnx.Tanh()) == "Tanh()" and repr(nnx.Sigmoid()) == "Sigmoid()"
    assert {"Tanh", "Sigmoid", "GELU", "LeakyReLU", "LayerNorm"} <= set(nnx.__all__)
