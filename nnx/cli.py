"""The ``nnx`` command: train, evaluate, predict, info.

Exit codes: 0 success, 1 runtime error (one line on stderr; --debug shows the
traceback), 2 bad usage, 130 interrupted.

Only the standard library is imported before ``main`` runs: NumPy and the rest load inside it,
so that Ctrl-C is answered with one line from the entry point's first instruction on.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nnx  # the package's names load on first use: this costs no NumPy import

if TYPE_CHECKING:
    import numpy as np

    from nnx.recipes import Data

# ---- train ------------------------------------------------------------------------------------


def cmd_train(args: argparse.Namespace) -> int:
    from nnx.recipes import RECIPES, UsageError, make_model, make_optimizer, new_settings, resumed_settings

    if args.out and not Path(args.out).absolute().parent.is_dir():  # found now, not after training
        raise UsageError(f"--out {args.out}: the folder {Path(args.out).absolute().parent} does not exist")
    if args.plot:
        from nnx.plots import require_matplotlib

        require_matplotlib()
    out = print if not args.quiet else (lambda *a, **k: None)
    flags = {key: getattr(args, key) for key in (*RECIPES["digits"], "seed", "dtype", "clip_norm")}
    data_dir = str(Path(args.data_dir).absolute()) if args.data_dir is not None else None
    history, initial_epoch = None, 0
    if args.resume:
        if not args.checkpoint_dir:
            raise UsageError("--resume needs --checkpoint-dir, the folder of the interrupted run")
        from nnx.checkpoints import resume

        model, optimizer, initial_epoch, history, saved = resume(args.checkpoint_dir, make_optimizer, args.backend)
        settings = resumed_settings(saved, flags, data_dir)
        note = f"resuming from {args.checkpoint_dir} after epoch {initial_epoch}, with the run's settings"
    else:
        settings, note = new_settings(flags, args.dataset, args.recipe, data_dir)

    data = _load(settings["dataset"], settings.get("data_dir"), settings["validation"])
    (x_train, y_train), *val, (x_test, y_test) = data.splits
    if not args.resume:
        n_classes = int(max(y_train.max(), y_test.max())) + 1
        if data.class_names is not None:
            if len(data.class_names) < n_classes:
                raise UsageError(f"{data.source}: {len(data.class_names)} class_names for labels up to {n_classes - 1}")
            n_classes = len(data.class_names)
        model = make_model(x_train.shape[1], n_classes, settings, args.backend)
        model.class_names = data.class_names
        optimizer = make_optimizer(settings)
    label = settings["dataset"] if settings["dataset"] in RECIPES else Path(settings["dataset"]).name
    n_val = len(val[0][0]) if val else 0
    out(
        f"nnx {nnx.__version__}: {note}\n"
        f"data {label} ({data.source}): {len(x_train)} train, {n_val} validation, {len(x_test)} test\n"
        f"model {_shape(model)}: {model.count_params():,} parameters, {model.dtype.name} on {model.backend.name}\n"
        f"{settings['epochs']} epochs of batch {settings['batch_size']}, {optimizer!r}, schedule {settings['schedule']}"
        f"{' with warm-up ' + format(settings['warmup'], 'g') if settings['warmup'] else ''}"
    )
    history, seconds, test = _fit(args, model, optimizer, settings, data, history, initial_epoch)
    from nnx.progress import format_seconds

    print(
        f"test loss {test['loss']:.4f}  test accuracy {test['accuracy']:.4f}  "
        f"(training {format_seconds(seconds)} on {model.backend.name})"
    )
    if args.out:
        _save(model, args.out, settings, history, test=test, seconds=seconds)
        out(f"saved {args.out}")
    if args.plot:
        from nnx.plots import confusion_matrix, plot_confusion, plot_history

        title = Path(str(settings["dataset"])).name
        paths = plot_history(history, args.plot, test=test, title=title)
        counts = confusion_matrix(y_test, model.predict_classes(x_test), model.n_classes)
        paths.append(plot_confusion(counts, args.plot, model.class_names, title=title))
        out("plots: " + ", ".join(map(str, paths)))
    return 0


def _shape(model: nnx.Sequential) -> str:
    """ "64-64-64-10 MLP" and its extras, for the banner."""
    widths = [model.in_features] + [layer.out_features for layer in model.layers if isinstance(layer, nnx.Dense)]
    dropout = [layer.p for layer in model.layers if isinstance(layer, nnx.Dropout)]
    return "-".join(map(str, widths)) + " MLP, ReLU" + (f", dropout {dropout[0]:g}" if dropout else "")


def _load(dataset: str, data_dir: str | None, validation: float = 0.0) -> Data:
    from nnx.recipes import load_dataset

    return load_dataset(dataset, data_dir, validation)


def _fit(
    args: argparse.Namespace,
    model: Any,
    optimizer: Any,
    settings: dict[str, Any],
    data: Data,
    history: Any,
    initial: int,
) -> tuple[Any, float, dict[str, float]]:
    """Train; on Ctrl-C save what is complete and raise _Interrupted with the message that says so."""
    from nnx.callbacks import LastEpoch
    from nnx.progress import LineProgress, TqdmProgress
    from nnx.recipes import make_schedule

    (x_train, y_train), *val, (x_test, y_test) = data.splits
    last = LastEpoch(keep_weights=bool(args.out))
    callbacks: list[nnx.Callback] = [last]
    if not args.quiet:
        callbacks.append(TqdmProgress() if sys.stdout.isatty() else LineProgress())
    if args.checkpoint_dir:
        from nnx.checkpoints import Checkpoint

        callbacks.append(Checkpoint(args.checkpoint_dir, optimizer, settings, history))
    _raise_if_interrupted()  # while the data was loaded
    start = time.perf_counter()
    try:
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
            initial_epoch=initial,
        )
    except KeyboardInterrupt:  # TrainingInterrupted (Ctrl-C) or a second Ctrl-C mid-step
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # saving is quick; let it finish
        try:
            raise _Interrupted(_after_interrupt(args, model, settings, history, last)) from None
        finally:
            signal.signal(signal.SIGINT, previous)
    seconds = time.perf_counter() - start
    if history is not None:
        history.extend(new)
    else:
        history = new
    return history, seconds, model.evaluate(x_test, y_test)


class _Interrupted(KeyboardInterrupt):
    """Ctrl-C during training, after what could be saved was saved; the message says what."""


def _after_interrupt(args: argparse.Namespace, model: Any, settings: dict[str, Any], history: Any, last: Any) -> str:
    where = f"in epoch {last.current + 1}" if last.current > last.done else f"after epoch {last.done + 1}"
    if last.done < 0:
        return f"interrupted {where}, before any epoch was complete; nothing saved"
    parts = [f"interrupted {where}"]
    if args.out and last.weights is not None:
        import dataclasses

        full = nnx.History(**dataclasses.asdict(history)) if history is not None else nnx.History()
        for logs in last.logs:
            full.append(logs)
        model.set_weights(last.weights)
        _save(model, args.out, settings, full, interrupted=True, epoch_reached=last.current + 1)
        parts.append(f"saved the model of epoch {last.done + 1} to {args.out}")
    if args.checkpoint_dir:
        again = ["nnx", "train", "--checkpoint-dir", args.checkpoint_dir, "--resume"]
        again += ["--out", args.out] if args.out else []
        parts.append(f"to continue: {shlex.join(again)}")
    elif not args.out:
        parts.append("nothing saved (--out keeps the last complete epoch's model, --checkpoint-dir a resumable run)")
    return "; ".join(parts)


def _save(model: Any, path: str, settings: dict[str, Any], history: Any, **extra: Any) -> None:
    import dataclasses

    training = {"settings": settings, "history": dataclasses.asdict(history), "epochs_completed": len(history.epoch)}
    nnx.save(model, path, training={**training, **extra})


# ---- evaluate, predict, info --------------------------------------------------------------------


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
    data = _load(dataset, data_dir)
    *_, (x_test, y_test) = data.splits
    if x_test.shape[1] != model.in_features:
        raise ConfigError(
            f"{args.model} takes {model.in_features} features per sample; the data set {dataset} has {x_test.shape[1]}"
        )
    result = model.evaluate(x_test, y_test)
    predicted = model.predict_classes(x_test)
    origin = "recorded in the model file" if not args.dataset else "--dataset"
    print(
        f"loss {result['loss']:.4f}  accuracy {result['accuracy']:.4f}  "
        f"({len(y_test)} test samples of {dataset}, {origin})"
    )
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
    from nnx.training import unscaled

    why = unscaled(x) if x.dtype.kind in "iuf" and x.size else None
    if why is not None:
        warnings.warn(f"INPUT {path} looks unscaled: {why}; nnx train's models take inputs in [0, 1]", stacklevel=1)
    return [str(i) for i in range(len(x))], x


def cmd_predict(args: argparse.Namespace) -> int:
    import csv
    import io

    model = nnx.load(args.model, args.backend)
    names, x = read_inputs(Path(args.input), model.in_features)
    probs = model.predict(x)
    classes = probs.argmax(axis=1)
    labels = _class_names(model)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    every = [f"p{k}" for k in range(probs.shape[1])] if args.probabilities else []
    writer.writerow(["input", "class", "name", "probability", *every])
    for name, c, row in zip(names, classes, probs, strict=True):
        extra = [f"{p:.6f}" for p in row] if args.probabilities else []
        writer.writerow([name, int(c), labels[c], f"{float(row[c]):.6f}", *extra])
    if args.out:
        from nnx.files import atomic_write

        atomic_write(args.out, buffer.getvalue().encode())
        print(f"wrote {len(names)} predictions to {args.out}")
    else:
        sys.stdout.write(buffer.getvalue())
    return 0


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


# ---- the parser and main ----------------------------------------------------------------------------

TRAIN_EPILOG = """\
defaults: each data set has a recipe (nnx/recipes.py); a flag overrides its setting.
{table}

