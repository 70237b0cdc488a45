"""The base class of every layer: parameters, gradients and reused buffers (the layer contract is
in nnx.layers' docstring). A module of its own so that nnx.layers, which lists every layer type,
and the modules of the other layers (nnx.activations, nnx.normalization) import it without a cycle.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends import Backend
from backends.contract import Array
from nnx.buffers import BufferCache


class Layer:
    """Base class: no parameters, buffers cached by name and shape."""

    def __init__(self) -> None:
        self.params: dict[str, Array] = {}
        self._grads: dict[str, Array] = {}
        self.training = False
        self.backend: Backend | None = None
        self.dtype: Any = None
        self._buffers = BufferCache()

    def build(self, backend: Backend, dtype: Any, rng: np.random.Generator) -> None:
        self.backend, self.dtype = backend, np.dtype(dtype)
        self._buffers.clear()

    def buffer(self, name: str, shape: tuple[int, ...], dtype: Any = None) -> Array:
        """A scratch array of this shape (and of the layer's dtype, unless given), reused while the
        shape stays the same.

        Two shapes are kept per name: the full batch and the last, smaller one of an epoch.
        """
        dtype = dtype or self.dtype
        return self._buffers.get(name, (shape, dtype), lambda: self.backend.empty(shape, dtype))

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shapes of the parameters that build() allocates, by key."""
        return {}

    @property
    def grads(self) -> dict[str, Array]:
        """dL/dparameter of the last backward, by key (computed here first where it was deferred)."""
        return self._grads

    def bind_grads(self, grads: dict[str, Array]) -> None:
        """Keep the gradients of these keys in these arrays (shaped like the parameters) from now on:
        views of one flat buffer that a data-parallel all-reduce sums at once (Sequential.gradient_buffer)."""
        self._grads = {**self._grads, **grads}

    def grad_factors(self) -> dict[str, tuple[Array, Array]]:
        """{key: (a, b)} for each gradient that backward left as the product a·b, not yet computed.
        An optimizer may apply such a gradient without forming it (plain SGD: p ← p − lr·a·b)."""
        return {}

    def release_buffers(self) -> None:
        """Drop the scratch buffers (they are sized again on the next batch)."""
        self._buffers.clear()

    def output_features(self, in_features: int) -> int:
        return in_features

    def config(self) -> dict[str, Any]:
        return {}

    def forward(self, x: Array) -> Array:
        raise NotImplementedError

    def backward(self, grad: Array) -> Array:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"
