"""The CPU backend: NumPy arrays, OpenBLAS (or whatever BLAS NumPy links) for the products."""

from __future__ import annotations

from typing import Any

import numpy as np

from backends.contract import Array, Backend


class NumpyBackend(Backend):
    """The contract as written, on NumPy; it adds only host transfer of CuPy arrays and the
    L2-sized pieces in which optimizers walk the parameters."""

    name = "numpy"
    xp = np
    host_reads_are_free = True
    update_chunk = 1 << 17  # elements (512 KiB of float32): optimizer passes stay in the L2 cache

    def asarray(self, host: Any, dtype: Any = None) -> Array:
        if hasattr(host, "__cuda_array_interface__"):  # a CuPy array: copy it to the host
            host = host.get()
        return np.asarray(host, dtype=dtype)


NUMPY = NumpyBackend()
