"""Plain NumPy references for every backend kernel: simple, out-of-place, obviously right.

Tests hold each backend's kernels against these (tests/test_kernels.py); nothing else calls them.
They compute in whatever dtype they are given: the tests give them float64.
"""

from __future__ import annotations

import math

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


def sgd_matmul_update(param: np.ndarray, a: np.ndarray, b: np.ndarray, lr: float, keep: float = 1.0) -> np.ndarray:
    return keep * param - lr * (a @ b)


def momentum_update(
    p: np.ndarray, g: np.ndarray, v: np.ndarray, lr: float, mu: float, nesterov: bool, decay: float, l2: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(p, v) after one SGD-with-momentum step: v ← μ·v + g; p ← p·decay − lr·(v, or g + μ·v with
    Nesterov); with an L2 penalty, g + l2·p in place of g."""
    g = g + l2 * p
    v = mu * v + g
    return p * decay - lr * (g + mu * v if nesterov else v), v


def adam_update(
    p: np.ndarray, g: np.ndarray, m: np.ndarray, v: np.ndarray, *hyper: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(p, m, v) after one Adam step whose bias correction is folded into lr and eps:
    m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p·decay − lr·m/(√v + eps).
    ``hyper``: lr, β1, β2, eps, decay and optionally an L2 penalty's l2 (g + l2·p in place of g)."""
    lr, b1, b2, eps, decay, l2 = (*hyper, 0.0)[:6]
    g = g + l2 * p
    m = b1 * m + (1 - b1) * g
    v = b2 * v + (1 - b2) * g * g
    return p * decay - lr * m / (np.sqrt(v) + eps), m, v


def erfc(x: np.ndarray) -> np.ndarray:
    """The complementary error function, entry by entry with the C library's (math.erfc)."""
    return np.vectorize(math.erfc, otypes=[np.float64])(x)


def gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    """GELU by PyTorch's formulas: x/2·(1 + erf(x/√2)), or x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³)))."""
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + np.vectorize(math.erf, otypes=[np.float64])(x / math.sqrt(2)))


def gelu_backward(grad: np.ndarray, x: np.ndarray, approximate: str) -> np.ndarray:
    """grad·GELU'(x): Φ(x) + x·φ(x), or the derivative of the tanh form by the product and chain rules."""
    if approximate == "tanh":
        u = math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)
        du = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x**2)
        return grad * (0.5 * (1 + np.tanh(u)) + 0.5 * x * (1 - np.tanh(u) ** 2) * du)
    cdf = 0.5 * (1 + np.vectorize(math.erf, otypes=[np.float64])(x / math.sqrt(2)))
    return grad * (cdf + x * np.exp(-0.5 * x**2) / math.sqrt(2 * math.pi))


def sigmoid(x: np.ndarray) -> np.ndarray:
    """exp(−log(1 + exp(−x))), with NumPy's stable logaddexp."""
    return np.exp(-np.logaddexp(0, -x))


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    mean, var = x.mean(axis=1, keepdims=True), x.var(axis=1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def layer_norm_backward(
    grad: np.ndarray, x: np.ndarray, gamma: np.ndarray, eps: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(dx, dgamma, dbeta) of layer_norm, by the textbook formula."""
    f = x.shape[1]
    xhat = (x - x.mean(axis=1, keepdims=True)) / np.sqrt(x.var(axis=1, keepdims=True) + eps)
    g = grad * gamma
    dx = (f * g - g.sum(axis=1, keepdims=True) - xhat * (g * xhat).sum(axis=1, keepdims=True)) / f
    dx /= np.sqrt(x.var(axis=1, keepdims=True) + eps)
    return dx, (grad * xhat).sum(axis=0), grad.sum(axis=0)


def mean_squared_error(outputs: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    diff = outputs - targets
    return float(np.mean(diff**2)), 2 * diff / diff.size


def binary_cross_entropy(logits: np.ndarray, targets: np.ndarray) -> tuple[float, np.ndarray]:
    """(mean of −t·log σ(z) − (1 − t)·log(1 − σ(z)), (σ(z) − t)/size), the logs by logaddexp."""
    loss = targets * np.logaddexp(0, -logits) + (1 - targets) * np.logaddexp(0, logits)
    return float(loss.mean()), (sigmoid(logits) - targets) / logits.size


def softmax_cross_entropy_smoothed(
    logits: np.ndarray, labels: np.ndarray, smoothing: float
) -> tuple[float, np.ndarray]:
    """(mean loss, dlogits) against the smoothed targets q = (1 − ε)·onehot + ε/C, in float64."""
    z = logits.astype(np.float64)
    n, c = z.shape
    q = np.full((n, c), smoothing / c)
    q[np.arange(n), labels] += 1 - smoothing
    log_softmax = z - z.max(axis=1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(axis=1, keepdims=True))
    return float(-(q * log_softmax).sum() / n), (np.exp(log_softmax) - q) / n
