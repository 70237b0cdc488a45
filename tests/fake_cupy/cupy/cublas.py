"""cupy.cublas in the stand-in: gemm with CuPy's argument order, assertions and layouts
(cupy/cublas.py): out = alpha·op(a)·op(b) + beta·out; without out, a new F-ordered array."""

from __future__ import annotations

from typing import Any

import numpy as np

import cupy
from cupy import _stand_in


def gemm(transa: str, transb: str, a: Any, b: Any, out: Any = None, alpha: float = 1.0, beta: float = 0.0) -> Any:
    for name, value in (("a", a), ("b", b), ("out", out)):
        if value is not None and not isinstance(value, cupy.ndarray):
            raise TypeError(f"cupy.cublas.gemm: {name} must be a cupy.ndarray; got {type(value)}")
    assert a.ndim == b.ndim == 2
    assert a.dtype == b.dtype
    if a.dtype.char not in "fdFD":
        raise TypeError("invalid dtype")
    op = {"N": lambda x: x, "T": lambda x: x.T, "H": lambda x: x.T.conj()}
    if transa not in op or transb not in op:
        raise TypeError(f"invalid transa or transb: {transa!r}, {transb!r}")
    m, k = a.shape if transa == "N" else a.shape[::-1]
    if transb == "N":
        n = b.shape[1]
        assert b.shape[0] == k
    else:
        n = b.shape[0]
        assert b.shape[1] == k
    if out is None:
        out = cupy.empty((m, n), dtype=a.dtype, order="F")
        beta = 0.0
    else:
        assert out.ndim == 2
        assert out.shape == (m, n)
        assert out.dtype == a.dtype
    alpha_, beta_ = (np.asarray(s.get() if isinstance(s, cupy.ndarray) else s, a.dtype) for s in (alpha, beta))
    product = op[transa](a._a) @ op[transb](b._a)  # in the operands' precision, as cuBLAS computes it
    target = out._a
    # cuBLAS does not read C when beta is 0 (NaN there stays out of the result)
    target[...] = alpha_ * product if beta_ == 0 else alpha_ * product + beta_ * target
    _stand_in.launches["gemm"] += 1
    return out


def __getattr__(name: str) -> Any:
    raise AttributeError(f"the CuPy stand-in does not implement cupy.cublas.{name}")
