"""Every CUDA kernel of the CuPy backend compiles with NVRTC, as CuPy compiles it, for float and double,
wherever libnvrtc loads (the test extra installs it: nvidia-cuda-nvrtc-cu12), so that a compile error
is caught on a machine without a GPU and without CuPy. Skips with the reason where NVRTC is missing.

How CuPy 14 builds a kernel (cupy/_core/core.pyx ``compile_with_cache``, cupy/cuda/compiler.py):
NVRTC with ``--std=c++17``, ``-ftz=true``, ``-arch=sm_<device>`` and include paths for its bundled
CCCL, its own headers and the CUDA headers. A RawKernel's source goes in as it is; an
ElementwiseKernel's body is wrapped in a generated ``__global__`` function after CuPy's headers
(cupy/_core/_kernel.pyx ``_get_simple_elementwise_kernel_code``). Our kernels include no header, so
the include paths change nothing; CuPy's CArray and CIndexer (cupy/carray.cuh) are replaced here by
stand-ins with the same interface, as CuPy's headers need CCCL and the CUDA toolkit's.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import re
from pathlib import Path

import pytest

from backends.cuda_sources import ELEMENTWISE, FLOAT_TYPES, ElementwiseSource, softmax_xent_source

ARCH = "sm_90"  # the H100 that the GPU checks run on
CUPY_OPTIONS = ("--std=c++17", "-ftz=true", f"-arch={ARCH}")


def _nvrtc_candidates() -> list[str]:
    """Paths or names of libnvrtc to try: the pip wheels' (nvidia/cuda_nvrtc/lib for CUDA 12,
    nvidia/cu13/lib for 13), CUDA_PATH's, the one CuPy 14 would load (cuda.pathfinder), the loader's."""
    found: list[str] = []
    try:
        spec = importlib.util.find_spec("nvidia")
    except ImportError:
        spec = None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        found += sorted(glob.glob(os.path.join(folder, "*", "lib", "libnvrtc.so*")))
    for root in filter(None, (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda")):
        found += sorted(glob.glob(os.path.join(root, "lib64", "libnvrtc.so*")))
    try:
        from cuda.pathfinder import load_nvidia_dynamic_lib

        found.append(load_nvidia_dynamic_lib("nvrtc").abs_path)
    except Exception:  # not installed, or it finds none
        pass
    name = ctypes.util.find_library("nvrtc")
    return [*found, *([name] if name else [])]


def _load_nvrtc() -> tuple[ctypes.CDLL | None, str]:
    """(libnvrtc, where it came from), or (None, why not)."""
    candidates = [path for path in _nvrtc_candidates() if "builtins" not in path and ".alt." not in path]
    errors = []
    for path in candidates:
        try:
            lib = ctypes.CDLL(path)
            lib.nvrtcGetErrorString.restype = ctypes.c_char_p
            return lib, path
        except OSError as exc:
            errors.append(f"{path}: {exc}")
    reason = "; ".join(errors) or "no libnvrtc found (pip install nvidia-cuda-nvrtc-cu12, or set CUDA_PATH)"
    return None, f"NVRTC is not available: {reason}"


NVRTC, NVRTC_SOURCE = _load_nvrtc()
requires_nvrtc = pytest.mark.skipif(NVRTC is None, reason=NVRTC_SOURCE)


def nvrtc_version() -> tuple[int, int]:
    major, minor = ctypes.c_int(), ctypes.c_int()
    _check(NVRTC.nvrtcVersion(ctypes.byref(major), ctypes.byref(minor)))
    return major.value, minor.value


def _check(result: int, log: str = "") -> None:
    if result != 0:
        raise RuntimeError(f"NVRTC: {NVRTC.nvrtcGetErrorString(result).decode()}\n{log}")


def nvrtc_compile(source: str, name: str, options: tuple[str, ...] = CUPY_OPTIONS) -> tuple[bytes, str]:
    """(cubin, log) of ``source`` compiled by NVRTC; raises RuntimeError with the log when it fails."""
    prog = ctypes.c_void_p()
    _check(NVRTC.nvrtcCreateProgram(ctypes.byref(prog), source.encode(), f"{name}.cu".encode(), 0, None, None))
    try:
        opts = (ctypes.c_char_p * len(options))(*(o.encode() for o in options))
        result = NVRTC.nvrtcCompileProgram(prog, len(options), opts)
        size = ctypes.c_size_t()
        _check(NVRTC.nvrtcGetProgramLogSize(prog, ctypes.byref(size)))
        buffer = ctypes.create_string_buffer(size.value)
        _check(NVRTC.nvrtcGetProgramLog(prog, buffer))
        log = buffer.value.decode(errors="replace")
        _check(result, f"{log}\n--- source ---\n{source}")
        _check(NVRTC.nvrtcGetCUBINSize(prog, ctypes.byref(size)))
        cubin = ctypes.create_string_buffer(size.value)
        _check(NVRTC.nvrtcGetCUBIN(prog, cubin))
        return cubin.raw, log
    finally:
        NVRTC.nvrtcDestroyProgram(ctypes.byref(prog))


# Stand-ins for CuPy's CArray, CIndexer and CUPY_FOR (cupy/_core/include/cupy/carray.cuh), with the
# interface the generated code uses: a strided element from a multi-index, the size, set(i) and get().
CARRAY_STAND_IN = r"""
#define CUPY_FOR(i, n) \
    for (ptrdiff_t i = static_cast<ptrdiff_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < (n); \
         i += static_cast<ptrdiff_t>(blockDim.x) * gridDim.x)

