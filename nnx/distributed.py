"""Data-parallel training over MPI ranks (mpi4py), with NCCL for device buffers on GPUs.

    mpiexec -n 4 python train.py          # each rank runs the same script
    comm = nnx.distributed.DataParallel()  # MPI.COMM_WORLD
    model.fit(x, y, ..., distributed=comm)

Every rank holds the whole data set and the same model. Each step, every rank draws the same
global batch of ``batch_size`` rows from the same permutation, takes its contiguous share (shares
differ by at most one row), and computes its mean gradient g_r over its n_r rows. One all-reduce
over one flat buffer (every parameter's gradient is a view of it, plus three slots for the loss,
the correct count and a stop flag) gives Σ_r (n_r/N)·g_r, the mean over the global batch, on
every rank; then every rank takes the same optimizer step, so the weights stay identical (a
checksum compares them every epoch). A rank with no rows in a batch contributes zeros.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from backends.contract import Array
from nnx.errors import ConfigError, NNXError, TrainingDiverged
from nnx.losses import Loss

EXTRA_SLOTS = 3  # after the gradients in the flat buffer: loss·n_r/N, the metric's sum, stop flag


class WeightsDiverged(NNXError, RuntimeError):
    """The ranks' weights differ (they should be identical after every step)."""


class DataParallel:
    """The ranks of an MPI communicator training one model together.

    comm: an mpi4py communicator (default: MPI.COMM_WORLD). On the CuPy backend, gradients are
    all-reduced by NCCL on the devices (rank r uses device r mod the visible devices), never
    copied to the host.
    """

    def __init__(self, comm: Any = None) -> None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ConfigError(f"distributed training needs mpi4py: pip install mpi4py mpich ({exc})") from None
        self.MPI = MPI
        self.comm = comm if comm is not None else MPI.COMM_WORLD
        self.rank, self.size = self.comm.Get_rank(), self.comm.Get_size()
        self._nccl: Any = None

    def __repr__(self) -> str:
        return f"DataParallel(rank={self.rank}, size={self.size})"

    def share(self, lo: int, hi: int) -> tuple[int, int]:
        """This rank's contiguous part of the rows [lo, hi): sizes differ by at most one."""
        n = hi - lo
        base, extra = divmod(n, self.size)
        start = lo + self.rank * base + min(self.rank, extra)
        return start, start + base + (1 if self.rank < extra else 0)

    def use_device(self) -> None:
        """On a GPU: make device rank mod (visible devices) current. Call it before building the model."""
        import cupy

        cupy.cuda.Device(self.rank % cupy.cuda.runtime.getDeviceCount()).use()

    def allreduce(self, buffer: Array, backend: Any) -> None:
        """Sum ``buffer`` (1-D, contiguous) over the ranks, in place, on its device."""
        if self.size == 1:
            return
        if backend.name == "cupy":
            self._nccl_allreduce(buffer)
            return
        self.comm.Allreduce(self.MPI.IN_PLACE, buffer, op=self.MPI.SUM)

    def _nccl_allreduce(self, buffer: Array) -> None:
        import cupy
        from cupy.cuda import nccl

        if self._nccl is None:  # the unique id travels over MPI once
            uid = nccl.get_unique_id() if self.rank == 0 else None
            self._nccl = nccl.NcclCommunicator(self.size, self.comm.bcast(uid, root=0), self.rank)
        dtype = {np.dtype(np.float32): nccl.NCCL_FLOAT32, np.dtype(np.float64): nccl.NCCL_FLOAT64}[buffer.dtype]
        stream = cupy.cuda.get_current_stream().ptr
        self._nccl.allReduce(buffer.data.ptr, buffer.data.ptr, buffer.size, dtype, nccl.NCCL_SUM, stream)

    def sum(self, values: list[float]) -> list[float]:
        """Host numbers summed over the ranks (for evaluation)."""
        array = np.asarray(values, np.float64)
        if self.size > 1:
            self.comm.Allreduce(self.MPI.IN_PLACE, array, op=self.MPI.SUM)
        return array.tolist()

    def check_same_weights(self, model: Any) -> None:
        """Raise WeightsDiverged unless every rank holds the same weights (a float64 checksum each)."""
        if self.size == 1:
            return
        total = sum(float(model.backend.to_numpy(p).astype(np.float64).sum()) for p in model.parameters())
        low, high = self.comm.allreduce(total, op=self.MPI.MIN), self.comm.allreduce(total, op=self.MPI.MAX)
        if low != high or not math.isfinite(total):
            raise WeightsDiverged(
                f"the ranks' weights differ: checksums from {low!r} to {high!r} (rank {self.rank}: {total!r})"
            )

    def synchronizer(self, model: Any) -> GradientAllReduce:
        """The step of ``fit`` on this rank: ``model``'s gradients move into one flat buffer."""
        return GradientAllReduce(self, model.gradient_buffer(spare=EXTRA_SLOTS))

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (after an error on this one)."""
        self.comm.Abort(code)


class GradientAllReduce:
    """Data parallelism's step: the gradient hook that scales this rank's gradients by its share of
    the global batch, writes its loss, metric sum (the correct count) and Ctrl-C flag into the flat buffer's last
    slots, and all-reduces the buffer once; then every rank takes the same optimizer step."""

    def __init__(self, dp: DataParallel, flat: Array) -> None:
        self.dp, self.flat = dp, flat
        self.weight, self.check, self.stop = 1.0, True, False
        self.noted: tuple[Any, ...] | None = None  # (loss value, outputs, targets, loss) of this rank's rows
        self._losses: dict[int, Loss] = {}

    def step(
        self, model: Any, x: Array, y: Array, loss: Loss, optimizer: Any, rows: int, check: bool, stop: bool
    ) -> tuple[Array, Array, bool]:
        """One step on this rank's ``x`` of a global batch of ``rows``: (the global mean loss and
        the global sum of the loss's metric as 0-d device arrays, whether any rank asked to stop)."""
        from nnx.training import train_step

        self.weight, self.check, self.stop, self.noted = x.shape[0] / rows, check, stop, None
        noting = self._losses.get(id(loss)) or self._losses.setdefault(id(loss), _Noting(loss, self))
        train_step(model, x, y, noting, optimizer, hooks=(self,))
        extra = self.flat[-EXTRA_SLOTS:]
        stopped = check and float(extra[2]) > 0  # read where the loss is checked: the same steps on every rank
        return extra[0], extra[1], stopped

    def __call__(self, model: Any) -> None:
        be, flat = model.backend, self.flat
        grads, extra = flat[:-EXTRA_SLOTS], flat[-EXTRA_SLOTS:]
        if self.noted is None:  # no rows here in this batch: nothing to add
            grads[...] = 0
            extra[:2] = 0
        else:
            for _ in model.named_parameters():  # every gradient computed, into its view of the buffer
                pass
            grads *= self.weight
            value, outputs, targets, loss = self.noted
            extra[0] = value * self.weight
            extra[1] = loss.metric_sum(be, outputs, targets) if loss.metric else 0
        extra[2] = 1.0 if self.stop else 0.0
        self.dp.allreduce(flat, be)
        if self.check and not math.isfinite(float(extra[0])):
            raise TrainingDiverged(f"the loss summed over {self.dp.size} ranks is {float(extra[0])}")


class _Noting(Loss):
    """A loss that notes its value, outputs and targets for the all-reduce that follows."""

    def __init__(self, loss: Loss, sync: GradientAllReduce) -> None:
        super().__init__()
        self.loss, self.sync = loss, sync
        self.task, self.metric, self.takes_logits = loss.task, loss.metric, loss.takes_logits

    def compute(self, backend: Any, outputs: Array, targets: Array) -> tuple[Array, Array]:
        value, grad = self.loss.compute(backend, outputs, targets)
        self.sync.noted = (value, outputs, targets, self.loss)
        return value, grad
