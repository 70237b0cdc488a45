"""History: the per-epoch metrics that ``fit`` returns and checkpoints keep."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field


@dataclass
class History:
    """Per-epoch metrics of ``fit``: lists indexed by epoch (val_* empty without validation data;
    accuracy for a loss whose metric is accuracy, mae (mean absolute error) for MeanSquaredError,
    each empty otherwise)."""

    epoch: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    mae: list[float] = field(default_factory=list)
    val_mae: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    def append(self, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            getattr(self, key).append(value)

    def extend(self, other: History) -> None:
        """Append the epochs of ``other`` (a resumed run) to these."""
        for key, values in dataclasses.asdict(other).items():
            getattr(self, key).extend(values)
