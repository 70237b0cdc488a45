"""The GPU backend: CuPy arrays and cuBLAS. CuPy is imported only when this backend is asked for."""

from __future__ import annotations

import functools
from importlib import resources

from backends.contract import Backend, BackendUnavailable


@functools.cache
def cupy_backend() -> Backend:
    """The CuPy backend; raises BackendUnavailable naming what is missing (CuPy, driver or device)."""
    try:
        import cupy
    except ImportError as exc:  # no CuPy, or a CuPy that cannot load its CUDA libraries
        raise BackendUnavailable(
            f"the 'cupy' backend needs CuPy: install nnx[gpu] (cupy-cuda12x); import failed: {exc}"
        ) from None
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # CUDARuntimeError: no driver, or a driver too old for this CuPy
        raise BackendUnavailable(f"the 'cupy' backend needs an NVIDIA driver: {exc}") from None
    if count < 1:
        raise BackendUnavailable("the 'cupy' backend needs a CUDA device; none is visible")
    from backends.cupy_kernels import CupyBackend

    return CupyBackend()


def softmax_xent_source(c_type: str) -> tuple[str, str]:
    """(CUDA source, kernel name) of the fused loss (softmax_xent.cu) for ``c_type`` "float" or "double"."""
    name = f"softmax_xent_{c_type}"
    source = (resources.files("backends") / "softmax_xent.cu").read_text()
    return f"#define T {c_type}\n" + source.replace("softmax_xent_T", name), name
