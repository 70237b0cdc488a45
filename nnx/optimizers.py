"""Optimizers: SGD (with momentum, Nesterov and decoupled weight decay) and Adam / AdamW.

The optimizer owns the update. One training step (nnx.training.train_step) runs forward, the
loss, backward, then the optimizer's ``gradient_hooks`` (gradient clipping) and ``step`` (in
data-parallel training, nnx.distributed's all-reduce comes before them or after the step).
``step`` reads each parameter's gradient from its layer and hands the update rule
(``sgd_update``, ``momentum_update``, ``adam_update``: backend kernels) the parameter in pieces
of ``backend.update_chunk`` elements (the whole array on a GPU), so that on the CPU the pieces
stay in the L2 cache across the kernels' passes.

Plain SGD (no momentum, no weight decay) also takes a gradient that backward left as a product
a·b (``Layer.grad_factors``: a Dense weight's xᵀ·dy) as one gemm, p ← p − lr·a·b, without
writing the gradient (not with an L2 penalty): the only place where that decision is made is
``folds_products``. The steps of SGD without momentum add up
(``steps_add_up``): data-parallel ranks each take their part of a step, with the same gemm where
it folds, and sum the weights (nnx.distributed).

``lr`` is the current learning rate; a schedule in ``fit`` sets it every step from ``base_lr``.
Weight decay is decoupled (Loshchilov & Hutter): p ← p·(1 − lr·wd).

Weight averaging (``ema=β``, as Keras's ``use_ema`` and PyTorch's ``AveragedModel``): after
every step, a ← a + (1 − β_t)·(p − a) with β_t = min(β, (1 + t)/(10 + t)) at step t (the
average starts as the weights after the first step; the warm-up keeps it from remembering the
early weights for long). The averages are optimizer state (slot "ema", saved in checkpoints);
``fit`` evaluates the validation data with them and leaves them in the model when it ends.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from backends import Backend
from backends.contract import AdamStep, Array, MomentumStep
from nnx.checks import check_fraction, check_positive
from nnx.errors import ConfigError

GradientHook = Callable[[Any], None]  # called with the model between backward and step
FLUSH_EVERY = 16  # steps between flushes of tiny state (backends.contract.flush_tiny): a moment
# decays by at most 0.9**16 in between, far above the denormals


class ClipGradNorm:
    """A gradient hook: scale all gradients so that their global L2 norm is at most ``max_norm``
    (on the device, without reading anything back to the host)."""

    def __init__(self, max_norm: float) -> None:
        self.max_norm = check_positive(max_norm, "clip_norm")

    def __call__(self, model: Any) -> None:
        grads = [g for _, _, g in model.named_parameters()]
        xp = model.backend.xp
        squares = sum(xp.vdot(g, g) for g in grads)
        scale = xp.minimum(1.0, self.max_norm / (xp.sqrt(squares) + 1e-12)).astype(grads[0].dtype)
        for g in grads:
            g *= scale


class Optimizer:
    """Base class: ``step(model)`` updates every parameter from its gradient.

    clip_norm: when set, a ClipGradNorm hook scales the gradients before each step so that
    their global L2 norm is at most clip_norm.
    ema: when set, a decay β in (0, 1): keep an exponential moving average of the weights (see
    the module docstring), e.g. 0.999.

    ``l2`` holds L2 penalties by parameter name ("layers.0.W": c): the step then takes the gradient
    g + c·p, that of the loss plus (c/2)·‖p‖²: inside the update kernel for Adam and momentum (whose
    NumPy fallback leaves g + c·p in the gradient), in scratch for plain SGD; after the gradient hooks,
    so clipping does not see it (scikit-learn's ``alpha``, as nnx.sklearn sets it every step).
    Empty at first; a name that is no parameter raises ConfigError at the step.
    """

    slot_names: tuple[str, ...] = ()  # per-parameter state, zeros at first, saved in checkpoints

    def __init__(
        self, lr: float, weight_decay: float = 0.0, clip_norm: float | None = None, ema: float | None = None
    ) -> None:
        self.lr = self.base_lr = check_positive(lr, "lr")
        if ema is not None and not (isinstance(ema, (int, float)) and not isinstance(ema, bool) and 0 < ema < 1):
            raise ConfigError(f"ema must be None or a decay in (0, 1) such as 0.999; got {ema!r}")
        self.ema = None if ema is None else float(ema)
        self.weight_decay = check_positive(weight_decay, "weight_decay", allow_zero=True)
        self.clip_norm = None if clip_norm is None else check_positive(clip_norm, "clip_norm")
        self.gradient_hooks: list[GradientHook] = [] if clip_norm is None else [ClipGradNorm(clip_norm)]
        self.t = 0  # completed steps
        self.l2: dict[str, float] = {}
        self.state: dict[str, dict[str, Array]] = {}
        self._scratch: dict[str, Array] = {}
        self._plan: list[tuple[Any, list[tuple[Any, ...]]]] = []
        self._plan_for: tuple[int, int] | None = None
        self._names: frozenset[str] = frozenset()  # the plan's parameter names
        self._pieces: dict[str, tuple[tuple[Array, ...], list[Any]]] = {}  # by name: ((g, *state), pieces)

    @property
    def folds_products(self) -> bool:
        """Whether a gradient left as a product a·b is applied as p ← p − lr·a·b in one gemm."""
        return False

    @property
    def steps_add_up(self) -> bool:
        """Whether the update is linear in the gradient and in the weights, so that the parts of a
        step that data-parallel ranks take from their gradients g_r add up to the step from Σ_r g_r
        (``step``'s ``keep``): SGD without momentum, clipping or weight averaging."""
        return False

    def step(self, model: Any, keep: float = 1.0) -> None:
        """Apply one update to every parameter of ``model`` from its gradient. ``keep`` scales every
        term in p, p ← keep·(p's terms) − lr·(the gradient's): with ``keep=0``, a data-parallel rank
        writes only its gradient's part of a step that rank 0 takes (allowed only where
        ``steps_add_up``)."""
        if keep != 1.0 and not self.steps_add_up:
            raise ConfigError(f"{type(self).__name__} with these settings cannot take a partial step (keep={keep!r})")
        plan = self._parameters_of(model)
        if self.l2 and not self.l2.keys() <= self._names:
            raise ConfigError(f"l2 names parameters that the model lacks: {sorted(self.l2.keys() - self._names)}")
        self.t += 1
        backend = model.backend
        fold = self.folds_products
        decay = 1.0 - self.lr * self.weight_decay
        for layer, entries in plan:
            factors = layer.grad_factors() if fold else {}
            grads = None
            for key, name, p, p_rows, scratch, scratch_rows in entries:
                l2 = self.l2.get(name, 0.0) if self.l2 else 0.0
                if key in factors and not l2:  # p ← decay·p − lr·a·b; a bias (M,) is updated as a (1, M) row
                    backend.sgd_matmul_update(p_rows, *factors[key], self.lr, scratch_rows, keep * decay)
                else:  # keep scales every term in p
                    grads = grads or layer.grads
                    for pc, gc, sc, slots in self._pieces_of(backend, grads[key], name, p, scratch):
                        self.update(backend, pc, gc, slots, sc, keep * decay, keep * l2)
                if self.ema is not None:
                    self._average(backend, name, p, scratch)

    def skip_step(self) -> None:
        """Count a step that this process has no part in (a data-parallel rank without rows in a
        batch), so that every rank's step count agrees."""
        self.t += 1

    def _pieces_of(
        self, backend: Backend, g: Array, name: str, p: Array, scratch: Array
    ) -> list[tuple[Array, Array, Array, dict[str, Array]]]:
        """The pieces of ``backend.update_chunk`` elements in which a step walks a parameter:
        [(p, g, scratch, {slot: state})], 1-D views made once and made again only where the
        gradient or a state array is another object (a flat gradient buffer, ``state`` replaced),
        so that a step spends no time on them. (A new p is a new model plan, which clears them.)"""
        state = self.state.get(name, {})
        sources = (g, *(state.get(s) for s in self.slot_names))
        cut = self._pieces.get(name)
        if cut is None or any(a is not b for a, b in zip(cut[0], sources, strict=True)):
            state = self.state.setdefault(name, {})
            slots = {s: self._array(state, s, p, backend.zeros) for s in self.slot_names}
            flat = [a.reshape(-1) for a in (p, g, scratch, *slots.values())]
            chunk = backend.update_chunk or p.size
            pieces = []
            for lo in range(0, p.size, chunk):
                pc, gc, sc, *views = (a[lo : lo + chunk] for a in flat)
                pieces.append((pc, gc, sc, dict(zip(slots, views, strict=True))))
            cut = self._pieces[name] = ((g, *slots.values()), pieces)
        return cut[1]

    def _average(self, backend: Backend, name: str, p: Array, scratch: Array) -> None:
        """a ← a + (1 − β_t)·(p − a), in place (the first call starts a at p)."""
        slots = self.state.setdefault(name, {})
        if "ema" not in slots:
            slots["ema"] = p.copy()
            return
        average = slots["ema"]
        backend.xp.subtract(p, average, out=scratch)
        scratch *= 1.0 - min(self.ema, (1 + self.t) / (10 + self.t))
        average += scratch

    def swap_averages(self, model: Any, keep: bool = True) -> None:
        """Exchange the weights of ``model`` and their averages (a second call swaps them back);
        with ``keep=False``, copy the averages into the weights instead. Nothing happens without
        ``ema`` or before the first step."""
        copy = model.backend.copy_into
        for _, entries in self._parameters_of(model):
            for _, name, p, _, scratch, _ in entries:
                average = self.state.get(name, {}).get("ema")
                if average is not None:
                    if keep:
                        copy(scratch, p)
                    copy(p, average)
                    if keep:
                        copy(average, scratch)

    def _parameters_of(self, model: Any) -> list[tuple[Any, list[tuple[Any, ...]]]]:
        """(layer, [(key, name, p, p as rows, scratch, scratch as rows)]) of every layer with
        parameters, made once per model build (``model.build_id``): a step spends no Python time
        on names, views or look-ups."""
        if self._plan_for != (id(model), model.build_id):
            self._plan = []
            self._pieces.clear()
            for prefix, layer in model.named_layers():
                entries = []
                for key, p in layer.params.items():
                    name = f"{prefix}.{key}"
                    scratch = self._array(self._scratch, name, p, model.backend.empty)
                    rows = (lambda a: a.reshape(1, -1)) if p.ndim == 1 else (lambda a: a)
                    entries.append((key, name, p, rows(p), scratch, rows(scratch)))
                self._plan.append((layer, entries))
            self._plan_for = (id(model), model.build_id)
            self._names = frozenset(name for _, entries in self._plan for _, name, *_ in entries)
        return self._plan

    def update(
        self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array, decay: float, l2: float
    ) -> None:
        """Update the 1-D piece ``p`` from its gradient ``g`` (g + l2·p with an L2 penalty; g may be
        overwritten with it) and its ``slots``, after scaling it by ``decay`` (decoupled weight
        decay; 1.0 without); ``scratch`` is free space."""
        raise NotImplementedError

    @property
    def flush_now(self) -> bool:
        """Whether this step flushes tiny optimizer state to zero (every FLUSH_EVERY steps)."""
        return self.t % FLUSH_EVERY == 0

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
        ema = {"ema": self.ema} if self.ema is not None else {}
        return {"lr": self.base_lr, "weight_decay": self.weight_decay, "clip_norm": self.clip_norm, **ema}

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
        ema: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm, ema)
        self.momentum = check_fraction(momentum, "momentum")
        self.nesterov = bool(nesterov)
        self.slot_names = ("velocity",) if self.momentum else ()

    @property
    def folds_products(self) -> bool:
        return not self.momentum and not self.weight_decay

    @property
    def steps_add_up(self) -> bool:
        return not self.momentum and not self.gradient_hooks and self.ema is None

    def update(
        self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array, decay: float, l2: float
    ) -> None:
        if not self.momentum:  # p ← decay·p − lr·(g + l2·p)
            if l2:  # the penalty's gradient, not 1 − lr·l2 in p's factor: float32 would round it to 1
                backend.xp.multiply(p, l2, out=scratch)
                scratch += g
                g = scratch
            if decay != 1.0:
                p *= decay
            backend.sgd_update(p, g, self.lr, scratch)
            return
        step = MomentumStep(self.lr, self.momentum, self.nesterov, decay, self.flush_now, l2)
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
        ema: float | None = None,
    ) -> None:
        super().__init__(lr, weight_decay, clip_norm, ema)
        self.beta1 = check_fraction(beta1, "beta1")
        self.beta2 = check_fraction(beta2, "beta2")
        self.eps = check_positive(eps, "eps")
        self._steps: dict[tuple[float, float], AdamStep] = {}  # this step's scalars by (decay, l2)
        self._steps_for: tuple[float, ...] | None = None  # (t, lr, beta1, beta2, eps) of those

    def update(
        self, backend: Backend, p: Array, g: Array, slots: dict[str, Array], scratch: Array, decay: float, l2: float
    ) -> None:
        now = (self.t, self.lr, self.beta1, self.beta2, self.eps)
        step = self._steps.get((decay, l2)) if self._steps_for == now else None
        if step is None:  # the scalars change once a step, not per parameter
            if self._steps_for != now:
                self._steps, self._steps_for = {}, now
            # Bias correction folded into the step size: m̂/(√v̂ + ε) = (√c2/c1)·m/(√v + ε√c2).
            c1, c2 = 1.0 - self.beta1**self.t, 1.0 - self.beta2**self.t
            lr, eps = self.lr * math.sqrt(c2) / c1, self.eps * math.sqrt(c2)
            step = self._steps[decay, l2] = AdamStep(lr, self.beta1, self.beta2, eps, decay, self.flush_now, l2)
        backend.adam_update(p, g, slots["m"], slots["v"], step, scratch)

    def config(self) -> dict[str, Any]:
        return {**super().config(), "beta1": self.beta1, "beta2": self.beta2, "eps": self.eps}


class AdamW(Adam):
    """Adam with decoupled weight decay, 0.01 by default."""

    def __init__(self, lr: float = 1e-3, weight_decay: float = 0.01, **kwargs: Any) -> None:
        super().__init__(lr, weight_decay=weight_decay, **kwargs)
