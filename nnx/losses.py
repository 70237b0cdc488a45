"""Losses: ``value, grad = loss(outputs, targets)``, the mean over the batch and its gradient.

The protocol that training uses (``Loss``):

    compute(backend, outputs, targets) -> (value, grad)   unchecked, on device arrays: the mean
                                                          loss as a 0-d array, dL/doutputs in a
                                                          buffer the loss reuses
    check_targets(targets, outputs_shape, name) -> host   validated targets, in target_dtype
    classification                                        True: targets are class labels, and
                                                          fit / evaluate also report accuracy
    takes_logits                                          True: a final Softmax of the model is
                                                          skipped, the loss applies it (fused)

Softmax with sparse categorical cross-entropy, fused into one backend kernel. For logits
Z (N, C) and integer labels y (N,):

    loss = mean_i( logsumexp(Z_i) − Z_i,y_i )        (row max subtracted first)
    dZ   = ( softmax(Z) − onehot(y) ) / N            (in the same pass)

log(softmax) is never formed in two steps, so large logits stay finite.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from backends import Backend, backend_for
from backends.contract import Array
from nnx.buffers import BufferCache
from nnx.checks import check_labels, check_logits


class Loss:
    """Base class of losses; subclasses implement ``compute`` and ``check_targets``."""

    classification = False
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

    def grad_buffer(self, backend: Backend, outputs: Array) -> Array:
        """The reused array that ``compute`` writes the gradient into."""
        shape, dtype = outputs.shape, outputs.dtype
        return self._buffers.get("grad", (backend.name, shape, dtype), lambda: backend.empty(shape, dtype))

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
    """Softmax and cross-entropy on logits (N, C) with integer labels (N,) in [0, C), fused."""

    classification = True
    takes_logits = True
    target_dtype = np.int64
    outputs_name = "logits"

    def compute(self, backend: Backend, outputs: Array, targets: Array) -> tuple[Array, Array]:
        n, c = outputs.shape
        grad = self.grad_buffer(backend, outputs)
        workspace = self._buffers.get(
            "workspace", (backend.name, n, c, outputs.dtype), lambda: backend.loss_workspace(n, c, outputs.dtype)
        )
        return backend.softmax_cross_entropy(outputs, targets, grad, workspace), grad

    def check_targets(self, targets: Any, outputs_shape: tuple[int, int], name: str = "labels") -> np.ndarray:
        return check_labels(targets, outputs_shape[1], outputs_shape[0], name)
