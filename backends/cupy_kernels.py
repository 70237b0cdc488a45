"""The CuPy backend's kernels. Imported only by ``backends.cupy_backend`` once CuPy is known to work.

cuBLAS does the matrix products (the contract's ``xp.matmul`` into ``out``); the
elementwise kernels fuse what NumPy does in two passes (and the optimizer steps, in
eight); the softmax-cross-entropy
is one RawKernel with a block per row:

    pass 1: an online max and sum of exp over the row (one read), reduced across the block
    pass 2: dlogits = (exp(z - lse) - onehot) / N (one write; the row is re-read from
            shared memory when it fits there, else from global memory)

and the per-row losses are summed on the device, so the loss stays a device scalar.
A label outside [0, C) makes that row's loss NaN, which fit reports; it never
indexes out of bounds.
"""

from __future__ import annotations

from typing import Any

import cupy
import numpy as np

from backends.contract import AdamStep, Array, Backend, MomentumStep
from backends.cupy_backend import softmax_xent_source

_KERNELS = {
    np.dtype(dtype): cupy.RawKernel(*softmax_xent_source(c_type))
    for dtype, c_type in ((np.float32, "float"), (np.float64, "double"))
}
_SHARED_BYTES = 40 * 1024  # cache rows up to this size in shared memory (the default limit is 48 KiB)

_bias_relu = cupy.ElementwiseKernel("T b", "T y", "y = max(y + b, (T)0)", "nnx_bias_relu")
_relu_backward = cupy.ElementwiseKernel("T g, T y", "T out", "out = y > (T)0 ? g : (T)0", "nnx_relu_backward")
_sgd_update = cupy.ElementwiseKernel("T g, float64 lr", "T p", "p = p - (T)lr * g", "nnx_sgd_update")
# The optimizer steps of backends/contract.py in one kernel each; FLUSH is 2**-60 (see flush_tiny).
_FLUSH = "const T f = (T)8.673617379884035e-19;"
_momentum_update = cupy.ElementwiseKernel(
    "T g, float64 lr, float64 mu, int32 nesterov, float64 decay, int32 flush",
    "T p, T v",
    _FLUSH
    + """
    T vi = v * (T)mu + g;
    if (flush) vi = (vi + f) - f;
    v = vi;
    p = p * (T)decay - (nesterov ? vi * (T)mu + g : vi) * (T)lr;
    """,
    "nnx_momentum_update",
)
_adam_update = cupy.ElementwiseKernel(
    "T g, float64 lr, float64 b1, float64 b2, float64 eps, float64 decay, int32 flush",
    "T p, T m, T v",
    _FLUSH
    + """
    T mi = m * (T)b1 + g * (T)(1.0 - b1);
    T vi = v * (T)b2 + (g * g) * (T)(1.0 - b2);
    if (flush) {
        mi = (mi + f) - f;
        vi = (vi + f) - f;
    }
    m = mi;
    v = vi;
    p = p * (T)decay - (mi / (sqrt(vi) + (T)eps)) * (T)lr;
    """,
    "nnx_adam_update",
)


class CupyBackend(Backend):
    """The contract on CuPy: cuBLAS products, fused elementwise kernels, a one-kernel loss."""

    name = "cupy"
    xp = cupy
    host_reads_are_free = False

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

    def momentum_update(self, p: Array, g: Array, v: Array, step: MomentumStep, scratch: Array) -> None:
        lr, momentum, nesterov, decay, flush = step
        _momentum_update(g, float(lr), float(momentum), np.int32(nesterov), float(decay), np.int32(flush), p, v)

    def adam_update(self, p: Array, g: Array, m: Array, v: Array, step: AdamStep, scratch: Array) -> None:
        *scalars, flush = step
        _adam_update(g, *map(float, scalars), np.int32(flush), p, m, v)

    def loss_workspace(self, n: int, c: int, dtype: Any) -> dict[str, Array]:
        return {"row_loss": cupy.empty(n, dtype)}

    def softmax_cross_entropy(
        self, logits: Array, labels: Array, dlogits: Array, workspace: dict[str, Array] | None = None
    ) -> Array:
        n, c = logits.shape
        logits = cupy.ascontiguousarray(logits)
        labels = cupy.ascontiguousarray(labels, dtype=cupy.int64)
        row_loss = (workspace or self.loss_workspace(n, c, logits.dtype))["row_loss"]
        threads = int(min(1024, max(32, 1 << max(c // 4 - 1, 1).bit_length())))
        row_bytes = c * logits.dtype.itemsize
        cache = row_bytes <= _SHARED_BYTES
        _KERNELS[logits.dtype](
            (n,),
            (threads,),
            (logits, labels, dlogits, row_loss, np.int32(n), np.int32(c), np.int32(cache)),
            shared_mem=row_bytes if cache else 0,
        )
        return row_loss.sum() / n
