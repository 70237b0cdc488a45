"""The fused softmax-cross-entropy: known answers, stability and the reference."""

from __future__ import annotations

import numpy as np
import pytest

import nnx
from backends import reference
from nnx.errors import DataError, DTypeError, ShapeError


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_equal_logits_give_log_of_the_class_count(backend, dtype):
    logits = backend.asarray(np.full((4, 7), 3.5, dtype))
    value, dlogits = nnx.SparseCategoricalCrossentropy()(logits, np.array([0, 3, 6, 2]), backend=backend)
    # every exp(z - max) is exactly 1 and their sum exactly 7: only log and the division round, once
    # each in float32 (u = 6e-8): 1e-6 is over 8 such roundings
    assert value == pytest.approx(np.log(7), rel=1e-6)
    expected = np.full((4, 7), 1 / 7 / 4)
    expected[[0, 1, 2, 3], [0, 3, 6, 2]] -= 1 / 4
    np.testing.assert_allclose(backend.to_numpy(dlogits), expected, rtol=1e-6, atol=1e-7)


def test_gradient_rows_sum_to_zero(backend, rng):
    logits = backend.asarray(rng.standard_normal((16, 10)).astype(np.float32) * 5)
    _, dlogits = nnx.SparseCategoricalCrossentropy()(logits, rng.integers(0, 10, 16), backend=backend)
    np.testing.assert_allclose(backend.to_numpy(dlogits).sum(axis=1), 0, atol=1e-7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_huge_logits_give_a_finite_loss_and_gradient(backend, dtype):
    logits = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype)
    value, dlogits = nnx.SparseCategoricalCrossentropy()(backend.asarray(logits), np.array([1, 0]), backend=backend)
    d = backend.to_numpy(dlogits)
    assert np.isfinite(value) and np.isfinite(d).all()
    # row 0: log(1 + e^-2e4 + e^-1e4) - (-1e4) ≈ 2e4; row 1: log 2 + 1e4 - (-1e4) ≈ 2e4 + log 2
    assert value == pytest.approx((2e4 + 2e4 + np.log(2)) / 2, rel=1e-6)
    np.testing.assert_allclose(d, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], atol=1e-6)


@pytest.mark.parametrize("dtype,rtol", [("float32", 1e-5), ("float64", 1e-12)])
def test_fused_loss_matches_the_reference_composition(backend, rng, dtype, rtol):
    z = (rng.standard_normal((64, 33)) * 4).astype(dtype)
    y = rng.integers(0, 33, 64)
    value, dlogits = nnx.SparseCategoricalCrossentropy()(backend.asarray(z), y, backend=backend)
    ref_value, ref_d = reference.softmax_cross_entropy(z, y)
    assert value == pytest.approx(ref_value, rel=rtol)
    np.testing.assert_allclose(backend.to_numpy(dlogits), ref_d, rtol=rtol, atol=rtol * 1e-3)


def test_loss_rejects_bad_input(backend):
    loss = nnx.SparseCategoricalCrossentropy()
    z = backend.asarray(np.zeros((3, 4), np.float32))
    with pytest.raises(DataError, match=r"labels must hold labels in \[0, 3\]; got values from 0 to 4"):
        loss(z, np.array([0, 1, 4]), backend=backend)
    with pytest.raises(DataError, match="got values from -1"):
        loss(z, np.array([0, -1, 2]), backend=backend)
    with pytest.raises(DTypeError, match="labels must hold integer class labels; got dtype float64"):
        loss(z, np.array([0.0, 1.0, 2.0]), backend=backend)
    with pytest.raises(ShapeError, match=r"labels must have one label per sample of x \(3\); got 2"):
        loss(z, np.array([0, 1]), backend=backend)
    with pytest.raises(ShapeError, match="logits must be 2-D"):
        loss(backend.asarray(np.zeros(4, np.float32)), np.array([0]), backend=backend)
    with pytest.raises(DTypeError, match="logits must be a float array; got dtype int64"):
        loss(backend.asarray(np.zeros((3, 4), np.int64)), np.array([0, 1, 2]), backend=backend)
    with pytest.raises(DataError, match="logits must be finite"):
        loss(backend.asarray(np.array([[0.0, np.nan]])), np.array([0]), backend=backend)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_confident_logits_give_no_denormal_gradients(backend, dtype):
    """Denormal floats make the backward products 5-100x slower on x86: the kernel clamps
    probabilities that small (changing each by less than itself)."""
    z = np.zeros((64, 10), dtype)
    z[:, 0] = 1000.0  # a very confident model: exp(-1000) underflows
    value, dlogits = nnx.SparseCategoricalCrossentropy()(backend.asarray(z), np.zeros(64, np.int64), backend=backend)
    d = np.abs(backend.to_numpy(dlogits))
    assert not ((d > 0) & (d < np.finfo(dtype).tiny * 2**32)).any()
    assert value == pytest.approx(0.0, abs=1e-20)
    np.testing.assert_allclose(backend.to_numpy(dlogits), 0.0, atol=1e-20)
