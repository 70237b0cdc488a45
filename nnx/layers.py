"""Layers: Dense, ReLU, Softmax and Dropout here; Tanh, Sigmoid, GELU and LeakyReLU in
nnx.activations; LayerNorm in nnx.normalization; every type by name in ``LAYER_TYPES``.

The layer contract (after jax's stax, kept small):

    build(backend, dtype, rng)  allocate parameters; rng is a numpy.random.Generator,
                                so one seed gives the same weights on every backend
    forward(x) -> y             x: (N, in) backend array; y: (N, out), a buffer the layer owns,
                                overwritten by the next forward
    backward(grad) -> dx        grad: dL/dy (N, out); returns dL/dx (N, in); the gradients of the
                                parameters are then in ``grads`` (PyTorch's meaning), until the
                                next forward
    params, grads               dicts of backend arrays with the same keys
    grad_factors()              the gradients not yet computed, each as a product a·b (see Dense)
    config()                    the constructor's arguments, for model files

Layers never update their parameters: the optimizer does (nnx.optimizers). Buffers are sized
on the first batch of a shape and reused afterwards, so the steady state of training allocates
nothing; the math lives in backend kernels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends import Backend
from backends.contract import Array
from nnx.activations import GELU, LeakyReLU, Sigmoid, Tanh
from nnx.checks import check_fraction, check_positive_int
from nnx.errors import ShapeError
from nnx.layer_base import Layer
from nnx.normalization import LayerNorm


class Dense(Layer):
    """y = x·W + b. W: (in_features, out_features), b: (out_features,).

    He initialisation (normal, std = sqrt(2 / in_features)) suits ReLU networks; b starts at 0.
    Backward: dx = dy·Wᵀ now; dW = xᵀ·dy and db = Σ_rows dy = 1ᵀ·dy when ``grads`` is first read.
    Until then ``grad_factors()`` offers them as the products (xᵀ, dy) and (1ᵀ, dy), which plain
    SGD applies as one gemm each (W ← W − lr·xᵀ·dy) without ever writing dW.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__()
        self.in_features = check_positive_int(in_features, "in_features")
        self.out_features = check_positive_int(out_features, "out_features")
        self.propagate_grad = True  # Sequential turns this off for the first layer
        self.fused_relu = False  # Sequential turns this on when a ReLU follows
        self._factors: tuple[Array, Array] | None = None  # (x, dy) of a backward whose grads are pending

    def build(self, backend: Backend, dtype: Any, rng: np.random.Generator) -> None:
        super().build(backend, dtype, rng)
        std = np.sqrt(2.0 / self.in_features)
        w = rng.standard_normal(self.param_shapes()["W"]) * std
        self.params = {
            "W": backend.asarray(w.astype(self.dtype)),
            "b": backend.zeros((self.out_features,), self.dtype),
        }
        self._grads = {k: backend.zeros(v.shape, self.dtype) for k, v in self.params.items()}
        self._factors = None
        self._ones: dict[int, Array] = {}  # (1, N) rows of ones by N: db = 1ᵀ·dy

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"W": (self.in_features, self.out_features), "b": (self.out_features,)}

    def output_features(self, in_features: int) -> int:
        if in_features != self.in_features:
            raise ShapeError(f"Dense expects {self.in_features} input features; the layer before gives {in_features}")
        return self.out_features

    def config(self) -> dict[str, Any]:
        return {"in_features": self.in_features, "out_features": self.out_features}

    def forward(self, x: Array) -> Array:
        self.x = x
        self._factors = None  # x and dy of the last backward are no longer kept
        y = self.buffer("y", (x.shape[0], self.out_features))
        self.backend.matmul(x, self.params["W"], y)
        if self.fused_relu:
            self.backend.bias_relu(y, self.params["b"])
        else:
            self.backend.bias_add(y, self.params["b"])
        return y

    def backward(self, grad: Array) -> Array | None:
        dx = None
        if self.propagate_grad:
            dx = self.buffer("dx", self.x.shape)
            self.backend.matmul(grad, self.params["W"].T, dx)
        self._factors = (self.x, grad)
        return dx

    @property
    def grads(self) -> dict[str, Array]:
        if self._factors is not None:
            x, dy = self._factors
            self.backend.matmul(x.T, dy, self._grads["W"])
            self.backend.sum_rows(dy, self._grads["b"])
            self._factors = None
        return self._grads

    def grad_factors(self) -> dict[str, tuple[Array, Array]]:
        if self._factors is None:
            return {}
        x, dy = self._factors
        ones = self._ones.get(x.shape[0])
        if ones is None:
            ones = self._ones[x.shape[0]] = self.backend.xp.ones((1, x.shape[0]), self.dtype)
        return {"W": (x.T, dy), "b": (ones, dy)}


