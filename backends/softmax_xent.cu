// Fused softmax + sparse categorical cross-entropy: one block per row of logits (blockDim a power
// of two, at least 32). Compiled by backends/cupy_kernels.py through backends/cuda_sources.py, with
// T defined as float or double and softmax_xent_T renamed per type. Computes as the CPU kernel
// (backends/cpu_kernels.c) does, so that nothing is rounded at the magnitude of the logits:
//
//   m = max_j z_j,  e_j = exp(max(z_j - m, lowest)),  s = sum_j e_j
//   d_j = e_j * (inv_n / s) - [j == y] * inv_n,         loss = log(s) - (z_y - m)   (in double)
//
// `lowest` is denormal_floor of backends/contract.py. A label outside [0, c) gives a NaN row loss
// and a NaN row of d, and is never used as an index.
#define NEG_INF __int_as_float(0xff800000)
#define NOT_A_NUMBER __int_as_float(0x7fffffff)

// The max (IS_MAX) or the sum of v over the block, returned to every thread. `scratch`: 32 values
// in shared memory, used by this reduction only.
template <bool IS_MAX>
__device__ __forceinline__ T block_reduce(T v, T* scratch) {
    const T identity = IS_MAX ? (T)NEG_INF : (T)0;
    for (int off = 16; off > 0; off >>= 1) {
        const T w = __shfl_xor_sync(0xffffffff, v, off);
        v = IS_MAX ? (w > v ? w : v) : v + w;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, warps = blockDim.x >> 5;
    if (lane == 0) scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < warps ? scratch[lane] : identity;
        for (int off = 16; off > 0; off >>= 1) {
            const T w = __shfl_xor_sync(0xffffffff, v, off);
            v = IS_MAX ? (w > v ? w : v) : v + w;
        }
        if (lane == 0) scratch[0] = v;
    }
    __syncthreads();
    return scratch[0];
}

extern "C" __global__ void softmax_xent_T(
    const T* __restrict__ logits, const long long* __restrict__ labels, T* __restrict__ dlogits,
    double* __restrict__ row_loss, const int n, const int c, const T lowest, const int cache_in_shared)
{
    extern __shared__ __align__(16) unsigned char smem_raw[];
    T* row_cache = reinterpret_cast<T*>(smem_raw);  // the row's c values when cache_in_shared
    __shared__ T red_max[32];
    __shared__ T red_sum[32];

    const int row = blockIdx.x;
    const T* z = logits + (long long)row * c;
    T* d = dlogits + (long long)row * c;

    // pass 1: the row max (one read of global memory)
    T m = (T)NEG_INF;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T x = z[j];
        if (cache_in_shared) row_cache[j] = x;
        m = x > m ? x : m;
    }
    m = block_reduce<true>(m, red_max);  // also makes row_cache visible to the whole block
    const T* x = cache_in_shared ? row_cache : z;

    // pass 2: s = sum of exp(z - m), z - m clamped below at `lowest`
    T s = (T)0;
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T t = x[j] - m;
        s += exp(t < lowest ? lowest : t);
    }
    s = block_reduce<false>(s, red_sum);

    const long long y = labels[row];
    const bool valid = y >= 0 && y < c;
    const T inv_n = (T)1 / (T)n;
    const T scale = inv_n / s;

    // pass 3: dlogits = softmax / N - onehot / N (one write)
    for (int j = threadIdx.x; j < c; j += blockDim.x) {
        const T t = x[j] - m;
        const T e = exp(t < lowest ? lowest : t);
        d[j] = valid ? e * scale - (j == y ? inv_n : (T)0) : (T)NOT_A_NUMBER;
    }
    if (threadIdx.x == 0) {
        row_loss[row] = valid ? log((double)s) - (double)(x[y] - m) : (double)NOT_A_NUMBER;
    }
}
