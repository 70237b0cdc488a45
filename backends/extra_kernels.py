"""The kernels beyond the core training step: sigmoid, GELU and the erfc it needs, LayerNorm and
its backward, and the mean squared error, binary cross-entropy and label-smoothed softmax
cross-entropy losses.

``ExtraKernels`` is a mixin of ``backends.contract.Backend``: like the core kernels, each method is
written once against ``self.xp`` (NumPy or CuPy) as one pass of xp ops, and no backend overrides
them yet. They call the core kernels ``sum_rows``, ``loss_workspace`` and ``softmax_cross_entropy``
of the Backend they are mixed into; ``backends.reference`` holds their NumPy references.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from backends.contract import Array

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


class ExtraKernels:
    """Activation, normalisation and loss kernels, mixed into Backend (which provides ``xp`` and
    the core kernels they call)."""

    xp: ModuleType

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