class ReLU(Layer):
    """y = max(x, 0); dx = dy where x > 0, else 0.

    After a Dense layer, Sequential fuses the forward into the Dense's bias add
    (``fused``), and this layer only masks the gradient. Before a Dense layer, whose dx
    buffer is the gradient it receives, it masks that buffer in place (``mask_in_place``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.fused = False
        self.mask_in_place = False

    def forward(self, x: Array) -> Array:
        if self.fused:  # the Dense before has already applied max(., 0)
            self.y = x
            return x
        self.y = self.buffer("y", x.shape)
        self.backend.relu(x, self.y)
        return self.y

    def backward(self, grad: Array) -> Array:
        dx = grad if self.mask_in_place else self.buffer("dx", grad.shape)
        self.backend.relu_backward(grad, self.y, dx, self.buffer("mask", grad.shape, bool))
        return dx


class Softmax(Layer):
    """Row-wise softmax, for inference: probabilities from logits. x, y: (N, C).

    For training, end the network with logits and use SparseCategoricalCrossentropy,
    which fuses softmax and the loss. Backward: dx = y ⊙ (dy − Σ_j dy_j y_j).
    """

    def forward(self, x: Array) -> Array:
        xp = self.backend.xp
        y = self.y = self.buffer("y", x.shape)
        xp.subtract(x, x.max(axis=1, keepdims=True), out=y)
        xp.exp(y, out=y)
        y /= y.sum(axis=1, keepdims=True)
        return y

    def backward(self, grad: Array) -> Array:
        xp = self.backend.xp
        dx = self.buffer("dx", grad.shape)
        xp.multiply(grad, self.y, out=dx)
        dot = dx.sum(axis=1, keepdims=True)
        xp.subtract(grad, dot, out=dx)
        dx *= self.y
        return dx


class Dropout(Layer):
    """Inverted dropout: in training, zero each input with probability p and scale the rest by 1/(1-p).

    Does nothing outside training (evaluate, predict). x, y: (N, F).
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        self.p = check_fraction(p, "p")

    def build(self, backend: Backend, dtype: Any, rng: np.random.Generator) -> None:
        super().build(backend, dtype, rng)
        self.reseed(int(rng.integers(2**63)))

    def reseed(self, seed: Any) -> None:
        """Restart the mask stream (fit reseeds every epoch, so a resumed run repeats it)."""
        self._rng = self.backend.rng(seed)

    def config(self) -> dict[str, Any]:
        return {"p": self.p}

    def forward(self, x: Array) -> Array:
        if not self.training or self.p == 0:
            self.mask = None
            return x
        xp = self.backend.xp
        mask = self.mask = self.buffer("mask", x.shape)
        self._rng.random(mask.shape, dtype=mask.dtype, out=mask)  # uniform [0, 1), one draw per entry
        xp.greater_equal(mask, self.p, out=mask)  # keep with probability 1 - p
        mask *= 1.0 / (1.0 - self.p)
        y = self.buffer("y", x.shape)
        xp.multiply(x, mask, out=y)
        return y

    def backward(self, grad: Array) -> Array:
        if self.mask is None:
            return grad
        dx = self.buffer("dx", grad.shape)
        self.backend.xp.multiply(grad, self.mask, out=dx)
        return dx


LAYER_TYPES: dict[str, type[Layer]] = {
    cls.__name__: cls for cls in (Dense, ReLU, Softmax, Dropout, Tanh, Sigmoid, GELU, LeakyReLU, LayerNorm)
}
"""Every layer type by its class name, as model files name them."""

__all__ = [*LAYER_TYPES, "LAYER_TYPES", "Layer"]
