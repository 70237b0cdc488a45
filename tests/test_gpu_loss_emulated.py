"""The fused loss kernel's arithmetic, checked without a GPU: softmax_xent.cu is compiled as C++ with
a small emulation of one CUDA block (a thread per CUDA thread, a barrier for __syncthreads, per-warp
barriers for __shfl_xor_sync, statics for __shared__) and run block by block on the CPU. This holds
its precision, its denormal clamp and its NaN rows against the CPU backend wherever g++ with C++20
is installed; the same kernel on a device is tested in tests/test_gpu_kernels.py."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from backends import get_backend
from backends.contract import denormal_floor
from backends.cuda_sources import softmax_xent_source

CXX = shutil.which("g++")
pytestmark = pytest.mark.skipif(CXX is None, reason="g++ (to emulate a CUDA block on the CPU) is not installed")

EMULATION = r"""
#include <barrier>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>
struct Dim { int x; };
thread_local Dim threadIdx;
Dim blockIdx, blockDim;
std::barrier<>* block_barrier;
std::barrier<>* warp_barrier[32];
alignas(16) unsigned char smem_raw[48 * 1024];
double shuffle_slots[1024];
static inline float __int_as_float(unsigned int i) { float f; std::memcpy(&f, &i, 4); return f; }
template <typename V> V __shfl_xor_sync(unsigned, V v, int lane_mask) {
  const int t = threadIdx.x, warp = t >> 5;
  shuffle_slots[t] = (double)v;
  warp_barrier[warp]->arrive_and_wait();
  const V other = (V)shuffle_slots[(t & ~31) | ((t & 31) ^ lane_mask)];
  warp_barrier[warp]->arrive_and_wait();
  return other;
}
void __syncthreads() { block_barrier->arrive_and_wait(); }
#define __device__
#define __forceinline__ inline
#define __global__
#define __restrict__
#define __shared__ static
"""

MAIN = r"""
int main() {  // stdin: n c threads cache lowest, then the logits and the labels; stdout: dlogits, row losses
  int n, c, threads, cache;
  double lowest;
  if (scanf("%d %d %d %d %lf", &n, &c, &threads, &cache, &lowest) != 5) return 1;
  std::vector<T> z((size_t)n * c), d((size_t)n * c);
  std::vector<long long> y(n);
  std::vector<double> loss(n);
  for (auto& v : z) { double x; if (scanf("%lf", &x) != 1) return 1; v = (T)x; }
  for (auto& v : y) if (scanf("%lld", &v) != 1) return 1;
  blockDim.x = threads;
  std::barrier<> block(threads);
  block_barrier = &block;
  for (int w = 0; w < threads / 32; w++) warp_barrier[w] = new std::barrier<>(32);
  for (int row = 0; row < n; row++) {
    blockIdx.x = row;
    std::vector<std::thread> team;
    for (int t = 0; t < threads; t++)
      team.emplace_back([&, t] {
        threadIdx.x = t;
        KERNEL(z.data(), y.data(), d.data(), loss.data(), n, c, (T)lowest, cache);
      });
    for (auto& member : team) member.join();
  }
  for (auto v : d) printf("%.17g\n", (double)v);
  for (auto v : loss) printf("%.17g\n", v);
}
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """run(z, y, threads=None, cache=True) -> (dlogits, row losses) from the kernel emulated on the CPU."""
    folder = tmp_path_factory.mktemp("softmax_xent")
    binaries = {}
    for dtype, c_type in ((np.float32, "float"), (np.float64, "double")):
        source, name = softmax_xent_source(c_type)
        source = source.replace("extern __shared__ __align__(16) unsigned char smem_raw[];", "")
        path = folder / f"{name}.cpp"
        path.write_text(EMULATION + source.replace('extern "C" ', "") + MAIN.replace("KERNEL", name))
        result = subprocess.run(
            [CXX, "-std=c++20", "-O1", "-pthread", "-o", str(folder / name), str(path)], capture_output=True, text=True
        )
        if result.returncode != 0:
            pytest.skip(f"g++ cannot build the emulation (C++20 <barrier> needed): {result.stderr[-400:]}")
        binaries[np.dtype(dtype)] = folder / name

    def run(z: np.ndarray, y: np.ndarray, threads: int | None = None, cache: bool = True):
        n, c = z.shape
        if threads is None:  # as CupyBackend.softmax_cross_entropy chooses
            threads = int(min(1024, max(32, 1 << max(c // 4 - 1, 1).bit_length())))
        header = f"{n} {c} {threads} {int(cache)} {denormal_floor(z.dtype, n * c)!r}\n"
        text = header + " ".join(map(repr, z.ravel().tolist())) + "\n" + " ".join(map(str, y))
        out = subprocess.run([binaries[z.dtype]], input=text, capture_output=True, text=True, check=True, timeout=60)
        values = np.array(out.stdout.split(), dtype=np.float64)
        return values[: n * c].reshape(n, c).astype(z.dtype), values[n * c :]

    return run


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_emulated_kernel_keeps_full_precision_for_huge_logits(emulated, dtype):
    """exp(z − max)·(1/N)/sum, not exp(z − logsumexp), which gave 0.24995 for 0.25 in float32."""
    d, loss = emulated(np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype), np.array([1, 0]))
    np.testing.assert_allclose(d, [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], rtol=2e-7, atol=1e-20)
    assert loss.mean() == pytest.approx((2e4 + 2e4 + np.log(2)) / 2, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "n, c, threads, cache",
    [(6, 10, None, True), (3, 1000, None, True), (3, 333, 64, False), (2, 70, 32, True), (2, 5, 128, False)],
    ids=["narrow", "wide-cached", "two-warps-uncached", "one-warp-strided", "idle-threads"],
)
def test_the_emulated_kernel_matches_the_cpu_backend_with_the_same_clamp(emulated, dtype, n, c, threads, cache):
    rng = np.random.default_rng(c)
    z = (rng.standard_normal((n, c)) * 30).astype(dtype)  # float32 rows reach the denormal floor
    y = rng.integers(0, c, n)
    d, loss = emulated(z, y, threads, cache)
    d_cpu = np.empty_like(z)
    loss_cpu = get_backend("numpy").softmax_cross_entropy(z, y, d_cpu)
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(d, d_cpu, rtol=64 * eps, atol=float(np.abs(d_cpu).max()) * 8 * eps)
    assert loss.mean() == pytest.approx(float(loss_cpu), rel=64 * eps)
    tiny = np.finfo(dtype).tiny
    assert not ((np.abs(d) > 0) & (np.abs(d) < tiny * 2**32)).any(), "denormal-range gradients"


def test_the_emulated_kernel_makes_a_row_with_a_label_out_of_range_nan(emulated):
    z = np.random.default_rng(0).standard_normal((4, 6)).astype(np.float32)
    d, loss = emulated(z, np.array([2, 6, -1, 0]))
    assert np.isnan(d[1:3]).all() and np.isnan(loss[1:3]).all()
    assert np.isfinite(d[[0, 3]]).all() and np.isfinite(loss[[0, 3]]).all()
