"""nnx: a small, fast and trustworthy multilayer perceptron on NumPy or CuPy.

model = nnx.Sequential(nnx.Dense(64, 64), nnx.ReLU(), nnx.Dense(64, 10), seed=0)
history = model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1),
                    epochs=20, batch_size=32, verbose=2)

The names below are imported on first use, so that ``import nnx`` (and the ``nnx`` command's
start, where Ctrl-C must already be answered with one line) does not wait for NumPy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# name -> the module that defines it ("" for the submodules nnx.datasets, nnx.errors and nnx.sklearn;
# nnx.sklearn needs the sklearn extra, so it stays out of __all__ and a star-import never loads it)
_EXPORTS = {
    "Callback": "nnx.callbacks",
    "History": "nnx.history",
    "Dense": "nnx.layers",
    "Dropout": "nnx.layers",
    "Layer": "nnx.layers",
    "ReLU": "nnx.layers",
    "Softmax": "nnx.layers",
    "GELU": "nnx.activations",
    "LeakyReLU": "nnx.activations",
    "Sigmoid": "nnx.activations",
    "Tanh": "nnx.activations",
    "LayerNorm": "nnx.normalization",
    "Loss": "nnx.losses",
    "SparseCategoricalCrossentropy": "nnx.losses",
    "MeanSquaredError": "nnx.losses",
    "BinaryCrossentropy": "nnx.losses",
    "Sequential": "nnx.model",
    "load": "nnx.model_file",
    "save": "nnx.model_file",
    "SGD": "nnx.optimizers",
    "Adam": "nnx.optimizers",
    "AdamW": "nnx.optimizers",
    "ClipGradNorm": "nnx.optimizers",
    "Optimizer": "nnx.optimizers",
    "LineProgress": "nnx.progress",
    "TqdmProgress": "nnx.progress",
    "Cosine": "nnx.schedules",
    "Schedule": "nnx.schedules",
    "StepDecay": "nnx.schedules",
    "UnscaledInputWarning": "nnx.checks",
    "train_step": "nnx.training",
    "export_onnx": "nnx.onnx_export",
    "datasets": "",
    "errors": "",
    "sklearn": "",
}

if TYPE_CHECKING:  # the same names, for type checkers and editors
    from nnx import datasets, errors
    from nnx import sklearn as sklearn  # not in __all__: it needs the sklearn extra
    from nnx.activations import GELU, LeakyReLU, Sigmoid, Tanh
    from nnx.callbacks import Callback
    from nnx.checks import UnscaledInputWarning
    from nnx.history import History
    from nnx.layers import Dense, Dropout, Layer, ReLU, Softmax
    from nnx.losses import BinaryCrossentropy, Loss, MeanSquaredError, SparseCategoricalCrossentropy
    from nnx.model import Sequential
    from nnx.model_file import load, save
    from nnx.normalization import LayerNorm
    from nnx.onnx_export import export_onnx
    from nnx.optimizers import SGD, Adam, AdamW, ClipGradNorm, Optimizer
    from nnx.progress import LineProgress, TqdmProgress
    from nnx.schedules import Cosine, Schedule, StepDecay
    from nnx.training import train_step


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'nnx' has no attribute {name!r}")
    value = importlib.import_module(f"nnx.{name}") if module == "" else getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "GELU",
    "SGD",
    "Adam",
    "AdamW",
    "BinaryCrossentropy",
    "Callback",
    "ClipGradNorm",
    "Cosine",
    "Dense",
    "Dropout",
    "History",
    "Layer",
    "LayerNorm",
    "LeakyReLU",
    "LineProgress",
    "Loss",
    "MeanSquaredError",
    "Optimizer",
    "ReLU",
    "Schedule",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "SparseCategoricalCrossentropy",
    "StepDecay",
    "Tanh",
    "TqdmProgress",
    "UnscaledInputWarning",
    "datasets",
    "errors",
    "export_onnx",
    "load",
    "save",
    "train_step",
]
