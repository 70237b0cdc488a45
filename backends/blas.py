"""Where NumPy's own BLAS keeps its gemm, for the one product NumPy cannot express.

``np.matmul`` computes C = A·B. The SGD update of a Dense weight, W ← W − lr·Xᵀ·dY, is a
single BLAS gemm, C ← α·A·B + β·C with α = −lr and β = 1: it writes W once instead of
writing dW, reading it back and rewriting W, and it skips the pass that zeroes C when β = 0.

The library is found, not guessed: threadpoolctl lists the BLAS libraries that this process
has loaded (NumPy's first, since nnx imports NumPy before anything else that brings one), and
the gemm is looked up there by its CBLAS name. NumPy's wheels ship OpenBLAS as
``scipy-openblas`` with 64-bit integers and prefixed symbols (``scipy_cblas_sgemm64_``); a
system OpenBLAS, BLIS or MKL exports ``cblas_sgemm`` (32-bit integers) or ``cblas_sgemm64_``.
Calling the library NumPy already loaded shares its thread pool; loading a second BLAS made two
pools fight for the cores and slowed training threefold. Where no gemm is found, ``find_gemm``
returns None and the NumPy backend takes the contract's two steps (product, then update).
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
from typing import NamedTuple

import numpy as np

# (single, double, whether the integers are 64-bit), in order of preference
_SYMBOLS = (
    ("scipy_cblas_sgemm64_", "scipy_cblas_dgemm64_", True),
    ("cblas_sgemm64_", "cblas_dgemm64_", True),
    ("scipy_cblas_sgemm", "scipy_cblas_dgemm", False),
    ("cblas_sgemm", "cblas_dgemm", False),
)


class Gemm(NamedTuple):
    """The row-major cblas_sgemm and cblas_dgemm of one library: addresses and integer width."""

    sgemm: int
    dgemm: int
    ilp64: bool  # int64 sizes (ILP64) rather than int
    library: str  # its file, for reports

    def address(self, dtype: np.dtype) -> int:
        """The gemm for float32 or float64 arrays."""
        return self.sgemm if dtype == np.float32 else self.dgemm


def forced_kernel_warning() -> str | None:
    """A warning when OPENBLAS_CORETYPE makes OpenBLAS run other kernels than the ones it picks for
    this CPU (Haswell's where the CPU has AVX-512 halves the speed of a float32 gemm); None when the
    variable is unset or names the kernel OpenBLAS would pick anyway. Asks a fresh Python without
    the variable which kernel that is."""
    forced = os.environ.get("OPENBLAS_CORETYPE")
    if not forced:
        return None
    probe = (
        "import json, numpy; from threadpoolctl import threadpool_info; "
        "print(json.dumps([p.get('architecture') for p in threadpool_info() if p.get('internal_api') == 'openblas']))"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    try:
        result = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=60)
        native = json.loads(result.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        native = []
    if native and all(str(kernel).lower() == forced.lower() for kernel in native):
        return None
    own = ", ".join(map(str, native)) or "unknown"
    return f"OPENBLAS_CORETYPE={forced} forces OpenBLAS's {forced} kernels; on this CPU it would pick {own}"


def loaded_blas_libraries() -> list[str]:
    """Files of the BLAS libraries loaded in this process, NumPy's own first."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # a dependency of nnx; absent only in a hand-made environment
        return []
    paths = [info["filepath"] for info in threadpool_info() if info.get("user_api") == "blas"]
    numpy_dir = os.path.realpath(os.path.dirname(np.__file__))  # its wheels' BLAS: numpy.libs/ or numpy/.dylibs/
    return sorted(paths, key=lambda path: not os.path.realpath(path).startswith(numpy_dir))


def gemm_in(path: str) -> Gemm | None:
    """The row-major CBLAS gemms exported by the library at ``path``, or None."""
    try:
        lib = ctypes.CDLL(path)
    except OSError:
        return None
    for single, double, ilp64 in _SYMBOLS:
        try:
            functions = getattr(lib, single), getattr(lib, double)
        except AttributeError:
            continue
        s, d = (ctypes.cast(fn, ctypes.c_void_p).value for fn in functions)
        return Gemm(s, d, ilp64, path)
    return None


def find_gemm() -> Gemm | None:
    """The gemm of the BLAS that NumPy loaded, or None where none is found."""
    for path in loaded_blas_libraries():
        gemm = gemm_in(path)
        if gemm is not None:
            return gemm
    return None
