"""The backend contract: what every array backend provides, written once.

A backend is an object with a ``name`` and an array module ``xp`` (NumPy or
CuPy) that carries the hot kernels of a multilayer perceptron. The methods
below are written against ``xp`` alone, so they run unchanged on any module
that follows NumPy's API; a backend overrides only the kernels where a
faster implementation pays, and ``backends.reference`` holds the plain NumPy
reference that every override is tested against.

Conventions: rows are samples. Kernels write into preallocated outputs
(``out``) or update in place, so a training step allocates no large arrays.

    transfer   asarray(host, dtype) -> device array;  to_numpy(array) -> numpy.ndarray
    memory     empty(shape, dtype), zeros(shape, dtype), copy_into(dst, src), gather_rows
    randomness rng(seed) -> a Generator of the array module (``random(out=...)``)
    sync       synchronize(); ``host_reads_are_free`` is True where reading a
               device scalar does not stall a device (the CPU)
    tuning     ``update_chunk``: optimizers walk parameters in pieces of this many
               elements (None: whole arrays)
    kernels    matmul, bias_add, bias_relu, relu, relu_backward, sum_rows,
               softmax_cross_entropy, count_correct, sgd_update,
               sgd_matmul_update, momentum_update, adam_update
    more       erfc, sigmoid, gelu, gelu_backward, layer_norm, layer_norm_backward,
               mean_squared_error, binary_cross_entropy, softmax_cross_entropy_smoothed
               (``backends.extra_kernels``, mixed into Backend; no backend overrides them yet)
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

from backends.extra_kernels import ExtraKernels

Array = Any  # a numpy.ndarray or a cupy.ndarray


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (its package or its device is missing)."""


def denormal_floor(dtype: Any, n_entries: int) -> float:
    """The lowest z - max worth keeping. Below it, exp(z - max) / (N·sum) would come within 2**32
    of the denormal floats, and the products of the backward pass would underflow into them:
    denormals make a matrix product 5-100x slower on x86 (Fashion-MNIST epochs slowed by a third).
    Clamping there changes a probability below ~1e-25 (float32; ~1e-290 float64) by less than itself."""
    return float(np.log(np.finfo(dtype).tiny) + 32 * np.log(2.0) + np.log(n_entries))


FLUSH = 2.0**-60  # (x + FLUSH) - FLUSH is x, except that |x| below ~2**-84 (5e-26) becomes 0


def flush_tiny(state: Array) -> None:
    """Set entries of an optimizer's state below ~5e-26 to zero, in place, long before they become
    denormal floats: a moment that decays geometrically for a parameter whose gradient is (nearly)
    always 0 reaches the denormal range within an epoch, and every later pass over a denormal is
    about 40 times slower on x86 (Fashion-MNIST epochs slowed from 2.0 to 3.3 s). Beside Adam's
    eps = 1e-8, a moment of 5e-26 changes no update."""
    state += FLUSH
    state -= FLUSH


class MomentumStep(NamedTuple):
    """The scalars of one SGD-with-momentum step (``Backend.momentum_update``)."""

    lr: float
    momentum: float
    nesterov: bool
    decay: float  # decoupled weight decay: p is scaled by this first (1.0 without)
    flush: bool  # flush tiny state to zero in this step
    l2: float = 0.0  # an L2 penalty's coefficient: the step takes the gradient g + l2·p


