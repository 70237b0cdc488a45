"""Finite differences in float64, for gradient checks, and the bounds that float32 comparisons of
two computation paths derive their tolerances from."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def numerical_gradient(f: Callable[[], float], x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to every entry of x (changed in place, restored)."""
    grad = np.zeros_like(x, dtype=np.float64)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        up = f()
        flat[i] = old - eps
        down = f()
        flat[i] = old
        gflat[i] = (up - down) / (2 * eps)
    return grad


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """||a - b|| / max(||a||, ||b||), in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b), 1e-300))


def dot_error_bound(a: np.ndarray, b: np.ndarray, dtype: str = "float32") -> np.ndarray:
    """A bound on how far two computations of a @ b (K terms per entry, any summation order: another
    BLAS kernel, block size, batch size or thread count) can differ in ``dtype``: each is within
    γ_K·(|a| @ |b|) of the exact product (Higham, Accuracy and Stability, eq. 3.5), γ_K = K·u/(1 − K·u),
    u the unit roundoff; their difference within twice that. a: (N, K), b: (K, M) -> (N, M) float64."""
    k, u = a.shape[-1], float(np.finfo(dtype).eps) / 2
    gamma = k * u / (1 - k * u)
    return 2 * gamma * (np.abs(a.astype(np.float64)) @ np.abs(b.astype(np.float64)))


def mlp_probability_bound(model, x: np.ndarray) -> np.ndarray:
    """A first-order bound (N, C) on how far two float32 evaluations of ``model``'s softmax
    probabilities at x can differ when only the order of the sums differs. Through each Dense
    layer an error e in its input becomes |e|·|W| plus the product's own dot_error_bound (and one
    rounding of the bias add); ReLU passes it on (1-Lipschitz); softmax turns logit errors
    |Δz| ≤ E into |Δp_j| ≤ 2·p_j·E (dp_j = p_j·(dz_j − Σ_k p_k·dz_k)), plus a few roundings of p_j."""
    u = float(np.finfo(np.float32).eps) / 2
    h, e = x.astype(np.float64), np.zeros(x.shape)
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Dense":
            w, b = (model.backend.to_numpy(layer.params[k]).astype(np.float64) for k in ("W", "b"))
            y = h @ w + b
            e = e @ np.abs(w) + dot_error_bound(h, w) + 2 * u * np.abs(y)
            h = y
        elif kind == "ReLU":
            h = np.maximum(h, 0)
        elif kind not in ("Dropout", "Softmax"):
            raise TypeError(f"mlp_probability_bound takes Dense, ReLU, Dropout and Softmax layers; got {kind}")
    z = h - h.max(axis=1, keepdims=True)
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    return p * (2 * e.max(axis=1, keepdims=True) + (h.shape[1] + 4) * 2 * u)
