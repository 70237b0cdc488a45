"""On a GPU: the fused loss's precision with huge logits, its NaN rows for labels out of range, the
refusal of arguments that would corrupt memory, and the SGD step as one cuBLAS gemm in every layout.
Each case skips with the reason when CuPy or a device is missing."""

from __future__ import annotations

import numpy as np
import pytest

from backends import get_backend
from tests.conftest import CUPY_MISSING

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(CUPY_MISSING is not None, reason=f"no GPU backend: {CUPY_MISSING}"),
]


@pytest.fixture(scope="module")
def gpu():
    return get_backend("cupy")


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_fused_loss_keeps_full_precision_for_huge_logits(gpu, dtype):
    """The gradient is exp(z − max)·(1/N)/sum, not exp(z − logsumexp): at ±1e4, logsumexp carries
    only ~1e-3 absolute in float32, which once gave 0.24995 for 0.25."""
    z = np.array([[1e4, -1e4, 0.0], [-1e4, 1e4, 1e4]], dtype)
    d = gpu.empty(z.shape, z.dtype)
    value = gpu.softmax_cross_entropy(gpu.asarray(z), gpu.asarray(np.array([1, 0])), d)
    np.testing.assert_allclose(gpu.to_numpy(d), [[0.5, -0.5, 0.0], [-0.5, 0.25, 0.25]], rtol=2e-7, atol=1e-20)
    assert float(value) == pytest.approx((2e4 + 2e4 + np.log(2)) / 2, rel=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_fused_loss_matches_the_cpu_backend_to_a_few_ulp_with_the_same_clamp(gpu, dtype):
    """Both backends compute exp(max(z − max, floor))·(1/N)/sum and log(sum) − (z_y − max); with
    logits spread over ±120, float32 rows reach the denormal floor (contract.denormal_floor)."""
    rng = np.random.default_rng(1)
    z = (rng.standard_normal((300, 1000)) * 30).astype(dtype)  # rows longer than a block, cached
    y = rng.integers(0, 1000, 300)
    cpu = get_backend("numpy")
    d_cpu = np.empty_like(z)
    value_cpu = cpu.softmax_cross_entropy(z, y, d_cpu)
    d = gpu.empty(z.shape, z.dtype)
    value = gpu.softmax_cross_entropy(gpu.asarray(z), gpu.asarray(y), d)
    eps = float(np.finfo(dtype).eps)
    # summation orders differ (a block's tree, the CPU's SIMD lanes): a few ulp of the row sum
    np.testing.assert_allclose(gpu.to_numpy(d), d_cpu, rtol=64 * eps, atol=float(np.abs(d_cpu).max()) * 8 * eps)
    assert float(value) == pytest.approx(float(value_cpu), rel=64 * eps)


def test_a_label_out_of_range_makes_its_row_nan_and_leaves_the_others(gpu):
    z = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    d = gpu.empty(z.shape, z.dtype)
    value = gpu.softmax_cross_entropy(gpu.asarray(z), gpu.asarray(np.array([1, 4, -1])), d)
    d = gpu.to_numpy(d)
    assert np.isnan(float(value)) and np.isnan(d[1:]).all()
    expected = np.exp(z[0] - z[0].max()) / np.exp(z[0] - z[0].max()).sum() / 3
    expected[1] -= 1 / 3
    np.testing.assert_allclose(d[0], expected, rtol=1e-6)


def test_the_loss_launch_refuses_arguments_that_would_corrupt_memory(gpu):
    z = gpu.asarray(np.zeros((4, 5), np.float32))
    y = gpu.asarray(np.zeros(4, np.int64))
    wide = gpu.zeros((5, 4), np.float32)
    with pytest.raises(ValueError, match="dlogits must be C-contiguous"):
        gpu.softmax_cross_entropy(z, y, wide.T)
    with pytest.raises(TypeError, match="dlogits must be float32"):
        gpu.softmax_cross_entropy(z, y, gpu.empty((4, 5), np.float64))
    with pytest.raises(ValueError, match=r"labels must be \(4,\)"):
        gpu.softmax_cross_entropy(z, y[:3], gpu.empty((4, 5), np.float32))
    with pytest.raises(TypeError, match="dlogits must be a cupy.ndarray; got ndarray"):
        gpu.softmax_cross_entropy(z, y, np.empty((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"row_loss'\] must be"):
        gpu.softmax_cross_entropy(z, y, gpu.empty((4, 5), np.float32), gpu.loss_workspace(3, 5, np.float32))
    assert not gpu.to_numpy(wide).any()  # nothing was written


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("param_order", ["C", "F"])
def test_the_sgd_matmul_step_matches_the_product_in_every_layout(gpu, dtype, param_order):
    """C@C, a transposed (F-ordered) a as in W ← W − lr·xᵀ·dy, a transposed b, and a strided view
    that cuBLAS cannot take (the contract's two passes then); keep = ½, a data-parallel rank's part
    of a step (beta in the gemm)."""
    import cupy

    rng = np.random.default_rng(3)
    a = cupy.asarray(rng.standard_normal((33, 70)).astype(dtype))
    b = cupy.asarray(rng.standard_normal((70, 17)).astype(dtype))
    layouts = {
        "C@C": (a, b),
        "F@C": (cupy.ascontiguousarray(a.T).T, b),
        "C@F": (a, cupy.ascontiguousarray(b.T).T),
        "strided": (cupy.repeat(a, 2, axis=1)[:, ::2], b),
    }
    rtol = 1e-5 if dtype == "float32" else 1e-12
    for name, (lhs, rhs) in layouts.items():
        start = rng.standard_normal((33, 17)).astype(dtype)
        param = cupy.asarray(np.asarray(start, order=param_order))
        gpu.sgd_matmul_update(param, lhs, rhs, 0.01, gpu.empty((33, 17), dtype), 0.5)
        expected = 0.5 * start - 0.01 * (lhs.get().astype(np.float64) @ rhs.get().astype(np.float64))
        np.testing.assert_allclose(param.get(), expected, rtol=rtol, atol=rtol, err_msg=name)


def test_the_probe_passed_here_and_gave_the_cupy_backend(gpu):
    import cupy

    from backends.cupy_backend import probe

    probe(cupy)
    assert gpu.name == "cupy" and get_backend("auto").name == "cupy"
