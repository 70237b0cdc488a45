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
               (one pass of xp ops each; no backend overrides them yet)
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any, NamedTuple

import numpy as np

Array = Any  # a numpy.ndarray or a cupy.ndarray


class BackendUnavailable(RuntimeError):
    """The requested backend cannot run here (its package or its device is missing)."""


def denormal_floor(dtype: Any, n_entries: int) -> float:
    """The lowest z - max worth keeping. Below it, exp(z - max) / (N·sum) would come within 2**32
    of the denormal floats, and the products of the backward pass would underflow into them:
    denormals make a matrix product 5-100x slower on x86 (Fashion-MNIST epochs slowed by a third).
    Clamping there changes a probability below ~1e-25 (float32; ~1e-290 float64) by less than itself."""
    return float(np.log(np.finfo(dtype).tiny) + 32 * np.log(2.0) + np.log(n_entries))


# erfc(z) = t·exp(−z² + P(4t − 2)) for z >= 0, t = 2/(2 + z), with P the Chebyshev series of these
# coefficients (Numerical Recipes, 3rd ed., §6.2.2, "erfccheb"): relative error below 6e-15 for
# |z| < 5 and 2e-13 down to 1e-300 (float64, against mpmath). float32 keeps the first 12 terms:
# the rest sum to 1.3e-8 (a bound on the relative error they add), a fifth of float32's rounding.
ERFC_CHEBYSHEV = (
    -1.3026537197817094, 6.4196979235649026e-1, 1.9476473204185836e-2, -9.561514786808631e-3,
    -9.46595344482036e-4, 3.66839497852761e-4, 4.2523324806907e-5, -2.0278578112534e-5,
    -1.624290004647e-6, 1.303655835580e-6, 1.5626441722e-8, -8.5238095915e-8,
    6.529054439e-9, 5.059343495e-9, -9.91364156e-10, -2.27365122e-10,
    9.6467911e-11, 2.394038e-12, -6.886027e-12, 8.94487e-13,
    3.13092e-13, -1.12708e-13, 3.81e-16, 7.106e-15,
    -1.523e-15, -9.4e-17, 1.21e-16, -2.8e-17,
)  # fmt: skip
GELU_KAPPA = 0.044715  # the cubic term of GELU's tanh approximation, as PyTorch has it
SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)

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


class AdamStep(NamedTuple):
    """The scalars of one Adam step (``Backend.adam_update``), bias correction folded into lr and eps."""

    lr: float
    beta1: float
    beta2: float
    eps: float
    decay: float  # decoupled weight decay: p is scaled by this first (1.0 without)
    flush: bool  # flush tiny state to zero in this step


