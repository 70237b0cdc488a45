"""Hooks into ``fit``: progress display, checkpoints. Override what you need."""

from __future__ import annotations

from typing import Any


class Callback:
    """fit calls these in order; ``logs`` holds the epoch's metrics (loss, accuracy or mae, val_*, seconds)."""

    def on_train_begin(self, model: Any, epochs: int, n_samples: int) -> None: ...

    def on_epoch_begin(self, epoch: int) -> None: ...

    def on_progress(self, epoch: int, seen: int, logs: dict[str, float]) -> None:
        """Every few steps: samples seen this epoch and the running means of this epoch so far
        ({"loss": ..., and "accuracy" or "mae" where the loss has that metric})."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self) -> None: ...


class LastEpoch(Callback):
    """Remembers the epoch reached, the epochs' logs and, with ``keep_weights``, a host copy of the
    weights after each complete epoch: what an interrupted run can still save (``nnx train --out``)."""

    def __init__(self, keep_weights: bool = True) -> None:
        self.keep_weights = keep_weights
        self.current = self.done = -1  # 0-based indices of the epoch begun and the last one completed
        self.logs: list[dict[str, float]] = []
        self.weights: dict[str, Any] | None = None

    def on_train_begin(self, model: Any, epochs: int, n_samples: int) -> None:
        self.model = model

    def on_epoch_begin(self, epoch: int) -> None:
        self.current = epoch

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.done = epoch
        self.logs.append(dict(logs))
        if self.keep_weights:
            self.weights = self.model.get_weights()