template <typename T, int _ndim, bool _c_contiguous = false, bool _use_32bit_indexing = false>
class CArray {
  T* data_;
  ptrdiff_t size_;
  ptrdiff_t shape_[_ndim];
  ptrdiff_t strides_[_ndim];

 public:
  template <typename Int>
  __device__ const T& operator[](const Int (&idx)[_ndim]) const {
    const char* ptr = reinterpret_cast<const char*>(data_);
    for (int dim = 0; dim < _ndim; dim++) ptr += static_cast<ptrdiff_t>(strides_[dim]) * idx[dim];
    return *reinterpret_cast<const T*>(ptr);
  }
  template <typename Int>
  __device__ T& operator[](const Int (&idx)[_ndim]) {
    return const_cast<T&>(const_cast<const CArray&>(*this)[idx]);
  }
};

template <int _ndim, bool _use_32bit_indexing = false>
class CIndexer {
  ptrdiff_t size_;
  ptrdiff_t shape_[_ndim];
  ptrdiff_t index_[_ndim];
  typedef ptrdiff_t index_t[_ndim];

 public:
  __device__ ptrdiff_t size() const { return size_; }
  __device__ const index_t& get() const { return index_; }
  __device__ void set(ptrdiff_t i) {
    for (int dim = _ndim; --dim > 0;) {
      index_[dim] = i % shape_[dim];
      i /= shape_[dim];
    }
    index_[0] = i;
  }
};
"""

_SCALAR_TYPES = {"float64": "double", "float32": "float", "int32": "int", "int64": "long long"}


def elementwise_source(kernel: ElementwiseSource, c_type: str, ndim: int = 2) -> str:
    """The CUDA source CuPy generates for ``kernel`` with T = ``c_type`` and ``ndim``-dimensional,
    non-contiguous arrays (the most general CArray; all-contiguous arrays are reduced to ndim 1)."""
    params, refs = [], []
    for spec, is_const in ((kernel.in_params, True), (kernel.out_params, False)):
        for param in spec.split(","):
            type_name, name = param.split()
            const = "const " if is_const else ""
            if type_name == "T":  # an array of the kernel's type T
                params.append(f"{const}CArray<{c_type}, {ndim}, 0, 1> _raw_{name}")
                refs.append(f"{const}T &{name} = _raw_{name}[_ind.get()];")
            else:  # a scalar of a fixed dtype
                params.append(f"{const}{_SCALAR_TYPES[type_name]} {name}")
    params.append(f"CIndexer<{ndim}, 1> _ind")
    operation = "\n".join([*refs, kernel.operation])
    return f"""{CARRAY_STAND_IN}
typedef {c_type} T;

extern "C" __global__ void {kernel.name}({", ".join(params)}) {{
  ;
  #pragma unroll 1
  CUPY_FOR(i, _ind.size()) {{
    _ind.set(i);
    {operation};
  }}
  ;
}}
"""


C_TYPES = sorted(FLOAT_TYPES.values())


@requires_nvrtc
@pytest.mark.parametrize("c_type", C_TYPES)
def test_the_fused_loss_kernel_compiles_with_nvrtc_as_cupy_builds_it(c_type):
    source, name = softmax_xent_source(c_type)
    cubin, log = nvrtc_compile(source, name)
    assert name.encode() in cubin, f"kernel {name} missing from the cubin ({NVRTC_SOURCE})"
    assert "warning" not in log.lower(), log


@requires_nvrtc
@pytest.mark.parametrize("c_type", C_TYPES)
@pytest.mark.parametrize("kernel", ELEMENTWISE, ids=[k.name for k in ELEMENTWISE])
def test_each_elementwise_kernel_compiles_with_nvrtc_as_cupy_wraps_it(kernel, c_type):
    cubin, log = nvrtc_compile(elementwise_source(kernel, c_type), kernel.name)
    assert kernel.name.encode() in cubin
    assert "warning" not in log.lower(), log


@requires_nvrtc
def test_a_compile_error_is_reported_with_the_log():
    with pytest.raises(RuntimeError, match="NVRTC_ERROR_COMPILATION"):
        nvrtc_compile('extern "C" __global__ void broken() { undeclared = 1; }', "broken")


def test_the_elementwise_wrapper_declares_every_parameter():
    """The generated signature names each parameter as CuPy does: _raw_<name> for arrays, <name> for scalars."""
    for kernel in ELEMENTWISE:
        source = elementwise_source(kernel, "float")
        signature = re.search(rf"void {kernel.name}\((.*)\)", source).group(1)
        for param in f"{kernel.in_params}, {kernel.out_params}".split(","):
            type_name, name = param.split()
            assert (f"_raw_{name}" if type_name == "T" else f" {name}") in signature


def test_the_loss_source_is_shipped_beside_the_backend():
    assert (Path(__file__).parents[1] / "backends" / "softmax_xent.cu").is_file()
    for c_type in C_TYPES:
        source, name = softmax_xent_source(c_type)
        assert f"#define T {c_type}\n" in source and f"void {name}(" in source
    with pytest.raises(ValueError, match="half"):
        softmax_xent_source("half")
