"""The compiled CPU kernels (backends/cpu_kernels.c) against float64 references, at the row widths
where the code paths change, on the special values, and on memory they must refuse."""

from __future__ import annotations

import os
import platform

import numpy as np
import pytest

from backends import reference
from backends.contract import AdamStep, MomentumStep
from backends.numpy_backend import COMPILED, NUMPY, NumpyBackend

if os.environ.get("NNX_REQUIRE_COMPILED") == "1" and COMPILED is None:
    raise RuntimeError("NNX_REQUIRE_COMPILED=1 but backends._cpu_kernels was not built")
pytestmark = pytest.mark.skipif(COMPILED is None, reason="the compiled CPU kernels were not built (no C compiler?)")
PLAIN = NumpyBackend(kernels=None)


def test_the_numpy_backend_uses_the_compiled_kernels():
    assert NUMPY.kernels is COMPILED and "compiled" in repr(NUMPY)


def test_float32_exp_is_accurate_over_the_whole_range_it_is_given(rng):
    """Rows (0, t) for t from the clamp floor (about -52 here) to 0: the probability of the second
    entry is e^t / (1 + e^t), so the kernel's exp is checked at every scale it meets."""
    t = np.linspace(-52.0, 0.0, 4001)
    z = np.stack([np.zeros_like(t), t], axis=1).astype(np.float32)
    y = np.zeros(len(t), np.int64)
    d = np.empty_like(z)
    NUMPY.softmax_cross_entropy(z, y, d)
    t32 = z[:, 1].astype(np.float64)
    expected = np.exp(t32) / (1 + np.exp(t32)) / len(t)
    np.testing.assert_allclose(d[:, 1], expected, rtol=2e-6)


@pytest.mark.parametrize("c", [4, 10, 16, 100])  # rows narrower than 16 go in blocks of 64 rows
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_a_nan_or_inf_logit_makes_its_row_nan_and_leaves_the_others(rng, c, bad):
    z = rng.standard_normal((130, c)).astype(np.float32)
    rows = [2, 63, 64, 129]  # in the first, at both sides of a block's edge, the last
    z[rows, 3] = bad
    y = rng.integers(0, c, 130)
    d = np.empty_like(z)
    value = NUMPY.softmax_cross_entropy(z, y, d)
    if bad == -np.inf:  # exp(-inf) = 0: a finite row, as with NumPy's kernels
        expected = np.empty_like(z)
        assert float(value) == pytest.approx(float(PLAIN.softmax_cross_entropy(z, y, expected)), rel=1e-6)
        np.testing.assert_allclose(d, expected, rtol=1e-6, atol=1e-9)
        return
    assert np.isnan(value)
    assert np.isnan(d[rows]).all() and np.isfinite(np.delete(d, rows, axis=0)).all()


@pytest.mark.parametrize("label", [-1, 10])
def test_a_label_out_of_range_makes_the_loss_nan_without_writing_outside_the_row(rng, label):
    z = rng.standard_normal((3, 10)).astype(np.float32)
    d = np.zeros((4, 10), np.float32)  # one spare row after the output, which must stay 0
    value = NUMPY.softmax_cross_entropy(z, np.array([1, label, 2]), d[:3])
    assert np.isnan(value) and np.isnan(d[1]).all() and not d[3].any()


def test_a_row_of_only_minus_infinity_is_nan(rng):
    z = np.full((2, 5), -np.inf, np.float32)
    z[0] = rng.standard_normal(5)
    d = np.empty_like(z)
    assert np.isnan(NUMPY.softmax_cross_entropy(z, np.array([0, 0]), d))
    assert np.isfinite(d[0]).all() and np.isnan(d[1]).all()


