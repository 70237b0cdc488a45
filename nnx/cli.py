"""The ``nnx`` command: train, evaluate, predict, export, info.

Exit codes: 0 success, 1 runtime error (one line on stderr; --debug shows the
traceback), 2 bad usage, 130 interrupted.

Only the standard library is imported before ``main`` runs: NumPy and the rest load inside it,
so that Ctrl-C is answered with one line from the entry point's first instruction on.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import nnx  # the package's names load on first use: this costs no NumPy import
from nnx.cli_export import cmd_export
from nnx.cli_train import _Interrupted, cmd_train
from nnx.cli_use import cmd_evaluate, cmd_info, cmd_predict
from nnx.ctrl_c import CtrlC, forget_escaped_interrupt, raise_if_interrupted

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
    sub = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict,export,info}")

    def shared(*flags: str, **kwargs: Any) -> argparse.ArgumentParser:
        """A parser holding one option that several commands take (through ``parents``)."""
        parent = argparse.ArgumentParser(add_help=False)
        parent.add_argument(*flags, **kwargs)
        return parent

    def command(name: str, run: Callable[[argparse.Namespace], int], **kwargs: Any) -> argparse.ArgumentParser:
        """The parser of a command that ``run`` carries out; it rides along in the arguments to print
        its usage on a usage error."""
        command_parser = sub.add_parser(name, **kwargs)
        command_parser.set_defaults(run=run, command_parser=command_parser)
        return command_parser

    common = shared("--debug", action="store_true", help="show tracebacks")
    backend = shared(
        "--backend", choices=["numpy", "cupy", "auto"], help="array backend (default: $NNX_BACKEND, else auto)"
    )
    data_dir = shared("--data-dir", metavar="DIR", help="the folder of fashion-mnist or mnist's IDX files (only there)")

    train = command(
        "train",
        cmd_train,
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
    add("--recipe", choices=["digits", "fashion-mnist", "mnist", "regression"], help="the defaults to start from "
        "(default: the data set's own; fashion-mnist for a PATH, regression for its --task)")  # fmt: skip
    add("--task", choices=["classification", "regression"], help="classification: integer labels, softmax "
        "cross-entropy; regression: float targets, mean squared error (default: from y_train's dtype)")  # fmt: skip
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
    add("--label-smoothing", type=fraction, metavar="E", help="label smoothing ε of the loss, in [0, 1)")
    add("--ema", type=fraction, metavar="DECAY", help="keep an exponential moving average of the weights with this "
        "decay (e.g. 0.999), used for validation and saved (0: none)")  # fmt: skip
    add("--validation", type=fraction, metavar="F", help="fraction of the training set held out (stratified by class)")
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
    add(
        "--distributed",
        action="store_true",
        help="be one rank of data-parallel training: run as mpiexec -n N nnx train --distributed ...; "
        "--batch-size is the global batch; rank 0 prints and writes the files (needs the mpi extra)",
    )

    evaluate = command(
        "evaluate",
        cmd_evaluate,
        parents=[common, backend, data_dir],
        help="loss, accuracy and a per-class table",
        description="Loss, accuracy and per-class precision and recall of a model on a test set: by default "
        "the data set (and data folder) recorded in the model file by nnx train.",
    )
    evaluate.add_argument("model", help="a model file written by nnx train --out or nnx.save")
    evaluate.add_argument("--dataset", help="digits | fashion-mnist | mnist | PATH (default: recorded in MODEL)")

    predict = command(
        "predict",
        cmd_predict,
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

    export = command(
        "export",
        cmd_export,
        parents=[common],
        help="write a model as ONNX, for onnxruntime",
        description="Write a model file as an ONNX model (needs the extra nnx[onnx]): input x (batch, features) "
        "float32; outputs logits and probabilities (softmax, or sigmoid for a binary task), or outputs for a "
        "regression. onnxruntime serves it in Python, C++, C#, Java, JavaScript or on a phone, without nnx.",
    )
    export.add_argument("model", help="a model file")
    export.add_argument("out", help="the ONNX file to write (.onnx)")
    export.add_argument("--opset", type=positive_int, default=17, metavar="N", help="ONNX operator set (default: 17)")

    command("info", cmd_info, parents=[common], help="versions, backends, devices and BLAS")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The entry point; Ctrl-C anywhere in it prints one line and returns 130."""
    ctrl_c, previous, print_unraisable = CtrlC(), None, sys.unraisablehook
    try:
        if threading.current_thread() is threading.main_thread():
            sys.unraisablehook = ctrl_c.unraisable
            previous = signal.signal(signal.SIGINT, ctrl_c)
        code = _main(argv, ctrl_c)
        if not ctrl_c.received:
            return code
        raise KeyboardInterrupt  # noted, though something on the way swallowed it
    except _Interrupted as exc:
        print(f"nnx: {exc}", file=sys.stderr)
        forget_escaped_interrupt()
        return 130
    except BaseException as exc:  # a Ctrl-C in disguise (see CtrlC), or a real error
        if not isinstance(exc, KeyboardInterrupt) and not ctrl_c.received:
            raise
        print("nnx: interrupted", file=sys.stderr)  # while starting, loading, evaluating or saving
        forget_escaped_interrupt()
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        sys.unraisablehook = print_unraisable


def _main(argv: list[str] | None, ctrl_c: CtrlC) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import backends
    from nnx.errors import NNXError
    from nnx.recipes import UsageError

    raise_if_interrupted()  # while NumPy was imported
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
