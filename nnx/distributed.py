"""Data-parallel training over MPI ranks (mpi4py), with NCCL for device buffers on GPUs.

    mpiexec -n 4 python train.py          # each rank runs the same script
    comm = nnx.distributed.DataParallel()  # MPI.COMM_WORLD
    model.fit(x, y, ..., distributed=comm)

Every rank holds the whole data set and the same model. Each step, every rank draws the same
global batch of N = ``batch_size`` rows from the same permutation, takes its contiguous share of
n_r rows (shares differ by at most one row, the larger ones first), and backpropagates with the
loss's gradient scaled by n_r/N, so that its gradients are (n_r/N)·g_r, g_r its mean gradient:
their sum over the ranks is the mean gradient over the global batch. A rank with no rows in a
batch adds zeros. Then one all-reduce over one flat buffer, whose last three slots carry the
loss, the metric's sum and a stop flag:

- ``GradientAllReduce`` (any optimizer): every parameter's gradient is a view of the buffer; the
  sum reaches every rank, and every rank takes the same optimizer step.
- ``WeightAllReduce`` (where the optimizer's steps add up: SGD without momentum, clipping or weight
  averaging): every parameter is a view of the buffer. Rank 0 takes the step from its own part,
  p ← p − lr·(n_0/N)·g_0, and every other rank writes only −lr·(n_r/N)·g_r in place of its weights;
  the sum, p − lr·Σ_r (n_r/N)·g_r, is the step on every rank. Without weight decay, each Dense
  weight's part is one gemm, xᵀ·dy never written, as one process steps: the same bytes are
  all-reduced, and the pass that writes the gradients and the one that reads them back are saved.

Either way the weights stay identical across ranks; a checksum compares them every epoch (with
WeightAllReduce, a change made behind nnx's back is not detected: on rank 0 it reaches every
rank at the next step, on another rank it is overwritten).
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

    comm: an mpi4py communicator (default: MPI.COMM_WORLD). On the CuPy backend, the flat buffer
    (the gradients, or with plain SGD the weights) is all-reduced by NCCL on the devices (rank r
    uses device r mod the visible devices), never copied to the host.
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

    def synchronizer(self, model: Any, optimizer: Any) -> FlatAllReduce:
        """The step of ``fit`` on this rank: WeightAllReduce where ``optimizer``'s steps add up,
        else GradientAllReduce; the buffer that it all-reduces is made here (see the module)."""
        if optimizer.steps_add_up:
            return WeightAllReduce(self, model.parameter_buffer(spare=EXTRA_SLOTS), optimizer)
        return GradientAllReduce(self, model.gradient_buffer(spare=EXTRA_SLOTS), optimizer)

    def abort(self, code: int = 1) -> None:
        """End every rank of the job now (after an error on this one)."""
        self.comm.Abort(code)


class FlatAllReduce:
    """Data parallelism's step, what both kinds share: this rank's part of a global batch runs
    forward, the loss (its gradient weighted by the rank's share) and backward; then ``__call__``
    (the ``update`` of nnx.training.train_step) fills the flat buffer, whose last slots take the
    loss, the metric's sum (the correct count) and the Ctrl-C flag, and all-reduces it once."""

    def __init__(self, dp: DataParallel, flat: Array, optimizer: Any) -> None:
        self.dp, self.flat, self.optimizer = dp, flat, optimizer
        self.weight, self.check, self.stop = 1.0, True, False
        self.noted: tuple[Any, ...] | None = None  # (loss value, outputs, targets, loss) of this rank's rows
        self._losses: dict[int, Loss] = {}

    def step(
        self, model: Any, x: Array, y: Array, loss: Loss, rows: int, check: bool, stop: bool
    ) -> tuple[Array, Array, bool]:
        """One step on this rank's ``x`` of a global batch of ``rows``: (the global mean loss and
        the global sum of the loss's metric as 0-d device arrays, whether any rank asked to stop)."""
        from nnx.training import train_step

        self.weight, self.check, self.stop, self.noted = x.shape[0] / rows, check, stop, None
        noting = self._losses.get(id(loss)) or self._losses.setdefault(id(loss), _Noting(loss, self))
        train_step(model, x, y, noting, self.optimizer, update=self)
        extra = self.flat[-EXTRA_SLOTS:]
        stopped = check and float(extra[2]) > 0  # read where the loss is checked: the same steps on every rank
        return extra[0], extra[1], stopped

    def __call__(self, model: Any) -> None:
        raise NotImplementedError

    def _all_reduce(self, model: Any) -> None:
        """Write this rank's numbers into the buffer's last slots, sum the buffer over the ranks, and
        raise TrainingDiverged on every rank if the summed loss is NaN or Inf (where checked)."""
        be, extra = model.backend, self.flat[-EXTRA_SLOTS:]
        if self.noted is None:
            extra[:2] = 0
        else:
            value, outputs, targets, loss = self.noted
            extra[0] = value * self.weight
            extra[1] = loss.metric_sum(be, outputs, targets) if loss.metric else 0
        extra[2] = 1.0 if self.stop else 0.0
        self.dp.allreduce(self.flat, be)
        if self.check and not math.isfinite(float(extra[0])):
            raise TrainingDiverged(f"the loss summed over {self.dp.size} ranks is {float(extra[0])}")


class GradientAllReduce(FlatAllReduce):
    """Any optimizer: the buffer holds every parameter's gradient; after the all-reduce, every rank
    takes the same optimizer step from Σ_r (n_r/N)·g_r."""

    def __call__(self, model: Any) -> None:
        from nnx.training import apply_update

        if self.noted is None:  # no rows here in this batch: nothing to add
            self.flat[:-EXTRA_SLOTS] = 0
        else:
            for _ in model.named_parameters():  # every gradient computed, into its view of the buffer
                pass
        self._all_reduce(model)
        apply_update(model, self.optimizer)


class WeightAllReduce(FlatAllReduce):
    """Where the optimizer's steps add up (plain SGD): the buffer holds every parameter. Rank 0 takes
    the step from its gradient, p ← p − lr·(n_0/N)·g_0 (with its weight decay and L2 terms); every
    other rank writes only its gradient's term, −lr·(n_r/N)·g_r (``keep=0``: the gemm's beta is 0).
    Summed, every rank holds p − lr·Σ_r (n_r/N)·g_r, as exact as one process's step. Rank 0 always
    has rows (shares differ by at most one row, the larger ones first); a rank without rows adds 0."""

    def __call__(self, model: Any) -> None:
        if self.noted is None:  # no rows here in this batch: nothing to add
            self.flat[:-EXTRA_SLOTS] = 0
            self.optimizer.skip_step()
        else:
            self.optimizer.step(model, keep=1.0 if self.dp.rank == 0 else 0.0)
        self._all_reduce(model)


class _Noting(Loss):
    """A loss that notes its value, outputs and targets for the all-reduce that follows, and
    weights its gradient by this rank's share of the global batch."""

    def __init__(self, loss: Loss, sync: FlatAllReduce) -> None:
        super().__init__()
        self.loss, self.sync = loss, sync
        self.task, self.metric, self.takes_logits = loss.task, loss.metric, loss.takes_logits

    def compute(self, backend: Any, outputs: Array, targets: Array) -> tuple[Array, Array]:
        value, grad = self.loss.compute(backend, outputs, targets)
        self.sync.noted = (value, outputs, targets, self.loss)
        if self.sync.weight != 1.0:  # every gradient is linear in this one: all carry the rank's share
            grad *= self.sync.weight
        return value, grad
