"""Array backends for nnx: NumPy on the CPU, CuPy on an NVIDIA GPU.

This package knows nothing of neural networks and never imports ``nnx``.

    get_backend("numpy" | "cupy" | "auto")   -> a Backend (see ``backends.contract``)
    available_backends()                     -> names of the backends usable here
    BackendUnavailable                       -> raised when "cupy" is asked for but cannot run

The default backend name comes from the environment variable ``NNX_BACKEND``
("auto" when unset); this module is the only place that reads it.
"""

from __future__ import annotations

import os

from backends.contract import Backend, BackendUnavailable

__all__ = [
    "Backend",
    "BackendUnavailable",
    "available_backends",
    "backend_for",
    "default_backend_name",
    "get_backend",
    "unavailable_reason",
]

BACKEND_NAMES = ("numpy", "cupy", "auto")


def default_backend_name() -> str:
    """The backend name from ``NNX_BACKEND``, or "auto"."""
    return os.environ.get("NNX_BACKEND", "auto")


def get_backend(name: str | Backend | None = None) -> Backend:
    """Return the backend called ``name`` ("numpy", "cupy" or "auto").

    "auto" gives CuPy when it imports and a CUDA device is usable, else NumPy.
    Raises ``ValueError`` for an unknown name and ``BackendUnavailable`` when
    "cupy" is asked for on a machine without CuPy or without a GPU.
    """
    if isinstance(name, Backend):
        return name
    if name is None:
        name = default_backend_name()
    if name not in BACKEND_NAMES:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKEND_NAMES))}; got {name!r}")
    if name == "numpy":
        from backends.numpy_backend import NUMPY

        return NUMPY
    if name == "cupy":
        from backends.cupy_backend import cupy_backend

        return cupy_backend()
    try:
        return get_backend("cupy")
    except BackendUnavailable:
        return get_backend("numpy")


def backend_for(array: object) -> Backend:
    """The backend whose array module made ``array`` (a NumPy or a CuPy array)."""
    module = type(array).__module__.split(".")[0]
    if module not in ("numpy", "cupy"):
        raise TypeError(f"array must be a numpy or cupy array; got {type(array).__name__}")
    return get_backend(module)


def unavailable_reason(name: str) -> str | None:
    """Why the backend ``name`` cannot run here, or None when it can."""
    try:
        get_backend(name)
    except BackendUnavailable as exc:
        return str(exc)
    return None


def available_backends() -> list[str]:
    """Names of the backends that work on this machine, NumPy first."""
    return [name for name in ("numpy", "cupy") if unavailable_reason(name) is None]
