"""Plain NumPy references for every backend kernel: simple, out-of-place, obviously right.

Tests hold each backend's kernels against these (tests/test_kernels.py); nothing else calls them.
They compute in whatever dtype they are given: the tests give them float64.
"""

from __future__ import annotations

import numpy as np


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return a @ b


def bias_add(y: np.ndarray, b: np.ndarray) -> np.ndarray:
    return y + b


def bias_relu(y: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.maximum(y + b, 0)


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0)


def relu_backward(grad: np.ndarray, y: np.ndarray) -> np.ndarray:
    return np.where(y > 0, grad, 0).astype(grad.dtype)


def sum_rows(x: np.ndarray) -> np.ndarray:
    return x.sum(axis=0)


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean loss, dlogits) by the textbook composition, in float64."""
    z = logits.astype(np.float64)
    n = z.shape[0]
    rows = np.arange(n)
    z = z - z.max(axis=1, keepdims=True)
    lse = np.log(np.exp(z).sum(axis=1))
    loss = float(np.mean(lse - z[rows, labels]))
    probs = np.exp(z - lse[:, None])
    probs[rows, labels] -= 1.0
    return loss, probs / n


def count_correct(logits: np.ndarray, labels: np.ndarray) -> int:
    return int((logits.argmax(axis=1) == labels).sum())


def sgd_update(param: np.ndarray, grad: np.ndarray, lr: float) -> np.ndarray:
    return param - lr * grad


def sgd_matmul_update(param: np.ndarray, a: np.ndarray, b: np.ndarray, lr: float) -> np.ndarray:
    return param - lr * (a @ b)


def momentum_update(
    p: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, mu: float, nesterov: bool, decay: float
) -> tuple[np.ndarray, np.ndarray]:
    """(p, v) after one SGD-with-momentum step: v ← μ·v + g; p ← p·decay − lr·(v, or g + μ·v with Nesterov)."""
    v = mu * v + g
    return p * decay - lr * (g + mu * v if nesterov else v), v


def adam_update(
    p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *hyper: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, m, v) after one Adam step whose bias correction is folded into lr and eps:
    m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p·decay − lr·m/(√v + eps).
    ``hyper``: lr, β1, β2, eps, decay."""
    lr, b1, b2, eps, decay = hyper
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p * decay - lr * m / (np.sqrt(v) + eps), m, v
