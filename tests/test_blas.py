"""The gemm into NumPy's own BLAS (backends.blas, called by the compiled kernels): how it is
found, results with 64-bit and 32-bit BLAS integers, the layouts it declines, shapes it refuses,
and the fallback."""

from __future__ import annotations

import os

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from backends.blas import Gemm, find_gemm, gemm_in, loaded_blas_libraries
from backends.contract import Backend
from backends.numpy_backend import COMPILED, NUMPY, NumpyBackend
from tests.conftest import requires_compiled, requires_gemm
from tests.helpers import dot_error_bound

pytestmark = [requires_compiled, requires_gemm]
FOUND = find_gemm()


def GEMM(a, b, c, alpha, beta, gemm: Gemm | None = FOUND):
    """c ← alpha·a·b + beta·c through ``gemm`` (NumPy's, by default); whether it was done."""
    return COMPILED.gemm(a, b, c, alpha, beta, gemm.address(np.asarray(c).dtype) if gemm else 0, gemm.ilp64)


def test_the_gemm_is_found_in_the_blas_that_numpy_loaded():
    numpy_blas = [i["filepath"] for i in threadpool_info() if i["user_api"] == "blas"]
    assert FOUND.library == loaded_blas_libraries()[0] and FOUND.library in numpy_blas
    assert FOUND.sgemm and FOUND.dgemm and FOUND.sgemm != FOUND.dgemm
    assert NUMPY.gemm == FOUND and "one gemm of" in NUMPY.kernel_status()


def test_a_library_without_a_cblas_gemm_or_no_library_gives_none():
    assert gemm_in(COMPILED.__file__) is None  # a shared library, but no BLAS
    assert gemm_in("/nonexistent/libblas.so") is None


def test_the_three_cpu_configurations_say_what_they_run():
    assert NumpyBackend(None).kernel_status().startswith("NumPy only")
    assert "no BLAS gemm" in NumpyBackend(COMPILED, None).kernel_status()
    assert NumpyBackend(None, FOUND).gemm is None  # the gemm is called from the compiled kernels


def test_a_32_bit_integer_cblas_gemm_computes_the_same_product(rng):
    """The LP64 interface (int sizes) that Debian's and conda's OpenBLAS export, from scipy-openblas32."""
    lp64 = pytest.importorskip("scipy_openblas32", reason="scipy-openblas32 (the test extra) is not installed")
    gemm = gemm_in(os.path.join(lp64.get_lib_dir(), "libscipy_openblas.so"))
    assert gemm is not None and not gemm.ilp64
    for dtype, tol in (("float32", 1e-5), ("float64", 1e-13)):
        a, b = rng.standard_normal((6, 4)).astype(dtype), rng.standard_normal((5, 4)).astype(dtype).T
        c = rng.standard_normal((6, 5)).astype(dtype)
        expected = -0.5 * (a.astype(np.float64) @ b) + c
        assert GEMM(a, b, c, -0.5, 1.0, gemm)
        np.testing.assert_allclose(c, expected, rtol=tol, atol=tol)


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
        COMPILED.gemm(a, np.ones((4, 2), np.float32), np.ones((3, 2), np.float32).tobytes(), 1.0, 1.0, 1, True)


def test_no_gemm_address_declines():
    a = np.ones((2, 2), np.float32)
    c = a.copy()
    assert not COMPILED.gemm(a, a, c, 1.0, 1.0, 0, True)
    np.testing.assert_array_equal(c, a)


def test_numpy_backend_falls_back_to_the_contract_where_blas_declines(rng):
    """A strided operand takes the generic path (matmul into scratch, then the update): same result."""
    a = rng.standard_normal((5, 12)).astype(np.float32)[:, ::3]
    b, p = rng.standard_normal((4, 3)).astype(np.float32), rng.standard_normal((5, 3)).astype(np.float32)
    for keep in (1.0, 0.5):
        folded, generic = p.copy(), p.copy()
        NUMPY.sgd_matmul_update(folded, a, b, 0.1, np.empty_like(p), keep)
        Backend.sgd_matmul_update(NUMPY, generic, a, b, 0.1, np.empty_like(p), keep)
        # against NumPy's float32 product: sums of K = 4 products in another order (dot_error_bound),
        # then the scaling and the update (a few roundings of the result's magnitude)
        u = float(np.finfo(np.float32).eps) / 2
        bound = 0.1 * dot_error_bound(a, b) + 8 * u * (np.abs(keep * p) + 0.1 * np.abs(a) @ np.abs(b))
        assert (np.abs(folded - (keep * p - 0.1 * (a @ b))) <= bound).all()
        np.testing.assert_array_equal(folded, generic)


def test_numpy_s_own_blas_comes_first_when_another_is_loaded_too():
    lp64 = pytest.importorskip("scipy_openblas32", reason="scipy-openblas32 (the test extra) is not installed")
    import ctypes

    ctypes.CDLL(os.path.join(lp64.get_lib_dir(), "libscipy_openblas.so"))  # a second BLAS in the process
    assert len(loaded_blas_libraries()) >= 2 and find_gemm() == FOUND


def test_a_forced_openblas_kernel_is_named_with_the_one_this_cpu_would_pick(monkeypatch):
    from backends.blas import forced_kernel_warning

    monkeypatch.delenv("OPENBLAS_CORETYPE", raising=False)
    assert forced_kernel_warning() is None
    monkeypatch.setenv("OPENBLAS_CORETYPE", "NotAKernel")  # read by a fresh process only: this one is unchanged
    warning = forced_kernel_warning()
    assert warning is not None and warning.startswith("OPENBLAS_CORETYPE=NotAKernel forces OpenBLAS's NotAKernel")
    assert "on this CPU it would pick" in warning and "unknown" not in warning