Fashion-MNIST and MNIST are read from --data-dir when it is given (only there), else from
$NNX_DATA/<name>, then /usr/share/datasets/<name>. Ctrl-C stops after the current step;
with --out the last complete epoch's model is saved (marked "interrupted"), and with
--checkpoint-dir the run continues with --resume.
"""


def build_parser() -> argparse.ArgumentParser:
    from nnx.recipes import fraction, hidden_widths, natural_int, non_negative, positive, positive_int, recipe_table

    parser = argparse.ArgumentParser(prog="nnx", description="Train and use multilayer perceptrons.")
    parser.add_argument("--version", action="version", version=f"nnx {nnx.__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict,info}")

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", help="show tracebacks")
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument(
        "--backend", choices=["numpy", "cupy", "auto"], help="array backend (default: $NNX_BACKEND, else auto)"
    )
    data_dir = argparse.ArgumentParser(add_help=False)
    data_dir.add_argument(
        "--data-dir", metavar="DIR", help="the folder of fashion-mnist or mnist's IDX files (only there)"
    )

    train = sub.add_parser(
        "train",
        parents=[common, backend, data_dir],
        help="train an MLP",
        description="Train an MLP on a data set and print each epoch and the test accuracy. The settings "
        "that show no default take it from the data set's recipe (the table below).",
        epilog=TRAIN_EPILOG.format(table=recipe_table()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add = train.add_argument
    add("--dataset", default="digits", help="digits | fashion-mnist | mnist | PATH: a folder of the four IDX files or "
        "an .npz of x_train, y_train, x_test, y_test [, class_names] (default: digits)")  # fmt: skip
    add("--recipe", choices=["digits", "fashion-mnist", "mnist"], help="the defaults to start from "
        "(default: the data set's own; fashion-mnist for a PATH)")  # fmt: skip
    add("--hidden", type=hidden_widths, metavar="W,W", help="hidden layer widths, e.g. 256,256")
    add("--epochs", type=positive_int, metavar="N", help="passes over the training set")
    add("--batch-size", type=positive_int, metavar="N", help="samples per step")
    add("--optimizer", choices=["sgd", "adam", "adamw"], help="adamw: Adam with decoupled weight decay")
    add("--lr", type=positive, metavar="LR", help="learning rate (the peak, under a schedule)")
    add("--momentum", type=fraction, metavar="M", help="SGD momentum, Nesterov (0: plain SGD)")
    add("--weight-decay", type=non_negative, metavar="WD", help="decoupled weight decay")
    add("--clip-norm", type=positive, metavar="NORM", help="clip the global gradient norm (default: none)")
    add("--dropout", type=fraction, metavar="P", help="dropout after each hidden layer, in [0, 1)")
    add("--schedule", choices=["constant", "cosine", "step"], help="learning-rate schedule (step: ×0.1 every third)")
    add("--warmup", type=fraction, metavar="F", help="fraction of the steps of linear warm-up")
    add("--validation", type=fraction, metavar="F", help="fraction of the training set held out (stratified)")
    add("--seed", type=natural_int, metavar="N", help="seeds the weights, the shuffling and dropout (default: 0)")
    add("--dtype", choices=["float32", "float64"], help="(default: float32)")
    add("--out", metavar="FILE", help="write the trained model here (.safetensors)")
    add("--checkpoint-dir", metavar="DIR", help="save a checkpoint here after every epoch")
    add("--resume", action="store_true", help="continue the run saved in --checkpoint-dir")
    add(
        "--plot",
        metavar="DIR",
        help="write loss, accuracy and confusion-matrix PNGs here (needs matplotlib, the extra nnx[plot])",
    )
    add("--quiet", action="store_true", help="print only the final result")
    train.set_defaults(run=cmd_train, command_parser=train)

    evaluate = sub.add_parser(
        "evaluate",
        parents=[common, backend, data_dir],
        help="loss, accuracy and a per-class table",
        description="Loss, accuracy and per-class precision and recall of a model on a test set: by default "
        "the data set (and data folder) recorded in the model file by nnx train.",
    )
    evaluate.add_argument("model", help="a model file written by nnx train --out or nnx.save")
    evaluate.add_argument("--dataset", help="digits | fashion-mnist | mnist | PATH (default: recorded in MODEL)")
    evaluate.set_defaults(run=cmd_evaluate, command_parser=evaluate)

    predict = sub.add_parser(
        "predict",
        parents=[common, backend],
        help="classes and probabilities of new inputs",
        description="Classes and probabilities of new inputs, as CSV: input, class, name, probability. PNG "
        "images are read as grayscale, scaled to [0, 1]; their size is the model's input (28×28 for the "
        "MNIST and Fashion-MNIST models, 8×8 for the digits): light objects on a dark background, as in "
        "the training images. PNGs need Pillow (the extra nnx[plot]).",
    )
    predict.add_argument("model", help="a model file")
    predict.add_argument("input", help="an .npy of samples, (N, features) or (N, h, w); a .png; or a folder of PNGs")
    predict.add_argument("--out", metavar="FILE", help="write the CSV here instead of printing it")
    predict.add_argument("--probabilities", action="store_true", help="add every class's probability (p0, p1, ...)")
    predict.set_defaults(run=cmd_predict, command_parser=predict)

    info = sub.add_parser("info", parents=[common], help="versions, backends, devices and BLAS")
    info.set_defaults(run=cmd_info, command_parser=info)
    return parser


class _CtrlC:
    """The SIGINT handler while the command runs: it notes the Ctrl-C and raises KeyboardInterrupt.
    The note matters because an interrupted import may reach us as an ImportError (NumPy's C modules
    turn it into one)."""

    def __init__(self) -> None:
        self.received = False

    def __call__(self, signum: int, frame: Any) -> None:
        self.received = True
        raise KeyboardInterrupt


def _raise_if_interrupted() -> None:
    """Let a Ctrl-C that something swallowed on the way (see _CtrlC) take effect now."""
    handler = signal.getsignal(signal.SIGINT)
    if isinstance(handler, _CtrlC) and handler.received:
        raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The entry point; Ctrl-C anywhere in it prints one line and returns 130."""
    ctrl_c, previous = _CtrlC(), None
    try:
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, ctrl_c)
        code = _main(argv, ctrl_c)
        if not ctrl_c.received:
            return code
        raise KeyboardInterrupt  # noted, though something on the way swallowed it
    except _Interrupted as exc:
        print(f"nnx: {exc}", file=sys.stderr)
        return 130
    except BaseException as exc:  # a Ctrl-C in disguise (see _CtrlC), or a real error
        if not isinstance(exc, KeyboardInterrupt) and not ctrl_c.received:
            raise
        print("nnx: interrupted", file=sys.stderr)  # while starting, loading, evaluating or saving
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _main(argv: list[str] | None, ctrl_c: _CtrlC) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import backends
    from nnx.errors import NNXError
    from nnx.recipes import UsageError

    _raise_if_interrupted()  # while NumPy was imported
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        try:
            return args.run(args)
        except BrokenPipeError:  # the reader went away (`nnx info | head`): nothing more to say
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps Python's exit flush quiet
            return 0
        except UsageError as exc:
            if args.debug:
                raise
            args.command_parser.print_usage(sys.stderr)
            print(f"nnx {args.command}: error: {exc}", file=sys.stderr)
            return 2
        except (NNXError, backends.BackendUnavailable, OSError, ImportError, ValueError) as exc:
            if args.debug or ctrl_c.received:
                raise
            print(f"nnx: error: {exc}", file=sys.stderr)
            return 1


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    print(f"nnx: warning: {message}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