def test_lengths_that_do_not_match_n_and_c_are_refused_before_memory_is_touched():
    z, d, y = np.zeros((4, 5), np.float32), np.zeros((4, 5), np.float32), np.zeros(4, np.int64)
    with pytest.raises(ValueError, match="logits must hold 100 bytes; got 80"):
        COMPILED.softmax_xent(z, y, d, 5, 5, False)
    with pytest.raises(ValueError, match="labels must hold 32 bytes; got 16"):
        COMPILED.softmax_xent(z, y[:2], d, 4, 5, False)
    with pytest.raises(ValueError, match="rows of b"):
        COMPILED.bias_relu(z, np.zeros(3, np.float32), False)
    with pytest.raises(ValueError, match="rows of out"):
        COMPILED.sum_rows(z, np.zeros(3, np.float32), False)
    with pytest.raises(ValueError, match="same size"):
        COMPILED.relu_backward(z, z, np.zeros(3, np.float32), False)
    with pytest.raises(TypeError):  # read-only output
        COMPILED.bias_relu(b"\0" * 80, np.zeros(5, np.float32).tobytes(), False)


def test_arrays_the_kernels_cannot_take_go_to_numpy_with_the_same_results(rng):
    """A strided (non-contiguous) view is computed by NumPy's kernels: same numbers."""
    z = rng.standard_normal((8, 24)).astype(np.float32)[:, ::2]
    y = rng.integers(0, 12, 8)
    d1, d2 = np.empty(z.shape, np.float32), np.empty(z.shape, np.float32)
    np.testing.assert_allclose(NUMPY.softmax_cross_entropy(z, y, d1), PLAIN.softmax_cross_entropy(z, y, d2), rtol=1e-6)
    np.testing.assert_allclose(d1, d2, rtol=1e-6, atol=1e-9)
    a, b = rng.standard_normal((6, 8)).astype(np.float32)[:, ::2], np.ones(4, np.float32)
    expected = reference.relu(a + b)
    NUMPY.bias_relu(a, b)
    np.testing.assert_array_equal(a, expected)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("decay, flush, l2", [(1.0, False, 0.0), (0.999, True, 0.0), (0.999, False, 3e-3)])
def test_compiled_optimizer_steps_are_bit_identical_to_the_numpy_ones(rng, dtype, decay, flush, l2):
    """The same float operations in the same order (no FMA contraction): equal to the last bit,
    tiny state included (the flush zeroes it in both), and with an L2 penalty."""
    n = 1000
    g = rng.standard_normal(n).astype(dtype)
    g[:10] = 0
    state = rng.standard_normal((4, n)).astype(dtype)
    state[1:, :10] = 1e-30 if dtype == "float32" else 1e-36  # tiny moments without gradient: flushed to 0
    state[3] = np.abs(state[3])  # v >= 0
    for nesterov in (False, True):
        (p1, v1), (p2, v2) = state[:2].copy(), state[:2].copy()
        step = MomentumStep(0.1, 0.9, nesterov, decay, flush, l2)
        NUMPY.momentum_update(p1, g.copy(), v1, step, np.empty(n, dtype))
        PLAIN.momentum_update(p2, g.copy(), v2, step, np.empty(n, dtype))
        np.testing.assert_array_equal(p1, p2)
        np.testing.assert_array_equal(v1, v2)
    (p1, m1, v1), (p2, m2, v2) = state[[0, 2, 3]].copy(), state[[0, 2, 3]].copy()
    step = AdamStep(1e-3, 0.9, 0.999, 1e-8, decay, flush, l2)
    NUMPY.adam_update(p1, g.copy(), m1, v1, step, np.empty(n, dtype))
    PLAIN.adam_update(p2, g.copy(), m2, v2, step, np.empty(n, dtype))
    for a, b in ((p1, p2), (m1, m2), (v1, v2)):
        np.testing.assert_array_equal(a, b)
    if not l2:  # (with a penalty, the gradient of the first ten is no longer zero)
        assert not m1[:10].any() if flush else m1[:10].all()


