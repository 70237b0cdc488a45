"""The CPU backend: NumPy arrays, OpenBLAS (or whatever BLAS NumPy links) for the products."""

from __future__ import annotations

import numpy as np
from scipy.linalg import blas

from backends.contract import Array, Backend


class NumpyBackend(Backend):
    """The contract on NumPy, with the elementwise kernels written to allocate nothing."""

    name = "numpy"
    xp = np
    host_reads_are_free = True

    def relu_backward(self, grad: Array, y: Array, out: Array) -> None:
        if out is grad:  # in place: the mask has to live somewhere else
            np.multiply(grad, y > 0, out=out)
            return
        np.heaviside(y, out.dtype.type(0), out=out)  # 1.0 where y > 0, else 0.0, no bool temporary
        np.multiply(out, grad, out=out)

    def sgd_update(self, param: Array, grad: Array, lr: float) -> None:
        axpy = _AXPY.get(param.dtype)
        if axpy is None or not (param.flags.c_contiguous and grad.flags.c_contiguous):
            super().sgd_update(param, grad, lr)
            return
        # BLAS axpy updates its y argument in place: param += (-lr) * grad, one pass.
        axpy(grad.reshape(-1), param.reshape(-1), a=-lr)


_AXPY = {np.dtype(np.float32): blas.saxpy, np.dtype(np.float64): blas.daxpy}

NUMPY = NumpyBackend()
