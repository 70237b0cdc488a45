"""Training: the step, fit, evaluate and History.

One training step, written once (``train_step``) and used by ``Sequential.train_step``, ``fit``
and the benchmarks:

    forward → loss → backward → optimizer.gradient_hooks (clipping) → optimizer.step

In data-parallel training, nnx.distributed adds one all-reduce: of the gradients before the hooks,
or, where the optimizer's steps add up (plain SGD), of the weights after each rank's partial step.

Nothing returns to the host until the loss is read: every step on the CPU, where that is free;
every ``check_every`` steps on a GPU.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.contract import Array
from nnx.buffers import BufferCache
from nnx.callbacks import Callback
from nnx.checks import check_positive_int, warn_if_unscaled
from nnx.ctrl_c import StopOnInterrupt
from nnx.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from nnx.evaluation import evaluate_device, out_of_memory_hint, to_device
from nnx.history import History
from nnx.layers import Dropout
from nnx.losses import Loss
from nnx.optimizers import Optimizer
from nnx.progress import progress_callbacks
from nnx.schedules import Schedule

if TYPE_CHECKING:
    from nnx.model import Sequential


def train_step(
    model: Sequential,
    x: Array,
    y: Array,
    loss: Loss,
    optimizer: Optimizer,
    check_finite: bool = False,
    update: Callable[[Sequential], None] | None = None,
) -> tuple[Array | None, Array | None]:
    """One training step on device arrays, unchecked: (the mean loss as a 0-d array, the outputs).

    With ``check_finite``, a NaN or Inf loss raises TrainingDiverged before anything is updated.
    ``update`` replaces ``apply_update(model, optimizer)`` after backward (data parallelism's
    all-reduce and step); with it, x may have no rows (a rank's share of a small batch):
    (None, None), and ``update`` provides this rank's part.
    """
    value = outputs = None
    if x.shape[0] or update is None:
        outputs = model.forward(x, logits=loss.takes_logits)
        value, grad = loss.compute(model.backend, outputs, y)
        if check_finite and not math.isfinite(float(value)):
            raise TrainingDiverged(f"the loss is {float(value)}; the step was not applied (lower the learning rate?)")
        model.backward(grad)
    if update is None:
        apply_update(model, optimizer)
    else:
        update(model)
    return value, outputs


def apply_update(model: Sequential, optimizer: Optimizer) -> None:
    """The optimizer's gradient hooks (clipping), then its step."""
    for hook in optimizer.gradient_hooks:
        hook(model)
    optimizer.step(model)


def checked_step(model: Sequential, x: Any, y: Any, loss: Loss, optimizer: Optimizer) -> float:
    """``train_step`` on host or device arrays, checked, in training mode; returns the mean loss."""
    xd, yd = to_device(model, loss, x, y)
    model.task = loss.task
    model.train(True)
    try:
        value, _ = train_step(model, xd, yd, loss, optimizer, check_finite=True)
    finally:
        model.train(False)
    return float(value)


@dataclass
class _Plan:
    """The settings of one fit call, as the epochs see them."""

    loss: Loss
    optimizer: Optimizer
    schedule: Schedule
    epochs: int
    batch_size: int
    steps: int  # per epoch
    shuffle: bool
    callbacks: list[Callback]
    check_every: int
    sync: Any = None  # data parallelism's FlatAllReduce (nnx.distributed), or None
    batches: BufferCache = field(default_factory=BufferCache)


def fit(
    model: Sequential,
    x: Any,
    y: Any,
    *,
    loss: Loss,
    optimizer: Optimizer,
    epochs: int,
    batch_size: int = 32,
    shuffle: bool = True,
    validation_data: tuple[Any, Any] | None = None,
    schedule: Schedule | None = None,
    callbacks: tuple[Callback, ...] | list[Callback] = (),
    initial_epoch: int = 0,
    check_every: int | None = None,
    verbose: int = 0,
    distributed: Any = None,
) -> History:
    """Train ``model`` for ``epochs`` epochs (starting at ``initial_epoch`` when resuming).

    x: (N, in_features) floats; y: targets for ``loss`` (class labels (N,) for
    SparseCategoricalCrossentropy), NumPy or backend arrays. Each epoch takes ceil(N / batch_size)
    steps over a permutation drawn from (seed, epoch), so a resumed run repeats an uninterrupted
    one; the last batch of an epoch may be smaller. The loss is checked for NaN/Inf every
    ``check_every`` steps (every step on the CPU, 50 on a GPU); on divergence the weights (and
    optimizer state) from the start of the epoch are restored and TrainingDiverged is raised.
    Validation uses ``loss`` too. With an optimizer's ``ema``, validation uses the weight averages,
    and the model holds them when fit returns. Ctrl-C stops after the current step with TrainingInterrupted,
    which carries the History.

    verbose: 0 silent (the default), 1 a progress bar per epoch (one line per epoch where stdout
    is not a terminal), 2 one line per epoch, as Keras. The callbacks are nnx.TqdmProgress and
    nnx.LineProgress. History.epoch holds the epochs' numbers as printed, from 1 (a run resumed
    with initial_epoch=k starts at k + 1); callbacks get the 0-based index, as in Keras.
    Inputs that look unscaled (a root mean square over 3: pixels 0-255, say) raise an UnscaledInputWarning.
    A callback ends training after the current epoch by setting ``model.stop_training = True`` (as in Keras).
    distributed: an nnx.distributed.DataParallel: this process is one rank of data-parallel
    training (see that module); every rank calls fit with the same arguments and reports the
    global numbers. The model's gradients, or with plain SGD its parameters, move into a new flat
    buffer: arrays taken from ``model.parameters()`` before no longer follow the model.
    """
    epochs = check_positive_int(epochs, "epochs")
    batch_size = check_positive_int(batch_size, "batch_size")
    if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int) or not 0 <= initial_epoch <= epochs:
        raise ConfigError(f"initial_epoch must be an integer in [0, epochs={epochs}]; got {initial_epoch!r}")
    if not isinstance(loss, Loss):
        raise ConfigError(f"loss must be an nnx Loss; got {type(loss).__name__}")
    if not isinstance(optimizer, Optimizer):
        raise ConfigError(f"optimizer must be an nnx Optimizer; got {type(optimizer).__name__}")
    callbacks = [*callbacks, *progress_callbacks(verbose)]
    xd, yd = to_device(model, loss, x, y)
    model.task = loss.task
    warn_if_unscaled(xd)
    if validation_data is not None:
        if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
            raise ConfigError("validation_data must be a pair (x_val, y_val)")
        val = to_device(model, loss, *validation_data, names=("validation_data[0]", "validation_data[1]"))
    default_every = 1 if model.backend.host_reads_are_free else 50
    every = check_positive_int(default_every if check_every is None else check_every, "check_every")
    n = xd.shape[0]
    sync = distributed.synchronizer(model, optimizer) if distributed is not None else None
    plan = _Plan(loss, optimizer, schedule or Schedule(), epochs, batch_size, math.ceil(n / batch_size), shuffle,
                 list(callbacks), every, sync)  # fmt: skip
    history = History()
    model.stop_training = False
    for cb in callbacks:
        cb.on_train_begin(model, epochs, n)
    with StopOnInterrupt() as interrupt, np.errstate(all="ignore"):  # divergence is handled below
        for epoch in range(initial_epoch, epochs):
            for cb in callbacks:
                cb.on_epoch_begin(epoch)
            start = time.perf_counter()
            with out_of_memory_hint(model, plan.batch_size, plan.batches):
                logs = _fit_epoch(model, xd, yd, plan, epoch, interrupt)
            if logs is None:
                raise TrainingInterrupted(
                    f"interrupted during epoch {epoch + 1}; the model holds the weights of the last complete step",
                    history,
                )
            if sync is not None:
                sync.dp.check_same_weights(model)
            if validation_data is not None:
                optimizer.swap_averages(model)  # the weight averages, with ema
                v = evaluate_device(model, *val, loss, max(batch_size, 1024), distributed)
                optimizer.swap_averages(model)
                logs.update({f"val_{key}": value for key, value in v.items()})
            logs.update(epoch=epoch + 1, lr=optimizer.lr, seconds=time.perf_counter() - start)
            history.append(logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if interrupt.requested:
                raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}", history)
            if model.stop_training:
                break
    optimizer.swap_averages(model, keep=False)  # as Keras's use_ema: the model keeps the averages
    for cb in callbacks:
        cb.on_train_end()
    return history


