"""Learning-rate schedules: ``factor(step, total_steps, steps_per_epoch)`` multiplies the base lr.

Every schedule takes ``warmup``, a fraction of all steps over which the factor
rises linearly from near 0 to its schedule value. ``fit`` sets ``optimizer.lr``
before every step.
"""

from __future__ import annotations

import math

from nnx.checks import check_fraction, check_positive, check_positive_int


class Schedule:
    """Constant learning rate (after the warm-up)."""

    def __init__(self, warmup: float = 0.0) -> None:
        self.warmup = check_fraction(warmup, "warmup")

    def factor(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        """The multiplier of the base lr for 0-based ``step`` of ``total_steps``."""
        warmup_steps = int(self.warmup * total_steps)
        ramp = (step + 1) / warmup_steps if step < warmup_steps else 1.0
        return ramp * self.shape(step, total_steps, steps_per_epoch)

    def shape(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        return 1.0


class StepDecay(Schedule):
    """Multiply the lr by ``gamma`` every ``every_epochs`` epochs."""

    def __init__(self, every_epochs: int, gamma: float = 0.1, warmup: float = 0.0) -> None:
        super().__init__(warmup)
        self.every_epochs = check_positive_int(every_epochs, "every_epochs")
        self.gamma = check_positive(gamma, "gamma")

    def shape(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        return self.gamma ** (step // (steps_per_epoch * self.every_epochs))


class Cosine(Schedule):
    """Cosine decay from 1 to ``final`` over the steps after the warm-up."""

    def __init__(self, warmup: float = 0.0, final: float = 0.0) -> None:
        super().__init__(warmup)
        self.final = check_fraction(final, "final")

    def shape(self, step: int, total_steps: int, steps_per_epoch: int) -> float:
        start = int(self.warmup * total_steps)
        span = max(total_steps - start, 1)
        progress = min(max(step - start, 0) / span, 1.0)
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress))
