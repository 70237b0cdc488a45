// Fused softmax + sparse categorical cross-entropy: one block per row of logits.
// Compiled by backends/cupy_kernels.py with T defined as float or double and
// softmax_xent_T renamed per type. See that module for the algorithm.
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
