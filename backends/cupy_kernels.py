"""The CuPy backend's kernels. Imported only by ``backends.cupy_backend`` once CuPy is known to work;
their CUDA sources live in ``backends.cuda_sources`` (no CuPy there, so they compile in tests anywhere).

cuBLAS does the matrix products (the contract's ``xp.matmul`` into ``out``, and the SGD step
W ← W − lr·A·B as one gemm); the elementwise kernels fuse what NumPy does in two passes (and the
optimizer steps, in eight); the softmax-cross-entropy is one RawKernel with a block per row
(softmax_xent.cu): the row max, the sum of exp(z − max), then dlogits in one write, reading the row
from shared memory after the first pass when it fits there. The per-row losses (float64) are summed
on the device, so the loss stays a device scalar. A label outside [0, C) makes that row's loss and
dlogits NaN, which fit reports; it never indexes out of bounds.
"""

from __future__ import annotations

from typing import Any

import cupy
import cupy.cublas
import numpy as np

from backends.contract import AdamStep, Array, Backend, MomentumStep, denormal_floor
from backends.cuda_sources import (
    ADAM_UPDATE,
    BIAS_RELU,
    FLOAT_TYPES,
    LOSS_DTYPE,
    MOMENTUM_UPDATE,
    RELU_BACKWARD,
    SGD_UPDATE,
    check_loss_arguments,
    softmax_xent_source,
)

_KERNELS = {dtype: cupy.RawKernel(*softmax_xent_source(c_type)) for dtype, c_type in FLOAT_TYPES.items()}
_SHARED_BYTES = 40 * 1024  # cache rows up to this size in shared memory (the default limit is 48 KiB)

_bias_relu = cupy.ElementwiseKernel(*BIAS_RELU)
_relu_backward = cupy.ElementwiseKernel(*RELU_BACKWARD)
_sgd_update = cupy.ElementwiseKernel(*SGD_UPDATE)
_momentum_update = cupy.ElementwiseKernel(*MOMENTUM_UPDATE)
_adam_update = cupy.ElementwiseKernel(*ADAM_UPDATE)


def _gemm_ready(*arrays: Array) -> bool:
    """Whether cupy.cublas.gemm takes these 2-D arrays as they are: one float dtype, no empty axis,
    each C- or F-contiguous (a transposed view of a C-contiguous array is F-contiguous)."""
    dtype = arrays[0].dtype
    return dtype in FLOAT_TYPES and all(
        a.ndim == 2 and a.dtype == dtype and a.size > 0 and (a.flags.c_contiguous or a.flags.f_contiguous)
        for a in arrays
    )


class CupyBackend(Backend):
    """The contract on CuPy: cuBLAS products, fused elementwise kernels, a one-kernel loss."""

    name = "cupy"
    xp = cupy
    host_reads_are_free = False

    @property
    def device(self) -> str:
        """The current device's number and name, as the CUDA runtime reports them."""
        index = cupy.cuda.Device().id
        return f"{index}: {cupy.cuda.runtime.getDeviceProperties(index)['name'].decode()}"

    def asarray(self, host: Any, dtype: Any = None) -> Array:
        return cupy.asarray(host, dtype=dtype)

    def to_numpy(self, array: Array) -> np.ndarray:
        return cupy.asnumpy(array)

    def synchronize(self) -> None:
        cupy.cuda.get_current_stream().synchronize()

    def rng(self, seed: Any) -> Any:
        # CuPy's generators take an integer seed: fold a sequence into one, as NumPy would.
        state = np.random.SeedSequence(seed).generate_state(1, np.uint64)[0]
        return cupy.random.default_rng(int(state))

    def bias_relu(self, y: Array, b: Array) -> None:
        _bias_relu(b, y)

    def relu(self, x: Array, out: Array) -> None:
        cupy.maximum(x, 0, out=out)

    def relu_backward(self, grad: Array, y: Array, out: Array, mask: Array) -> None:
        _relu_backward(grad, y, out)

    def sgd_update(self, param: Array, grad: Array, lr: float, scratch: Array) -> None:
        _sgd_update(grad, float(lr), param)

    def sgd_matmul_update(self, param: Array, a: Array, b: Array, lr: float, scratch: Array, keep: float = 1.0) -> None:
        """param ← keep·param − lr·(a @ b) as one cuBLAS gemm (alpha = −lr, beta = keep) into param.
        a: (M, K), b: (K, N), param: (M, N); the contract's two passes for layouts gemm cannot take."""
        m, k = a.shape
        if _gemm_ready(param, a, b) and b.shape[0] == k and param.shape == (m, b.shape[1]):
            # 'N', 'N': op(a) = a as it is; cupy.cublas.gemm itself maps C- and F-order to cuBLAS's
            # column-major operands, and writes a C- or F-contiguous out in place.
            cupy.cublas.gemm("N", "N", a, b, out=param, alpha=-float(lr), beta=float(keep))
            return
        super().sgd_matmul_update(param, a, b, lr, scratch, keep)

    def momentum_update(self, p: Array, g: Array, v: Array, step: MomentumStep, scratch: Array) -> None:
        lr, momentum, nesterov, decay, flush, l2 = step
        _momentum_update(
            g, float(lr), float(momentum), np.int32(nesterov), float(decay), np.int32(flush), float(l2), p, v
        )

    def adam_update(self, p: Array, g: Array, m: Array, v: Array, step: AdamStep, scratch: Array) -> None:
        *scalars, flush, l2 = step
        _adam_update(g, *map(float, scalars), np.int32(flush), float(l2), p, m, v)

    def loss_workspace(self, n: int, c: int, dtype: Any) -> dict[str, Array]:
        return {"row_loss": cupy.empty(n, LOSS_DTYPE)}

    def softmax_cross_entropy(
        self, logits: Array, labels: Array, dlogits: Array, workspace: dict[str, Array] | None = None
    ) -> Array:
        """The contract's fused loss in one kernel launch; returns the mean loss as a 0-d float64 array.
        Raises ValueError or TypeError (naming the argument) for arguments the kernel cannot take."""
        for arg, value in (("logits", logits), ("labels", labels), ("dlogits", dlogits)):
            if not isinstance(value, cupy.ndarray):
                raise TypeError(f"{arg} must be a cupy.ndarray; got {type(value).__name__}")
        check_loss_arguments(logits, labels, dlogits, workspace["row_loss"] if workspace else None)
        n, c = logits.shape
        row_loss = workspace["row_loss"] if workspace else cupy.empty(n, LOSS_DTYPE)
        logits = cupy.ascontiguousarray(logits)
        labels = cupy.ascontiguousarray(labels, dtype=cupy.int64)
        threads = int(min(1024, max(32, 1 << max(c // 4 - 1, 1).bit_length())))
        row_bytes = c * logits.dtype.itemsize
        cache = row_bytes <= _SHARED_BYTES
        lowest = logits.dtype.type(denormal_floor(logits.dtype, n * c))
        _KERNELS[logits.dtype](
            (n,),
            (threads,),
            (logits, labels, dlogits, row_loss, np.int32(n), np.int32(c), lowest, np.int32(cache)),
            shared_mem=row_bytes if cache else 0,
        )
        return row_loss.sum() / n
