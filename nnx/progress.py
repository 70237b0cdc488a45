"""Progress display for fit: a tqdm bar per epoch on a terminal, one line per epoch elsewhere.

``fit(verbose=1)`` adds a TqdmProgress (on a terminal), ``verbose=2`` a LineProgress; either can also be
passed in ``callbacks``, e.g. ``LineProgress(stream=sys.stderr)``.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from nnx.callbacks import Callback
from nnx.errors import ConfigError


def format_logs(epoch: int, epochs: int, logs: dict[str, float]) -> str:
    names = [f"{prefix}{name}" for prefix in ("", "val_") for name in ("loss", "accuracy", "mae")]
    parts = [f"epoch {epoch + 1}/{epochs}", *(f"{name} {logs[name]:.4f}" for name in names if name in logs)]
    parts.append(format_seconds(logs["seconds"]))
    return "  ".join(parts)


def format_seconds(seconds: float) -> str:
    """ "1.23s", or "4.6ms" under a second (a digits epoch takes a few milliseconds)."""
    if seconds >= 1:
        return f"{seconds:.2f}s"
    ms = seconds * 1000
    return f"{ms:.1f}ms" if ms < 10 else f"{ms:.0f}ms"


class LineProgress(Callback):
    """One line per epoch: loss, accuracy (or mae), validation metrics and time."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def on_train_begin(self, model: Any, epochs: int, n_samples: int) -> None:
        self.epochs = epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        print(format_logs(epoch, self.epochs, logs), file=self.stream, flush=True)


class TqdmProgress(LineProgress):
    """A tqdm bar per epoch with the running loss, accuracy and samples per second.

    fit calls on_progress only every few steps, so the display never forces a device sync per step.
    """

    def on_train_begin(self, model: Any, epochs: int, n_samples: int) -> None:
        super().on_train_begin(model, epochs, n_samples)
        self.n_samples = n_samples

    def on_epoch_begin(self, epoch: int) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=self.n_samples,
            desc=f"epoch {epoch + 1}/{self.epochs}",
            unit="sample",
            file=self.stream,
            leave=False,
            dynamic_ncols=True,
        )
        self.start = time.perf_counter()

    def on_progress(self, epoch: int, seen: int, logs: dict[str, float]) -> None:
        rate = seen / max(time.perf_counter() - self.start, 1e-9)
        shown = {name: f"{value:.4f}" for name, value in logs.items()}
        self.bar.set_postfix(**shown, sps=f"{rate:,.0f}", refresh=False)
        self.bar.update(seen - self.bar.n)

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.bar.close()
        super().on_epoch_end(epoch, logs)

    def on_train_end(self) -> None:
        if getattr(self, "bar", None) is not None:
            self.bar.close()


def progress_callbacks(verbose: int) -> list[Callback]:
    """The progress callback that ``verbose`` asks for (none for 0)."""
    if verbose not in (0, 1, 2) or isinstance(verbose, bool):
        raise ConfigError(f"verbose must be 0 (silent), 1 (a progress bar) or 2 (a line per epoch); got {verbose!r}")
    if verbose == 1 and sys.stdout.isatty():
        return [TqdmProgress()]
    return [LineProgress()] if verbose else []