class AdamStep(NamedTuple):
    """The scalars of one Adam step (``Backend.adam_update``), bias correction folded into lr and eps."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    decay: float  # decoupled weight decay: p is scaled by this first (1.0 without)
    flush: bool  # flush tiny state to zero in this step
    l2: float = 0.0  # an L2 penalty's coefficient: the step takes the gradient g + l2·p


class Backend(ExtraKernels):
    """An array module plus the kernels that layers, losses and optimizers call: the core ones
    here, the activations, LayerNorm and the other losses from ExtraKernels."""

    name: str = "abstract"
    device: str = "CPU"  # what computes: a GPU backend names its device
    xp: ModuleType = np
    host_reads_are_free: bool = True
    update_chunk: int | None = None  # optimizers update parameters in pieces of this many elements

    def __repr__(self) -> str:
        return f"<Backend {self.name}>"

    # ---- transfer and memory -------------------------------------------------------
    def asarray(self, host: Any, dtype: Any = None) -> Array:
        """A device array holding ``host`` (no copy when it is already there)."""
        return self.xp.asarray(host, dtype=dtype)

    def to_numpy(self, array: Array) -> np.ndarray:
        """A NumPy array holding ``array``."""
        return np.asarray(array)

    def synchronize(self) -> None:
        """Wait until the work queued on the device is done (a no-op on the CPU)."""

    def empty(self, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.xp.empty(shape, dtype=dtype)

    def zeros(self, shape: tuple[int, ...], dtype: Any) -> Array:
        return self.xp.zeros(shape, dtype=dtype)

    def copy_into(self, dst: Array, src: Array) -> None:
        """dst[...] = src, both on this backend."""
        self.xp.copyto(dst, src)

    def gather_rows(self, x: Array, index: Array, out: Array) -> Array:
        """out = x[index] along the first axis; every index must be in range (a batch of a permutation)."""
        return self.xp.take(x, index, axis=0, out=out)

    def rng(self, seed: Any) -> Any:
        """A random Generator of the array module, seeded with ``seed``."""
        return self.xp.random.default_rng(seed)

    def is_array(self, obj: Any) -> bool:
        """Whether ``obj`` is an array of this backend's module."""
        return isinstance(obj, self.xp.ndarray)

    # ---- kernels -------------------------------------------------------------------
    def matmul(self, a: Array, b: Array, out: Array) -> Array:
        """out = a @ b. a: (N, K), b: (K, M), out: (N, M); a and b may be transposed views."""
        return self.xp.matmul(a, b, out=out)

    def bias_add(self, y: Array, b: Array) -> None:
        """y += b in place. y: (N, M), b: (M,)."""
        self.xp.add(y, b, out=y)

    def bias_relu(self, y: Array, b: Array) -> None:
        """y = max(y + b, 0) in place. y: (N, M), b: (M,)."""
        self.xp.add(y, b, out=y)
        self.xp.maximum(y, 0, out=y)

    def relu(self, x: Array, out: Array) -> None:
        """out = max(x, 0); ``out`` may be ``x``."""
        self.xp.maximum(x, 0, out=out)

    def relu_backward(self, grad: Array, y: Array, out: Array, mask: Array) -> None:
        """out = grad where y > 0, else 0. ``y`` is the ReLU's output (so y > 0 exactly where the
        input was); ``mask`` is a bool scratch array shaped like y; ``out`` may be ``grad``."""
        self.xp.greater(y, 0, out=mask)
        self.xp.multiply(grad, mask, out=out)

    def sum_rows(self, x: Array, out: Array) -> None:
        """out = sum of the rows of x. x: (N, M), out: (M,)."""
        self.xp.sum(x, axis=0, out=out)

    def loss_workspace(self, n: int, c: int, dtype: Any) -> dict[str, Array]:
        """Scratch that softmax_cross_entropy reuses for (N, C) logits, so it allocates nothing."""
        xp = self.xp
        return {
            "offsets": xp.arange(n, dtype=xp.int64) * c,  # flat index of each row's first entry
            "index": xp.empty(n, xp.int64),
            **{name: xp.empty(n, dtype) for name in ("row_a", "row_b", "row_c")},
        }

    def softmax_cross_entropy(
        self, logits: Array, labels: Array, dlogits: Array, workspace: dict[str, Array] | None = None
    ) -> Array:
        """The fused softmax + sparse categorical cross-entropy, in one call.

        logits: (N, C) float, labels: (N,) integer in [0, C), dlogits: (N, C) C-contiguous output.
        Returns the mean loss, mean_i(logsumexp(z_i) - z_i,y_i), as a 0-d device array, and
        writes dlogits = (softmax(z) - onehot(y)) / N. Stable: the row max is subtracted
        before exp, and log(softmax) is never formed. ``workspace`` comes from loss_workspace.
        Labels are not checked here (callers check them once): one outside [0, C) raises in
        this NumPy version and makes its row's loss NaN in the compiled and CUDA kernels.
        """
        xp = self.xp
        n, c = logits.shape
        ws = workspace or self.loss_workspace(n, c, logits.dtype)
        flat, index, row_max, picked, scale = dlogits.reshape(-1), ws["index"], ws["row_a"], ws["row_b"], ws["row_c"]
        xp.add(ws["offsets"], labels, out=index)  # flat position of z_i,y_i
        xp.max(logits, axis=1, out=row_max)
        xp.subtract(logits, row_max[:, None], out=dlogits)  # z - max
        xp.take(flat, index, out=picked)  # z_y - max
        xp.maximum(dlogits, denormal_floor(logits.dtype, n * c), out=dlogits)
        xp.exp(dlogits, out=dlogits)
        sums = row_max  # the max is no longer needed
        xp.sum(dlogits, axis=1, out=sums)
        xp.multiply(sums, n, out=scale)
        xp.divide(dlogits, scale[:, None], out=dlogits)  # softmax / N
        xp.log(sums, out=sums)
        xp.subtract(sums, picked, out=sums)  # per-row loss: logsumexp - z_y
        loss = sums.sum() / n
        xp.take(flat, index, out=picked)
        picked -= 1.0 / n
        xp.put(flat, index, picked)  # subtract onehot / N (raises on a label out of range)
        return loss

    def sgd_matmul_update(self, param: Array, a: Array, b: Array, lr: float, scratch: Array, keep: float = 1.0) -> None:
        """param ← keep·param − lr·(a @ b), in place: a gradient descent step whose gradient is a
        product, such as W ← W − lr·Xᵀ·dY (keep ≠ 1: decoupled weight decay, or 0 for a data-parallel
        rank's part of a step). a: (M, K), b: (K, N), param and scratch: (M, N); ``scratch`` may be
        overwritten (here it receives a @ b)."""
        self.matmul(a, b, scratch)
        if keep != 1.0:
            param *= keep
        self.sgd_update(param, scratch, lr, scratch)

    def momentum_update(self, p: Array, g: Array, v: Array, step: MomentumStep, scratch: Array) -> None:
        """SGD with momentum, in place: p ← p·decay, v ← μ·v + g, then p ← p − lr·v, or with
        Nesterov p ← p − lr·(g + μ·v). With ``step.flush``, entries of v below ~5e-26 become 0
        first (see flush_tiny). With ``step.l2``, g + l2·p (of p before the step) stands for g, and
        g may be overwritten with it. All arrays 1-D and alike; ``scratch`` may be overwritten."""
        g = self._with_penalty(p, g, step.l2, scratch)
        if step.decay != 1.0:
            p *= step.decay
        v *= step.momentum
        v += g
        if step.flush:
            flush_tiny(v)
        if not step.nesterov:
            self.sgd_update(p, v, step.lr, scratch)
            return
        self.xp.multiply(v, step.momentum, out=scratch)  # look ahead: g + μ·v
        scratch += g
        self.sgd_update(p, scratch, step.lr, scratch)

    def _with_penalty(self, p: Array, g: Array, l2: float, scratch: Array) -> Array:
        """g + l2·p, written into g (as the compiled kernels compute it, element by element); g itself when l2 = 0."""
        if l2:
            self.xp.multiply(p, l2, out=scratch)
            g += scratch
        return g

    def adam_update(self, p: Array, g: Array, m: Array, v: Array, step: AdamStep, scratch: Array) -> None:
        """One Adam step, in place, with the bias correction folded into lr and eps by the caller:
        p ← p·decay; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p − lr·m/(√v + eps).
        With ``step.flush``, entries of m and v below ~5e-26 become 0 before the step (see
        flush_tiny). With ``step.l2``, g + l2·p (of p before the step) stands for g, and g may be
        overwritten with it. All arrays 1-D and alike; ``scratch`` may be overwritten."""
        xp, tmp = self.xp, scratch
        g = self._with_penalty(p, g, step.l2, scratch)
        if step.decay != 1.0:
            p *= step.decay
        m *= step.beta1
        xp.multiply(g, 1.0 - step.beta1, out=tmp)
        m += tmp
        v *= step.beta2
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - step.beta2
        v += tmp
        if step.flush:
            flush_tiny(m)
            flush_tiny(v)
        xp.sqrt(v, out=tmp)
        tmp += step.eps
        xp.divide(m, tmp, out=tmp)
        self.sgd_update(p, tmp, step.lr, tmp)

    def count_correct(self, logits: Array, labels: Array) -> Array:
        """How many rows of logits (N, C) have their maximum at the label: a 0-d device array."""
        return (logits.argmax(axis=1) == labels).sum()

    def sgd_update(self, param: Array, grad: Array, lr: float, scratch: Array) -> None:
        """param -= lr * grad, in place. ``scratch`` (like param) may be overwritten; it may be ``grad``."""
        self.xp.multiply(grad, lr, out=scratch)
        param -= scratch
