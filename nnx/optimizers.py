"""Optimizers: SGD (with momentum, Nesterov and decoupled weight decay) and Adam / AdamW.

The update rules live in backend kernels (``sgd_update``, ``momentum_update``, ``adam_update``):
a few in-place array operations in the contract, which run on NumPy and CuPy alike and allocate
nothing after the first step, and one compiled pass on the CPU, bit-identical to those (Adam on
669k parameters: 1.27 → 0.43 ms a step). ``step`` hands ``update`` each parameter in pieces of
``backend.update_chunk`` elements (the whole array on a GPU): on the CPU the pieces stay in the
L2 cache across the NumPy kernels' passes (Adam 2.65 → 1.09 ms before the compiled kernel).
``lr`` is the current learning rate; a schedule in ``fit`` sets it every step from ``base_lr``.
Weight decay is decoupled (Loshchilov & Hutter): p ← p·(1 − lr·wd). Plain SGD can also be
folded into the backward pass (``folded_lr``; see Sequential).
"""

from __future__ import annotations

import math
from typing import Any

from backends import Backend
from backends.contract import AdamStep, Array, MomentumStep
from nnx.checks import check_fraction, check_positive

Parameter = tuple[str, Array, Array]  # (name, value, gradient)
FLUSH_EVERY = 16  # steps between flushes of tiny state (backends.contract.flush_tiny): a moment
# decays by at most 0.9**16 in between, far above the denormals


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
                self.update(backend, pc, gc, dict(zip(slots, state, strict=True)), sc, decay)

    def update(
        self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array, decay: float
    ) -> None:
        """Update the 1-D piece ``p`` from its gradient ``g`` and its ``slots``, after scaling it by
        ``decay`` (decoupled weight decay; 1.0 without); ``scratch`` is free space."""
        raise NotImplementedError

    @property
    def flush_now(self) -> bool:
        """Whether this step flushes tiny optimizer state to zero (every FLUSH_EVERY steps)."""
        return self.t % FLUSH_EVERY == 0

    def _clip(self, backend: Backend, params: list[Parameter]) -> None:
        xp = backend.xp
        sq = sum(xp.vdot(g, g) for _, _, g in params)
        scale = xp.minimum(1.0, self.clip_norm / (xp.sqrt(sq) + 1e-12)).astype(params[0][2].dtype)
        for _, _, g in params:
            g *= scale

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

    def update(
        self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array, decay: float
    ) -> None:
        if not self.momentum:
            if decay != 1.0:
                p *= decay
            backend.sgd_update(p, g, self.lr, scratch)
            return
        step = MomentumStep(self.lr, self.momentum, self.nesterov, decay, self.flush_now)
        backend.momentum_update(p, g, slots["velocity"], step, scratch)

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

    def update(
        self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array, decay: float
    ) -> None:
        # Bias correction folded into the step size: m̂/(√v̂ + ε) = (√c2/c1)·m/(√v + ε√c2).
        c1, c2 = 1.0 - self.beta1**self.t, 1.0 - self.beta2**self.t
        lr, eps = self.lr * math.sqrt(c2) / c1, self.eps * math.sqrt(c2)
        step = AdamStep(lr, self.beta1, self.beta2, eps, decay, self.flush_now)
        backend.adam_update(p, g, slots["m"], slots["v"], step, scratch)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay, 0.01 by default."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(lr, weight_decay=weight_decay, **kwargs)
