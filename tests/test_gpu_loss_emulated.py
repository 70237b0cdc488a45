"""The fused loss kernel's arithmetic on the CuPy stand-in (NNX_FAKE_GPU=1): softmax_xent.cu, compiled
for the host with g++ over tests/fake_cupy/cupy/cuda_host.h (each CUDA block's threads as fibers,
__syncthreads and warp shuffles as real waits), launched with the grids and blocks given here, held
against the CPU backend: its precision, its denormal clamp and its NaN rows, for block shapes the
backend's own choice does not reach. The same kernel on a device is tested in
tests/test_gpu_kernels.py."""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend
from backends.contract import denormal_floor
from backends.cuda_sources import FLOAT_TYPES, softmax_xent_source
from tests.stand_in import STAND_IN

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not STAND_IN, reason="runs on the CuPy stand-in: NNX_FAKE_GPU=1")]


@pytest.fixture(scope="module")
def emulated():
    """run(z, y, threads=None, cache=True) -> (dlogits, row losses) from the kernel on the stand-in."""
    import cupy

    kernels = {dtype: cupy.RawKernel(*softmax_xent_source(c_type)) for dtype, c_type in FLOAT_TYPES.items()}

    def run(z: np.ndarray, y: np.ndarray, threads: int | None = None, cache: bool = True):
        n, c = z.shape
        if threads is None:  # as CupyBackend.softmax_cross_entropy chooses
            threads = int(min(1024, max(32, 1 << max(c // 4 - 1, 1).bit_length())))
        d, loss = cupy.empty(z.shape, z.dtype), cupy.empty(n, np.float64)
        lowest = z.dtype.type(denormal_floor(z.dtype, n * c))
        args = (cupy.asarray(z), cupy.asarray(y), d, loss, np.int32(n), np.int32(c), lowest, np.int32(cache))
        kernels[z.dtype]((n,), (threads,), args, shared_mem=c * z.itemsize if cache else 0)
        return d.get(), loss.get()

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
