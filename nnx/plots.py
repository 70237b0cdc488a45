"""PNG plots of a training run (matplotlib, the optional extra ``nnx[plot]``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def require_matplotlib() -> Any:
    """matplotlib.pyplot on the Agg backend; ImportError with the install command when missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError(
            "plots need matplotlib: pip install matplotlib (or install nnx with its plot extra, "
            "pip install '.[plot]' in nnx's folder)"
        ) from None
    return plt


def plot_history(
    history: Any, folder: str | Path, test: dict[str, float] | None = None, title: str | None = None
) -> list[Path]:
    """Write loss.png and accuracy.png (mae.png for a regression) into ``folder``: training (and
    validation) per epoch, the test result of the final model as a dashed line when ``test`` is
    given, and ``title`` (the data set)."""
    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for metric in ("loss", "accuracy" if history.accuracy else "mae"):
        fig = history_figure(plt, history, metric, test, title)
        path = folder / f"{metric}.png"
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def history_figure(plt: Any, history: Any, metric: str, test: dict[str, float] | None, title: str | None) -> Any:
    """The figure of one metric per epoch (History.epoch: 1, 2, ..., as printed)."""
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    epochs = list(history.epoch)
    ax.plot(epochs, getattr(history, metric), marker=".", label="training")
    if getattr(history, f"val_{metric}"):
        ax.plot(epochs, getattr(history, f"val_{metric}"), marker=".", label="validation")
    if test is not None and metric in test:
        label = f"test, final model: {test[metric]:.4f}"
        ax.axhline(test[metric], color="black", linestyle="--", linewidth=1, label=label)
    ax.set_title(f"{metric} per epoch" + (f": {title}" if title else ""))
    ax.set_xlabel("epoch")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """counts[i, j]: samples of class i predicted as j. (n_classes, n_classes) int64."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(n_classes, n_classes)


def plot_confusion(
    counts: np.ndarray, folder: str | Path, class_names: list[str] | None = None, title: str | None = None
) -> Path:
    """Write confusion.png: the test-set confusion matrix with counts in the cells, and the accuracy
    in the title."""
    plt = require_matplotlib()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    n = counts.shape[0]
    names = class_names or [str(i) for i in range(n)]
    fig, ax = plt.subplots(figsize=(7, 6), dpi=100)
    image = ax.imshow(counts, cmap="Blues")
    fig.colorbar(image, ax=ax)
    ax.set_xticks(range(n), names, rotation=45, ha="right")
    ax.set_yticks(range(n), names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    accuracy = np.trace(counts) / max(int(counts.sum()), 1)
    ax.set_title(f"test-set confusion matrix{': ' + title if title else ''} (accuracy {accuracy:.4f})")
    threshold = counts.max() / 2
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                str(counts[i, j]),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if counts[i, j] > threshold else "black",
            )
    fig.tight_layout()
    path = folder / "confusion.png"
    fig.savefig(path)
    plt.close(fig)
    return path
