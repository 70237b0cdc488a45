"""Optimizers: SGD (with momentum, Nesterov and decoupled weight decay) and Adam / AdamW.

Each update is a few in-place operations on the backend's arrays, so the same
code runs on NumPy and CuPy and allocates nothing after the first step. ``step``
hands ``update`` each parameter in pieces of ``backend.update_chunk`` elements
(the whole array on a GPU): on the CPU the pieces stay in the L2 cache across
the update's passes, which measured 2.65 → 1.09 ms for Adam on 669k parameters.
``lr`` is the current learning rate; a schedule in ``fit`` sets it every step
from ``base_lr``. Weight decay is decoupled (Loshchilov & Hutter): p ← p·(1 − lr·wd).
"""

from __future__ import annotations

import math
from typing import Any

from backends import Backend
from backends.contract import Array
from nnx.checks import check_fraction, check_positive

Parameter = tuple[str, Array, Array]  # (name, value, gradient)
FLUSH = 2.0**-60  # (x + FLUSH) - FLUSH is x, except that |x| below ~2**-84 (5e-26) becomes 0
FLUSH_EVERY = 16  # steps: a moment decays by at most 0.9**16 in between, far above the denormals


class Optimizer:
    """Base class: ``step(model)`` updates every parameter from its gradient.

    clip_norm: when set, gradients are scaled so that their global L2 norm is at most clip_norm
    (on the device, without reading anything back to the host).
    """

    slot_names: tuple[str, ...] = ()  # per-parameter state, zeros at first, saved in checkpoints

    def __init__(self, lr: float, weight_decay: float = 0.0, clip_norm: float | None = None) -> None:
        self.lr = self.base_lr = check_positive(lr, "lr")
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.clip_norm = None if clip_norm is None else check_positive(clip_norm, "clip_norm")
        self.t = 0  # completed steps
        self.state: dict[str, dict[str, Array]] = {}
        self._scratch: dict[str, Array] = {}

    def folded_lr(self) -> float | None:
        """The learning rate when this step's update is exactly p ← p − lr·g, so that the layers
        can apply it while they compute g (a Dense weight in one product, with no dW array);
        None when the update needs the gradients themselves."""
        return None

    def step(self, model: Any, applied: bool = False) -> None:
        """Apply one update to ``model.parameters()`` from their gradients; with ``applied``, only
        count the step, which the layers took in backward with ``folded_lr()``."""
        self.t += 1
        if applied:
            return
        backend = model.backend
        params = list(model.parameters())
        if self.clip_norm is not None:
            self._clip(backend, params)
        decay = 1.0 - self.lr * self.weight_decay
        for name, p, g in params:
            slots = {s: self._array(self.state.setdefault(name, {}), s, p, backend.zeros) for s in self.slot_names}
            scratch = self._array(self._scratch, name, p, backend.empty)
            flat = [a.reshape(-1) for a in (p, g, scratch, *slots.values())]
            chunk = backend.update_chunk or p.size
            for lo in range(0, p.size, chunk):
                pc, gc, sc, *state = (a[lo : lo + chunk] for a in flat)
                if self.weight_decay:
                    pc *= decay
                self.update(backend, pc, gc, dict(zip(slots, state, strict=True)), sc)

    def update(self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array) -> None:
        """Update the 1-D piece ``p`` from its gradient ``g`` and its ``slots``; ``scratch`` is free space."""
        raise NotImplementedError

    def _clip(self, backend: Backend, params: list[Parameter]) -> None:
        xp = backend.xp
        sq = sum(xp.vdot(g, g) for _, _, g in params)
        scale = xp.minimum(1.0, self.clip_norm / (xp.sqrt(sq) + 1e-12)).astype(params[0][2].dtype)
        for _, _, g in params:
            g *= scale

    def flush_tiny(self, state: Array) -> None:
        """Every FLUSH_EVERY steps, set entries below ~5e-26 to zero, in place, long before they
        become denormal floats: a moment that decays geometrically for a parameter whose gradient
        is (nearly) always 0 reaches the denormal range within an epoch, and every later pass over
        a denormal is about 40 times slower on x86 (Fashion-MNIST epochs slowed from 2.0 to 3.3 s).
        Beside eps = 1e-8, a moment of 5e-26 changes no update."""
        if self.t % FLUSH_EVERY == 0:
            state += FLUSH
            state -= FLUSH

    @staticmethod
    def _array(store: dict[str, Array], key: str, like: Array, make: Any) -> Array:
        if key not in store:
            store[key] = make(like.shape, like.dtype)
        return store[key]

    def state_arrays(self) -> dict[str, Array]:
        """Flat {"<param>.<slot>": array} for checkpoints."""
        return {f"{p}.{s}": a for p, slots in self.state.items() for s, a in slots.items()}

    def load_state(self, backend: Backend, arrays: dict[str, Any], t: int) -> None:
        """Restore what ``state_arrays`` returned (host or device arrays) and the step count."""
        self.t = t
        self.state = {}
        for key, value in arrays.items():
            pname, slot = key.rsplit(".", 1)
            self.state.setdefault(pname, {})[slot] = backend.asarray(value)

    def config(self) -> dict[str, Any]:
        return {"lr": self.base_lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Gradient descent: w ← w − lr·dw; with momentum μ: v ← μ·v + dw, w ← w − lr·v;
    Nesterov looks ahead: w ← w − lr·(dw + μ·v)."""

    def __init__(
        self,
        lr: float = 0.01,
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.momentum = check_fraction(momentum, "momentum")
        self.nesterov = bool(nesterov)
        self.slot_names = ("velocity",) if self.momentum else ()

    def folded_lr(self) -> float | None:
        plain = not self.momentum and not self.weight_decay and self.clip_norm is None
        return self.lr if plain else None

    def update(self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array) -> None:
        if not self.momentum:
            backend.sgd_update(p, g, self.lr, scratch)
            return
        v = slots["velocity"]
        v *= self.momentum  # v ← μ·v + g
        v += g
        self.flush_tiny(v)
        if not self.nesterov:
            backend.sgd_update(p, v, self.lr, scratch)
            return
        backend.xp.multiply(v, self.momentum, out=scratch)  # look ahead: g + μ·v
        scratch += g
        backend.sgd_update(p, scratch, self.lr, scratch)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "momentum": self.momentum, "nesterov": self.nesterov}


class Adam(Optimizer):
    """Adam (Kingma & Ba) with decoupled weight decay (so Adam(weight_decay=wd) is AdamW)."""

    slot_names = ("m", "v")

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        clip_norm: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm)
        self.beta1 = check_fraction(beta1, "beta1")
        self.beta2 = check_fraction(beta2, "beta2")
        self.eps = check_positive(eps, "eps")

    def update(self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array) -> None:
        xp, b1, b2 = backend.xp, self.beta1, self.beta2
        m, v, tmp = slots["m"], slots["v"], scratch
        m *= b1  # First moment: m ← β1·m + (1 − β1)·g.
        xp.multiply(g, 1.0 - b1, out=tmp)
        m += tmp
        v *= b2  # Second moment: v ← β2·v + (1 − β2)·g².
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - b2
        v += tmp
        self.flush_tiny(m)
        self.flush_tiny(v)
        # Bias correction folded into the step size: m̂/(√v̂ + ε) = (√c2/c1)·m/(√v + ε√c2).
        c1, c2 = 1.0 - b1**self.t, 1.0 - b2**self.t
        xp.sqrt(v, out=tmp)
        tmp += self.eps * math.sqrt(c2)
        xp.divide(m, tmp, out=tmp)
        backend.sgd_update(p, tmp, self.lr * math.sqrt(c2) / c1, tmp)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay, 0.01 by default."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(lr, weight_decay=weight_decay, **kwargs)
