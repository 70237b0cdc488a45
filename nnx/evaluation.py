"""Evaluation: the mean loss (and accuracy) of a model on data, in inference mode, in batches (in
data-parallel training, each rank takes its share and the sums are reduced); and what training
shares with it: data checked onto the device, and running out of device memory."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from backends.contract import Array
from nnx.buffers import BufferCache
from nnx.checks import check_features, check_positive_int
from nnx.errors import OutOfDeviceMemory
from nnx.losses import Loss

if TYPE_CHECKING:
    from nnx.model import Sequential


def evaluate(model: Sequential, x: Any, y: Any, loss: Loss, batch_size: int = 1024) -> dict[str, float]:
    """Mean ``loss`` and the loss's metric (accuracy, or "mae" for MeanSquaredError) on (x, y), in inference mode."""
    batch_size = check_positive_int(batch_size, "batch_size")
    with out_of_memory_hint(model, None):
        return evaluate_device(model, *to_device(model, loss, x, y), loss, batch_size)


def evaluate_device(
    model: Sequential, xd: Array, yd: Array, loss: Loss, batch_size: int, distributed: Any = None
) -> dict[str, float]:
    """Metrics on device arrays; with ``distributed``, each rank takes its share of the rows and
    the sums are reduced over the ranks."""
    be = model.backend
    loss_sum = be.zeros((), np.float64)
    metric_sum = be.zeros((), np.float64)
    n = xd.shape[0]
    first, end = distributed.share(0, n) if distributed is not None else (0, n)
    for lo in range(first, end, batch_size):
        xb, yb = xd[lo : min(lo + batch_size, end)], yd[lo : min(lo + batch_size, end)]
        outputs = model.forward(xb, logits=loss.takes_logits)
        value, _ = loss.compute(be, outputs, yb)
        loss_sum += value * xb.shape[0]
        if loss.metric:
            metric_sum += loss.metric_sum(be, outputs, yb)
    sums = [float(loss_sum), float(metric_sum)]
    if distributed is not None:
        sums = distributed.sum(sums)
    metrics = {"loss": sums[0] / n}
    if loss.metric:
        metrics[loss.metric] = sums[1] / n
    return metrics


def to_device(
    model: Sequential, loss: Loss, x: Any, y: Any, names: tuple[str, str] = ("x", "y")
) -> tuple[Array, Array]:
    """x and the targets y, checked (for ``loss``) and on the model's backend."""
    x = check_features(x, model.in_features, names[0])
    y = loss.check_targets(y, (x.shape[0], model.out_features), names[1])
    be = model.backend
    return be.asarray(x, model.dtype), be.asarray(y, loss.target_dtype or model.dtype)


@contextlib.contextmanager
def out_of_memory_hint(model: Sequential, batch_size: int | None, batches: BufferCache | None = None) -> Iterator[None]:
    """Turn a device allocation failure into OutOfDeviceMemory, freeing the step's buffers."""
    try:
        yield
    except MemoryError as exc:
        if isinstance(exc, OutOfDeviceMemory):
            raise
        for layer in model.layers:
            layer.release_buffers()
        if batches is not None:
            batches.clear()
        batch = f"batch_size={batch_size}" if batch_size else "this batch_size"
        raise OutOfDeviceMemory(
            f"out of {model.backend.name} memory with {batch}; try a smaller batch_size "
            f"(the model keeps its weights): {exc}"
        ) from None
