"""The ``nnx evaluate``, ``nnx predict`` and ``nnx info`` commands."""

from __future__ import annotations

import argparse
import math
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nnx  # the package's names load on first use: this costs no NumPy import
from nnx.cli_train import load_data

if TYPE_CHECKING:
    import numpy as np


def cmd_evaluate(args: argparse.Namespace) -> int:
    from nnx.errors import ConfigError
    from nnx.recipes import UsageError

    model = nnx.load(args.model, args.backend)
    recorded = model.training_info.get("settings", {}) if isinstance(model.training_info, dict) else {}
    dataset = args.dataset or recorded.get("dataset")
    if not dataset:
        raise UsageError(f"{args.model} records no data set (nnx train writes it); give --dataset")
    data_dir = args.data_dir
    if data_dir is None and dataset == recorded.get("dataset"):
        data_dir = recorded.get("data_dir")
    data = load_data(dataset, data_dir)
    *_, (x_test, y_test) = data.splits
    if x_test.shape[1] != model.in_features:
        raise ConfigError(
            f"{args.model} takes {model.in_features} features per sample; the data set {dataset} has {x_test.shape[1]}"
        )
    regression = model.task == "regression"
    if regression:
        y_test = y_test.reshape(len(y_test), -1).astype(model.dtype)
    result = model.evaluate(x_test, y_test)
    origin = "recorded in the model file" if not args.dataset else "--dataset"
    metric = "mae" if regression else "accuracy"
    print(
        f"loss {result['loss']:.4f}  {metric} {result[metric]:.4f}  ({len(y_test)} test samples of {dataset}, {origin})"
    )
    if regression:
        return 0
    predicted = model.predict_classes(x_test)
    names = _class_names(model)
    width = max(12, *map(len, names))
    print(f"{'class':<{width}} {'samples':>8} {'precision':>9} {'recall':>7}")
    for c, name in enumerate(names):
        true, pred = y_test == c, predicted == c
        hits = int((true & pred).sum())
        precision = hits / pred.sum() if pred.any() else float("nan")
        recall = hits / true.sum() if true.any() else float("nan")
        print(f"{name:<{width}} {int(true.sum()):>8} {precision:>9.4f} {recall:>7.4f}")
    return 0


def _class_names(model: Any) -> list[str]:
    names = model.class_names
    return list(names) if names else [str(c) for c in range(model.n_classes)]


def read_inputs(path: Path, n_features: int) -> tuple[list[str], np.ndarray]:
    """(names, x) from an .npy of (N, features) or (N, h, w), a PNG image or a folder of them.

    PNGs become grayscale in [0, 1] (value / 255); their pixel count must be the model's features.
    """
    import numpy as np

    from nnx.errors import ConfigError
    from nnx.recipes import UsageError

    if not path.exists():
        raise UsageError(f"INPUT {path} does not exist")
    if path.is_dir() or path.suffix.lower() == ".png":
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".png") if path.is_dir() else [path]
        if not files:
            raise UsageError(f"INPUT folder {path} holds no .png files")
        try:
            from PIL import Image
        except ImportError:
            raise ImportError(
                "reading PNG images needs Pillow: pip install pillow (or install nnx with its plot extra, "
                "pip install '.[plot]' in nnx's folder)"
            ) from None
        images = [np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files]
        for f, image in zip(files, images, strict=True):
            if image.size != n_features:
                side = math.isqrt(n_features)
                size = f"{side}×{side}" if side * side == n_features else f"{n_features}-pixel"
                raise ConfigError(
                    f"the model takes {size} grayscale images ({n_features} features); "
                    f"{f} is {image.shape[1]}×{image.shape[0]}"
                )
        return [f.name for f in files], np.stack([im.reshape(-1) for im in images])
    if path.suffix != ".npy":
        raise UsageError(f"INPUT must be an .npy file, a .png image or a folder of them; got {path}")
    x = np.load(path, allow_pickle=False)
    x = x.reshape(len(x), -1) if x.ndim > 2 else x
    if x.ndim != 2 or x.shape[1] != n_features:
        raise ConfigError(f"INPUT {path} must hold samples of {n_features} features (the model's); got shape {x.shape}")
    from nnx.checks import unscaled

    why = unscaled(x) if x.dtype.kind in "iuf" and x.size else None
    if why is not None:
        warnings.warn(f"INPUT {path} looks unscaled: {why}; nnx train's models take inputs in [0, 1]", stacklevel=1)
    return [str(i) for i in range(len(x))], x


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io

    model = nnx.load(args.model, args.backend)
    names, x = read_inputs(Path(args.input), model.in_features)
    predictions = model.predict(x)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    if model.task == "regression":  # the outputs themselves: output0, output1, ...
        writer.writerow(["input", *(f"output{k}" for k in range(predictions.shape[1]))])
        writer.writerows([name, *(f"{v:.6g}" for v in row)] for name, row in zip(names, predictions, strict=True))
    else:
        _write_classes(writer, model, names, predictions, args.probabilities)
    if args.out:
        from nnx.files import atomic_write

        atomic_write(args.out, buffer.getvalue().encode())
        print(f"wrote {len(names)} predictions to {args.out}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0


def _write_classes(writer: Any, model: Any, names: list[str], probs: np.ndarray, every: bool) -> None:
    """Rows of input, class, name, probability (and p0, p1, ... with ``every``)."""
    labels = _class_names(model)
    writer.writerow(["input", "class", "name", "probability", *(f"p{k}" for k in range(probs.shape[1]) if every)])
    for name, c, row in zip(names, probs.argmax(axis=1), probs, strict=True):
        extra = [f"{p:.6f}" for p in row] if every else []
        writer.writerow([name, int(c), labels[c], f"{float(row[c]):.6f}", *extra])


def cmd_info(args: argparse.Namespace) -> int:
    import json

    import numpy as np
    from threadpoolctl import threadpool_info

    import backends

    info: dict[str, Any] = {
        "nnx": nnx.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "backends": backends.available_backends(),
        "default": backends.default_backend_name(),
        "cpu_kernels": backends.get_backend("numpy").kernel_status(),
    }
    info["blas"] = [
        {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
    from backends.blas import forced_kernel_warning

    warning = forced_kernel_warning()
    if warning:
        info["blas_warning"] = warning
    try:
        import cupy

        info["cupy"] = cupy.__version__
        info["cuda_runtime"] = cupy.cuda.runtime.runtimeGetVersion()
        info["devices"] = [
            cupy.cuda.runtime.getDeviceProperties(i)["name"].decode() for i in range(cupy.cuda.runtime.getDeviceCount())
        ]
    except Exception as exc:  # no CuPy, or no driver or device
        info["cupy"] = f"unavailable ({type(exc).__name__}: {exc})"
    print(json.dumps(info, indent=2))
    return 0
