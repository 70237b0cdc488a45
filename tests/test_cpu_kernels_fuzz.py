"""Property tests of the compiled CPU kernels on random shapes, layouts and values: every result
matches a float64 reference (or the NumPy kernels, bit for bit, for the optimizer steps), and the
gemm either computes the right product or declines and leaves its output untouched.

    HYPOTHESIS_PROFILE=fuzz pytest tests/test_cpu_kernels_fuzz.py      (more examples)
"""

from __future__ import annotations

import os

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, settings
from hypothesis import strategies as st

from backends import reference
from backends.contract import AdamStep, MomentumStep
from backends.numpy_backend import COMPILED, NUMPY, NumpyBackend
from tests.conftest import GEMM

pytestmark = pytest.mark.skipif(COMPILED is None, reason="the compiled CPU kernels were not built (no C compiler?)")
EXAMPLES = 2000 if os.environ.get("HYPOTHESIS_PROFILE") == "fuzz" else 100
PLAIN = NumpyBackend(kernels=None)
DTYPES = st.sampled_from(["float32", "float64"])
TOL = {"float32": 2e-5, "float64": 1e-12}


def laid_out(draw, rng: np.random.Generator, shape: tuple[int, int], dtype: str) -> tuple[np.ndarray, bool]:
    """An array of ``shape`` in one of the layouts a caller may pass: rows or columns contiguous,
    with or without padding between them, or neither (every other column); and whether the gemm
    takes it (all but the last, unless NumPy calls it contiguous all the same, as it does a 1×1)."""
    layout = draw(st.sampled_from(["C", "F", "padded rows", "padded columns", "strided"]))
    rows, cols = shape
    if layout == "C":
        return rng.standard_normal(shape).astype(dtype), True
    if layout == "F":
        return np.asfortranarray(rng.standard_normal(shape).astype(dtype)), True
    if layout == "padded rows":
        return rng.standard_normal((rows, cols + 3)).astype(dtype)[:, :cols], True
    if layout == "padded columns":
        return rng.standard_normal((cols, rows + 2)).astype(dtype)[:, :rows].T, True
    a = rng.standard_normal((rows, 2 * cols)).astype(dtype)[:, ::2]
    return a, a.flags.c_contiguous or a.flags.f_contiguous


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.data(), st.integers(1, 40), st.integers(1, 40), st.integers(1, 40), DTYPES, st.integers(0, 2**32))
def test_gemm_computes_the_product_or_declines_untouched(data, m, k, n, dtype, seed):
    rng = np.random.default_rng(seed)
    (a, a_ok), (b, b_ok) = laid_out(data.draw, rng, (m, k), dtype), laid_out(data.draw, rng, (k, n), dtype)
    c = rng.standard_normal((m, n)).astype(dtype)
    alpha, beta = data.draw(st.floats(-2, 2)), data.draw(st.sampled_from([0.0, 1.0, 0.5]))
    before = c.copy()
    expected = alpha * (a.astype(np.float64) @ b.astype(np.float64)) + beta * before
    accepted = COMPILED.gemm(a, b, c, alpha, beta, GEMM.address(c.dtype), GEMM.ilp64)
    if accepted:
        np.testing.assert_allclose(c, expected, rtol=TOL[dtype] * k, atol=TOL[dtype] * k)
    else:
        np.testing.assert_array_equal(c, before)
    assert accepted == (a_ok and b_ok)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(1, 150), st.integers(1, 200), st.floats(0.01, 60), DTYPES, st.integers(0, 2**32))
def test_fused_loss_matches_the_float64_reference(n, c, scale, dtype, seed):
    rng = np.random.default_rng(seed)
    z = (rng.standard_normal((n, c)) * scale).astype(dtype)
    y = rng.integers(0, c, n)
    d = np.empty_like(z)
    value = NUMPY.softmax_cross_entropy(z, y, d)
    ref_value, ref_d = reference.softmax_cross_entropy(z.astype(np.float64), y)
    tol = TOL[dtype] * 5
    assert float(value) == pytest.approx(ref_value, rel=tol, abs=tol)
    # entries below the denormal clamp (about e^-50 / N) may differ by that much, not more
    np.testing.assert_allclose(d, ref_d, rtol=tol, atol=tol / n)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(1, 70), st.integers(1, 70), DTYPES, st.integers(0, 2**32))
def test_elementwise_kernels_match_the_reference(rows, cols, dtype, seed):
    rng = np.random.default_rng(seed)
    y, b, g = (rng.standard_normal(s).astype(dtype) for s in [(rows, cols), (cols,), (rows, cols)])
    expected = reference.relu(y + b)
    NUMPY.bias_relu(y, b)
    np.testing.assert_array_equal(y, expected)
    out = np.empty_like(g)
    NUMPY.relu_backward(g, y, out, np.empty(y.shape, bool))
    np.testing.assert_array_equal(out, reference.relu_backward(g, y))
    sums = np.empty(cols, dtype)
    NUMPY.sum_rows(g, sums)
    np.testing.assert_allclose(sums, reference.sum_rows(g), rtol=TOL[dtype] * rows, atol=TOL[dtype] * rows)


@settings(max_examples=EXAMPLES, deadline=None)
@given(
    st.integers(1, 300),
    DTYPES,
    st.floats(1e-5, 1.0),
    st.floats(0.0, 0.99),
    st.booleans(),
    st.sampled_from([1.0, 0.999]),
    st.booleans(),
    st.integers(0, 2**32),
)
def test_optimizer_steps_are_bit_identical_to_numpy(size, dtype, lr, mu, nesterov, decay, flush, seed):
    rng = np.random.default_rng(seed)
    g, p = rng.standard_normal(size).astype(dtype), rng.standard_normal(size).astype(dtype)
    m, v = rng.standard_normal(size).astype(dtype), np.abs(rng.standard_normal(size)).astype(dtype)
    step = MomentumStep(lr, mu, nesterov, decay, flush)
    (p1, v1), (p2, v2) = (p.copy(), m.copy()), (p.copy(), m.copy())
    NUMPY.momentum_update(p1, g, v1, step, np.empty(size, dtype))
    PLAIN.momentum_update(p2, g, v2, step, np.empty(size, dtype))
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(v1, v2)
    adam = AdamStep(lr, 0.9, 0.999, 1e-8, decay, flush)
    states = [[p.copy(), m.copy(), v.copy()] for _ in range(2)]
    NUMPY.adam_update(states[0][0], g, *states[0][1:], adam, np.empty(size, dtype))
    PLAIN.adam_update(states[1][0], g, *states[1][1:], adam, np.empty(size, dtype))
    for a, b in zip(*states, strict=True):
        np.testing.assert_array_equal(a, b)
