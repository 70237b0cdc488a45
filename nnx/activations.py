"""Activations beyond ReLU: Tanh, Sigmoid, GELU and LeakyReLU, each with PyTorch's definition.
x, y, grad, dx: (N, F). Unlike ReLU, none is fused into the Dense before it: each is one more
pass over the layer's output (see the README's math section)."""

from __future__ import annotations

import math
import numbers
from typing import Any

from backends.contract import Array
from nnx.errors import ConfigError
from nnx.layer_base import Layer


class Tanh(Layer):
    """y = tanh(x); dx = dy·(1 − y²)."""

    def forward(self, x: Array) -> Array:
        y = self.y = self.buffer("y", x.shape)
        self.backend.xp.tanh(x, out=y)
        return y

    def backward(self, grad: Array) -> Array:
        xp, dx = self.backend.xp, self.buffer("dx", grad.shape)
        xp.multiply(self.y, self.y, out=dx)
        xp.subtract(1.0, dx, out=dx)
        dx *= grad
        return dx


class Sigmoid(Layer):
    """y = 1/(1 + exp(−x)), without overflow (Backend.sigmoid); dx = dy·y·(1 − y).

    For a binary classifier, end the network with logits and use BinaryCrossentropy, which
    applies the sigmoid itself, stably."""

    def forward(self, x: Array) -> Array:
        y = self.y = self.buffer("y", x.shape)
        self.backend.sigmoid(x, y)
        return y

    def backward(self, grad: Array) -> Array:
        xp, dx = self.backend.xp, self.buffer("dx", grad.shape)
        xp.subtract(1.0, self.y, out=dx)
        dx *= self.y
        dx *= grad
        return dx


class GELU(Layer):
    """y = x·Φ(x), Φ the standard normal CDF (``approximate="none"``, the exact form through erfc),
    or PyTorch's tanh approximation x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))) (``"tanh"``).
    Forward and backward are the backend's gelu and gelu_backward kernels."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ConfigError(f'approximate must be "none" or "tanh"; got {approximate!r}')
        self.approximate = approximate

    def config(self) -> dict[str, Any]:
        return {"approximate": self.approximate}

    def _scratch(self, shape: tuple[int, ...]) -> Array:
        # the exact forward evaluates erfc with 4 arrays; the tanh backward needs 1
        return self.buffer("scratch", (4 if self.approximate == "none" else 1, *shape))

    def forward(self, x: Array) -> Array:
        self.x = x
        y, self.keep = self.buffer("y", x.shape), self.buffer("keep", x.shape)
        scratch = self._scratch(x.shape) if self.approximate == "none" else None
        self.backend.gelu(x, y, self.keep, self.approximate, scratch)
        return y

    def backward(self, grad: Array) -> Array:
        dx = self.buffer("dx", grad.shape)
        scratch = self._scratch(grad.shape) if self.approximate == "tanh" else None
        self.backend.gelu_backward(grad, self.x, self.keep, dx, self.approximate, scratch)
        return dx


class LeakyReLU(Layer):
    """y = x where x > 0, else negative_slope·x; dx = dy where x > 0, else negative_slope·dy."""

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        ok = isinstance(negative_slope, numbers.Real) and not isinstance(negative_slope, bool)
        if not ok or not math.isfinite(negative_slope):
            raise ConfigError(f"negative_slope must be a finite number; got {negative_slope!r}")
        self.negative_slope = float(negative_slope)

    def config(self) -> dict[str, Any]:
        return {"negative_slope": self.negative_slope}

    def forward(self, x: Array) -> Array:
        # max(x, a·x) for a slope a ≤ 1, min(x, a·x) above: no masked copy (NumPy's is slow)
        xp, a = self.backend.xp, self.negative_slope
        y, mask = self.buffer("y", x.shape), self.buffer("mask", x.shape, bool)
        self.mask = mask
        xp.greater(x, 0, out=mask)
        xp.multiply(x, a, out=y)
        (xp.maximum if a <= 1 else xp.minimum)(x, y, out=y)
        return y

    def backward(self, grad: Array) -> Array:
        xp, a, dx = self.backend.xp, self.negative_slope, self.buffer("dx", grad.shape)
        xp.copyto(dx, self.mask)  # the slope at x: 1 where x > 0, else a (a casting multiply would allocate)
        dx *= 1.0 - a
        dx += a
        dx *= grad
        return dx
