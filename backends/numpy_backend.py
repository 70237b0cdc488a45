"""The CPU backend: NumPy arrays, OpenBLAS (or whatever BLAS NumPy links) for the products."""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.contract import Array, Backend


class NumpyBackend(Backend):
    """The contract on NumPy, with the elementwise kernels written to allocate nothing."""

    name = "numpy"
    xp = np
    host_reads_are_free = True
    update_chunk = 1 << 17  # elements (512 KiB of float32): optimizer passes stay in the L2 cache

    def asarray(self, host: Any, dtype: Any = None) -> Array:
        if hasattr(host, "__cuda_array_interface__"):  # a CuPy array: copy it to the host
            host = host.get()
        return np.asarray(host, dtype=dtype)

    def relu_backward(self, grad: Array, y: Array, out: Array) -> None:
        if out is grad:  # in place: the mask has to live somewhere else
            np.multiply(grad, y > 0, out=out)
            return
        np.sign(y, out=out)  # y is the ReLU's output (>= 0): 1.0 where y > 0, else 0.0; SIMD and no temporary
        np.multiply(out, grad, out=out)


NUMPY = NumpyBackend()
