"""The CUDA sources of the CuPy backend's kernels, as plain strings, and the host-side check of the
fused loss's arguments. Imports no CuPy, so the sources can be compiled and checked on a machine
without it (tests/test_cuda_source.py builds each with NVRTC, as CuPy would).

    softmax_xent_source(c_type)  -> (source, kernel name) of the fused loss (softmax_xent.cu), a RawKernel
    ELEMENTWISE                  -> the ElementwiseKernel specs: bias_relu, relu_backward and the optimizer steps
    check_loss_arguments(...)    -> raises before a launch that would read or write out of bounds
"""

from __future__ import annotations

from importlib import resources
from typing import Any, NamedTuple

import numpy as np

from backends.contract import FLUSH

FLOAT_TYPES = {np.dtype(np.float32): "float", np.dtype(np.float64): "double"}  # dtype -> CUDA C type
LOSS_DTYPE = np.dtype(np.float64)  # the per-row losses are kept in double, as the CPU kernel sums them


def softmax_xent_source(c_type: str) -> tuple[str, str]:
    """(CUDA source, kernel name) of the fused loss (softmax_xent.cu) for ``c_type`` "float" or "double"."""
    if c_type not in FLOAT_TYPES.values():
        raise ValueError(f"c_type must be 'float' or 'double'; got {c_type!r}")
    name = f"softmax_xent_{c_type}"
    source = (resources.files("backends") / "softmax_xent.cu").read_text()
    return f"#define T {c_type}\n" + source.replace("softmax_xent_T", name), name


class ElementwiseSource(NamedTuple):
    """The arguments of ``cupy.ElementwiseKernel(in_params, out_params, operation, name)``."""

    in_params: str
    out_params: str
    operation: str
    name: str


# The optimizer steps of backends/contract.py in one kernel each; f is FLUSH (2**-60, see flush_tiny).
_FLUSH = f"const T f = (T){FLUSH!r};"

BIAS_RELU = ElementwiseSource("T b", "T y", "y = max(y + b, (T)0)", "nnx_bias_relu")
RELU_BACKWARD = ElementwiseSource("T g, T y", "T out", "out = y > (T)0 ? g : (T)0", "nnx_relu_backward")
SGD_UPDATE = ElementwiseSource("T g, float64 lr", "T p", "p = p - (T)lr * g", "nnx_sgd_update")
MOMENTUM_UPDATE = ElementwiseSource(
    "T g, float64 lr, float64 mu, int32 nesterov, float64 decay, int32 flush, float64 l2",
    "T p, T v",
    _FLUSH
    + """
    const T gi = l2 != 0.0 ? g + (T)l2 * p : g;
    T vi = v * (T)mu + gi;
    if (flush) vi = (vi + f) - f;
    v = vi;
    p = p * (T)decay - (nesterov ? vi * (T)mu + gi : vi) * (T)lr;
    """,
    "nnx_momentum_update",
)
ADAM_UPDATE = ElementwiseSource(
    "T g, float64 lr, float64 b1, float64 b2, float64 eps, float64 decay, int32 flush, float64 l2",
    "T p, T m, T v",
    _FLUSH
    + """
    const T gi = l2 != 0.0 ? g + (T)l2 * p : g;
    T mi = m * (T)b1 + gi * (T)(1.0 - b1);
    T vi = v * (T)b2 + (gi * gi) * (T)(1.0 - b2);
    if (flush) {
        mi = (mi + f) - f;
        vi = (vi + f) - f;
    }
    m = mi;
    v = vi;
    p = p * (T)decay - (mi / (sqrt(vi) + (T)eps)) * (T)lr;
    """,
    "nnx_adam_update",
)
ELEMENTWISE = (BIAS_RELU, RELU_BACKWARD, SGD_UPDATE, MOMENTUM_UPDATE, ADAM_UPDATE)


def check_loss_arguments(logits: Any, labels: Any, dlogits: Any, row_loss: Any = None) -> None:
    """Raise unless the fused loss kernel can run on these arrays without reading or writing out of
    bounds: logits (N, C) float32/float64 with N, C > 0; labels (N,) integer; dlogits (N, C) of the
    logits' dtype and C-contiguous (the kernel writes it as a dense buffer: a view would be corrupted);
    row_loss, where given (the workspace's), (N,) float64 and C-contiguous. ValueError for a shape
    or a layout, TypeError for a dtype. Takes any arrays with shape, dtype and flags (NumPy, CuPy)."""
    if logits.ndim != 2 or 0 in logits.shape:
        raise ValueError(f"logits must be (N, C) with N, C > 0; got shape {logits.shape}")
    if logits.dtype not in FLOAT_TYPES:
        raise TypeError(f"logits must be float32 or float64; got {logits.dtype}")
    n, c = logits.shape
    if labels.shape != (n,):
        raise ValueError(f"labels must be ({n},) for logits {logits.shape}; got shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"labels must be integers; got {labels.dtype}")
    if dlogits.dtype != logits.dtype:
        raise TypeError(f"dlogits must be {logits.dtype} like logits; got {dlogits.dtype}")
    if dlogits.shape != (n, c):
        raise ValueError(f"dlogits must be {(n, c)} like logits; got shape {dlogits.shape}")
    if not dlogits.flags.c_contiguous:
        raise ValueError(f"dlogits must be C-contiguous; got strides {dlogits.strides}")
    if row_loss is not None and (
        row_loss.dtype != LOSS_DTYPE or row_loss.shape != (n,) or not row_loss.flags.c_contiguous
    ):
        raise ValueError(
            f"workspace['row_loss'] must be C-contiguous float64 ({n},) (from loss_workspace({n}, {c}, ...)); "
            f"got {row_loss.dtype} {row_loss.shape}"
        )
