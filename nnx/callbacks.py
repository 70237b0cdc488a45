"""Hooks into ``fit``: progress display, checkpoints. Override what you need."""

from __future__ import annotations

from typing import Any


class Callback:
    """fit calls these in order; ``logs`` holds the epoch's metrics (loss, accuracy, val_*, seconds)."""

    def on_train_begin(self, model: Any, epochs: int, n_samples: int) -> None: ...

    def on_epoch_begin(self, epoch: int) -> None: ...

    def on_progress(self, epoch: int, seen: int, loss: float, accuracy: float) -> None:
        """Every few steps: samples seen this epoch and the running mean loss and accuracy."""

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None: ...

    def on_train_end(self) -> None: ...
