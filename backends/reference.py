"""Plain NumPy references for every backend kernel: simple, out-of-place, obviously right.

Tests hold each backend's kernels against these; nothing else calls them.
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
