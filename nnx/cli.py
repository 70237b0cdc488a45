"""The ``nnx`` command: train, evaluate, predict, info.

Exit codes: 0 success, 1 runtime error (one line on stderr; --debug shows the
traceback), 2 bad usage, 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import backends
import nnx
from nnx.errors import ConfigError, NNXError
from nnx.recipes import FASHION_CLASSES, RECIPES, UsageError, load_dataset, make_model, make_optimizer, make_schedule


def cmd_train(args: argparse.Namespace) -> int:
    if args.plot:
        from nnx.plots import require_matplotlib

        require_matplotlib()
    recipe = RECIPES.get(args.dataset, RECIPES["fashion-mnist"])
    settings = {key: getattr(args, key) if getattr(args, key) is not None else value for key, value in recipe.items()}
    settings.update(dataset=args.dataset, seed=args.seed, dtype=args.dtype, clip_norm=args.clip_norm)
    out = print if not args.quiet else (lambda *a, **k: None)

    history = None
    initial_epoch = 0
    if args.resume:
        if not args.checkpoint_dir:
            raise UsageError("--resume needs --checkpoint-dir, the folder of the interrupted run")
        from nnx.checkpoints import resume

        model, optimizer, initial_epoch, history, saved = resume(args.checkpoint_dir, make_optimizer, args.backend)
        settings = {**saved, "epochs": settings["epochs"] if args.epochs is not None else saved["epochs"]}
        out(f"resuming from {args.checkpoint_dir} at epoch {initial_epoch + 1}")

    splits = load_dataset(settings["dataset"], args.data_dir, settings["validation"])
    (x_train, y_train), *val, (x_test, y_test) = splits
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if not args.resume:
        model = make_model(x_train.shape[1], n_classes, settings, args.backend)
        optimizer = make_optimizer(settings)
    out(
        f"nnx {nnx.__version__}: {model!r}\n  data {settings['dataset']}: {len(x_train)} train, "
        f"{len(val[0][0]) if val else 0} validation, {len(x_test)} test; {optimizer!r}"
    )

    from nnx.progress import LineProgress, TqdmProgress

    callbacks: list[nnx.Callback] = []
    if not args.quiet:
        callbacks.append(TqdmProgress() if sys.stdout.isatty() else LineProgress())
    if args.checkpoint_dir:
        from nnx.checkpoints import Checkpoint

        callbacks.append(Checkpoint(args.checkpoint_dir, optimizer, settings, history))
    start = time.perf_counter()
    new = model.fit(
        x_train,
        y_train,
        loss=nnx.SparseCategoricalCrossentropy(),
        optimizer=optimizer,
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        validation_data=val[0] if val else None,
        schedule=make_schedule(settings),
        callbacks=callbacks,
        initial_epoch=initial_epoch,
    )
    seconds = time.perf_counter() - start
    if history is not None:
        history.extend(new)
    else:
        history = new
    test = model.evaluate(x_test, y_test)
    print(
        f"test loss {test['loss']:.4f}  test accuracy {test['accuracy']:.4f}  "
        f"(training {seconds:.1f}s on {model.backend.name})"
    )
    if args.out:
        import dataclasses

        nnx.save(
            model,
            args.out,
            training={"settings": settings, "history": dataclasses.asdict(history), "test": test, "seconds": seconds},
        )
        out(f"saved {args.out}")
    if args.plot:
        from nnx.plots import confusion_matrix, plot_confusion, plot_history

        paths = plot_history(history, args.plot)
        counts = confusion_matrix(y_test, model.predict_classes(x_test), model.n_classes)
        names = FASHION_CLASSES if settings["dataset"] == "fashion-mnist" else None
        paths.append(plot_confusion(counts, args.plot, names))
        out("plots: " + ", ".join(map(str, paths)))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    model = nnx.load(args.model, args.backend)
    *_, (x_test, y_test) = load_dataset(args.dataset, args.data_dir)
    result = model.evaluate(x_test, y_test)
    predicted = model.predict_classes(x_test)
    print(f"loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}  ({len(y_test)} samples)")
    print(f"{'class':>12} {'samples':>8} {'precision':>9} {'recall':>7}")
    for c in range(model.n_classes):
        true, pred = y_test == c, predicted == c
        hits = int((true & pred).sum())
        precision = hits / pred.sum() if pred.any() else float("nan")
        recall = hits / true.sum() if true.any() else float("nan")
        print(f"{c:>12} {int(true.sum()):>8} {precision:>9.4f} {recall:>7.4f}")
    return 0


def read_inputs(path: Path) -> tuple[list[str], np.ndarray]:
    """(names, x) from an .npy of (N, features) or (N, h, w), or a folder of PNG images."""
    if path.is_dir():
        try:
            from PIL import Image
        except ImportError:
            raise ImportError("reading PNG images needs Pillow: pip install 'nnx[plot]'") from None
        files = sorted(path.glob("*.png"))
        if not files:
            raise ConfigError(f"INPUT folder {path} holds no .png files")
        images = [np.asarray(Image.open(f).convert("L"), dtype=np.float32) / 255 for f in files]
        if len({im.shape for im in images}) != 1:
            raise ConfigError(f"the PNG images in {path} must all have the same size")
        return [f.name for f in files], np.stack([im.reshape(-1) for im in images])
    if path.suffix != ".npy":
        raise UsageError(f"INPUT must be an .npy file or a folder of PNG images; got {path}")
    x = np.load(path, allow_pickle=False)
    x = x.reshape(len(x), -1) if x.ndim > 2 else x
    return [str(i) for i in range(len(x))], x


def cmd_predict(args: argparse.Namespace) -> int:
    model = nnx.load(args.model, args.backend)
    names, x = read_inputs(Path(args.input))
    probs = model.predict(x)
    classes = probs.argmax(axis=1)
    header = "input,class,probability" + "".join(f",p{k}" for k in range(probs.shape[1]) if args.probabilities)
    lines = [
        f"{name},{int(c)},{float(row[c]):.6f}" + ("," + ",".join(f"{p:.6f}" for p in row) if args.probabilities else "")
        for name, c, row in zip(names, classes, probs, strict=True)
    ]
    text = header + "\n" + "\n".join(lines) + "\n"
    if args.out:
        from nnx.files import atomic_write

        atomic_write(args.out, text.encode())
        print(f"wrote {len(lines)} predictions to {args.out}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    info: dict[str, Any] = {
        "nnx": nnx.__version__,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "backends": backends.available_backends(),
        "default": backends.default_backend_name(),
        "cpu_kernels": backends.get_backend("numpy").kernel_status(),
    }
    from threadpoolctl import threadpool_info

    info["blas"] = [
        {k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads", "filepath")}
        for p in threadpool_info()
        if p.get("user_api") == "blas"
    ]
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nnx", description="Train and use multilayer perceptrons.")
    parser.add_argument("--version", action="version", version=f"nnx {nnx.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--backend",
        choices=["numpy", "cupy", "auto"],
        default=None,
        help="array backend (default: $NNX_BACKEND, else auto)",
    )
    common.add_argument("--data-dir", default=None, help="folder with the data set's IDX files")
    common.add_argument("--debug", action="store_true", help="show tracebacks")

    train = sub.add_parser("train", parents=[common], help="train an MLP")
    train.add_argument("--dataset", default="digits", help="digits | fashion-mnist | mnist | PATH (default digits)")
    train.add_argument("--hidden", help="hidden widths, e.g. 256,256")
    train.add_argument("--epochs", type=int)
    train.add_argument("--batch-size", type=int)
    train.add_argument("--optimizer", choices=["sgd", "adam", "adamw"])
    train.add_argument("--lr", type=float)
    train.add_argument("--momentum", type=float, help="SGD momentum (Nesterov)")
    train.add_argument("--weight-decay", type=float, help="decoupled weight decay")
    train.add_argument("--clip-norm", type=float, help="clip the global gradient norm to this")
    train.add_argument("--dropout", type=float, help="dropout after each hidden layer")
    train.add_argument("--schedule", choices=["constant", "cosine", "step"])
    train.add_argument("--warmup", type=float, help="fraction of steps of linear warm-up")
    train.add_argument("--validation", type=float, help="fraction of the training set held out")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    train.add_argument("--out", help="write the trained model here (.safetensors)")
    train.add_argument("--checkpoint-dir", help="save a checkpoint here after every epoch")
    train.add_argument("--resume", action="store_true", help="continue from --checkpoint-dir")
    train.add_argument("--plot", metavar="DIR", help="write loss, accuracy and confusion-matrix PNGs here")
    train.add_argument("--quiet", action="store_true", help="print only the final result")
    train.set_defaults(run=cmd_train)

    evaluate = sub.add_parser("evaluate", parents=[common], help="loss, accuracy and a per-class table")
    evaluate.add_argument("model")
    evaluate.add_argument("--dataset", default="digits")
    evaluate.set_defaults(run=cmd_evaluate)

    predict = sub.add_parser("predict", parents=[common], help="classes and probabilities of new inputs")
    predict.add_argument("model")
    predict.add_argument("input", help="an .npy file of samples, or a folder of PNG images")
    predict.add_argument("--out", help="write CSV here instead of printing it")
    predict.add_argument("--probabilities", action="store_true", help="add every class's probability (p0, p1, ...)")
    predict.set_defaults(run=cmd_predict)

    info = sub.add_parser("info", parents=[common], help="versions, backends, devices and BLAS")
    info.set_defaults(run=cmd_info)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (`nnx info | head`): nothing more to say
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps Python's exit flush quiet
        return 0
    except UsageError as exc:
        if args.debug:
            raise
        parser.print_usage(sys.stderr)
        print(f"nnx: error: {exc}", file=sys.stderr)
        return 2
    except nnx.errors.TrainingInterrupted:
        print("nnx: interrupted", file=sys.stderr)
        return 130
    except (NNXError, backends.BackendUnavailable, OSError, ImportError, ValueError) as exc:
        if args.debug:
            raise
        print(f"nnx: error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
