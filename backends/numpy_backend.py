"""The CPU backend: NumPy arrays, OpenBLAS (or whatever BLAS NumPy links) for the products.

Some kernels also come compiled (``backends/cpu_kernels.c``, built at install time): the fused
loss, bias + ReLU, the ReLU backward, the row sum and the SGD-momentum and Adam steps, each one
pass over memory where NumPy needs several, and the SGD update as one call of the gemm of the BLAS
that NumPy loaded (``backends/blas.py``). Where the extension was not built, the gemm was not
found, or an array is not laid out for them (not C-contiguous, an unexpected dtype), the
contract's NumPy kernels run instead and give the same results.

Three configurations, each a ``NumpyBackend`` instance (tests run all three):
NumPy only (``kernels=None``), compiled without the gemm (``gemm=None``), and compiled with it.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import numpy as np

from backends.blas import Gemm, find_gemm
from backends.compiled import COMPILED, UNAVAILABLE
from backends.contract import AdamStep, Array, Backend, MomentumStep

_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _contiguous(dtype: np.dtype, *arrays: Array) -> bool:
    """Whether every array is a C-contiguous NumPy array of ``dtype``, a float type the kernels know."""
    if dtype not in _FLOATS:
        return False
    for a in arrays:  # noqa: SIM110 (a loop, not all() over a generator: this runs several times a step)
        if type(a) is not np.ndarray or a.dtype != dtype or not a.flags.c_contiguous:
            return False
    return True


class NumpyBackend(Backend):
    """The contract on NumPy, plus host transfer of CuPy arrays, the L2-sized pieces in which
    optimizers walk the parameters, the compiled kernels and the SGD update as one BLAS gemm.

    kernels: the compiled module, or None for NumPy's own kernels only.
    gemm: the BLAS gemm for ``sgd_matmul_update`` (called through the compiled module), or None.
    """

    name = "numpy"
    xp = np
    host_reads_are_free = True
    update_chunk = 1 << 17  # elements (512 KiB of float32): optimizer passes stay in the L2 cache

    def __init__(self, kernels: ModuleType | None = COMPILED, gemm: Gemm | None = None) -> None:
        self.kernels = kernels
        self.gemm = gemm if kernels is not None else None

    def __repr__(self) -> str:
        return f"<Backend numpy: {self.kernel_status()}>"

    def kernel_status(self) -> str:
        """How this backend runs its hot kernels, for reports (``nnx info``, the benchmarks)."""
        if self.kernels is None:
            return "NumPy only" + (f" ({UNAVAILABLE})" if COMPILED is None else "")
        if self.gemm is None:
            return "compiled; SGD update in two steps (no BLAS gemm found)"
        return f"compiled; SGD update as one gemm of {self.gemm.library.rsplit('/', 1)[-1]}"

    def asarray(self, host: Any, dtype: Any = None) -> Array:
        if hasattr(host, "__cuda_array_interface__"):  # a CuPy array: copy it to the host
            host = host.get()
        return np.asarray(host, dtype=dtype)

    def gather_rows(self, x: Array, index: Array, out: Array) -> Array:
        # mode="clip" skips the bounds check that makes np.take buffer its output (58 → 40 µs for
        # a batch of 128 rows of 784 floats): the indices come from a permutation of the rows.
        return x.take(index, axis=0, out=out, mode="clip")

    def sum_rows(self, x: Array, out: Array) -> None:
        if self.kernels and x.ndim == 2 and out.shape == x.shape[1:] and _contiguous(x.dtype, x, out):
            self.kernels.sum_rows(x, out, x.dtype == np.float64)
        else:
            super().sum_rows(x, out)

    def bias_relu(self, y: Array, b: Array) -> None:
        if self.kernels and y.ndim == 2 and b.shape == y.shape[1:] and _contiguous(y.dtype, y, b):
            self.kernels.bias_relu(y, b, y.dtype == np.float64)
        else:
            super().bias_relu(y, b)

    def relu_backward(self, grad: Array, y: Array, out: Array, mask: Array) -> None:
        if self.kernels and grad.shape == y.shape == out.shape and _contiguous(y.dtype, grad, y, out):
            self.kernels.relu_backward(grad, y, out, y.dtype == np.float64)
        else:
            super().relu_backward(grad, y, out, mask)

    def softmax_cross_entropy(
        self, logits: Array, labels: Array, dlogits: Array, workspace: dict[str, Array] | None = None
    ) -> Array:
        n, c = logits.shape
        if (
            self.kernels
            and n
            and c
            and dlogits.shape == logits.shape
            and _contiguous(logits.dtype, logits, dlogits)
            and type(labels) is np.ndarray
            and labels.dtype == np.int64
            and labels.shape == (n,)
            and labels.flags.c_contiguous
        ):
            return np.float64(self.kernels.softmax_xent(logits, labels, dlogits, n, c, logits.dtype == np.float64))
        return super().softmax_cross_entropy(logits, labels, dlogits, workspace)

    def momentum_update(self, p: Array, g: Array, v: Array, step: MomentumStep, scratch: Array) -> None:
        if self.kernels and _contiguous(p.dtype, p, g, v):
            self.kernels.momentum(p, g, v, p.dtype == np.float64, *step)
        else:
            super().momentum_update(p, g, v, step, scratch)

    def adam_update(self, p: Array, g: Array, m: Array, v: Array, step: AdamStep, scratch: Array) -> None:
        if self.kernels and _contiguous(p.dtype, p, g, m, v):
            self.kernels.adam(p, g, m, v, p.dtype == np.float64, *step)
        else:
            super().adam_update(p, g, m, v, step, scratch)

    def sgd_matmul_update(self, param: Array, a: Array, b: Array, lr: float, scratch: Array, keep: float = 1.0) -> None:
        # One gemm, param ← −lr·a·b + keep·param, where NumPy's BLAS was found (see backends.blas).
        gemm = self.gemm
        if not (gemm and self.kernels.gemm(a, b, param, -lr, keep, gemm.address(param.dtype), gemm.ilp64)):
            super().sgd_matmul_update(param, a, b, lr, scratch, keep)


NUMPY = NumpyBackend(COMPILED, find_gemm() if COMPILED is not None else None)
"""The default CPU backend: every fast path that this installation has."""
