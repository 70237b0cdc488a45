"""Jobs that tests/test_distributed.py runs under ``mpiexec -n R python -m tests.mpi_jobs JOB OUT``."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np

import nnx
from nnx.distributed import DataParallel

OPTIMIZERS = {  # plain SGD: the ranks sum their partial steps (WeightAllReduce); momentum: their gradients
    "sgd": lambda: nnx.SGD(0.1),
    "momentum": lambda: nnx.SGD(0.05, momentum=0.9),
    "decay": lambda: nnx.SGD(0.1, weight_decay=0.5),  # the weights all-reduced; the decay on rank 0 alone
}


def digits_run(dp, batch_size: int, epochs: int = 3, out: Path | None = None, backend: str = "numpy",
               optimizer: str = "sgd", **fit_kwargs):  # fmt: skip
    (x, y), (xt, yt) = nnx.datasets.load_digits()
    model = nnx.Sequential(nnx.Dense(64, 32), nnx.ReLU(), nnx.Dense(32, 10), backend=backend, dtype="float64", seed=0)
    history = model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=OPTIMIZERS[optimizer](),
                        epochs=epochs, batch_size=batch_size, validation_data=(xt, yt), distributed=dp,
                        **fit_kwargs)  # fmt: skip
    if out is not None:
        np.savez(out, **model.get_weights(), loss=history.loss, accuracy=history.accuracy, val_loss=history.val_loss,
                 val_accuracy=history.val_accuracy)  # fmt: skip
    return model, history


def main(job: str, out: str) -> None:
    dp = DataParallel()
    target = Path(out) / f"{job}-{dp.size}-rank{dp.rank}.npz"
    if job.startswith("equal-"):  # equal-<batch>-<optimizer>: the weights and the global numbers of every rank
        _, batch, optimizer = job.split("-")
        digits_run(dp, int(batch), out=target, optimizer=optimizer)
    elif job == "fail":  # rank 1 fails in epoch 2: the whole job must end

        class Fail(nnx.Callback):
            def on_epoch_begin(self, epoch):
                if epoch == 1 and dp.rank == 1:
                    raise RuntimeError("rank 1 fails on purpose")

        digits_run(dp, 64, epochs=50, callbacks=[Fail()])
    elif job.startswith("nccl"):  # nccl[-<optimizer>]: NCCL's all-reduce on a device buffer, and fit on CuPy
        import cupy

        optimizer = job.partition("-")[2] or "sgd"
        dp.use_device()
        buffer = cupy.arange(12, dtype=cupy.float32) - 5.5
        dp._nccl_allreduce(buffer)  # the sum over the ranks, on the device
        summed = cupy.asnumpy(buffer)
        distributed, _ = digits_run(dp, 64, backend="cupy", optimizer=optimizer)
        alone, _ = digits_run(None, 64, backend="cupy", optimizer=optimizer)
        np.savez(target, summed=summed, **{f"dp.{k}": w for k, w in distributed.get_weights().items()},
                 **{f"alone.{k}": w for k, w in alone.get_weights().items()})  # fmt: skip
    elif job == "interrupt":  # Ctrl-C reaches rank 1 alone, in epoch 2: every rank stops after the same step

        class CtrlC(nnx.Callback):
            def on_train_begin(self, model, epochs, n):
                self.model = model

            def on_epoch_begin(self, epoch):
                if epoch == 1 and dp.rank == 1:
                    os.kill(os.getpid(), signal.SIGINT)

        ctrl_c = CtrlC()
        try:
            digits_run(dp, 64, callbacks=[ctrl_c])
        except nnx.errors.TrainingInterrupted as exc:
            np.savez(target, **ctrl_c.model.get_weights(), epochs=len(exc.history.loss), message=str(exc))
    elif job == "drift":  # rank 1's weights are changed behind the gradients' all-reduce's back

        class Drift(nnx.Callback):
            def on_train_begin(self, model, epochs, n):
                self.model = model

            def on_epoch_begin(self, epoch):
                if epoch == 1 and dp.rank == 1:
                    next(self.model.parameters())[0, 0] += 1.0

        try:
            digits_run(dp, 64, callbacks=[Drift()], optimizer="momentum")
        except nnx.distributed.WeightsDiverged as exc:
            Path(out, f"drift-rank{dp.rank}.txt").write_text(str(exc))
    elif job == "diverge":  # a NaN loss on rank 0 alone: every rank raises TrainingDiverged at the same step
        (x, y), _ = nnx.datasets.load_digits()
        x = x.copy()
        if dp.rank == 0:
            x[::7] *= 1e30
        model = nnx.Sequential(nnx.Dense(64, 10), backend="numpy", seed=0)
        try:
            model.fit(x, y, loss=nnx.SparseCategoricalCrossentropy(), optimizer=nnx.SGD(0.1), epochs=2, batch_size=64,
                      distributed=dp)  # fmt: skip
        except nnx.errors.TrainingDiverged as exc:
            Path(out, f"diverge-rank{dp.rank}.txt").write_text(str(exc))
            np.savez(target, **model.get_weights())
    else:
        raise SystemExit(f"unknown job {job!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
