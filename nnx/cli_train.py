"""The ``nnx train`` command: a recipe, a model, fit, the test result, files and plots; Ctrl-C
saves the last complete epoch."""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nnx  # the package's names load on first use: this costs no NumPy import
from nnx.ctrl_c import raise_if_interrupted

if TYPE_CHECKING:
    from nnx.recipes import Data


def cmd_train(args: argparse.Namespace) -> int:
    if not args.distributed:
        return _train(args, None)
    from nnx.distributed import DataParallel

    dp = DataParallel()
    if dp.rank:  # rank 0 alone prints and writes; the others read (a checkpoint to resume) and train
        args.quiet, args.out, args.plot = True, None, None
    if args.backend == "cupy":
        dp.use_device()
    try:
        return _train(args, dp)
    except KeyboardInterrupt:  # every rank stops at the same step (the all-reduced Ctrl-C flag)
        if dp.rank:
            return 130  # rank 0 says it
        raise
    except BaseException as exc:  # no rank may be left waiting in an all-reduce: end the job
        print(f"nnx: error on rank {dp.rank} of {dp.size}: {exc}", file=sys.stderr, flush=True)
        dp.abort(1)
        raise


def _train(args: argparse.Namespace, dp: Any) -> int:
    from nnx.recipes import RECIPES, UsageError, choose_task, make_model, make_optimizer, new_settings, resumed_settings

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

    data = load_data(settings["dataset"], settings.get("data_dir"))
    if args.resume:
        task = settings.get("task", "classification")
    else:
        task, why = choose_task(args.task, data.splits[0][1])
        if task == "regression":
            settings, note = new_settings(flags, args.dataset, args.recipe, data_dir, task)
        note = f"task {task} ({why}); {note}"
    if task == "regression":  # float (N, K) targets
        data = data._replace(splits=tuple((x, y.reshape(len(y), -1).astype("float32")) for x, y in data.splits))
    held_out = nnx.datasets.with_validation(*data.splits, settings["validation"], stratify=task == "classification")
    data = data._replace(splits=held_out)
    (x_train, _), *val, (x_test, y_test) = data.splits
    if not args.resume:
        model = make_model(x_train.shape[1], _outputs(data, task), settings, args.backend)
        model.task = task
        model.class_names = data.class_names if task == "classification" else None
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
    history, seconds, test = _fit(args, model, optimizer, settings, data, history, initial_epoch, dp)
    from nnx.progress import format_seconds

    ranks = f" × {dp.size} ranks" if dp is not None else ""
    metric = "test accuracy" if task == "classification" else "test mae"
    (print if dp is None or dp.rank == 0 else out)(
        f"test loss {test['loss']:.4f}  {metric} {test.get('accuracy', test.get('mae')):.4f}  "
        f"(training {format_seconds(seconds)} on {model.backend.name}{ranks})"
    )
    if args.out:
        _save(model, args.out, settings, history, test=test, seconds=seconds)
        out(f"saved {args.out}")
    if args.plot:
        from nnx.plots import confusion_matrix, plot_confusion, plot_history

        title = Path(str(settings["dataset"])).name
        paths = plot_history(history, args.plot, test=test, title=title)
        if task == "classification":
            counts = confusion_matrix(y_test, model.predict_classes(x_test), model.n_classes)
            paths.append(plot_confusion(counts, args.plot, model.class_names, title=title))
        out("plots: " + ", ".join(map(str, paths)))
    return 0


def _outputs(data: Data, task: str) -> int:
    """The number of outputs: of the targets' columns, or of the classes (labels and class names)."""
    from nnx.recipes import UsageError

    (_, y_train), *_, (_, y_test) = data.splits
    if task == "regression":
        return y_train.shape[1]
    n_classes = int(max(y_train.max(), y_test.max())) + 1
    if data.class_names is not None:
        if len(data.class_names) < n_classes:
            raise UsageError(f"{data.source}: {len(data.class_names)} class_names for labels up to {n_classes - 1}")
        n_classes = len(data.class_names)
    return n_classes


def _shape(model: nnx.Sequential) -> str:
    """ "64-64-64-10 MLP" and its extras, for the banner."""
    widths = [model.in_features] + [layer.out_features for layer in model.layers if isinstance(layer, nnx.Dense)]
    dropout = [layer.p for layer in model.layers if isinstance(layer, nnx.Dropout)]
    return "-".join(map(str, widths)) + " MLP, ReLU" + (f", dropout {dropout[0]:g}" if dropout else "")


def load_data(dataset: str, data_dir: str | None) -> Data:
    from nnx.recipes import load_dataset

    return load_dataset(dataset, data_dir)


def _fit(
    args: argparse.Namespace,
    model: Any,
    optimizer: Any,
    settings: dict[str, Any],
    data: Data,
    history: Any,
    initial: int,
    dp: Any = None,
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
    if args.checkpoint_dir and (dp is None or dp.rank == 0):
        from nnx.checkpoints import Checkpoint

        callbacks.append(Checkpoint(args.checkpoint_dir, optimizer, settings, history))
    raise_if_interrupted()  # while the data was loaded
    start = time.perf_counter()
    try:
        new = model.fit(
            x_train,
            y_train,
            loss=_loss(settings),
            optimizer=optimizer,
            epochs=settings["epochs"],
            batch_size=settings["batch_size"],
            validation_data=val[0] if val else None,
            schedule=make_schedule(settings),
            callbacks=callbacks,
            initial_epoch=initial,
            distributed=dp,
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


def _loss(settings: dict[str, Any]) -> nnx.Loss:
    if settings.get("task") == "regression":
        return nnx.MeanSquaredError()
    return nnx.SparseCategoricalCrossentropy(settings.get("label_smoothing", 0.0))


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
