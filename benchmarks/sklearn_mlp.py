"""nnx.sklearn.MLPClassifier against scikit-learn's MLPClassifier, timed side by side in one run.

    python -m benchmarks.sklearn_mlp [OUT.md] [--repeats 3] [--threads N] [--rows N] [--digits-seeds N]

Fashion-MNIST (``nnx.datasets.load_fashion_mnist()``: 60,000 training and 10,000 test images,
float32 in [0, 1], the same arrays for both) with ``hidden_layer_sizes=(100,)``, ``max_iter=10``,
``random_state=0`` and every other parameter at its default: the fit of each, timed, and its test
accuracy, the pair repeated in alternating order. Then the digits pipeline StandardScaler →
MLPClassifier(random_state=r) under 3-fold ``cross_val_score`` for both, r = 0 .. N − 1 (N from
``--digits-seeds``, 1 by default). Prints a Markdown report (and writes it to OUT.md when given).
``--threads`` limits the BLAS threads of both.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import cross_val_score
from sklearn.neural_network import MLPClassifier as SklearnMLP
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits

import nnx
from benchmarks.common import machine, report_header, write_report
from nnx.sklearn import MLPClassifier as NnxMLP

ESTIMATORS = {"nnx": NnxMLP, "scikit-learn": SklearnMLP}
SETTINGS = {"hidden_layer_sizes": (100,), "max_iter": 10, "random_state": 0}
TARGET_SPEEDUP, TARGET_ACCURACY_GAP = 2.5, 0.005  # the bar: this much faster, at most this much less accurate


def fit_pairs(data: tuple[np.ndarray, ...], repeats: int, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Fit both estimators ``repeats`` times each, alternating which goes first; one row per fit:
    run, estimator, fit seconds, test accuracy."""
    x, y, x_test, y_test = data
    rows = []
    for run in range(repeats):
        order = list(ESTIMATORS) if run % 2 == 0 else list(reversed(ESTIMATORS))
        for name in order:
            estimator = ESTIMATORS[name](**settings)
            start = time.perf_counter()
            estimator.fit(x, y)
            seconds = time.perf_counter() - start
            rows.append({"run": run + 1, "name": name, "seconds": seconds, "accuracy": estimator.score(x_test, y_test)})
    return rows


def fit_table(rows: list[dict[str, Any]]) -> list[str]:
    """The fits as a Markdown table, then the medians, their ratio and the accuracy difference."""
    lines = ["| run | estimator | fit s | test accuracy |", "|---|---|---|---|"]
    lines += [f"| {r['run']} | {r['name']} | {r['seconds']:.2f} | {r['accuracy']:.4f} |" for r in rows]
    median = {name: statistics.median(r["seconds"] for r in rows if r["name"] == name) for name in ESTIMATORS}
    accuracy = {name: next(r["accuracy"] for r in rows if r["name"] == name) for name in ESTIMATORS}
    speedup = median["scikit-learn"] / median["nnx"]
    gap = accuracy["scikit-learn"] - accuracy["nnx"]
    met = speedup >= TARGET_SPEEDUP and gap <= TARGET_ACCURACY_GAP
    lines += [
        "",
        f"Median fit: nnx {median['nnx']:.2f} s, scikit-learn {median['scikit-learn']:.2f} s: nnx is "
        f"{speedup:.2f}× as fast; test accuracy nnx {accuracy['nnx']:.4f}, scikit-learn "
        f"{accuracy['scikit-learn']:.4f} ({-gap * 100:+.2f} points). The issue's bar (≥ {TARGET_SPEEDUP}×, at most "
        f"{TARGET_ACCURACY_GAP * 100:.1f} points less accurate): {'met' if met else 'not met'}.",
    ]
    return lines


def digits_table(x: np.ndarray, y: np.ndarray, seeds: int) -> list[str]:
    """3-fold cross_val_score of StandardScaler → MLPClassifier(random_state=r), for both, for
    r = 0 .. seeds − 1: the folds of r = 0, and the mean over the random states."""
    lines = [
        f"| estimator | fold accuracies (random_state=0) | mean | mean over random states 0–{seeds - 1} | seconds |",
        "|---|---|---|---|---|",
    ]
    for name, estimator in ESTIMATORS.items():
        start = time.perf_counter()
        scores = [
            cross_val_score(make_pipeline(StandardScaler(), estimator(random_state=r)), x, y, cv=3)
            for r in range(seeds)
        ]
        seconds = time.perf_counter() - start
        folds = ", ".join(f"{s:.4f}" for s in scores[0])
        overall = float(np.mean([s.mean() for s in scores]))
        lines.append(f"| {name} | {folds} | {scores[0].mean():.4f} | {overall:.4f} | {seconds:.1f} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sklearn_mlp", description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", help="also write the report to this Markdown file")
    parser.add_argument("--repeats", type=int, default=3, help="fits of each estimator (default 3)")
    parser.add_argument("--threads", type=int, help="BLAS threads of both (default: the BLAS's own)")
    parser.add_argument("--rows", type=int, help="train on the first ROWS images only (a smoke test)")
    parser.add_argument("--digits-seeds", type=int, default=1, help="random states of the digits pipeline (default 1)")
    args = parser.parse_args(argv)
    (x, y), (x_test, y_test) = nnx.datasets.load_fashion_mnist()
    x, y = x[: args.rows], y[: args.rows]
    digits = load_digits(return_X_y=True)
    info = {**machine(), "scikit-learn": sklearn.__version__, "BLAS threads": args.threads or "the BLAS's own"}
    with threadpool_limits(args.threads), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # max_iter=10 stops before convergence, as asked
        fits = fit_table(fit_pairs((x, y, x_test, y_test), args.repeats, SETTINGS))
        cv = digits_table(*digits, args.digits_seeds)
    command = " ".join(["python -m benchmarks.sklearn_mlp", *(sys.argv[1:] if argv is None else argv)])
    lines = [
        *report_header("nnx.sklearn against scikit-learn's MLPClassifier", info, command),
        f"Fashion-MNIST, {len(x):,} training and {len(x_test):,} test images, {SETTINGS}, other parameters at their "
        "defaults (nnx trains in float32, scikit-learn in the inputs' float32):",
        "",
        *fits,
        "",
        "Digits (1,797 images), StandardScaler → MLPClassifier(random_state=r), 3-fold cross_val_score:",
        "",
        *cv,
    ]
    if args.out:
        write_report(lines, Path(args.out).parent, Path(args.out).name)
    else:
        print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
