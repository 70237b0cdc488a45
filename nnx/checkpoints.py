"""Checkpoints: the model, the optimizer's state and the history after every epoch, in one model file.

A checkpoint is an ordinary nnx model file (so ``nnx.load`` reads it) whose
"training" metadata also holds the epoch, the optimizer's step count and the
history, and whose tensors also hold the optimizer's slots as "optimizer.<name>".
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from nnx.callbacks import Callback
from nnx.errors import ModelFileError
from nnx.history import History
from nnx.model import Sequential
from nnx.model_file import model_from, read, save
from nnx.optimizers import Optimizer

CHECKPOINT_NAME = "checkpoint.safetensors"


class Checkpoint(Callback):
    """Save ``folder/checkpoint.safetensors`` atomically at the end of every epoch."""

    def __init__(
        self, folder: str | Path, optimizer: Optimizer, settings: dict[str, Any], history: History | None = None
    ) -> None:
        self.path = Path(folder) / CHECKPOINT_NAME
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.optimizer, self.settings = optimizer, settings
        self.history = History(**dataclasses.asdict(history)) if history else History()  # a copy

    def on_train_begin(self, model: Any, epochs: int, n_samples: int) -> None:
        self.model = model

    def on_epoch_end(self, epoch: int, logs: dict[str, float]) -> None:
        self.history.append(logs)
        be = self.model.backend
        slots = {f"optimizer.{k}": be.to_numpy(v) for k, v in self.optimizer.state_arrays().items()}
        training = {
            "settings": self.settings,
            "epoch": epoch,
            "optimizer_steps": self.optimizer.t,
            "history": dataclasses.asdict(self.history),
        }
        save(self.model, self.path, training=training, extra_tensors=slots)


def resume(
    folder: str | Path, optimizer_for: Any, backend: str | None = None
) -> tuple[Sequential, Optimizer, int, History, dict[str, Any]]:
    """Load the checkpoint in ``folder``: (model, optimizer with its state, next epoch, history, settings).

    optimizer_for(settings) builds the optimizer that the run used.
    """
    path = Path(folder) / CHECKPOINT_NAME
    meta, tensors = read(path)
    model = model_from(meta, tensors, path, backend)
    info = model.training_info
    missing = [k for k in ("settings", "epoch", "optimizer_steps", "history") if k not in info]
    if missing:
        raise ModelFileError(f"{path}: a model file but not a checkpoint: its training metadata lacks {missing}")
    optimizer = optimizer_for(info["settings"])
    slots = {k.removeprefix("optimizer."): v for k, v in tensors.items() if k.startswith("optimizer.")}
    optimizer.load_state(model.backend, slots, int(info["optimizer_steps"]))
    history = History(**info["history"])
    return model, optimizer, int(info["epoch"]) + 1, history, info["settings"]
