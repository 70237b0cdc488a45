"""The CuPy stand-in (tests/fake_cupy, NNX_FAKE_GPU=1) is strict where CuPy is, and its kernels show
the defects a GPU would: a missing or divergent barrier, an argument of the wrong C type. These
tests hold the stand-in itself; they run only under it."""

from __future__ import annotations

import numpy as np
import pytest

from backends.cuda_sources import BIAS_RELU, softmax_xent_source
from tests.stand_in import STAND_IN

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not STAND_IN, reason="tests of the CuPy stand-in: NNX_FAKE_GPU=1")]


@pytest.fixture
def cupy():
    import cupy

    cupy._stand_in.reset()
    return cupy


def test_a_device_array_is_no_numpy_array_and_host_reads_are_counted(cupy):
    x = cupy.asarray(np.arange(6, dtype=np.float32).reshape(2, 3))
    with pytest.raises(TypeError, match="Implicit conversion to a NumPy array is not allowed"):
        np.asarray(x)
    with pytest.raises(TypeError, match="Unsupported type <class 'numpy.ndarray'>"):
        cupy.add(x, np.ones(3, np.float32))
    assert isinstance(np.exp(x), cupy.ndarray)  # NumPy's ufuncs dispatch to the array's module, as with CuPy
    assert isinstance(x.sum(), cupy.ndarray) and x.sum().ndim == 0  # a reduction stays on the device
    assert sum(cupy._stand_in.host_syncs.values()) == 0
    assert float(x.sum()) == 15.0 and x.get().shape == (2, 3) and cupy.asnumpy(x).dtype == np.float32
    assert dict(cupy._stand_in.host_syncs) == {"float": 1, "get": 1, "asnumpy": 1}


def test_what_the_stand_in_lacks_raises_attribute_error_naming_it(cupy):
    with pytest.raises(AttributeError, match="does not implement cupy.fft"):
        cupy.fft  # noqa: B018
    with pytest.raises(AttributeError, match="does not implement cupy.ndarray.toDlpack"):
        cupy.zeros(3).toDlpack  # noqa: B018
    with pytest.raises(AttributeError, match="does not implement cupy.cuda.graph"):
        cupy.cuda.graph  # noqa: B018


def test_fresh_device_memory_is_not_zeros(cupy):
    assert np.isnan(cupy.empty((2, 2), np.float32).get()).all()


def test_gemm_takes_cupys_arguments_and_refuses_what_cublas_refuses(cupy):
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((4, 3)), rng.standard_normal((5, 3))
    out = cupy.asarray(np.ones((4, 5)))
    cupy.cublas.gemm("N", "T", cupy.asarray(a), cupy.asarray(b), out=out, alpha=2.0, beta=0.5)
    np.testing.assert_allclose(out.get(), 2 * a @ b.T + 0.5, rtol=1e-14)
    with pytest.raises(AssertionError):  # op(b) is (3, 5): k does not match
        cupy.cublas.gemm("N", "N", cupy.asarray(a), cupy.asarray(b), out=out)
    with pytest.raises(AssertionError):  # out of another dtype
        cupy.cublas.gemm("N", "T", cupy.asarray(a), cupy.asarray(b), out=out.astype(np.float32))
    with pytest.raises(TypeError, match="a must be a cupy.ndarray"):
        cupy.cublas.gemm("N", "T", a, cupy.asarray(b), out=out)


def test_elementwise_kernels_check_types_and_shapes_as_cupy(cupy):
    kernel = cupy.ElementwiseKernel(*BIAS_RELU)
    y = cupy.asarray(np.array([[-1.0, 2.0], [3.0, -4.0]], np.float32))
    kernel(cupy.asarray(np.array([0.5, 1.0], np.float32)), y)  # b broadcast over the rows, y in place
    np.testing.assert_array_equal(y.get(), [[0.0, 3.0], [3.5, 0.0]])
    with pytest.raises(TypeError, match="Type is mismatched"):  # T is float32 for y, float64 for b
        kernel(cupy.zeros(2, np.float64), y)
    with pytest.raises(ValueError, match="Out shape is mismatched"):
        kernel(cupy.zeros((3, 1, 2), np.float32), y)  # broadcasts to (3, 2, 2), not y's (2, 2)
    with pytest.raises(TypeError, match="Unsupported type"):
        kernel(np.zeros(2, np.float32), y)


