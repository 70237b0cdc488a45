"""Softmax with sparse categorical cross-entropy, fused into one backend kernel.

For logits Z (N, C) and integer labels y (N,):

    loss = mean_i( logsumexp(Z_i) − Z_i,y_i )        (row max subtracted first)
    dZ   = ( softmax(Z) − onehot(y) ) / N            (in the same pass)

log(softmax) is never formed in two steps, so large logits stay finite.
"""

from __future__ import annotations

from typing import Any

from backends import Backend, backend_for
from backends.contract import Array
from nnx.buffers import BufferCache
from nnx.checks import check_labels, check_logits


class SparseCategoricalCrossentropy:
    """``value, dlogits = loss(logits, labels)``: the mean loss as a float and dL/dlogits."""

    def __init__(self) -> None:
        self._buffers = BufferCache()

    def compute(self, backend: Backend, logits: Array, labels: Array) -> tuple[Array, Array]:
        """The unchecked hot path: (loss as a 0-d device array, dlogits in a reused buffer)."""
        shape, dtype = logits.shape, logits.dtype
        dlogits, workspace = self._buffers.get(
            "dlogits",
            (backend.name, shape, dtype),
            lambda: (backend.empty(shape, dtype), backend.loss_workspace(*shape, dtype)),
        )
        return backend.softmax_cross_entropy(logits, labels, dlogits, workspace), dlogits

    def __call__(self, logits: Array, labels: Any) -> tuple[float, Array]:
        """logits: (N, C) float array (NumPy or CuPy); labels: (N,) integers in [0, C).

        Returns (mean loss as a Python float, dlogits (N, C) on the logits' backend).
        """
        logits = check_logits(logits)
        backend = backend_for(logits)
        labels = check_labels(labels, logits.shape[1], logits.shape[0], "labels")
        value, dlogits = self.compute(backend, logits, backend.asarray(labels))
        return float(value), dlogits
