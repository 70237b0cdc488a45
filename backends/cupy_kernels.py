"""The CuPy backend's kernels. Imported only by ``backends.cupy_backend`` once CuPy is known to work.

cuBLAS does the matrix products (the contract's ``xp.matmul`` into ``out``); the
elementwise kernels fuse what NumPy does in two passes; the softmax-cross-entropy
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

from backends.contract import Array, Backend

_SOFTMAX_XENT_SOURCE = r"""
#define NEG_INF __int_as_float(0xff800000)
#define NOT_A_NUMBER __int_as_float(0x7fffffff)

__device__ __forceinline__ void merge(T &m, T &s, T m2, T s2) {
    // (m, s) and (m2, s2) are (max, sum of exp(x - max)) of two parts of a row
    if (m2 == (T)NEG_INF) return;
    if (m == (T)NEG_INF) { m = m2; s = s2; return; }
    if (m2 > m) { s = s * exp(m - m2) + s2; m = m2; }
    else { s = s + s2 * exp(m2 - m); }
}

extern "C" __global__ void softmax_xent_T(
    const T* __restrict__ logits, const long long* __restrict__ labels, T* __restrict__ dlogits,
    T* __restrict__ row_loss, const int n, const int c, const int cache_in_shared)
{
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* row_cache = reinterpret_cast<T*>(smem_raw);          // c values when cache_in_shared
    __shared__ T red_m[32];
    __shared__ T red_s[32];

    const int row = blockIdx.x;
    const T* z = logits + (long long)row * c;
    T* d = dlogits + (long long)row * c;

    // pass 1: online max and sum of exp over this thread's strided entries
    T m = (T)NEG_INF, s = (T)0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T x = z[j];
        if (cache_in_shared) row_cache[j] = x;
        merge(m, s, x, (T)1);
    }
    // reduce within the warp, then across warps
    for (int off = 16; off > 0; off >>= 1) {
        const T m2 = __shfl_xor_sync(0xffffffff, m, off);
        const T s2 = __shfl_xor_sync(0xffffffff, s, off);
        merge(m, s, m2, s2);
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = (blockDim.x + 31) >> 5;
    if (lane == 0) { red_m[warp] = m; red_s[warp] = s; }
    __syncthreads();
    if (warp == 0) {
        m = lane < warps ? red_m[lane] : (T)NEG_INF;
        s = lane < warps ? red_s[lane] : (T)0;
        for (int off = 16; off > 0; off >>= 1) {
            const T m2 = __shfl_xor_sync(0xffffffff, m, off);
            const T s2 = __shfl_xor_sync(0xffffffff, s, off);
            merge(m, s, m2, s2);
        }
        if (lane == 0) { red_m[0] = m; red_s[0] = s; }
    }
    __syncthreads();
    const T lse = red_m[0] + log(red_s[0]);
    const long long y = labels[row];
    const bool valid = y >= 0 && y < c;
    const T inv_n = (T)1 / (T)n;

    // pass 2: dlogits = (softmax - onehot) / N
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T x = cache_in_shared ? row_cache[j] : z[j];
        d[j] = (exp(x - lse) - (j == y ? (T)1 : (T)0)) * inv_n;
    }
    if (threadIdx.x == 0) {
        row_loss[row] = valid ? lse - z[y] : (T)NOT_A_NUMBER;
    }
}
"""

_KERNELS = {
    np.dtype(np.float32): cupy.RawKernel(
        "#define T float\n" + _SOFTMAX_XENT_SOURCE.replace("softmax_xent_T", "softmax_xent_f32"), "softmax_xent_f32"
    ),
    np.dtype(np.float64): cupy.RawKernel(
        "#define T double\n" + _SOFTMAX_XENT_SOURCE.replace("softmax_xent_T", "softmax_xent_f64"), "softmax_xent_f64"
    ),
}
_SHARED_BYTES = 40 * 1024  # cache rows up to this size in shared memory (the default limit is 48 KiB)

_bias_relu = cupy.ElementwiseKernel("T b", "T y", "y = max(y + b, (T)0)", "nnx_bias_relu")
_relu_backward = cupy.ElementwiseKernel("T g, T y", "T out", "out = y > (T)0 ? g : (T)0", "nnx_relu_backward")
_sgd_update = cupy.ElementwiseKernel("T g, float64 lr", "T p", "p = p - (T)lr * g", "nnx_sgd_update")


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

    def relu_backward(self, grad: Array, y: Array, out: Array) -> None:
        _relu_backward(grad, y, out)

    def sgd_update(self, param: Array, grad: Array, lr: float, scratch: Array) -> None:
        _sgd_update(grad, float(lr), param)

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
