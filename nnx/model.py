"""Sequential: the network. Layers in order, forward and backward, parameters, weights, device
moves and predict. Training (fit, evaluate, the step) lives in nnx.training; model files in
nnx.model_file (``nnx.save`` / ``nnx.load``).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np

from backends import Backend, get_backend
from backends.contract import Array
from nnx import evaluation, training
from nnx.activations import Sigmoid
from nnx.checks import check_features, check_positive_int
from nnx.errors import ConfigError, DTypeError, ShapeError
from nnx.history import History
from nnx.layers import Dense, Layer, ReLU, Softmax
from nnx.losses import BinaryCrossentropy, Loss, MeanSquaredError, SparseCategoricalCrossentropy
from nnx.optimizers import Optimizer

DTYPES = ("float32", "float64")
TASKS = ("classification", "binary", "regression")  # what predict makes of the outputs
_BUILDS = itertools.count()


class Sequential:
    """Layers applied in order. ``model.layers`` keeps them; the first Dense fixes the number of
    input features (``in_features``), the last layer the number of outputs (``out_features``).

    backend: "numpy", "cupy", "auto" or a Backend (default: $NNX_BACKEND, else "auto").
    seed: seeds the weights (drawn on the host, so equal on every backend) and the shuffling.
    dtype: "float32" or "float64".

    A final Softmax is for predictions: a loss that takes logits (SparseCategoricalCrossentropy)
    is given the outputs before it, and applies the softmax itself, fused.

    ``task`` says what ``predict`` makes of the outputs: "classification" (the default: softmax
    probabilities), "binary" (sigmoid probabilities, for BinaryCrossentropy) or "regression"
    (the outputs themselves, for MeanSquaredError). Training sets it from the loss; model files keep it.
    """

    def __init__(
        self, *layers: Layer, backend: str | Backend | None = None, seed: int = 0, dtype: str = "float32"
    ) -> None:
        if not layers:
            raise ConfigError("Sequential needs at least one layer; got none")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ConfigError(f"layers[{i}] must be an nnx Layer; got {type(layer).__name__}")
            first = next(j for j, other in enumerate(layers) if other is layer)
            if first != i:
                raise ConfigError(
                    f"layers[{i}] is the same {type(layer).__name__} instance as layers[{first}]; "
                    f"a layer keeps the state of one place in a model: create another {type(layer).__name__}()"
                )
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
        self.out_features = features
        self.training_info: dict[str, Any] = {}
        self.class_names: list[str] | None = None  # names of the outputs, kept in model files
        self.task = "classification"
        self.stop_training = False  # a callback sets it to end fit after the current epoch
        self._build(get_backend(backend))

    @property
    def task(self) -> str:
        """ "classification", "binary" or "regression": what ``predict`` returns (see the class)."""
        return self._task

    @task.setter
    def task(self, task: str) -> None:
        if task not in TASKS:
            raise ConfigError(f"task must be one of {TASKS}; got {task!r}")
        self._task = task

    @property
    def n_classes(self) -> int:
        """The number of outputs, for a classifier."""
        return self.out_features

    def _build(self, backend: Backend) -> None:
        """Allocate the parameters on ``backend`` and wire the layers: fuse Dense + ReLU, let a ReLU
        mask the gradient buffer of the Dense after it in place, and skip the input gradient of
        the lowest layer with parameters."""
        self.backend = backend
        self.build_id = next(_BUILDS)  # new parameter arrays: optimizers look them up again
        rng = np.random.default_rng(self.seed)
        for layer in self.layers:
            layer.build(backend, self.dtype, rng)
        self.grad_buffer = self.gradient_buffer()
        self._first_trainable = next((i for i, layer in enumerate(self.layers) if layer.params), 0)
        self._ran = len(self.layers)
        for i, layer in enumerate(self.layers):
            nxt = self.layers[i + 1] if i + 1 < len(self.layers) else None
            if isinstance(layer, Dense):
                layer.propagate_grad = i != self._first_trainable
                layer.fused_relu = isinstance(nxt, ReLU)
                if isinstance(nxt, ReLU):
                    nxt.fused = True
            if isinstance(layer, ReLU):
                layer.mask_in_place = isinstance(nxt, Dense)

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        return f"Sequential({inner}, backend={self.backend.name!r}, dtype={self.dtype.name!r})"

    # ---- parameters --------------------------------------------------------------
    def named_layers(self) -> Iterator[tuple[str, Layer]]:
        """("layers.<i>", layer) for every layer with parameters."""
        for i, layer in enumerate(self.layers):
            if layer.params:
                yield f"layers.{i}", layer

    def parameters(self) -> Iterator[Array]:
        """Every parameter array (on the backend), as PyTorch's ``parameters()``."""
        for _, layer in self.named_layers():
            yield from layer.params.values()

    def named_parameters(self) -> Iterator[tuple[str, Array, Array]]:
        """(name, value, gradient) of every parameter, names like "layers.0.W"; the gradients are
        those of the last backward."""
        for prefix, layer in self.named_layers():
            for key, value in layer.params.items():
                yield f"{prefix}.{key}", value, layer.grads[key]

    def gradient_buffer(self, spare: int = 0) -> Array:
        """A new flat array that holds every parameter's gradient as a view, in the order of
        ``parameters()``, and ``spare`` more entries at its end; the layers keep their gradients
        there from now on. (N,) of the model's dtype, zeros."""
        flat, views = self._flat_views(spare)
        for layer, key, _, view in views:
            layer.bind_grads({key: view})
        return flat

    def parameter_buffer(self, spare: int = 0) -> Array:
        """A new flat array that holds every parameter as a view, in the order of ``parameters()``,
        and ``spare`` more entries (zeros) at its end; the layers keep their parameters there from
        now on (the values are copied in). (N,) of the model's dtype."""
        flat, views = self._flat_views(spare)
        for layer, key, p, view in views:
            self.backend.copy_into(view, p)
            layer.params[key] = view
        self.build_id = next(_BUILDS)  # new parameter arrays: optimizers look them up again
        return flat

    def _flat_views(self, spare: int) -> tuple[Array, list[tuple[Layer, str, Array, Array]]]:
        """A zeroed (N + spare,) array and, for every parameter p of every layer, (layer, key, p,
        the view of the array shaped like p), in the order of ``parameters()``."""
        params = [(layer, key, p) for _, layer in self.named_layers() for key, p in layer.params.items()]
        flat = self.backend.zeros((sum(int(p.size) for *_, p in params) + spare,), self.dtype)
        views, offset = [], 0
        for layer, key, p in params:
            views.append((layer, key, p, flat[offset : offset + p.size].reshape(p.shape)))
            offset += p.size
        return flat, views

    def count_params(self) -> int:
        """The number of trainable numbers."""
        return sum(int(p.size) for p in self.parameters())

    def summary(self) -> str:
        """A table of the layers: output shape and parameter count of each, and the total (N: the batch).
        ``print(model.summary())``."""
        rows = [("layer", "output shape", "parameters")]
        features = self.in_features
        for i, layer in enumerate(self.layers):
            features = layer.output_features(features)
            count = sum(int(np.prod(shape)) for shape in layer.param_shapes().values())
            rows.append((f"{i}: {layer!r}", f"(N, {features})", f"{count:,}"))
        total = self.count_params()
        footer = f"total: {total:,} parameters ({total * self.dtype.itemsize / 1024:,.1f} KiB of {self.dtype.name})"
        width = [max(len(row[k]) for row in rows) for k in range(3)]
        lines = [f"Sequential: input (N, {self.in_features}), backend {self.backend.name}"]
        lines += [f"{a:<{width[0]}}  {b:<{width[1]}}  {c:>{width[2]}}" for a, b, c in rows]
        rule = "-" * (sum(width) + 4)
        return "\n".join([lines[0], rule, lines[1], rule, *lines[2:], rule, footer])

    def get_weights(self) -> dict[str, np.ndarray]:
        """Every parameter as a NumPy array (a copy), by name."""
        return {
            f"{prefix}.{key}": self.backend.to_numpy(value).copy()
            for prefix, layer in self.named_layers()
            for key, value in layer.params.items()
        }

    def set_weights(self, weights: dict[str, Any]) -> None:
        """Copy arrays (host or device) into the parameters of the same names and shapes."""
        for prefix, layer in self.named_layers():
            for key, value in layer.params.items():
                name = f"{prefix}.{key}"
                if name not in weights:
                    raise ShapeError(f"weights must hold {name!r}; it is missing")
                new = weights[name]
                if tuple(new.shape) != tuple(value.shape):
                    raise ShapeError(f"weights[{name!r}] must have shape {tuple(value.shape)}; got {tuple(new.shape)}")
                self.backend.copy_into(value, self.backend.asarray(new, self.dtype))

    def to(self, backend: str | Backend) -> Sequential:
        """Move the parameters to another backend ("numpy", "cupy" or a Backend), in place; returns self.
        Optimizer state is not moved: create the optimizer after moving the model."""
        weights = self.get_weights()
        self._build(get_backend(backend))
        self.set_weights(weights)
        return self

    def train(self, mode: bool = True) -> None:
        """Training mode (Dropout active) or inference mode."""
        for layer in self.layers:
            layer.training = mode

    # ---- forward and backward ------------------------------------------------------
    def forward(self, x: Array, *, logits: bool = False) -> Array:
        """The outputs (N, out_features) of a (N, in_features) batch already on the backend, unchecked.

        With ``logits``, a final Softmax is skipped. The result is a buffer of the last layer,
        overwritten by the next forward: copy it to keep it.
        """
        stop = len(self.layers) - 1 if logits and isinstance(self.layers[-1], Softmax) else len(self.layers)
        for layer in self.layers[:stop]:
            x = layer.forward(x)
        self._ran = stop
        return x

    def backward(self, grad: Array) -> None:
        """Backpropagate dL/doutputs (N, out) of the last forward; every layer's ``grads`` then
        hold the gradients of its parameters."""
        for layer in reversed(self.layers[self._first_trainable : self._ran]):
            grad = layer.backward(grad)

    # ---- training (nnx.training) --------------------------------------------------------
    def train_step(self, x: Any, y: Any, loss: Loss, optimizer: Optimizer) -> float:
        """One checked gradient step on a batch; returns the batch's mean loss. See nnx.training."""
        return training.checked_step(self, x, y, loss, optimizer)

    def fit(self, x: Any, y: Any, *, loss: Loss, optimizer: Optimizer, epochs: int, **settings: Any) -> History:
        """Train for ``epochs`` epochs. The other settings (batch_size=32, shuffle, validation_data,
        schedule, callbacks, initial_epoch, check_every, verbose, distributed) and their defaults
        are nnx.training.fit's, written there once."""
        return training.fit(self, x, y, loss=loss, optimizer=optimizer, epochs=epochs, **settings)

    def evaluate(self, x: Any, y: Any, loss: Loss | None = None, batch_size: int = 1024) -> dict[str, float]:
        """Mean loss and the loss's metric (accuracy, or mae for MeanSquaredError) on (x, y) in
        inference mode; ``loss`` defaults to the task's (SparseCategoricalCrossentropy,
        BinaryCrossentropy or MeanSquaredError). See nnx.evaluation.evaluate."""
        return evaluation.evaluate(self, x, y, loss or default_loss(self.task), batch_size)

    # ---- inference -------------------------------------------------------------------------
    def predict(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """The predictions (N, out_features) as a NumPy array, for x (N, in_features), by ``task``:
        class probabilities (the softmax of the outputs, whether or not the model ends in a
        Softmax), per-output probabilities (the sigmoid of the logits), or the outputs themselves."""
        batch_size = check_positive_int(batch_size, "batch_size")
        x = check_features(x, self.in_features)
        head: Layer | None = {"classification": Softmax(), "binary": Sigmoid()}.get(self.task)
        if head is not None:
            head.build(self.backend, self.dtype, np.random.default_rng(0))
        out = np.empty((x.shape[0], self.out_features), self.dtype)
        for lo in range(0, x.shape[0], batch_size):
            z = self.forward(self.backend.asarray(x[lo : lo + batch_size], self.dtype), logits=head is not None)
            out[lo : lo + batch_size] = self.backend.to_numpy(z if head is None else head.forward(z))
        return out

    def predict_classes(self, x: Any, batch_size: int = 1024) -> np.ndarray:
        """The predicted classes: for a classifier the most probable class of each row, (N,) int64;
        for a binary task 1 where an output's probability is over 0.5, (N, out_features) int64."""
        if self.task == "regression":
            raise ConfigError("predict_classes needs a classification or binary model; this one's task is regression")
        probabilities = self.predict(x, batch_size)
        if self.task == "binary":
            return (probabilities > 0.5).astype(np.int64)
        return probabilities.argmax(axis=1).astype(np.int64)


def default_loss(task: str) -> Loss:
    """The loss that trains a model for ``task``."""
    return {"classification": SparseCategoricalCrossentropy, "binary": BinaryCrossentropy}.get(task, MeanSquaredError)()


__all__ = ["DTYPES", "TASKS", "Sequential", "default_loss"]
