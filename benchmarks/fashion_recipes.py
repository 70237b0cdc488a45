"""Recipes for Fashion-MNIST, compared on a validation split (never on the test set).

Each variant is the default recipe (nnx/recipes.py) with some settings changed. It trains on
54,000 of the 60,000 training images and is scored on the 6,000 held out (stratified, fixed),
with the time of its fit. Run from the repository root:

    python benchmarks/fashion_recipes.py [--seeds 0] [--only 'NAME;NAME'] [--out FILE.md]

Prints a Markdown table (validation accuracy and loss of the final model, seconds, and the time
relative to the default recipe's in the same run).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from typing import Any

import nnx
from nnx.recipes import RECIPES, load_dataset, make_model, make_optimizer, make_schedule

VARIANTS: dict[str, dict[str, Any]] = {
    "default": {},
    "label smoothing 0.1": {"label_smoothing": 0.1},
    "ema 0.999": {"ema": 0.999},
    "52 epochs": {"epochs": 52},
    "dropout 0.3, 52 epochs": {"dropout": 0.3, "epochs": 52},
    "lr 2e-3": {"lr": 2e-3},
    "batch 256, lr 2e-3, 52 epochs": {"batch_size": 256, "lr": 2e-3, "epochs": 52},
    "lr 2e-3, dropout 0.3, 52 epochs": {"lr": 2e-3, "dropout": 0.3, "epochs": 52},
    "weight decay 0.05": {"weight_decay": 0.05},
    "1024 wide, 1 hidden": {"hidden": "1024"},
}


def run(name: str, changes: dict[str, Any], seed: int, data: Any) -> dict[str, Any]:
    settings = {**RECIPES["fashion-mnist"], "seed": seed, "dtype": "float32", **changes}
    (x, y), validation, _ = data.splits
    model = make_model(x.shape[1], 10, settings, "numpy")
    start = time.perf_counter()
    history = model.fit(
        x,
        y,
        loss=nnx.SparseCategoricalCrossentropy(settings["label_smoothing"]),
        optimizer=make_optimizer(settings),
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        schedule=make_schedule(settings),
        validation_data=validation,
    )
    seconds = time.perf_counter() - start
    return {
        "name": name,
        "seed": seed,
        "val_accuracy": history.val_accuracy[-1],
        "best_epoch": max(range(len(history.epoch)), key=history.val_accuracy.__getitem__) + 1,
        "val_loss": history.val_loss[-1],
        "train_accuracy": history.accuracy[-1],
        "seconds": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0", help="comma-separated seeds (default: 0)")
    parser.add_argument("--only", help="variant names separated by semicolons (default: all)")
    parser.add_argument("--out", help="also write the table to this Markdown file")
    args = parser.parse_args()
    names = args.only.split(";") if args.only else list(VARIANTS)
    data = load_dataset("fashion-mnist", None, validation=0.1)
    rows = []
    for seed in map(int, args.seeds.split(",")):
        for name in names:
            rows.append(run(name, VARIANTS[name], seed, data))
            r = rows[-1]
            scores = f"val {r['val_accuracy']:.4f} train {r['train_accuracy']:.4f}"
            print(f"{name} seed {seed}: {scores} {r['seconds']:.1f}s", flush=True)
    base = {r["seed"]: r["seconds"] for r in rows if r["name"] == "default"}
    lines = [
        f"Fashion-MNIST recipes on a validation split (54,000 train / 6,000 validation), {date.today()}, "
        f"{platform.machine()} with {os.cpu_count()} cores (`python benchmarks/fashion_recipes.py`)",
        "",
        "| variant | seed | validation accuracy | best epoch | validation loss | training accuracy | seconds "
        "| time ÷ default |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = f"{r['seconds'] / base[r['seed']]:.2f}" if r["seed"] in base else "–"
        lines.append(
            f"| {r['name']} | {r['seed']} | {r['val_accuracy']:.4f} | {r['best_epoch']} | {r['val_loss']:.4f} "
            f"| {r['train_accuracy']:.4f} | {r['seconds']:.1f} | {ratio} |"
        )
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as file:
            file.write(table + "\n")


if __name__ == "__main__":
    main()
