"""MeanSquaredError and BinaryCrossentropy: value and gradient equal PyTorch's autograd in float64 on
every backend configuration (as losses, and through a network's parameters); finite differences
agree; huge logits stay finite; targets of the wrong shape, dtype or range raise the documented
errors, through the loss and through the model."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import nnx
from nnx.errors import DataError, DTypeError, ShapeError
from tests.helpers import numerical_gradient, relative_error
from tests.torch_reference import assert_close, torch_or_skip, torch_outputs_and_gradients


def torch_loss(name: str):
    functional = torch_or_skip().nn.functional
    return {"mse": functional.mse_loss, "bce": functional.binary_cross_entropy_with_logits}[name]


LOSSES = {"mse": nnx.MeanSquaredError, "bce": nnx.BinaryCrossentropy}


def targets_for(name, rng, shape):
    return rng.standard_normal(shape) * 2 if name == "mse" else rng.uniform(0, 1, shape)


@pytest.mark.parametrize("shape", [(13, 1), (13, 5), (1, 1)])
@pytest.mark.parametrize("name", LOSSES)
def test_loss_value_and_gradient_equal_pytorch_autograd(backend, rng, name, shape):
    torch = torch_or_skip()
    outputs, targets = rng.standard_normal(shape) * 6, targets_for(name, rng, shape)
    if name == "bce" and shape[0] > 1:
        targets[0] = np.round(targets[0])  # hard 0/1 targets too
        outputs[1, 0] = 40.0  # and a saturated logit
    value, grad = LOSSES[name]()(backend.asarray(outputs), targets, backend=backend)
    ot = torch.tensor(outputs, requires_grad=True)
    expected = torch_loss(name)(ot, torch.tensor(targets))
    expected.backward()
    assert_close(value, expected.item(), "value")
    assert_close(backend.to_numpy(grad), ot.grad.numpy(), "gradient")


@pytest.mark.parametrize("name", LOSSES)
def test_a_network_trained_on_the_loss_has_pytorchs_gradients(backend, rng, name):
    torch = torch_or_skip()
    model = nnx.Sequential(
        nnx.Dense(5, 8),
        nnx.Tanh(),
        nnx.LayerNorm(8),
        nnx.GELU(),
        nnx.Dense(8, 3),
        backend=backend,
        seed=1,
        dtype="float64",
    )
    x, targets = rng.standard_normal((12, 5)), targets_for(name, rng, (12, 3))
    _, expected = torch_outputs_and_gradients(model, x, lambda h: torch_loss(name)(h, torch.tensor(targets)))
    model.train_step(x, targets, LOSSES[name](), nnx.SGD(0.1))
    for param, _, grad in model.named_parameters():
        assert_close(backend.to_numpy(grad), expected[param], param)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradient_matches_finite_differences(cpu_backend, rng, name):
    backend, loss = cpu_backend, LOSSES[name]()
    outputs, targets = rng.standard_normal((6, 4)) * 3, targets_for(name, rng, (6, 4))

    def f():
        return loss(backend.asarray(outputs), targets, backend=backend)[0]

    numeric = numerical_gradient(f, outputs)
    assert (
        relative_error(backend.to_numpy(loss(backend.asarray(outputs), targets, backend=backend)[1]), numeric) <= 1e-6
    )


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_binary_crossentropy_of_huge_logits_is_finite_and_exact(backend, dtype):
    logits = backend.asarray(np.array([[1e4, -1e4], [1e4, -1e4]], dtype))
    value, grad = nnx.BinaryCrossentropy()(logits, np.array([[1.0, 0.0], [0.0, 1.0]]), backend=backend)
    assert value == pytest.approx(1e4 / 2, rel=1e-6)  # two entries predicted right, two wrong by 1e4
    np.testing.assert_allclose(backend.to_numpy(grad), [[0.0, 0.0], [0.25, -0.25]], atol=1e-7)


def test_equal_outputs_and_targets_give_zero_squared_error(backend, rng):
    y = rng.standard_normal((7, 3))
    value, grad = nnx.MeanSquaredError()(backend.asarray(y), y, backend=backend)
    assert value == 0.0 and not backend.to_numpy(grad).any()


def test_binary_crossentropy_takes_0_1_labels_of_any_number_type(rng):
    logits = rng.standard_normal((8, 2))
    labels = rng.integers(0, 2, (8, 2))
    expected = nnx.BinaryCrossentropy()(logits, labels.astype(np.float64))[0]
    for kind in (np.int64, np.uint8, bool):
        assert nnx.BinaryCrossentropy()(logits, labels.astype(kind))[0] == expected


@pytest.mark.parametrize(
    "name, targets, error, message",
    [  # whole messages ($): a hint appears only where it applies
        (
            "mse",
            np.zeros(6, np.int64),
            DTypeError,
            r"targets must hold float targets for MeanSquaredError; got dtype int64 "
            r"\(integer class labels go with SparseCategoricalCrossentropy\)$",
        ),
        ("mse", np.zeros((6, 1), bool), DTypeError, "for MeanSquaredError; got dtype bool$"),
        ("mse", np.zeros((6, 2)), ShapeError, r"targets must have shape \(6, 1\), like the outputs; got \(6, 2\)$"),
        ("mse", np.zeros(6), ShapeError, r"got \(6,\) \(a column: reshape to \(6, 1\)\)$"),
        ("mse", [[0.0], [0.0, 1.0]], DTypeError, "^targets must be an array of numbers; got list"),
        ("mse", np.array([[0.0]] * 5 + [[np.nan]]), DataError, "targets must be finite; got NaN or Inf"),
        ("bce", np.full((6, 1), 1.5), DataError, r"targets must hold values in \[0, 1\]; got values from 1.5 to 1.5"),
        (
            "bce",
            np.full((6, 1), "a"),
            DTypeError,
            "targets must hold float targets for BinaryCrossentropy; got dtype <U1$",
        ),
        ("bce", np.zeros((6, 2)), ShapeError, r"targets must have shape \(6, 1\)"),
    ],
)
def test_bad_targets_raise_the_documented_error_naming_the_argument(name, targets, error, message):
    with pytest.raises(error, match=message):
        LOSSES[name]()(np.zeros((6, 1)), targets)


def test_labels_given_to_a_regression_loss_raise_dtype_error_through_the_model(rng):
    model = nnx.Sequential(nnx.Dense(3, 1), backend="numpy")
    x, labels = rng.standard_normal((8, 3)), rng.integers(0, 2, (8, 1))
    with pytest.raises(DTypeError, match=r"y must hold float targets for MeanSquaredError; got dtype int64 \(integer"):
        model.train_step(x, labels, nnx.MeanSquaredError(), nnx.SGD(0.1))
    with pytest.raises(ShapeError, match=r"y must have shape \(8, 1\), like the outputs; got \(8,\)"):
        model.train_step(x, labels[:, 0].astype(np.float32), nnx.MeanSquaredError(), nnx.SGD(0.1))


def test_a_small_network_learns_a_regression_and_a_binary_task_with_the_new_layers(rng):
    x = rng.uniform(-2, 2, (256, 2))
    y_reg = np.sin(x[:, :1]) * x[:, 1:]
    y_bin = (x[:, :1] * x[:, 1:] > 0).astype(np.float64)
    for loss, y in ((nnx.MeanSquaredError(), y_reg), (nnx.BinaryCrossentropy(), y_bin)):
        model = nnx.Sequential(
            nnx.Dense(2, 32), nnx.LayerNorm(32), nnx.GELU(), nnx.Dense(32, 32), nnx.Tanh(), nnx.Dense(32, 1),
            backend="numpy", seed=0, dtype="float64",
        )  # fmt: skip
        optimizer = nnx.Adam(1e-2)
        first = model.train_step(x, y, loss, optimizer)
        for _ in range(300):
            last = model.train_step(x, y, loss, optimizer)
        assert last < first / 10, (loss, first, last)


@pytest.mark.parametrize("name", ["mse", "bce", "smoothed", "sparse"])
def test_a_step_through_every_new_layer_and_loss_allocates_no_arrays_in_the_steady_state(cpu_backend, rng, name):
    """As tests/test_model.py holds for Dense and ReLU: after the first steps, nothing that grows
    with the batch is allocated (NumPy's ufuncs keep a fixed scratch of 32 KiB)."""
    n = 2048
    model = nnx.Sequential(
        nnx.Dense(64, 64), nnx.LayerNorm(64), nnx.GELU(), nnx.Dense(64, 64), nnx.GELU("tanh"), nnx.Dense(64, 64),
        nnx.Tanh(), nnx.Dense(64, 64), nnx.Sigmoid(), nnx.Dense(64, 64), nnx.LeakyReLU(), nnx.Dense(64, 10),
        backend=cpu_backend,
    )  # fmt: skip
    be = model.backend
    x = be.asarray(rng.standard_normal((n, 64)).astype(np.float32))
    loss = {"mse": nnx.MeanSquaredError(), "bce": nnx.BinaryCrossentropy()}.get(name)
    y = be.asarray(rng.uniform(0, 1, (n, 10)).astype(np.float32)) if loss else be.asarray(rng.integers(0, 10, n))
    smoothing = 0.1 if name == "smoothed" else 0.0
    loss, optimizer = loss or nnx.SparseCategoricalCrossentropy(label_smoothing=smoothing), nnx.Adam(1e-3)
    for _ in range(2):  # buffers and optimizer slots are sized here
        nnx.train_step(model, x, y, loss, optimizer)
    tracemalloc.start()
    for _ in range(2):
        nnx.train_step(model, x, y, loss, optimizer)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 64 * 1024 < n * 10 * 4, f"a steady-state step allocated {peak} bytes"
