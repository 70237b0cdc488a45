"""A strict stand-in for CuPy, on the CPU, for tests (installed in place of ``cupy`` by
tests/conftest.py when NNX_FAKE_GPU=1).

It implements the subset of CuPy's API that nnx uses, with CuPy's signatures and refusals (read
from CuPy 14's source: ``cupy/_core/core.pyx``, ``_kernel.pyx``, ``cupy/cublas.py``,
``cupy/random/_generator_api.pyx``, ``cupy_backends/cuda/libs/nccl.pyx``):

- ``ndarray`` holds a NumPy array but is not one: ``numpy.asarray(x)`` raises TypeError ("Implicit
  conversion to a NumPy array is not allowed"); NumPy functions and ufuncs dispatch to this module
  (``__array_function__``, ``__array_ufunc__``), as they do to CuPy, and refuse what it lacks;
  a NumPy array given where a device array is expected raises TypeError;
- every read of device values on the host (``asnumpy``, ``get``, ``float``, ``int``, ``bool``,
  ``item``, ``tolist``, printing) and every stream synchronisation is counted in
  ``cupy._stand_in.host_syncs``;
- ``ElementwiseKernel``, ``RawKernel`` and ``RawModule`` compile the CUDA sources they are given
  with g++ (``cupy._host_kernels``), with CuPy's argument checks;
- a name that is not implemented raises AttributeError naming it; nothing falls back silently.
"""

from __future__ import annotations

import builtins
import functools
from typing import Any

import numpy as _np

from cupy import _stand_in

__version__ = "14.0.0+nnx.stand.in"


class _Flags:
    """ndarray.flags: c_contiguous, f_contiguous, owndata (read-only, as CuPy's)."""

    def __init__(self, a: _np.ndarray) -> None:
        self.c_contiguous = bool(a.flags.c_contiguous)
        self.f_contiguous = bool(a.flags.f_contiguous)
        self.owndata = bool(a.flags.owndata)

    def __getitem__(self, key: str) -> bool:
        return {"C_CONTIGUOUS": self.c_contiguous, "F_CONTIGUOUS": self.f_contiguous, "OWNDATA": self.owndata}[key]


class _MemoryPointer:
    """ndarray.data: the address of the first element (``ptr``), as cupy.cuda.MemoryPointer."""

    def __init__(self, a: _np.ndarray) -> None:
        self.ptr = int(a.__array_interface__["data"][0])


