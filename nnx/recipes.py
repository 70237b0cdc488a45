"""The command line's recipes: the default settings of each data set, and the data set, model,
optimizer and schedule built from settings (flags over the recipe)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import nnx
from nnx.errors import ConfigError

# The default recipe of each data set; flags override any of its settings.
RECIPES: dict[str, dict[str, Any]] = {
    "digits": dict(
        hidden="64,64",
        epochs=30,
        batch_size=32,
        optimizer="sgd",
        lr=0.1,
        momentum=0.0,
        weight_decay=0.0,
        dropout=0.0,
        schedule="constant",
        warmup=0.0,
        validation=0.0,
    ),
    "fashion-mnist": dict(
        hidden="512,512",
        epochs=40,
        batch_size=128,
        optimizer="adamw",
        lr=1e-3,
        momentum=0.0,
        weight_decay=0.01,
        dropout=0.2,
        schedule="cosine",
        warmup=0.05,
        validation=0.0,
    ),
}
RECIPES["mnist"] = RECIPES["fashion-mnist"]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]


class UsageError(ConfigError):
    """Bad command-line usage: exit code 2."""


def load_dataset(name: str, data_dir: str | None = None, validation: float = 0.0) -> tuple[Any, ...]:
    """A data set by name ("digits", "fashion-mnist", "mnist"), or from PATH: a folder of IDX
    files or an .npz with x_train, y_train, x_test, y_test."""
    if name == "digits":
        return nnx.datasets.load_digits(validation)
    if name == "fashion-mnist":
        return nnx.datasets.load_fashion_mnist(data_dir, validation)
    if name == "mnist":
        return nnx.datasets.load_mnist(data_dir, validation)
    path = Path(name)
    if path.is_dir():
        return nnx.datasets.load_idx_folder(path, validation)
    if path.suffix == ".npz" and path.is_file():
        return nnx.datasets.load_npz(path, validation)
    raise UsageError(
        f"--dataset must be digits, fashion-mnist, mnist, a folder of IDX files or an .npz file; got {name!r}"
    )


def make_optimizer(settings: dict[str, Any]) -> nnx.Optimizer:
    name = settings["optimizer"]
    if name == "sgd":
        return nnx.SGD(
            settings["lr"],
            momentum=settings["momentum"],
            nesterov=settings["momentum"] > 0,
            weight_decay=settings["weight_decay"],
            clip_norm=settings.get("clip_norm"),
        )
    if name in ("adam", "adamw"):
        return nnx.Adam(settings["lr"], weight_decay=settings["weight_decay"], clip_norm=settings.get("clip_norm"))
    raise UsageError(f"--optimizer must be sgd, adam or adamw; got {name!r}")


def make_schedule(settings: dict[str, Any]) -> nnx.Schedule:
    name = settings["schedule"]
    if name == "constant":
        return nnx.Schedule(warmup=settings["warmup"])
    if name == "cosine":
        return nnx.Cosine(warmup=settings["warmup"])
    if name == "step":
        return nnx.StepDecay(every_epochs=max(settings["epochs"] // 3, 1), gamma=0.1, warmup=settings["warmup"])
    raise UsageError(f"--schedule must be constant, cosine or step; got {name!r}")


def make_model(n_features: int, n_classes: int, settings: dict[str, Any], backend: str | None) -> nnx.Sequential:
    try:
        hidden = [int(h) for h in str(settings["hidden"]).split(",") if h.strip()]
    except ValueError:
        raise UsageError(
            f"--hidden must be comma-separated layer widths like 256,256; got {settings['hidden']!r}"
        ) from None
    layers: list[nnx.Layer] = []
    width = n_features
    for h in hidden:
        layers += [nnx.Dense(width, h), nnx.ReLU()]
        if settings["dropout"]:
            layers.append(nnx.Dropout(settings["dropout"]))
        width = h
    layers.append(nnx.Dense(width, n_classes))
    return nnx.Sequential(*layers, backend=backend, seed=settings["seed"], dtype=settings["dtype"])
