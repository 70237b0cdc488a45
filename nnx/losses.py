"""Losses: ``value, grad = loss(outputs, targets)``, the mean over the batch and its gradient.

The protocol that training uses (``Loss``):

    compute(backend, outputs, targets) -> (value, grad)   unchecked, on device arrays: the mean
                                                          loss as a 0-d array, dL/doutputs in a
                                                          buffer the loss reuses
    check_targets(targets, outputs_shape, name) -> host   validated targets, in target_dtype
    task                                                  what the outputs predict, for
                                                          Sequential.predict: "classification"
                                                          (softmax), "binary" (sigmoid) or
                                                          "regression" (the outputs themselves)
    metric, metric_sum(backend, outputs, targets)         the name ("accuracy", "mae" or None)
                                                          and the batch's sum over rows of a
                                                          second number fit / evaluate report
    takes_logits                                          True: a final Softmax of the model is
                                                          skipped, the loss applies it (fused)

Softmax with sparse categorical cross-entropy, fused into one backend kernel. For logits
Z (N, C) and integer labels y (N,):

    loss = mean_i( logsumexp(Z_i) − Z_i,y_i )        (row max subtracted first)
    dZ   = ( softmax(Z) − onehot(y) ) / N            (in the same pass)

log(softmax) is never formed in two steps, so large logits stay finite. With label smoothing ε
(PyTorch's meaning) the targets are (1 − ε)·onehot(y) + ε/C.

For regression and binary targets, shaped like the outputs (N, K), each the mean over all N·K
entries as PyTorch's reduction="mean":

    MeanSquaredError      loss = mean( (outputs − targets)² ),  d = 2·(outputs − targets)/(N·K)
    BinaryCrossentropy    on logits z, targets t in [0, 1]:
                          loss = mean( max(z, 0) − z·t + log(1 + exp(−|z|)) ),  dz = (sigmoid(z) − t)/(N·K)
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from backends import Backend, backend_for
from backends.contract import Array
from nnx.buffers import BufferCache
from nnx.checks import as_array, check_labels, check_logits
from nnx.errors import ConfigError, DataError, DTypeError, ShapeError


class Loss:
    """Base class of losses; subclasses implement ``compute`` and ``check_targets``."""

    task = "regression"
    metric: str | None = None
    takes_logits = False
    target_dtype: Any = None  # None: the outputs' dtype
    outputs_name = "outputs"  # in error messages

    def __init__(self) -> None:
        self._buffers = BufferCache()

    def compute(self, backend: Backend, outputs: Array, targets: Array) -> tuple[Array, Array]:
        """(mean loss as a 0-d device array, dL/doutputs) for checked device arrays."""
        raise NotImplementedError

    def check_targets(self, targets: Any, outputs_shape: tuple[int, int], name: str = "targets") -> np.ndarray:
        """``targets`` as a host array of ``target_dtype`` for outputs of this shape; raises an NNXError."""
        raise NotImplementedError

    def metric_sum(self, backend: Backend, outputs: Array, targets: Array) -> Array:
        """The sum over rows of the metric of each row, a 0-d float64 device array (0 without a metric)."""
        return backend.zeros((), np.float64)

    def grad_buffer(self, backend: Backend, outputs: Array) -> Array:
        """The reused array that ``compute`` writes the gradient into."""
        return self.scratch("grad", backend, outputs.shape, outputs.dtype)

    def scratch(self, name: str, backend: Backend, shape: tuple[int, ...], dtype: Any) -> Array:
        """A reused array of this shape and dtype, kept under ``name``."""
        return self._buffers.get(name, (backend.name, shape, dtype), lambda: backend.empty(shape, dtype))

    def __call__(self, outputs: Array, targets: Any, backend: Backend | None = None) -> tuple[float, Array]:
        """outputs: (N, K) float array (NumPy or CuPy); targets as ``check_targets`` takes them.

        Returns (mean loss as a Python float, dL/doutputs (N, K)), computed by ``backend``
        (default: the one of the outputs' array module).
        """
        outputs = check_logits(outputs, self.outputs_name)
        backend = backend or backend_for(outputs)
        targets = self.check_targets(targets, outputs.shape)
        value, grad = self.compute(backend, outputs, backend.asarray(targets, self.target_dtype or outputs.dtype))
        return float(value), grad

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SparseCategoricalCrossentropy(Loss):
    """Softmax and cross-entropy on logits (N, C) with integer labels (N,) in [0, C), fused.

    label_smoothing: ε in [0, 1]; the target of a row becomes (1 − ε)·onehot(label) + ε/C.
    """

    task = "classification"
    metric = "accuracy"
    takes_logits = True
    target_dtype = np.int64
    outputs_name = "logits"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        ok = isinstance(label_smoothing, numbers.Real) and not isinstance(label_smoothing, bool)
        if not ok or not 0 <= label_smoothing <= 1:
            raise ConfigError(f"label_smoothing must be a number in [0, 1]; got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)

    def compute(self, backend: Backend, outputs: Array, targets: Array) -> tuple[Array, Array]:
        n, c = outputs.shape
        grad = self.grad_buffer(backend, outputs)
        key = (backend.name, n, c, outputs.dtype)
        if self.label_smoothing:
            ws = self._buffers.get("smoothed", key, lambda: backend.smoothed_loss_workspace(n, c, outputs.dtype))
            return backend.softmax_cross_entropy_smoothed(outputs, targets, grad, self.label_smoothing, ws), grad
        workspace = self._buffers.get("workspace", key, lambda: backend.loss_workspace(n, c, outputs.dtype))
        return backend.softmax_cross_entropy(outputs, targets, grad, workspace), grad

    def metric_sum(self, backend: Backend, outputs: Array, targets: Array) -> Array:
        return backend.count_correct(outputs, targets).astype(np.float64)

    def check_targets(self, targets: Any, outputs_shape: tuple[int, int], name: str = "labels") -> np.ndarray:
        return check_labels(targets, outputs_shape[1], outputs_shape[0], name)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({f'label_smoothing={self.label_smoothing}' if self.label_smoothing else ''})"


def check_float_targets(targets: Any, outputs_shape: tuple[int, int], name: str, kinds: str, loss: str) -> Any:
    """targets: finite numbers of a dtype kind in ``kinds``, shaped like the outputs; returns them as an array."""
    targets = as_array(targets, name)
    if targets.dtype.kind not in kinds:
        hint = " (integer class labels go with SparseCategoricalCrossentropy)" if targets.dtype.kind in "iu" else ""
        raise DTypeError(f"{name} must hold float targets for {loss}; got dtype {targets.dtype}{hint}")
    shape = tuple(outputs_shape)
    if tuple(targets.shape) != shape:
        hint = f" (a column: reshape to {shape})" if targets.shape == shape[:1] and shape[1] == 1 else ""
        raise ShapeError(f"{name} must have shape {shape}, like the outputs; got {tuple(targets.shape)}{hint}")
    if targets.dtype.kind == "f" and not bool(backend_for(targets).xp.isfinite(targets).all()):
        raise DataError(f"{name} must be finite; got NaN or Inf")
    return targets


class MeanSquaredError(Loss):
    """mean((outputs − targets)²) over all N·K entries; float targets shaped like the outputs (N, K).
    Its metric is the mean absolute error, "mae": mean(|outputs − targets|)."""

    metric = "mae"

    def metric_sum(self, backend: Backend, outputs: Array, targets: Array) -> Array:
        difference = self.scratch("metric", backend, outputs.shape, outputs.dtype)
        backend.xp.subtract(outputs, targets, out=difference)
        return backend.xp.abs(difference, out=difference).sum(dtype=np.float64) / outputs.shape[1]

    def compute(self, backend: Backend, outputs: Array, targets: Array) -> tuple[Array, Array]:
        grad = self.grad_buffer(backend, outputs)
        return backend.mean_squared_error(outputs, targets, grad), grad

    def check_targets(self, targets: Any, outputs_shape: tuple[int, int], name: str = "targets") -> Any:
        return check_float_targets(targets, outputs_shape, name, "f", type(self).__name__)


class BinaryCrossentropy(Loss):
    """Sigmoid and binary cross-entropy on logits (N, K), fused and stable for any logit; targets
    in [0, 1] shaped like the logits (probabilities, or 0/1 labels of any number type). End the
    network with logits, not a Sigmoid. Its metric is the accuracy of (logit > 0) against
    (target > 0.5), over all N·K entries."""

    task = "binary"
    metric = "accuracy"
    takes_logits = True
    outputs_name = "logits"

    def compute(self, backend: Backend, outputs: Array, targets: Array) -> tuple[Array, Array]:
        grad = self.grad_buffer(backend, outputs)
        scratch = self.scratch("scratch", backend, outputs.shape, outputs.dtype)
        return backend.binary_cross_entropy(outputs, targets, grad, scratch), grad

    def metric_sum(self, backend: Backend, outputs: Array, targets: Array) -> Array:
        xp = backend.xp
        predicted, actual = (self.scratch(name, backend, outputs.shape, bool) for name in ("predicted", "actual"))
        xp.greater(outputs, 0, out=predicted)
        xp.greater(targets, 0.5, out=actual)
        return xp.equal(predicted, actual, out=predicted).sum(dtype=np.float64) / outputs.shape[1]

    def check_targets(self, targets: Any, outputs_shape: tuple[int, int], name: str = "targets") -> Any:
        targets = check_float_targets(targets, outputs_shape, name, "fiub", type(self).__name__)
        if targets.size and (bool((targets < 0).any()) or bool((targets > 1).any())):
            low, high = float(targets.min()), float(targets.max())
            raise DataError(f"{name} must hold values in [0, 1]; got values from {low:g} to {high:g}")
        return targets