def _fit_epoch(
    model: Sequential, xd: Array, yd: Array, plan: _Plan, epoch: int, interrupt: StopOnInterrupt
) -> dict[str, float] | None:
    """One epoch of training steps; None when Ctrl-C asked to stop after a step."""
    be, optimizer = model.backend, plan.optimizer
    n, batch_size, steps = xd.shape[0], plan.batch_size, plan.steps
    order = be.asarray(np.random.default_rng([model.seed, epoch]).permutation(n)) if plan.shuffle else None
    for i, layer in enumerate(model.layers):
        if isinstance(layer, Dropout):
            layer.reseed([model.seed, epoch, i])
    snapshot = _snapshot(model, optimizer)  # one copy per epoch, restored if training diverges
    loss_sum = be.zeros((), np.float64)
    metric = plan.loss.metric
    metric_sum = be.zeros((), np.float64) if metric else None
    listeners = [cb for cb in plan.callbacks if getattr(cb.on_progress, "__func__", None) is not Callback.on_progress]
    model.train(True)
    try:
        for step in range(steps):
            lo, hi = step * batch_size, min((step + 1) * batch_size, n)
            rows = hi - lo  # of the (global) batch
            if plan.sync is not None:
                lo, hi = plan.sync.dp.share(lo, hi)  # this rank's part of it
            if order is None:
                xb, yb = xd[lo:hi], yd[lo:hi]
            else:
                idx = order[lo:hi]
                xb = be.gather_rows(xd, idx, _batch_buffer(plan, be, "x", (hi - lo, *xd.shape[1:]), xd.dtype))
                yb = be.gather_rows(yd, idx, _batch_buffer(plan, be, "y", (hi - lo, *yd.shape[1:]), yd.dtype))
            optimizer.lr = optimizer.base_lr * plan.schedule.factor(epoch * steps + step, plan.epochs * steps, steps)
            check = (step + 1) % plan.check_every == 0 or step == steps - 1
            try:
                if plan.sync is None:
                    value, outputs = train_step(model, xb, yb, plan.loss, optimizer, check_finite=check)
                    step_metric = plan.loss.metric_sum(be, outputs, yb) if metric else 0
                else:  # the ranks' numbers come summed with the gradients, and all stop together
                    value, step_metric, stop = plan.sync.step(model, xb, yb, plan.loss, rows, check,
                                                               interrupt.requested)  # fmt: skip
            except TrainingDiverged:
                _restore(model, snapshot)
                raise TrainingDiverged(
                    f"the training loss became NaN or Inf in epoch {epoch + 1} by step {step + 1} "
                    f"(checked every {plan.check_every} steps); the weights from the start of epoch {epoch + 1} "
                    f"are restored. Likely cause: the learning rate (lr={optimizer.lr:g}) is too high, or the "
                    "inputs are badly scaled"
                ) from None
            loss_sum += value * rows
            seen = step * batch_size + rows
            if metric_sum is not None:
                metric_sum += step_metric
            if check and listeners:
                running = {"loss": float(loss_sum) / seen}
                if metric_sum is not None:
                    running[metric] = float(metric_sum) / seen
                for cb in listeners:
                    cb.on_progress(epoch, seen, running)
            if stop if plan.sync is not None else interrupt.requested:
                return None
    finally:
        model.train(False)
    logs = {"loss": float(loss_sum) / n}
    if metric_sum is not None:
        logs[metric] = float(metric_sum) / n
    return logs


def _batch_buffer(plan: _Plan, be: Any, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
    return plan.batches.get(name, (shape, dtype), lambda: be.empty(shape, dtype))


def _snapshot(model: Sequential, optimizer: Optimizer) -> list[tuple[Array, Array]]:
    arrays = list(model.parameters()) + list(optimizer.state_arrays().values())
    return [(a, a.copy()) for a in arrays]


def _restore(model: Sequential, snapshot: list[tuple[Array, Array]]) -> None:
    for live, saved in snapshot:
        model.backend.copy_into(live, saved)


__all__ = ["History", "fit", "train_step"]
