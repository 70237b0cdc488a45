"""Where NumPy's own BLAS keeps its gemm, for the one product NumPy cannot express.

``np.matmul`` computes C = A·B. The SGD update of a Dense weight, W ← W − lr·Xᵀ·dY, is a
single BLAS gemm, C ← α·A·B + β·C with α = −lr and β = 1: it writes W once instead of
writing dW, reading it back and rewriting W, and it skips the pass that zeroes C when β = 0.
Measured on a 2-core Skylake-X (OpenBLAS 0.3.31): 1.60 ms against 2.29 ms for the matmul and
the update at 1024×1024, batch 256; 79 µs against 111 µs at 256×256, batch 128.

NumPy's wheels (2.x) ship OpenBLAS as ``scipy-openblas`` with 64-bit integers and prefixed
symbols (``scipy_cblas_sgemm64_``). Calling that very library, already loaded by NumPy, shares
NumPy's thread pool; loading a second BLAS (SciPy's) made two pools fight for the cores and
slowed training threefold. The compiled kernels (``backends/cpu_kernels.c``) make the call, so
that the layout checks cost C time, not Python time; where the library is not found (another
NumPy build), ``GEMM_ADDRESSES`` is None and the update takes the contract's two steps.
"""

from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

_SYMBOLS = ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_")  # cblas_?gemm with int64 sizes


def _gemm_addresses() -> tuple[int, int] | None:
    """(sgemm, dgemm) addresses in NumPy's OpenBLAS (Linux wheels: numpy.libs/, macOS: numpy/.dylibs/)."""
    numpy_dir = os.path.dirname(np.__file__)
    for pattern in ("../numpy.libs/libscipy_openblas64_*.so", ".dylibs/libscipy_openblas64_*.dylib"):
        for path in sorted(glob.glob(os.path.join(numpy_dir, pattern))):
            try:
                lib = ctypes.CDLL(path)
                functions = [getattr(lib, symbol) for symbol in _SYMBOLS]
            except (OSError, AttributeError):
                continue
            s, d = (ctypes.cast(fn, ctypes.c_void_p).value for fn in functions)
            return s, d
    return None


GEMM_ADDRESSES = _gemm_addresses()
"""Addresses of NumPy's row-major cblas_sgemm and cblas_dgemm (64-bit integers), or None."""
