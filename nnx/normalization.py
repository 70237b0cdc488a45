"""LayerNorm: each row normalised over its features, with a learnt scale and shift."""

from __future__ import annotations

from typing import Any

import numpy as np

from backends import Backend
from backends.contract import Array
from nnx.checks import check_positive, check_positive_int
from nnx.errors import ShapeError
from nnx.layer_base import Layer


class LayerNorm(Layer):
    """PyTorch's LayerNorm(features, eps): y = (x − mean)/√(var + eps)·gamma + beta, the mean and
    the biased variance taken over each row's features. x, y: (N, features);
    ``params["gamma"]`` (ones at first) and ``params["beta"]`` (zeros): (features,).

    Backward (Backend.layer_norm_backward): with x̂ the normalised x and g = dy·gamma,
    dgamma = Σ_rows dy·x̂, dbeta = Σ_rows dy, dx = (g − mean_row(g) − x̂·mean_row(g·x̂))/√(var + eps).
    """

    def __init__(self, features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.features = check_positive_int(features, "features")
        self.eps = check_positive(eps, "eps")

    def build(self, backend: Backend, dtype: Any, rng: np.random.Generator) -> None:
        super().build(backend, dtype, rng)
        self.params = {
            "gamma": backend.asarray(np.ones(self.features, self.dtype)),
            "beta": backend.zeros((self.features,), self.dtype),
        }
        self._grads = {k: backend.zeros(v.shape, self.dtype) for k, v in self.params.items()}

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        return {"gamma": (self.features,), "beta": (self.features,)}

    def output_features(self, in_features: int) -> int:
        if in_features != self.features:
            raise ShapeError(f"LayerNorm expects {self.features} features; its input has {in_features}")
        return self.features

    def config(self) -> dict[str, Any]:
        return {"features": self.features, "eps": self.eps}

    def forward(self, x: Array) -> Array:
        n = x.shape[0]
        y, self.xhat, self.rstd = self.buffer("y", x.shape), self.buffer("xhat", x.shape), self.buffer("rstd", (n,))
        self.backend.layer_norm(x, self.params["gamma"], self.params["beta"], self.eps, y, self.xhat, self.rstd)
        return y

    def backward(self, grad: Array) -> Array:
        n = grad.shape[0]
        dx, work, rows = self.buffer("dx", grad.shape), self.buffer("work", grad.shape), self.buffer("rows", (2, n))
        gamma, dgamma, dbeta = self.params["gamma"], self._grads["gamma"], self._grads["beta"]
        self.backend.layer_norm_backward(grad, self.xhat, self.rstd, gamma, dx, dgamma, dbeta, work, rows)
        return dx