class Backend:
    """An array module plus the kernels that layers, losses and optimizers call."""

    name: str = "abstract"
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

    def sgd_matmul_update(self, param: Array, a: Array, b: Array, lr: float, scratch: Array) -> None:
        """param -= lr * (a @ b), in place: a gradient descent step whose gradient is a product,
        such as W ← W − lr·Xᵀ·dY. a: (M, K), b: (K, N), param and scratch: (M, N); ``scratch``
        may be overwritten (here it receives a @ b)."""
        self.matmul(a, b, scratch)
        self.sgd_update(param, scratch, lr, scratch)

    def momentum_update(self, p: Array, g: Array, v: Array, step: MomentumStep, scratch: Array) -> None:
        """SGD with momentum, in place: p ← p·decay, v ← μ·v + g, then p ← p − lr·v, or with
        Nesterov p ← p − lr·(g + μ·v). With ``step.flush``, entries of v below ~5e-26 become 0
        first (see flush_tiny). All arrays 1-D and alike; ``scratch`` may be overwritten."""
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

    def adam_update(self, p: Array, g: Array, m: Array, v: Array, step: AdamStep, scratch: Array) -> None:
        """One Adam step, in place, with the bias correction folded into lr and eps by the caller:
        p ← p·decay; m ← β1·m + (1 − β1)·g; v ← β2·v + (1 − β2)·g²; p ← p − lr·m/(√v + eps).
        With ``step.flush``, entries of m and v below ~5e-26 become 0 before the step (see
        flush_tiny). All arrays 1-D and alike; ``scratch`` may be overwritten."""
        xp, tmp = self.xp, scratch
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

    # ---- activations, LayerNorm, and the regression and binary losses ------------------
    def erfc(self, x: Array, out: Array, scratch: Array | None = None) -> None:
        """out = erfc(x) = 1 − erf(x), accurate in relative terms in the upper tail too (where
        1 − erf(x) rounds to 0), for the normal CDF Φ(x) = erfc(−x/√2)/2. NumPy has no erf: this
        evaluates the Chebyshev series of ERFC_CHEBYSHEV by Clenshaw's recurrence, one pass of xp
        ops per term (28 in float64, 12 in float32). x, out: alike, float, distinct;
        scratch: (4, *x.shape) of x's dtype, overwritten (allocated when None)."""
        xp = self.xp
        ty, d, dd, tmp = xp.empty((4, *x.shape), x.dtype) if scratch is None else scratch
        xp.abs(x, out=tmp)
        tmp += 2.0
        xp.divide(8.0, tmp, out=ty)
        ty -= 2.0  # 4t − 2, with t = 2/(2 + |x|)
        d.fill(0)
        dd.fill(0)
        for c in ERFC_CHEBYSHEV[(12 if x.dtype == np.float32 else 28) - 1 : 0 : -1]:
            xp.multiply(ty, d, out=tmp)  # d, dd ← ty·d − dd + c, d
            tmp -= dd
            tmp += c
            d, dd, tmp = tmp, d, dd
        xp.multiply(ty, d, out=tmp)
        tmp += ERFC_CHEBYSHEV[0]
        tmp *= 0.5
        tmp -= dd  # P
        xp.multiply(x, x, out=d)
        tmp -= d
        xp.exp(tmp, out=out)
        ty += 2.0
        ty *= 0.25  # t
        out *= ty  # erfc(|x|)
        xp.less(x, 0, out=d)  # and erfc(x) = 2 − erfc(|x|) where x < 0
        xp.multiply(out, -2.0, out=dd)
        dd += 2.0
        dd *= d
        out += dd

    def sigmoid(self, x: Array, out: Array) -> None:
        """out = 1/(1 + exp(−x)), accurate in relative terms for every x, and 0 where exp(−x)
        overflows (x < −709 in float64, −88 in float32), as in PyTorch. ``out`` may be ``x``."""
        xp = self.xp
        xp.negative(x, out=out)
        with np.errstate(over="ignore"):  # exp(−x) = inf gives the right 0 (NumPy would warn)
            xp.exp(out, out=out)
        out += 1.0
        xp.reciprocal(out, out=out)

    def gelu(self, x: Array, out: Array, keep: Array, approximate: str, scratch: Array | None = None) -> None:
        """GELU as PyTorch defines it. "none": out = x·Φ(x), with the normal CDF Φ(x) = erfc(−x/√2)/2;
        keep = Φ(x). "tanh": out = x/2·(1 + tanh(√(2/π)·(x + 0.044715·x³))); keep = that tanh.
        ``keep`` is what gelu_backward needs. x, out, keep: (N, F), distinct; scratch: erfc's."""
        xp = self.xp
        if approximate == "tanh":
            xp.multiply(x, x, out=keep)
            keep *= GELU_KAPPA
            keep += 1.0
            keep *= x
            keep *= SQRT_2_OVER_PI
            xp.tanh(keep, out=keep)
            xp.add(keep, 1.0, out=out)
            out *= x
            out *= 0.5
            return
        xp.multiply(x, -math.sqrt(0.5), out=out)
        self.erfc(out, keep, scratch)
        keep *= 0.5
        xp.multiply(x, keep, out=out)

    def gelu_backward(
        self, grad: Array, x: Array, keep: Array, out: Array, approximate: str, scratch: Array | None = None
    ) -> None:
        """out = grad·GELU'(x), with ``keep`` from gelu. "none": GELU'(x) = Φ(x) + x·φ(x), with
        φ(x) = exp(−x²/2)/√(2π). "tanh", with th = keep and u = √(2/π)·(x + 0.044715·x³):
        GELU'(x) = (1 + th)/2 + x/2·(1 − th²)·u'. All (N, F), ``out`` distinct from the others;
        scratch: (k >= 1, N, F), its first slice overwritten in "tanh" (allocated when None)."""
        xp = self.xp
        xp.multiply(x, x, out=out)
        if approximate != "tanh":
            out *= -0.5
            xp.exp(out, out=out)
            out *= x
            out *= INV_SQRT_2PI
            out += keep
            out *= grad
            return
        s = xp.empty_like(x) if scratch is None else scratch[0]
        out *= 3.0 * GELU_KAPPA
        out += 1.0
        out *= x
        out *= 0.5 * SQRT_2_OVER_PI  # x/2·u'
        xp.multiply(keep, keep, out=s)
        xp.subtract(1.0, s, out=s)
        out *= s
        xp.add(keep, 1.0, out=s)
        s *= 0.5
        out += s
        out *= grad

    def layer_norm(self, x: Array, gamma: Array, beta: Array, eps: float, out: Array, xhat: Array, rstd: Array) -> None:
        """PyTorch's LayerNorm over each row: xhat = (x − mean)/√(var + eps), var the biased
        variance of the row; out = xhat·gamma + beta. x, out, xhat: (N, F), distinct;
        gamma, beta: (F,); rstd: (N,) receives 1/√(var + eps) (xhat and rstd are for the backward)."""
        xp = self.xp
        xp.mean(x, axis=1, out=rstd)
        xp.subtract(x, rstd[:, None], out=xhat)
        xp.multiply(xhat, xhat, out=out)
        xp.mean(out, axis=1, out=rstd)
        rstd += eps
        xp.sqrt(rstd, out=rstd)
        xp.reciprocal(rstd, out=rstd)
        xhat *= rstd[:, None]
        xp.multiply(xhat, gamma, out=out)
        out += beta

    def layer_norm_backward(
        self,
        grad: Array,
        xhat: Array,
        rstd: Array,
        gamma: Array,
        dx: Array,
        dgamma: Array,
        dbeta: Array,
        work: Array,
        rows: Array,
    ) -> None:
        """The gradients of layer_norm, from its xhat and rstd: dgamma = Σ_rows grad·xhat,
        dbeta = Σ_rows grad, and with g = grad·gamma, dx = rstd·(g − mean_row(g) − xhat·mean_row(g·xhat)).
        grad, xhat, dx, work: (N, F); rstd: (N,); gamma, dgamma, dbeta: (F,); rows: (2, N);
        work and rows are overwritten."""
        xp = self.xp
        mean_g, mean_gx = rows
        xp.multiply(grad, xhat, out=work)
        self.sum_rows(work, dgamma)
        self.sum_rows(grad, dbeta)
        xp.multiply(grad, gamma, out=dx)
        xp.multiply(dx, xhat, out=work)
        xp.mean(work, axis=1, out=mean_gx)
        xp.mean(dx, axis=1, out=mean_g)
        xp.multiply(xhat, mean_gx[:, None], out=work)
        dx -= work
        dx -= mean_g[:, None]
        dx *= rstd[:, None]

    def mean_squared_error(self, outputs: Array, targets: Array, grad: Array) -> Array:
        """The mean of (outputs − targets)² over all N·K entries, as a 0-d device array, and
        grad = 2·(outputs − targets)/(N·K) (PyTorch's MSELoss, reduction="mean"). All (N, K)."""
        xp = self.xp
        xp.subtract(outputs, targets, out=grad)
        flat = grad.reshape(-1)
        value = xp.dot(flat, flat) / flat.size
        grad *= 2.0 / flat.size
        return value

    def binary_cross_entropy(self, logits: Array, targets: Array, grad: Array, scratch: Array) -> Array:
        """Binary cross-entropy on logits z with targets t in [0, 1], stable for any z:
        the mean over all N·K entries of max(z, 0) − z·t + log(1 + exp(−|z|)), as a 0-d device
        array, and grad = (sigmoid(z) − t)/(N·K) (PyTorch's BCEWithLogitsLoss). All (N, K);
        scratch overwritten."""
        xp, s = self.xp, scratch
        xp.abs(logits, out=s)
        xp.negative(s, out=s)
        xp.exp(s, out=s)
        xp.log1p(s, out=s)
        xp.multiply(logits, targets, out=grad)
        s -= grad
        xp.maximum(logits, 0, out=grad)
        s += grad
        value = s.sum() / s.size
        self.sigmoid(logits, grad)
        grad -= targets
        grad *= 1.0 / grad.size
        return value

    def smoothed_loss_workspace(self, n: int, c: int, dtype: Any) -> dict[str, Array]:
        """Scratch that softmax_cross_entropy_smoothed reuses for (N, C) logits."""
        xp = self.xp
        return {
            "fused": self.loss_workspace(n, c, dtype),
            "offsets": xp.arange(n, dtype=xp.int64) * c,
            "index": xp.empty(n, xp.int64),
            "picked": xp.empty(n, dtype),
        }

    def softmax_cross_entropy_smoothed(
        self, logits: Array, labels: Array, dlogits: Array, smoothing: float, workspace: dict[str, Array] | None = None
    ) -> Array:
        """softmax_cross_entropy with PyTorch's label smoothing ε: row i's target is
        q_i = (1 − ε)·onehot(y_i) + ε/C, so that

            loss = mean_i( logsumexp(z_i) − (1 − ε)·z_i,y_i − ε·mean_j z_ij ),  dlogits = (softmax(z) − q)/N.

        The backend's fused kernel (compiled or CUDA where there is one; those know no smoothing)
        gives the unsmoothed loss and gradient, then one pass of xp ops adds ε·mean_i(z_i,y_i − mean_j z_ij)
        to the loss and ε·(onehot − 1/C)/N to dlogits. Arguments as softmax_cross_entropy's;
        ``workspace`` from smoothed_loss_workspace."""
        xp = self.xp
        n, c = logits.shape
        ws = workspace or self.smoothed_loss_workspace(n, c, logits.dtype)
        loss = self.softmax_cross_entropy(logits, labels, dlogits, ws["fused"])
        index, picked = ws["index"], ws["picked"]
        xp.add(ws["offsets"], labels, out=index)
        xp.take(logits.reshape(-1), index, out=picked)  # z_i,y_i
        loss = loss + smoothing * (picked.sum() / n - logits.sum() / (n * c))
        dlogits -= smoothing / (n * c)
        flat = dlogits.reshape(-1)
        xp.take(flat, index, out=picked)
        picked += smoothing / n
        xp.put(flat, index, picked)
        return loss
