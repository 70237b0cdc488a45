"""cupy.random in the stand-in: default_rng and the Generator methods nnx calls, with CuPy's checks
of ``out`` (cupy/random/_generator_api.pyx). The numbers are NumPy's, not CuPy's XORWOW stream."""

from __future__ import annotations

from typing import Any

import numpy as np

import cupy


class Generator:
    def __init__(self, seed: Any) -> None:
        if seed is not None and not isinstance(seed, (int, np.integer)):
            raise TypeError(f"the stand-in's cupy.random.default_rng takes an int seed or None; got {type(seed)}")
        self._numpy = np.random.default_rng(seed)

    def random(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        if out is not None:
            if not isinstance(out, cupy.ndarray):
                raise TypeError(f"out must be a cupy.ndarray; got {type(out)}")
            if out.dtype.char != np.dtype(dtype).char:
                raise TypeError(
                    f"Supplied output array has the wrong type. Expected {np.dtype(dtype).name}, got {out.dtype.name}"
                )
            if not (out.flags.c_contiguous or out.flags.f_contiguous):
                raise ValueError("Supplied output array is not contiguous, writable or aligned.")
            if size is not None and (tuple(size) if np.iterable(size) else (size,)) != out.shape:
                raise ValueError("size must match out.shape when used together")
            self._numpy.random(out.shape, dtype=dtype, out=out._a)
            return out
        return cupy.ndarray._of(np.asarray(self._numpy.random(size, dtype=dtype)))

    def standard_normal(self, size: Any = None, dtype: Any = np.float64, out: Any = None) -> Any:
        if out is not None:
            self._numpy.standard_normal(out.shape, dtype=dtype, out=out._a)
            return out
        return cupy.ndarray._of(np.asarray(self._numpy.standard_normal(size, dtype=dtype)))

    def integers(
        self, low: Any, high: Any = None, size: Any = None, dtype: Any = np.int64, endpoint: bool = False
    ) -> Any:
        return cupy.ndarray._of(np.asarray(self._numpy.integers(low, high, size, dtype=dtype, endpoint=endpoint)))

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the CuPy stand-in does not implement cupy.random.Generator.{name}")


def default_rng(seed: Any = None) -> Generator:
    return Generator(seed)


def __getattr__(name: str) -> Any:
    raise AttributeError(f"the CuPy stand-in does not implement cupy.random.{name}")
