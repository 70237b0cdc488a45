"""Layer behaviour beyond gradients: Dropout's statistics on every backend, and the buffer
contract of forward."""

from __future__ import annotations

import numpy as np
import pytest

import nnx


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_zeroes_a_fraction_p_independently_per_entry_and_scales_the_rest(backend, p):
    n, features = 512, 256
    layer = nnx.Dropout(p)
    layer.build(backend, np.float32, np.random.default_rng(0))
    layer.training = True
    x = np.random.default_rng(1).uniform(1.0, 2.0, (n, features)).astype(np.float32)
    y = backend.to_numpy(layer.forward(backend.asarray(x)))
    dropped = y == 0
    sd = np.sqrt(p * (1 - p) / dropped.size)
    assert abs(dropped.mean() - p) < 5 * sd  # the fraction dropped is p
    row_fractions = dropped.mean(axis=1)
    assert row_fractions.min() > 0 and row_fractions.max() < 1  # every row keeps some and drops some
    assert len({row.tobytes() for row in dropped[:32]}) == 32  # rows differ: a mask per entry, not per layer
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=1e-6)  # kept entries are x / (1 - p)
    second = backend.to_numpy(layer.forward(backend.asarray(x))) == 0
    assert 0.3 < (second != dropped).mean() / (2 * p * (1 - p)) < 1.7  # a new mask each step


def test_forward_returns_a_buffer_that_the_next_forward_overwrites(rng):
    """As documented: copy model.forward's result to keep it."""
    model = nnx.Sequential(nnx.Dense(4, 3), backend="numpy")
    first = model.forward(rng.standard_normal((5, 4)).astype(np.float32))
    kept = first.copy()
    second = model.forward(rng.standard_normal((5, 4)).astype(np.float32))
    assert second is first and not np.array_equal(kept, second)