def _unwrap(x: Any) -> Any:
    """The NumPy array behind a device array; NumPy arrays are refused as CuPy refuses them."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, _np.ndarray):
        raise TypeError(f"Unsupported type {type(x)}")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v) for v in x)
    return x


def _wrap(r: Any) -> Any:
    if isinstance(r, _np.ndarray):
        return ndarray._of(r)
    if isinstance(r, _np.generic):  # CuPy's reductions return 0-d arrays, never host scalars
        return ndarray._of(_np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    return r


def _device_function(np_func: Any, name: str | None = None) -> Any:
    """A function of device arrays computed by ``np_func`` on the arrays behind them."""

    @functools.wraps(np_func)
    def run(*args: Any, **kwargs: Any) -> Any:
        out = kwargs.get("out")
        if out is not None and not isinstance(out, ndarray):
            raise TypeError(f"Output arguments type must be cupy.ndarray; got {type(out)}")
        result = np_func(*_unwrap(args), **{k: _unwrap(v) for k, v in kwargs.items()})
        return out if out is not None and result is out._a else _wrap(result)

    run.__name__ = name or np_func.__name__
    run.__module__ = "cupy"
    return run


class ndarray:
    """A device array: a NumPy array behind a wall that only explicit transfers cross."""

    __slots__ = ("_a",)

    def __init__(self, shape: Any, dtype: Any = float, memptr: Any = None, strides: Any = None, order: str = "C"):
        if memptr is not None or strides is not None:
            raise AttributeError("the CuPy stand-in does not implement cupy.ndarray(memptr=..., strides=...)")
        self._a = _poisoned(_np.empty(shape, dtype, order=order))

    @classmethod
    def _of(cls, a: _np.ndarray) -> ndarray:
        new = object.__new__(cls)
        new._a = a
        return new

    # ---- attributes ----------------------------------------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    strides = property(lambda self: self._a.strides)
    itemsize = property(lambda self: self._a.itemsize)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: _Flags(self._a))
    data = property(lambda self: _MemoryPointer(self._a))
    T = property(lambda self: ndarray._of(self._a.T))

    @property
    def __cuda_array_interface__(self) -> dict[str, Any]:
        a = self._a
        return {"data": (_MemoryPointer(a).ptr, False), "shape": a.shape, "typestr": a.dtype.str,
                "strides": None if a.flags.c_contiguous else a.strides, "version": 3}  # fmt: skip

    @property
    def device(self) -> Any:
        from cupy.cuda import Device

        return Device()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the CuPy stand-in does not implement cupy.ndarray.{name}")

    # ---- explicit transfers to the host (counted) ------------------------------------
    def get(self, stream: Any = None, order: str = "C", out: Any = None, blocking: bool = True) -> _np.ndarray:
        _stand_in.host_sync("get")
        if out is not None:
            if not isinstance(out, _np.ndarray):
                raise TypeError("Only numpy.ndarray can be obtained from cupy.ndarray")
            _np.copyto(out, self._a)
            return out
        return _np.array(self._a, order=order)

    def __array__(self, dtype: Any = None, copy: Any = None) -> _np.ndarray:
        raise TypeError(
            "Implicit conversion to a NumPy array is not allowed. Please use `.get()` to construct a NumPy array "
            "explicitly."
        )

    def _scalar(self, kind: str) -> Any:
        _stand_in.host_sync(kind)
        return self._a

    def __float__(self) -> float:
        return float(self._scalar("float"))

    def __int__(self) -> int:
        return int(self._scalar("int"))

    def __bool__(self) -> bool:
        return bool(self._scalar("bool"))

    def __complex__(self) -> complex:
        return complex(self._scalar("complex"))

    def item(self) -> Any:
        return self._scalar("item").item()

    def tolist(self) -> Any:
        return self._scalar("tolist").tolist()

    def __repr__(self) -> str:
        return repr(self._scalar("repr"))

    def __str__(self) -> str:
        return str(self._scalar("repr"))

    def __format__(self, spec: str) -> str:
        return format(self._scalar("repr").item() if self.ndim == 0 else self._a, spec)

    def __len__(self) -> int:
        return len(self._a)

    def __iter__(self) -> Any:
        return (self[i] for i in builtins.range(len(self)))

    def __reduce__(self) -> Any:
        return array, (self.get(order="A"),)

    # ---- NumPy interoperability, as CuPy's ---------------------------------------------
    def __array_ufunc__(self, ufunc: Any, method: str, *inputs: Any, **kwargs: Any) -> Any:
        func = _FUNCTIONS.get(ufunc.__name__)
        if func is None or method != "__call__":
            return NotImplemented
        if "out" in kwargs:
            (kwargs["out"],) = kwargs["out"]
        return func(*inputs, **kwargs)

    def __array_function__(self, func: Any, types: Any, args: Any, kwargs: Any) -> Any:
        implementation = _FUNCTIONS.get(func.__name__) if func.__module__ == "numpy" else None
        if implementation is None:
            return NotImplemented
        return implementation(*args, **kwargs)

    # ---- indexing ----------------------------------------------------------------------
    def __getitem__(self, key: Any) -> ndarray:
        return _wrap(self._a[_index(key)])

    def __setitem__(self, key: Any, value: Any) -> None:
        self._a[_index(key)] = _unwrap(value)

    # ---- methods -----------------------------------------------------------------------
    def copy(self, order: str = "C") -> ndarray:
        return ndarray._of(self._a.copy(order=order))

    def astype(
        self, dtype: Any, order: str = "K", casting: Any = None, subok: Any = None, copy: bool = True
    ) -> ndarray:
        result = self._a.astype(dtype, order=order, copy=copy)
        return self if result is self._a else ndarray._of(result)

    def reshape(self, *shape: Any, order: str = "C") -> ndarray:
        return ndarray._of(self._a.reshape(*shape, order=order))

    def view(self, dtype: Any = None) -> ndarray:
        return ndarray._of(self._a.view() if dtype is None else self._a.view(dtype))

    def ravel(self, order: str = "C") -> ndarray:
        return ndarray._of(self._a.ravel(order))

    def transpose(self, *axes: Any) -> ndarray:
        return ndarray._of(self._a.transpose(*axes))

    def fill(self, value: Any) -> None:
        self._a.fill(_unwrap(value))


def _index(key: Any) -> Any:
    if isinstance(key, tuple):
        return tuple(_index(k) for k in key)
    return key._a if isinstance(key, ndarray) else key  # a host index array CuPy copies to the device


def _method(name: str) -> None:
    def method(self: ndarray, *args: Any, **kwargs: Any) -> Any:
        return _FUNCTIONS[name](self, *args, **kwargs)

    method.__name__ = name
    setattr(ndarray, name, method)


def _operator(name: str) -> None:
    np_op = getattr(_np.ndarray, name)

    def op(self: ndarray, other: Any = None, *rest: Any) -> Any:
        args = () if other is None and name in _UNARY else (_unwrap(other),)
        result = np_op(self._a, *args)
        if result is NotImplemented:
            return NotImplemented
        return self if result is self._a else _wrap(result)

    op.__name__ = name
    setattr(ndarray, name, op)


_UNARY = {"__neg__", "__pos__", "__abs__", "__invert__"}
_BINARY = ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor")
_COMPARISONS = ("__lt__", "__le__", "__gt__", "__ge__", "__eq__", "__ne__")
for _name in (*_UNARY, *(f"__{p}{op}__" for op in _BINARY for p in ("", "r", "i")), *_COMPARISONS):
    _operator(_name)
ndarray.__hash__ = None  # type: ignore[assignment]


def _poisoned(a: _np.ndarray) -> _np.ndarray:
    """Fresh device memory, as cupy.empty gives it: not zeros (NaN for floats, a pattern for integers),
    so that reading what was never written shows."""
    if a.dtype.kind == "f":
        a.fill(_np.nan)
    elif a.dtype.kind in "iu":
        a.fill(_np.iinfo(a.dtype).max // 3)
    return a


# ---- creation and transfer ---------------------------------------------------------------
def asarray(a: Any, dtype: Any = None, order: Any = None, *, blocking: bool = False) -> ndarray:
    if isinstance(a, ndarray):
        result = a._a if dtype is None else a._a.astype(dtype, copy=False)
        return a if result is a._a else ndarray._of(result)
    return ndarray._of(_np.array(a, dtype=dtype, order=order or "K"))  # host to device: a copy


def array(obj: Any, dtype: Any = None, copy: bool = True, order: str = "K", subok: bool = False, ndmin: int = 0,
          *, blocking: bool = False) -> ndarray:  # fmt: skip
    host = obj._a if isinstance(obj, ndarray) else obj
    return ndarray._of(_np.array(host, dtype=dtype, copy=True, order=order, ndmin=ndmin))


def ascontiguousarray(a: Any, dtype: Any = None) -> ndarray:
    if not isinstance(a, ndarray):
        raise TypeError(f"Unsupported type {type(a)}")
    result = _np.ascontiguousarray(a._a, dtype=dtype)
    return a if result is a._a else ndarray._of(result)


def asnumpy(a: Any, stream: Any = None, order: str = "C", out: Any = None, *, blocking: bool = True) -> _np.ndarray:
    if isinstance(a, ndarray):
        _stand_in.host_sync("asnumpy")
        if out is not None:
            _np.copyto(out, a._a)
            return out
        return _np.array(a._a, order=order)
    return _np.asarray(a, order=order)


def empty(shape: Any, dtype: Any = float, order: str = "C") -> ndarray:
    return ndarray(shape, dtype, order=order)


def empty_like(a: ndarray, dtype: Any = None, order: str = "K", subok: Any = None, shape: Any = None) -> ndarray:
    return ndarray._of(_poisoned(_np.empty_like(_unwrap(a), dtype=dtype, order=order, shape=shape)))


def get_array_module(*args: Any) -> Any:
    import sys

    return sys.modules[__name__] if any(isinstance(a, ndarray) for a in args) else _np


# NumPy functions that CuPy has with the same signature (those nnx and its tests call).
_FUNCTIONS: dict[str, Any] = {}
for _name in (
    # ufuncs
    "add", "subtract", "multiply", "divide", "true_divide", "negative", "maximum", "minimum", "exp", "log", "log1p",
    "expm1", "sqrt", "square", "tanh", "abs", "absolute", "reciprocal", "sign", "power", "greater", "greater_equal",
    "less", "less_equal", "equal", "not_equal", "isfinite", "isnan", "logical_and", "logical_or", "logical_not",
    "clip", "where", "floor", "ceil",
    # creation
    "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "arange", "linspace", "eye",
    # manipulation and indexing
    "copyto", "take", "put", "reshape", "ravel", "transpose", "concatenate", "stack", "repeat", "broadcast_to",
    "flatnonzero", "nonzero", "unique", "searchsorted", "sort", "argsort",
    # reductions and products
    "sum", "mean", "var", "std", "max", "min", "amax", "amin", "argmax", "argmin", "prod", "all", "any",
    "count_nonzero", "dot", "vdot", "matmul", "allclose", "isclose", "array_equal", "cumsum",
):  # fmt: skip
    _FUNCTIONS[_name] = globals()[_name] = _device_function(getattr(_np, _name), _name)
_FUNCTIONS.update(asarray=asarray, array=array, ascontiguousarray=ascontiguousarray, empty=empty, empty_like=empty_like)
for _name in ("sum", "mean", "var", "std", "max", "min", "argmax", "argmin", "prod", "all", "any", "dot", "take",
              "repeat", "cumsum", "clip", "nonzero", "sort", "argsort"):  # fmt: skip
    _method(_name)

dtype = _np.dtype
newaxis = None
pi, e, inf, nan = _np.pi, _np.e, _np.inf, _np.nan
for _name in ("bool_", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32",
              "float64", "complex64", "complex128", "intp", "finfo", "iinfo", "can_cast", "result_type",
              "promote_types", "issubdtype", "floating", "integer", "number", "generic"):  # fmt: skip
    globals()[_name] = getattr(_np, _name)

from cupy import cublas, cuda, random  # noqa: E402  (they use ndarray)
from cupy._host_kernels import ElementwiseKernel, RawKernel, RawModule  # noqa: E402


def __getattr__(name: str) -> Any:
    raise AttributeError(f"the CuPy stand-in does not implement cupy.{name}")


__all__ = ["ElementwiseKernel", "RawKernel", "RawModule", "cublas", "cuda", "ndarray", "random"]
