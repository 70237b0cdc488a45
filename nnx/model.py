"""Sequential: a stack of layers with fit / evaluate / predict.

Data flow of one training step: a batch is gathered on the device from the
uploaded data set → forward through the layers (buffers they own) → the fused
loss (a device scalar and dlogits) → backward in reverse → optimizer step in
place. Nothing returns to the host until the loss is read (every step on the
CPU, where that is free; every ``check_every`` steps on a GPU).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from backends import Backend, get_backend
from backends.contract import Array
from nnx.buffers import BufferCache
from nnx.callbacks import Callback
from nnx.checks import check_features, check_labels, check_positive_int
from nnx.errors import ConfigError, DTypeError, OutOfDeviceMemory, ShapeError, TrainingDiverged, TrainingInterrupted
from nnx.layers import Dense, Dropout, Layer, ReLU, Softmax
from nnx.losses import SparseCategoricalCrossentropy
from nnx.optimizers import Optimizer
from nnx.schedules import Schedule

DTYPES = ("float32", "float64")


@dataclass
class History:
    """Per-epoch metrics of ``fit``: lists indexed by epoch (val_* empty without validation data)."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            getattr(self, key).append(value)

    def extend(self, other: History) -> None:
        """Append the epochs of ``other`` (a resumed run) to these."""
        for key, values in dataclasses.asdict(other).items():
            getattr(self, key).extend(values)


