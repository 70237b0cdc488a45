"""The command line's recipes: the default settings of each data set, and the data set, model,
optimizer and schedule built from settings (flags over the recipe)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, NamedTuple

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
        label_smoothing=0.0,
        ema=0.0,
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
        label_smoothing=0.0,
        ema=0.0,
    ),
}
RECIPES["mnist"] = RECIPES["fashion-mnist"]
RECIPES["regression"] = {
    **RECIPES["fashion-mnist"],
    **dict(hidden="128,128", epochs=100, batch_size=32, weight_decay=0.0, dropout=0.0),
}
PATH_RECIPE = "fashion-mnist"  # the recipe of a data set given by PATH, unless --recipe names another
TASKS = ("classification", "regression")  # of nnx train
IDX_DATASETS = ("fashion-mnist", "mnist")  # the data sets read from a data folder
FLAGS = {  # recipe setting -> its flag
    "hidden": "--hidden",
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "optimizer": "--optimizer",
    "lr": "--lr",
    "momentum": "--momentum",
    "weight_decay": "--weight-decay",
    "dropout": "--dropout",
    "schedule": "--schedule",
    "warmup": "--warmup",
    "validation": "--validation",
    "label_smoothing": "--label-smoothing",
    "ema": "--ema",
}


class UsageError(ConfigError):
    """Bad command-line usage: exit code 2."""


def recipe_table() -> str:
    """The recipes as a table of flags and defaults, for ``nnx train --help``."""
    names = ["digits", "fashion-mnist", "regression"]
    header = ["", "digits", "fashion-mnist, mnist, PATH", "regression"]
    rows = [header] + [[flag, *(str(RECIPES[n][key]) for n in names)] for key, flag in FLAGS.items()]
    width = [max(len(row[k]) for row in rows) for k in range(len(header))]
    lines = ("  " + "  ".join(f"{cell:<{w}}" for cell, w in zip(row, width, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)


def choose_recipe(dataset: str, recipe: str | None, task: str = "classification") -> tuple[str, str]:
    """(recipe name, why it applies) for a data set, the --recipe flag (None: the default) and the task."""
    if recipe is not None:
        return recipe, "chosen with --recipe"
    if task == "regression":
        return "regression", "the default for regression"
    if dataset in RECIPES:
        return dataset, "the data set's own"
    return PATH_RECIPE, "the default for a data set given by PATH; --recipe digits suits small inputs like 8×8 images"


def new_settings(
    flags: dict[str, Any], dataset: str, recipe: str | None, data_dir: str | None, task: str = "classification"
) -> tuple[dict, str]:
    """(settings, a line that says where they come from): the recipe (``recipe``, else the data
    set's own, or the regression recipe) under the flags that were given (not None)."""
    name, why = choose_recipe(dataset, recipe, task)
    settings = {**RECIPES[name], "seed": 0, "dtype": "float32", "clip_norm": None}
    settings.update({key: value for key, value in flags.items() if value is not None})
    if dataset not in RECIPES and Path(dataset).exists():
        dataset = str(Path(dataset).absolute())  # so that evaluate finds it from another folder
    settings.update(dataset=dataset, data_dir=data_dir, recipe=name, task=task)
    given = [FLAGS.get(key, "--" + key.replace("_", "-")) for key, value in flags.items() if value is not None]
    return settings, f"recipe {name} ({why}){'; set by flags: ' + ', '.join(given) if given else ''}"


def resumed_settings(saved: dict[str, Any], flags: dict[str, Any], data_dir: str | None) -> dict[str, Any]:
    """The settings of a checkpoint's run; of the flags only --epochs (and --data-dir) may change them."""
    changed = [
        f"--{key.replace('_', '-')} {value} (the run's: {saved.get(key)})"
        for key, value in flags.items()
        if value is not None and key != "epochs" and value != saved.get(key)
    ]
    if changed:
        raise UsageError(f"--resume continues the run as it was set up; only --epochs may change: {', '.join(changed)}")
    epochs = flags.get("epochs") or saved["epochs"]
    return {**saved, "epochs": epochs, "data_dir": data_dir or saved.get("data_dir")}


class Data(NamedTuple):
    """A loaded data set: its splits (train[, validation], test), where it came from, its class names."""

    splits: tuple[Any, ...]
    source: str
    class_names: list[str] | None


def load_dataset(name: str, data_dir: str | None = None, validation: float = 0.0) -> Data:
    """A data set by name ("digits", "fashion-mnist", "mnist"), or from PATH: a folder of IDX
    files or an .npz with x_train, y_train, x_test, y_test (and optionally class_names).

    data_dir: the folder of fashion-mnist or mnist (the only place looked in); a UsageError for
    the other data sets, which it cannot apply to.
    """
    if data_dir is not None and name not in IDX_DATASETS:
        what = "the digits are embedded in nnx" if name == "digits" else "PATH is the data set itself"
        raise UsageError(f"--data-dir applies to --dataset fashion-mnist or mnist only ({what}); got {name!r}")
    if name == "digits":
        return Data(nnx.datasets.load_digits(validation), "embedded in nnx", nnx.datasets.class_names(name))
    if name in IDX_DATASETS:
        folder = nnx.datasets.find_idx_dir(name, data_dir)
        return Data(nnx.datasets.load_idx_folder(folder, validation), str(folder), nnx.datasets.class_names(name))
    path = Path(name)
    if path.is_dir():
        return Data(nnx.datasets.load_idx_folder(path, validation), str(path), None)
    if path.suffix == ".npz" and path.is_file():
        return Data(nnx.datasets.load_npz(path, validation), str(path), nnx.datasets.class_names(path))
    missing = "" if path.exists() else " (no such file or folder)"
    raise UsageError(
        f"--dataset must be digits, fashion-mnist, mnist, a folder of IDX files or an .npz file; got {name!r}{missing}"
    )


def choose_task(flag: str | None, y_train: Any) -> tuple[str, str]:
    """(task, why) from --task (None: inferred from the training targets' dtype)."""
    if flag == "classification" and y_train.dtype.kind == "f":
        raise UsageError(
            f"--task classification needs integer class labels; y_train holds {y_train.dtype} targets "
            "(--task regression fits them)"
        )
    if flag is not None:
        return flag, "--task"
    if y_train.dtype.kind == "f":
        return "regression", f"inferred from y_train's {y_train.dtype} targets"
    return "classification", "inferred from y_train's integer labels"


def parse_hidden(text: str) -> list[int]:
    """Hidden widths from "256,256" (an empty text: no hidden layer); ValueError naming what is wrong."""
    if not str(text).strip():
        return []
    parts = [part.strip() for part in str(text).split(",")]
    if any(not part.isdigit() or int(part) < 1 for part in parts):
        raise ValueError(f"must be comma-separated layer widths >= 1 like 256,256; got {text!r}")
    return [int(part) for part in parts]


def make_optimizer(settings: dict[str, Any]) -> nnx.Optimizer:
    name, lr, decay = settings["optimizer"], settings["lr"], settings["weight_decay"]
    common = {"clip_norm": settings.get("clip_norm"), "ema": settings.get("ema") or None}  # ema 0: none
    if name == "sgd":
        momentum = settings["momentum"]
        return nnx.SGD(lr, momentum=momentum, nesterov=momentum > 0, weight_decay=decay, **common)
    if name == "adam":
        return nnx.Adam(lr, weight_decay=decay, **common)
    if name == "adamw":
        return nnx.AdamW(lr, weight_decay=decay, **common)
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
        hidden = parse_hidden(settings["hidden"])
    except ValueError as exc:
        raise UsageError(f"--hidden {exc}") from None
    layers: list[nnx.Layer] = []
    width = n_features
    for h in hidden:
        layers += [nnx.Dense(width, h), nnx.ReLU()]
        if settings["dropout"]:
            layers.append(nnx.Dropout(settings["dropout"]))
        width = h
    layers.append(nnx.Dense(width, n_classes))
    return nnx.Sequential(*layers, backend=backend, seed=settings["seed"], dtype=settings["dtype"])


# ---- flag values: checked as argparse types, so a bad one is a usage error (exit 2) naming the flag ----


def _number(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number; got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number; got {text!r}")
    return value


def positive_int(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1; got {text!r}")
    return int(text)


def natural_int(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"must be an integer >= 0; got {text!r}")
    return int(text)


def positive(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0; got {text!r}")
    return value


def non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0; got {text!r}")
    return value


def fraction(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1); got {text!r}")
    return value


def hidden_widths(text: str) -> str:
    try:
        parse_hidden(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text