def loss_kernel(cupy, source_edit=None, dtype="float32"):
    source, name = softmax_xent_source({"float32": "float", "float64": "double"}[dtype])
    if source_edit is not None:
        old, new = source_edit
        assert old in source
        source = source.replace(old, new)
    return cupy.RawKernel(source, name)


def launch(cupy, kernel, z, y, cache=1, n_arg=None):
    n, c = z.shape
    d, row_loss = cupy.empty(z.shape, z.dtype), cupy.empty(n, np.float64)
    args = (cupy.asarray(z), cupy.asarray(y), d, row_loss, np.int32(n) if n_arg is None else n_arg, np.int32(c),
            z.dtype.type(-80), np.int32(cache))  # fmt: skip
    kernel((n,), (256,), args, shared_mem=c * z.itemsize if cache else 0)
    return d.get(), row_loss.get()


def reference(z, y):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    d = e / e.sum(axis=1, keepdims=True) / len(z)
    d[np.arange(len(z)), y] -= 1 / len(z)
    return d


@pytest.mark.parametrize("cache", [0, 1])
def test_the_loss_kernel_runs_right_and_each_barrier_it_needs_shows_when_removed(cupy, cache):
    """One block per row, 256 threads: the kernel as written matches the reference; without the
    barrier after the warps' partial results, or the one after the block's total, it does not."""
    rng = np.random.default_rng(0)
    z, y = rng.standard_normal((6, 1000)).astype(np.float32), rng.integers(0, 1000, 6)
    d, _ = launch(cupy, loss_kernel(cupy), z, y, cache)
    np.testing.assert_allclose(d, reference(z, y), rtol=1e-5, atol=1e-9)
    first = ("    if (lane == 0) scratch[warp] = v;\n    __syncthreads();", "    if (lane == 0) scratch[warp] = v;\n")
    second = (
        "        if (lane == 0) scratch[0] = v;\n    }\n    __syncthreads();",
        "        if (lane == 0) scratch[0] = v;\n    }\n",
    )
    for edit in (first, second):
        d, _ = launch(cupy, loss_kernel(cupy, edit), z, y, cache)
        assert not np.allclose(d, reference(z, y), rtol=1e-3, atol=1e-6), f"removing {edit[0]!r} went unseen"


def test_a_barrier_that_some_threads_skip_stops_the_launch(cupy):
    edit = ("    if (lane == 0) scratch[warp] = v;\n    __syncthreads();",
            "    if (lane == 0) scratch[warp] = v;\n    if (threadIdx.x) __syncthreads();")  # fmt: skip
    z = np.zeros((2, 300), np.float32)
    with pytest.raises(RuntimeError, match="deadlock: 256 of 256 threads"):
        launch(cupy, loss_kernel(cupy, edit), z, np.zeros(2, np.int64))


def test_raw_kernel_arguments_must_have_the_parameters_c_types(cupy):
    z, y = np.zeros((2, 8), np.float32), np.zeros(2, np.int64)
    kernel = loss_kernel(cupy)
    with pytest.raises(
        TypeError, match=r"argument 4 \(const int n\) takes int32; got int 2, which CuPy passes as int64"
    ):
        launch(cupy, kernel, z, y, n_arg=2)
    with pytest.raises(TypeError, match=r"argument 1 .*labels\) points to int64; got a int32 array"):
        launch(cupy, kernel, z, y.astype(np.int32))
    with pytest.raises(TypeError, match="grid must be a tuple"):
        kernel(2, (32,), ())