class Sequential:
    """Layers applied in order. ``model.layers`` keeps them; the first layer with
    parameters fixes the number of input features, the last Dense the number of classes.

    backend: "numpy", "cupy", "auto" or a Backend (default: $NNX_BACKEND, else "auto").
    seed: seeds the weights (drawn on the host, so equal on every backend) and the shuffling.
    dtype: "float32" or "float64".
    """

    def __init__(
        self, *layers: Layer, backend: str | Backend | None = None, seed: int = 0, dtype: str = "float32"
    ) -> None:
        if not layers:
            raise ConfigError("Sequential needs at least one layer; got none")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ConfigError(f"layers[{i}] must be an nnx Layer; got {type(layer).__name__}")
        if str(dtype) not in DTYPES:
            raise DTypeError(f"dtype must be one of {DTYPES}; got {dtype!r}")
        if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
            raise ConfigError(f"seed must be an integer >= 0; got {seed!r}")
        dense = [layer for layer in layers if isinstance(layer, Dense)]
        if not dense:
            raise ConfigError("Sequential needs at least one Dense layer to know its input features")
        self.layers = list(layers)
        self.seed = int(seed)
        self.dtype = np.dtype(str(dtype))
        self.in_features = dense[0].in_features
        features = self.in_features
        for layer in self.layers:
            features = layer.output_features(features)
        self.n_classes = features
        self.backend = get_backend(backend)
        self._batch_buffers = BufferCache()
        rng = np.random.default_rng(self.seed)
        for layer in self.layers:
            layer.build(self.backend, self.dtype, rng)
        self._wire()

    def _wire(self) -> None:
        """Fuse Dense + ReLU, let a ReLU mask the gradient buffer of the Dense after it in place, and
        skip the input gradient of the lowest layer with parameters."""
        first = next(i for i, layer in enumerate(self.layers) if layer.params)
        self._first_trainable = first
        self._foldable = all(isinstance(layer, Dense) for layer in self.layers if layer.params)
        for i, layer in enumerate(self.layers):
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if isinstance(layer, Dense):
                layer.propagate_grad = i != first
                layer.fused_relu = isinstance(nxt, ReLU)
                if isinstance(nxt, ReLU):
                    nxt.fused = True
            if isinstance(layer, ReLU):
                layer.mask_in_place = isinstance(nxt, Dense)

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        return f"Sequential({inner}, backend={self.backend.name!r}, dtype={self.dtype.name!r})"

    # ---- parameters --------------------------------------------------------------
    def parameters(self) -> Iterator[tuple[str, Array, Array]]:
        """(name, value, gradient) of every parameter, names like "layers.0.W"."""
        for i, layer in enumerate(self.layers):
            for key, value in layer.params.items():
                yield f"layers.{i}.{key}", value, layer.grads[key]

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy array, by name."""
        return {name: self.backend.to_numpy(value).copy() for name, value, _ in self.parameters()}

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Copy arrays (host or device) into the parameters of the same names and shapes."""
        for name, value, _ in self.parameters():
            if name not in weights:
                raise ShapeError(f"weights must hold {name!r}; it is missing")
            new = weights[name]
            if tuple(new.shape) != tuple(value.shape):
                raise ShapeError(f"weights[{name!r}] must have shape {tuple(value.shape)}; got {tuple(new.shape)}")
            self.backend.copy_into(value, self.backend.asarray(new, self.dtype))

    def to(self, backend: str | Backend) -> Sequential:
        """Move the parameters to another backend ("numpy" or "cupy"), in place; returns self."""
        weights = self.get_weights()
        self.backend = get_backend(backend)
        self._batch_buffers.clear()
        rng = np.random.default_rng(self.seed)
        for layer in self.layers:
            layer.build(self.backend, self.dtype, rng)
        self._wire()
        self.set_weights(weights)
        return self

    def train(self, mode: bool = True) -> None:
        for layer in self.layers:
            layer.training = mode

    # ---- the step ------------------------------------------------------------------
    def forward(self, x: Array) -> Array:
        """Logits (N, classes) of a (N, in_features) batch already on the backend."""
        for layer in self.layers:
            x = layer.forward(x)
        return x

    def backward(self, dlogits: Array, lr: float | None = None) -> None:
        """Gradients of every parameter from dL/dlogits (N, classes); with ``lr``, each layer also
        takes the plain SGD step p ← p − lr·dp (see Dense.backward)."""
        grad = dlogits
        for layer in reversed(self.layers[self._first_trainable :]):
            grad = layer.backward(grad, lr)

    def train_step(self, x: Any, y: Any, loss: SparseCategoricalCrossentropy, optimizer: Optimizer) -> float:
        """One gradient step on a batch (checked); returns the batch's mean loss."""
        self._check_last_layer()
        x, y = self._to_device(x, y)
        self.train(True)
        try:
            value, _, dlogits = self._forward_loss(x, y, loss)
            value = float(value)
            if not math.isfinite(value):
                raise TrainingDiverged(f"the loss is {value}; the step was not applied (lower the learning rate?)")
            self._backward_update(dlogits, optimizer)
        finally:
            self.train(False)
        return value

    def _forward_loss(self, x: Array, y: Array, loss: SparseCategoricalCrossentropy) -> tuple[Array, Array, Array]:
        """Forward and the fused loss on device arrays: (the loss as a 0-d array, logits, dlogits)."""
        logits = self.forward(x)
        value, dlogits = loss.compute(self.backend, logits, y)
        return value, logits, dlogits

    def _backward_update(self, dlogits: Array, optimizer: Optimizer) -> None:
        """Backward and the optimizer's step. Plain SGD is folded into the backward pass: each Dense
        takes W ← W − lr·xᵀ·dy as one product instead of writing dW and reading it back."""
        lr = optimizer.folded_lr() if self._foldable else None
        self.backward(dlogits, lr)
        optimizer.step(self, applied=lr is not None)

    def _step(
        self, x: Array, y: Array, loss: SparseCategoricalCrossentropy, optimizer: Optimizer
    ) -> tuple[Array, Array]:
        """A whole unchecked training step on device arrays: (the loss as a 0-d array, the logits)."""
        value, logits, dlogits = self._forward_loss(x, y, loss)
        self._backward_update(dlogits, optimizer)
        return value, logits

    # ---- boundary --------------------------------------------------------------------
    def _check_last_layer(self) -> None:
        if isinstance(self.layers[-1], Softmax):
            raise ConfigError("train on logits: remove the final Softmax (the loss applies it, fused)")

    def _to_device(self, x: Any, y: Any | None = None, x_name: str = "x", y_name: str = "y") -> tuple[Array, Array]:
        x = check_features(x, self.in_features, x_name)
        xd = self.backend.asarray(x, self.dtype)
        if y is None:
            return xd, None
        y = check_labels(y, self.n_classes, x.shape[0], y_name)
        return xd, self.backend.asarray(y, np.int64)

    # ---- fit / evaluate / predict -------------------------------------------------------
    def fit(
        self,
        x: Any,
        y: Any,
        *,
        loss: SparseCategoricalCrossentropy,
        optimizer: Optimizer,
        epochs: int,
        batch_size: int = 32,
        shuffle: bool = True,
        validation_data: tuple[Any, Any] | None = None,
        schedule: Schedule | None = None,
        callbacks: tuple[Callback, ...] | list[Callback] = (),
        initial_epoch: int = 0,
        check_every: int | None = None,
    ) -> History:
        """Train for ``epochs`` epochs (starting at ``initial_epoch`` when resuming).

        x: (N, in_features) floats, y: (N,) integer labels, NumPy or backend arrays.
        Each epoch is shuffled with a permutation drawn from (seed, epoch), so a resumed
        run repeats an uninterrupted one. The loss is checked for NaN/Inf every
        ``check_every`` steps (every step on the CPU, 50 on a GPU); on divergence the
        weights (and optimizer state) from the start of the epoch are restored and
        TrainingDiverged is raised. Ctrl-C stops
        after the current step with TrainingInterrupted, which carries the History.
        """
        self._check_last_layer()
        epochs = check_positive_int(epochs, "epochs")
        batch_size = check_positive_int(batch_size, "batch_size")
        if isinstance(initial_epoch, bool) or not isinstance(initial_epoch, int) or not 0 <= initial_epoch <= epochs:
            raise ConfigError(f"initial_epoch must be an integer in [0, epochs={epochs}]; got {initial_epoch!r}")
        if not isinstance(loss, SparseCategoricalCrossentropy):
            raise ConfigError(f"loss must be a SparseCategoricalCrossentropy; got {type(loss).__name__}")
        if not isinstance(optimizer, Optimizer):
            raise ConfigError(f"optimizer must be an nnx Optimizer; got {type(optimizer).__name__}")
        xd, yd = self._to_device(x, y)
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ConfigError("validation_data must be a pair (x_val, y_val)")
            val = self._to_device(*validation_data, x_name="validation_data[0]", y_name="validation_data[1]")
        every = check_every or (1 if self.backend.host_reads_are_free else 50)
        check_positive_int(every, "check_every")

        n = xd.shape[0]
        plan = _Plan(
            loss=loss,
            optimizer=optimizer,
            schedule=schedule or Schedule(),
            epochs=epochs,
            batch_size=batch_size,
            steps=math.ceil(n / batch_size),
            shuffle=shuffle,
            callbacks=list(callbacks),
            check_every=every,
        )
        history = History()
        for cb in callbacks:
            cb.on_train_begin(self, epochs, n)
        with _StopOnInterrupt() as interrupt, np.errstate(all="ignore"):  # divergence is handled below
            for epoch in range(initial_epoch, epochs):
                for cb in callbacks:
                    cb.on_epoch_begin(epoch)
                start = time.perf_counter()
                with self._out_of_memory_hint(batch_size):
                    logs = self._fit_epoch(xd, yd, plan, epoch, interrupt)
                if logs is None:
                    raise TrainingInterrupted(
                        f"interrupted during epoch {epoch + 1}; the model holds the weights of the last complete step",
                        history,
                    )
                if validation_data is not None:
                    v = self._evaluate_device(*val, batch_size=max(batch_size, 1024))
                    logs.update(val_loss=v["loss"], val_accuracy=v["accuracy"])
                logs.update(epoch=epoch, lr=optimizer.lr, seconds=time.perf_counter() - start)
                history.append(logs)
                for cb in callbacks:
                    cb.on_epoch_end(epoch, logs)
                if interrupt.requested:
                    raise TrainingInterrupted(f"interrupted after epoch {epoch + 1}", history)
        for cb in callbacks:
            cb.on_train_end()
        return history

    def _fit_epoch(
        self, xd: Array, yd: Array, plan: _Plan, epoch: int, interrupt: _StopOnInterrupt
    ) -> dict[str, float] | None:
        """One epoch of training steps; None when Ctrl-C asked to stop after a step."""
        be = self.backend
        n, batch_size, steps, optimizer = xd.shape[0], plan.batch_size, plan.steps, plan.optimizer
        shuffle, every = plan.shuffle, plan.check_every
        order = be.asarray(np.random.default_rng([self.seed, epoch]).permutation(n)) if shuffle else None
        for i, layer in enumerate(self.layers):
            if isinstance(layer, Dropout):
                layer.reseed([self.seed, epoch, i])
        snapshot = self._snapshot(optimizer)  # one copy per epoch, restored if training diverges
        loss_sum = be.zeros((), np.float64)
        correct = be.zeros((), np.int64)
        self.train(True)
        try:
            for step in range(steps):
                lo, hi = step * batch_size, min((step + 1) * batch_size, n)
                if order is None:
                    xb, yb = xd[lo:hi], yd[lo:hi]
                else:
                    idx = order[lo:hi]
                    xb = be.gather_rows(xd, idx, self._batch_buffer("x", (hi - lo, xd.shape[1]), xd.dtype))
                    yb = be.gather_rows(yd, idx, self._batch_buffer("y", (hi - lo,), yd.dtype))
                global_step = epoch * steps + step
                optimizer.lr = optimizer.base_lr * plan.schedule.factor(global_step, plan.epochs * steps, steps)
                value, logits, dlogits = self._forward_loss(xb, yb, plan.loss)
                check = (step + 1) % every == 0 or step == steps - 1
                if check and not math.isfinite(float(value)):
                    self._diverged(snapshot, optimizer, epoch, step, every)
                self._backward_update(dlogits, optimizer)
                loss_sum += value * (hi - lo)
                correct += be.count_correct(logits, yb)
                if check:
                    for cb in plan.callbacks:
                        cb.on_progress(epoch, hi, float(loss_sum) / hi, int(correct) / hi)
                if interrupt.requested:
                    return None
        finally:
            self.train(False)
        return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n}

    @contextlib.contextmanager
    def _out_of_memory_hint(self, batch_size: int) -> Iterator[None]:
        """Turn a device allocation failure into OutOfDeviceMemory, freeing the step's buffers."""
        try:
            yield
        except MemoryError as exc:
            if isinstance(exc, OutOfDeviceMemory):
                raise
            for layer in self.layers:
                layer.release_buffers()
            self._batch_buffers.clear()
            raise OutOfDeviceMemory(
                f"out of {self.backend.name} memory with batch_size={batch_size}; try a smaller batch_size "
                f"(the model keeps its weights): {exc}"
            ) from None

    def _batch_buffer(self, name: str, shape: tuple[int, ...], dtype: Any) -> Array:
        return self._batch_buffers.get(name, (shape, dtype), lambda: self.backend.empty(shape, dtype))

    def _snapshot(self, optimizer: Optimizer) -> list[tuple[Array, Array]]:
        arrays = [p for _, p, _ in self.parameters()] + list(optimizer.state_arrays().values())
        return [(a, a.copy()) for a in arrays]

    def _diverged(self, snapshot, optimizer, epoch, step, every) -> None:
        for live, saved in snapshot:  # the weights of this epoch's steps are suspect: go back to its start
            self.backend.copy_into(live, saved)
        raise TrainingDiverged(
            f"the training loss became NaN or Inf in epoch {epoch + 1} by step {step + 1} "
            f"(checked every {every} steps); the weights from the start of epoch {epoch + 1} are restored. "
            "Likely cause: the learning rate "
            f"(lr={optimizer.lr:g}) is too high, or the inputs are badly scaled"
        )

    def evaluate(self, x: Any, y: Any, batch_size: int = 1024) -> dict[str, float]:
        """Mean loss and accuracy on (x, y), in inference mode (no dropout)."""
        batch_size = check_positive_int(batch_size, "batch_size")
        self._check_last_layer()
        with self._out_of_memory_hint(batch_size):
            return self._evaluate_device(*self._to_device(x, y), batch_size=batch_size)

    def _evaluate_device(self, xd: Array, yd: Array, batch_size: int) -> dict[str, float]:
        be = self.backend
        loss = SparseCategoricalCrossentropy()
        loss_sum = be.zeros((), np.float64)
        correct = be.zeros((), np.int64)
        n = xd.shape[0]
        for lo in range(0, n, batch_size):
            xb, yb = xd[lo : lo + batch_size], yd[lo : lo + batch_size]
            logits = self.forward(xb)
            value, _ = loss.compute(be, logits, yb)
            loss_sum += value * xb.shape[0]
            correct += be.count_correct(logits, yb)
        return {"loss": float(loss_sum) / n, "accuracy": int(correct) / n}

    def predict(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """Class probabilities (N, classes) as a NumPy array, for x (N, in_features)."""
        batch_size = check_positive_int(batch_size, "batch_size")
        xd, _ = self._to_device(x)
        softmax = Softmax()
        softmax.build(self.backend, self.dtype, np.random.default_rng(0))
        out = np.empty((xd.shape[0], self.n_classes), self.dtype)
        for lo in range(0, xd.shape[0], batch_size):
            z = self.forward(xd[lo : lo + batch_size])
            probs = z if isinstance(self.layers[-1], Softmax) else softmax.forward(z)
            out[lo : lo + batch_size] = self.backend.to_numpy(probs)
        return out

    def predict_classes(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """The most probable class of each row: (N,) int64."""
        return self.predict(x, batch_size).argmax(axis=1).astype(np.int64)

    # ---- files ---------------------------------------------------------------------------
    def save(self, path: str, training: dict[str, Any] | None = None) -> None:
        """Write the model to ``path`` (safetensors + JSON metadata, atomically). See nnx.model_file."""
        from nnx.model_file import save

        save(self, path, training=training)


@dataclass
class _Plan:
    """The settings of one fit call, as the epochs see them."""

    loss: SparseCategoricalCrossentropy
    optimizer: Optimizer
    schedule: Schedule
    epochs: int
    batch_size: int
    steps: int  # per epoch
    shuffle: bool
    callbacks: list[Callback]
    check_every: int


class _StopOnInterrupt(contextlib.AbstractContextManager):
    """While active (in the main thread), Ctrl-C sets ``requested`` instead of raising mid-step."""

    def __enter__(self) -> _StopOnInterrupt:
        self.requested = False
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)


__all__ = ["History", "Sequential"]