def test_the_optimizer_steps_run_without_denormals_and_restore_the_callers_float_mode():
    """A weight whose loss gradient is 0 under an L2 penalty: (l2·p)² is a denormal float32
    (about 1e-40). The compiled Adam step writes it as 0 (x86's flush-to-zero, as TensorFlow's CPU
    kernels run), the NumPy step keeps it: the parameters agree bit for bit, and v differs only by
    the denormal. A denormal gradient reads as 0 (momentum's velocity stays 0). A denormal made
    after the steps is a denormal again: the caller's mode is back."""
    x86 = platform.machine() in ("x86_64", "AMD64")
    p, g = np.full(4, 2e-14, np.float32), np.zeros(4, np.float32)  # l2·p = 1e-20, squared 1e-40
    m, v = np.zeros(4, np.float32), np.zeros(4, np.float32)
    step = AdamStep(1e-3, 0.9, 0.999, 1e-8, 1.0, False, 5e-7)
    (p1, m1, v1), (p2, m2, v2) = (p.copy(), m.copy(), v.copy()), (p.copy(), m.copy(), v.copy())
    NUMPY.adam_update(p1, g.copy(), m1, v1, step, np.empty(4, np.float32))
    PLAIN.adam_update(p2, g.copy(), m2, v2, step, np.empty(4, np.float32))
    np.testing.assert_array_equal(p1, p2)
    np.testing.assert_array_equal(m1, m2)
    if x86:
        assert not v1.any() and 0 < v2[0] < np.finfo(np.float32).tiny
    tiny = np.full(4, 1e-40, np.float32)  # a denormal gradient
    p1, v1, p2, v2 = np.ones(4, np.float32), np.zeros(4, np.float32), np.ones(4, np.float32), np.zeros(4, np.float32)
    momentum = MomentumStep(0.1, 0.9, False, 1.0, False, 0.0)
    NUMPY.momentum_update(p1, tiny.copy(), v1, momentum, np.empty(4, np.float32))
    PLAIN.momentum_update(p2, tiny.copy(), v2, momentum, np.empty(4, np.float32))
    np.testing.assert_array_equal(p1, p2)  # 1 − 0.1·1e-40 rounds to 1 either way
    if x86:
        assert not v1.any() and (v2 == tiny).all()
    assert np.float32(1e-20) * np.float32(1e-20) > 0  # still a denormal, not 0, after the steps


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_an_eps_below_the_smallest_normal_float_gives_no_nan(dtype):
    """With denormals off, such an eps would read as 0 and make 0/0 where m = v = 0; the kernel
    takes the smallest normal float instead, and the step matches NumPy's (no update)."""
    eps = 1e-39 if dtype == "float32" else 1e-310
    p, g, m, v = np.ones(4, dtype), np.zeros(4, dtype), np.zeros(4, dtype), np.zeros(4, dtype)
    step = AdamStep(1e-3, 0.9, 0.999, eps, 1.0, False, 0.0)
    NUMPY.adam_update(p, g, m, v, step, np.empty(4, dtype))
    np.testing.assert_array_equal(p, np.ones(4, dtype))


def test_optimizer_kernels_refuse_arrays_of_different_sizes():
    a, b = np.zeros(8, np.float32), np.zeros(7, np.float32)
    with pytest.raises(ValueError, match="must be the same size; got 32 and 28 bytes"):
        COMPILED.adam(a, a, b, a, False, 1e-3, 0.9, 0.999, 1e-8, 1.0, False, 0.0)
    with pytest.raises(ValueError, match="must be the same size"):
        COMPILED.momentum(a, b, a, False, 0.1, 0.9, False, 1.0, False, 0.0)


def test_the_c_source_records_its_own_digest():
    from backends.compiled import SOURCE, recorded_digest, source_digest

    text = SOURCE.read_bytes()
    digest = source_digest(text)
    assert recorded_digest(text) == digest, f"after editing cpu_kernels.c, set NNX_SOURCE_SHA256 to {digest}"
    assert digest == COMPILED.SOURCE_SHA256  # the module in use was built from this source


def test_a_module_built_from_other_source_is_refused_saying_why(tmp_path):
    from types import SimpleNamespace

    from backends.compiled import SOURCE, check

    stale = SimpleNamespace(SOURCE_SHA256="0" * 64, __file__=str(tmp_path / "_cpu_kernels.so"))
    reason = check(stale)
    assert "stale: built from source 000000000000, but cpu_kernels.c is" in reason and "rebuild" in reason
    assert "(unrecorded)" in check(SimpleNamespace(__file__="old.so"))  # built before digests were recorded
    assert check(COMPILED) == "" and check(stale, tmp_path / "absent.c") == ""  # no source beside it: a wheel
    assert SOURCE.name == "cpu_kernels.c"
