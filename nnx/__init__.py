"""nnx: a small, fast and trustworthy multilayer perceptron on NumPy or CuPy.

model = nnx.Sequential(nnx.Dense(64, 64), nnx.ReLU(), nnx.Dense(64, 10), seed=0)
history = model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1),
                    epochs=20, batch_size=32)
"""

from nnx import datasets, errors
from nnx.callbacks import Callback
from nnx.history import History
from nnx.layers import Dense, Dropout, Layer, ReLU, Softmax
from nnx.losses import Loss, SparseCategoricalCrossentropy
from nnx.model import Sequential
from nnx.model_file import load, save
from nnx.optimizers import SGD, Adam, AdamW, ClipGradNorm, Optimizer
from nnx.schedules import Cosine, Schedule, StepDecay
from nnx.training import train_step

__version__ = "0.1.0"

__all__ = [
    "SGD",
    "Adam",
    "AdamW",
    "Callback",
    "ClipGradNorm",
    "Cosine",
    "Dense",
    "Dropout",
    "History",
    "Layer",
    "Loss",
    "Optimizer",
    "ReLU",
    "Schedule",
    "Sequential",
    "Softmax",
    "SparseCategoricalCrossentropy",
    "StepDecay",
    "datasets",
    "errors",
    "load",
    "save",
    "train_step",
]
