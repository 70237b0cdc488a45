"""The gemm into NumPy's own BLAS (backends.blas, called by the compiled kernels): results,
the layouts it declines, shapes it refuses, and the fallback."""

from __future__ import annotations

import numpy as np
import pytest

from backends.blas import GEMM_ADDRESSES
from backends.contract import Backend
from backends.numpy_backend import COMPILED, NUMPY

pytestmark = [
    pytest.mark.skipif(GEMM_ADDRESSES is None, reason="NumPy's own OpenBLAS (scipy-openblas) was not found"),
    pytest.mark.skipif(COMPILED is None, reason="the compiled CPU kernels were not built (no C compiler?)"),
]
GEMM = None if COMPILED is None else COMPILED.gemm


@pytest.mark.parametrize("dtype, tol", [("float32", 1e-5), ("float64", 1e-13)])
@pytest.mark.parametrize("a_order", ["C", "F"])
@pytest.mark.parametrize("b_order", ["C", "F"])
def test_gemm_computes_alpha_a_b_plus_beta_c_for_every_contiguous_layout(rng, dtype, tol, a_order, b_order):
    a = np.asarray(rng.standard_normal((6, 4)), dtype, order=a_order)
    b = np.asarray(rng.standard_normal((4, 5)), dtype, order=b_order)
    c = rng.standard_normal((6, 5)).astype(dtype)
    expected = -0.5 * (a.astype(np.float64) @ b) + 2.0 * c
    assert GEMM(a, b, c, -0.5, 2.0)
    np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


def test_gemm_reads_row_padded_slices_in_place(rng):
    """A column slice keeps contiguous rows with a longer stride: BLAS takes it as it is."""
    big = rng.standard_normal((6, 9)).astype(np.float32)
    a, b, c = big[:, :4], rng.standard_normal((4, 3)).astype(np.float32), np.zeros((6, 3), np.float32)
    assert GEMM(a, b, c, 1.0, 0.0)
    np.testing.assert_allclose(c, a @ b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "case",
    ["strided columns", "mixed dtypes", "c overlaps a", "c overlaps b", "c not contiguous", "integer arrays", "empty"],
)
def test_gemm_declines_what_blas_cannot_take_and_leaves_c_untouched(rng, case):
    a, b = rng.standard_normal((4, 4)).astype(np.float32), rng.standard_normal((4, 4)).astype(np.float32)
    c = np.ones((4, 4), np.float32)
    if case == "strided columns":
        a = rng.standard_normal((4, 8)).astype(np.float32)[:, ::2]
    elif case == "mixed dtypes":
        b = b.astype(np.float64)
    elif case == "c overlaps a":
        a = c
    elif case == "c overlaps b":
        big = np.ones((8, 4), np.float32)
        b, c = big[2:6], big[4:8]
    elif case == "c not contiguous":
        c = np.ones((4, 8), np.float32)[:, ::2]
    elif case == "integer arrays":
        a, b, c = (x.astype(np.int64) for x in (a, b, c))
    else:
        a, b, c = np.ones((4, 0), np.float32), np.ones((0, 4), np.float32), c
    before = c.copy()
    assert not GEMM(a, b, c, 1.0, 1.0)
    np.testing.assert_array_equal(c, before)


def test_gemm_rejects_shapes_that_do_not_match_before_touching_memory():
    a, b, c = np.ones((3, 4), np.float32), np.ones((5, 2), np.float32), np.ones((3, 2), np.float32)
    with pytest.raises(ValueError, match=r"gemm needs 2-D a \(M, K\), b \(K, N\) and c \(M, N\)"):
        GEMM(a, b, c, 1.0, 1.0)
    with pytest.raises(ValueError, match="gemm needs"):
        GEMM(np.ones((3, 5), np.float32), b, np.ones((2, 2), np.float32), 1.0, 1.0)
    with pytest.raises(ValueError, match="gemm needs"):
        GEMM(np.ones(5, np.float32), np.ones((5, 2), np.float32), np.ones((1, 2), np.float32), 1.0, 1.0)
    with pytest.raises(BufferError):  # c must be writable
        GEMM(a, np.ones((4, 2), np.float32), np.ones((3, 2), np.float32).tobytes(), 1.0, 1.0)


def test_numpy_backend_falls_back_to_the_contract_where_blas_declines(rng):
    """A strided operand takes the generic path (matmul into scratch, then the update): same result."""
    a = rng.standard_normal((5, 12)).astype(np.float32)[:, ::3]
    b, p = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    folded, generic = p.copy(), p.copy()
    NUMPY.sgd_matmul_update(folded, a, b, 0.1, np.empty_like(p))
    Backend.sgd_matmul_update(NUMPY, generic, a, b, 0.1, np.empty_like(p))
    np.testing.assert_allclose(folded, p - 0.1 * (a @ b), rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(folded, generic)
