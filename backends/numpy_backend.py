"""The CPU backend: NumPy arrays, OpenBLAS (or whatever BLAS NumPy links) for the products."""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.blas import GEMM
from backends.contract import Array, Backend


class NumpyBackend(Backend):
    """The contract as written, on NumPy; it adds host transfer of CuPy arrays, the L2-sized
    pieces in which optimizers walk the parameters, and the SGD update folded into one BLAS gemm."""

    name = "numpy"
    xp = np
    host_reads_are_free = True
    update_chunk = 1 << 17  # elements (512 KiB of float32): optimizer passes stay in the L2 cache

    def asarray(self, host: Any, dtype: Any = None) -> Array:
        if hasattr(host, "__cuda_array_interface__"):  # a CuPy array: copy it to the host
            host = host.get()
        return np.asarray(host, dtype=dtype)

    def sgd_matmul_update(self, param: Array, a: Array, b: Array, lr: float, scratch: Array) -> None:
        # One gemm, param ← −lr·a·b + 1·param, where NumPy's OpenBLAS is reachable (see backends.blas).
        if GEMM is None or not GEMM(a, b, param, -lr, 1.0):
            super().sgd_matmul_update(param, a, b, lr, scratch)


NUMPY = NumpyBackend()
