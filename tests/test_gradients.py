"""Finite-difference gradient checks in float64: every layer, the fused loss, and a whole model."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from tests.helpers import numerical_gradient, relative_error

TOL = 1e-6


def built(layer, backend, seed=0):
    layer.build(backend, np.float64, np.random.default_rng(seed))
    return layer


def upstream(rng, shape):
    """A fixed random dL/dy, so that L = sum(y * g) has gradient g."""
    return rng.standard_normal(shape)


def check_input_gradient(layer, backend, x_host, rng):
    g = upstream(rng, (x_host.shape[0], layer.output_features(x_host.shape[1])))
    gd = backend.asarray(g)

    def f():
        return float((backend.to_numpy(layer.forward(backend.asarray(x_host))) * g).sum())

    numeric = numerical_gradient(f, x_host)
    f()
    analytic = backend.to_numpy(layer.backward(gd))
    assert relative_error(analytic, numeric) <= TOL


def test_dense_backward_matches_finite_differences(backend, rng):
    dense = built(nnx.Dense(5, 4), backend)
    x = rng.standard_normal((6, 5))
    g = upstream(rng, (6, 4))
    w_host = backend.to_numpy(dense.params["W"]).copy()
    b_host = rng.standard_normal(4)

    def loss():
        backend.copy_into(dense.params["W"], backend.asarray(w_host))
        backend.copy_into(dense.params["b"], backend.asarray(b_host))
        return float((backend.to_numpy(dense.forward(backend.asarray(x))) * g).sum())

    num_w = numerical_gradient(loss, w_host)
    num_b = numerical_gradient(loss, b_host)
    num_x = numerical_gradient(loss, x)
    loss()
    dx = dense.backward(backend.asarray(g))
    assert relative_error(backend.to_numpy(dense.grads["W"]), num_w) <= TOL
    assert relative_error(backend.to_numpy(dense.grads["b"]), num_b) <= TOL
    assert relative_error(backend.to_numpy(dx), num_x) <= TOL
    # and the closed forms of the notes: dW = xᵀ·dY, db = Σ_rows dY, dX = dY·Wᵀ
    np.testing.assert_allclose(backend.to_numpy(dense.grads["W"]), x.T @ g, rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dense.grads["b"]), g.sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(backend.to_numpy(dx), g @ w_host.T, rtol=1e-12)


def test_relu_backward_matches_finite_differences(backend, rng):
    x = rng.standard_normal((7, 6))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from the kink, where the derivative is undefined
    check_input_gradient(built(nnx.ReLU(), backend), backend, x, rng)


def test_relu_backward_leaves_the_incoming_gradient_alone_unless_told_to_mask_it_in_place(backend, rng):
    layer = built(nnx.ReLU(), backend)
    x, g = rng.standard_normal((5, 4)), rng.standard_normal((5, 4))
    layer.forward(backend.asarray(x))
    grad, masked = backend.asarray(g.copy()), np.where(x > 0, g, 0.0)
    np.testing.assert_array_equal(backend.to_numpy(layer.backward(grad)), masked)
    np.testing.assert_array_equal(backend.to_numpy(grad), g)  # a new buffer: the caller's is intact
    layer.mask_in_place = True  # before a Dense, whose dx buffer it receives: no copy
    dx = layer.backward(grad)
    assert dx is grad
    np.testing.assert_array_equal(backend.to_numpy(grad), masked)


def test_softmax_backward_matches_finite_differences(backend, rng):
    check_input_gradient(built(nnx.Softmax(), backend), backend, rng.standard_normal((4, 5)), rng)


def test_dropout_backward_matches_finite_differences_for_a_fixed_mask(backend, rng):
    layer = built(nnx.Dropout(0.3), backend)
    layer.training = True
    x = rng.standard_normal((6, 8))
    layer.reseed(7)
    layer.forward(backend.asarray(x))
    mask = backend.to_numpy(layer.mask).copy()
    g = upstream(rng, x.shape)
    numeric = numerical_gradient(lambda: float((x * mask * g).sum()), x)
    analytic = backend.to_numpy(layer.backward(backend.asarray(g)))
    assert relative_error(analytic, numeric) <= TOL
    assert set(np.unique(mask)) <= {0.0, 1 / 0.7}


def test_fused_loss_gradient_matches_finite_differences(backend, rng):
    z = rng.standard_normal((6, 5)) * 3
    y = rng.integers(0, 5, 6)
    loss = nnx.SparseCategoricalCrossentropy()
    numeric = numerical_gradient(lambda: loss(backend.asarray(z), y)[0], z)
    _, dz = loss(backend.asarray(z), y)
    assert relative_error(backend.to_numpy(dz), numeric) <= TOL


@pytest.mark.parametrize("dropout", [False, True])
def test_three_layer_model_gradients_match_finite_differences(backend, rng, dropout):
    layers = [nnx.Dense(4, 6), nnx.ReLU(), nnx.Dense(6, 5), nnx.ReLU(), nnx.Dense(5, 3)]
    if dropout:
        layers.insert(2, nnx.Dropout(0.25))
    model = nnx.Sequential(*layers, backend=backend, dtype="float64", seed=3)
    x, y = rng.standard_normal((8, 4)), rng.integers(0, 3, 8)
    loss = nnx.SparseCategoricalCrossentropy()
    xd, yd = backend.asarray(x), backend.asarray(y)
    model.train(True)

    def value():
        for layer in model.layers:  # the same dropout mask on every evaluation
            if isinstance(layer, nnx.Dropout):
                layer.reseed(11)
        return float(loss.compute(backend, model.forward(xd), yd)[0])

    host = model.get_weights()
    numeric = {}
    for name, array in host.items():

        def f(name=name, array=array):
            model.set_weights({**host, name: array})
            return value()

        numeric[name] = numerical_gradient(f, array)
    model.set_weights(host)
    for layer in model.layers:
        if isinstance(layer, nnx.Dropout):
            layer.reseed(11)
    _, dlogits = loss.compute(backend, model.forward(xd), yd)
    model.backward(dlogits)
    for name, _, grad in model.named_parameters():
        assert relative_error(backend.to_numpy(grad), numeric[name]) <= TOL, name
