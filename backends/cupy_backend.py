"""The GPU backend: CuPy arrays and cuBLAS. CuPy is imported only when this backend is asked for,
and the backend is given out only after a probe has compiled and run a kernel on the device."""

from __future__ import annotations

import functools
from types import ModuleType

import numpy as np

from backends.contract import Backend, BackendUnavailable

_NO_DEVICE = 100  # cudaErrorNoDevice: a driver, but no CUDA-capable device


def cupy_backend() -> Backend:
    """The CuPy backend; raises BackendUnavailable naming what is missing or failing (CuPy, the driver,
    a device, or compiling and running on it). Imports and probes once per process, whatever the
    outcome; ``cupy_backend.cache_clear()`` forgets it (for tests)."""
    outcome = _cupy_backend_or_reason()
    if isinstance(outcome, str):
        raise BackendUnavailable(outcome)
    return outcome


@functools.cache
def _cupy_backend_or_reason() -> Backend | str:
    try:
        import cupy
    except Exception as exc:  # ImportError: no CuPy, or a CuPy that cannot load its CUDA libraries
        return f"the 'cupy' backend needs CuPy: pip install cupy-cuda12x[ctk] (the gpu extra); import failed: {exc}"
    try:
        probe(cupy)
    except BackendUnavailable as exc:
        return str(exc)
    from backends.cupy_kernels import CupyBackend

    return CupyBackend()


cupy_backend.cache_clear = _cupy_backend_or_reason.cache_clear  # type: ignore[attr-defined]


def probe(cupy: ModuleType) -> None:
    """Raise BackendUnavailable unless ``cupy`` sees a device, compiles and runs an ElementwiseKernel
    there (NVRTC and the CUDA headers) and multiplies two 2×2 matrices (cuBLAS) correctly."""
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no device, no driver, or a driver too old for this CuPy
        if getattr(exc, "status", None) == _NO_DEVICE or "cudaErrorNoDevice" in str(exc):
            raise BackendUnavailable(f"the 'cupy' backend needs a CUDA device; none is visible ({exc})") from None
        raise BackendUnavailable(f"the 'cupy' backend needs an NVIDIA driver: {exc}") from None
    if count < 1:
        raise BackendUnavailable("the 'cupy' backend needs a CUDA device; none is visible")
    host = np.array([[1.0, 2.0], [3.0, 4.0]], dtype=np.float32)
    try:
        x = cupy.asarray(host)
        y = cupy.ElementwiseKernel("T x", "T y", "y = x + (T)1", "nnx_probe")(x)
        product = cupy.asnumpy(x @ y)  # waits for the device
    except Exception as exc:  # NVRTC or headers missing (CuPy 14 needs cupy-cuda12x[ctk]), cuBLAS, launch
        raise BackendUnavailable(
            f"the 'cupy' backend cannot compile or run on the device: {type(exc).__name__}: {exc}"
        ) from None
    if not np.array_equal(product, host @ (host + 1)):
        raise BackendUnavailable(f"the 'cupy' backend computed a wrong 2×2 product: {product.tolist()}")
