"""cupy.cuda.nccl in the stand-in: a communicator whose all-reduce runs over mpi4py's COMM_WORLD,
with NCCL's checks: one unique id shared by every rank, one device per rank, device buffers only."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

available = True
NCCL_UNIQUE_ID_BYTES = 128
NCCL_INT32, NCCL_INT64, NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = 2, 4, 6, 7, 8
NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN = 0, 1, 2, 3
_DTYPES = {NCCL_INT32: np.int32, NCCL_INT64: np.int64, NCCL_FLOAT16: np.float16, NCCL_FLOAT32: np.float32,
           NCCL_FLOAT64: np.float64}  # fmt: skip
_ERRORS = {4: "NCCL_ERROR_INVALID_ARGUMENT", 5: "NCCL_ERROR_INVALID_USAGE"}


class NcclError(RuntimeError):
    def __init__(self, status: int, detail: str = "") -> None:
        self.status = status
        super().__init__(f"{_ERRORS.get(status, status)}: {detail}")


def get_unique_id() -> bytes:
    """A new id (bytes, as CuPy 14 returns it) that rank 0 makes and sends to the others."""
    return os.urandom(NCCL_UNIQUE_ID_BYTES)


def get_version() -> int:
    return 22300


class NcclCommunicator:
    """NcclCommunicator(ndev, commId, rank): every rank of the MPI world must call it with the same id."""

    def __init__(self, ndev: int, commId: bytes, rank: int) -> None:
        from mpi4py import MPI

        from cupy.cuda import Device

        if not isinstance(commId, bytes) or len(commId) != NCCL_UNIQUE_ID_BYTES:
            raise ValueError(f"commId length {len(commId)} != {NCCL_UNIQUE_ID_BYTES}.")
        self._comm = MPI.COMM_WORLD
        if ndev != self._comm.Get_size() or not 0 <= rank < ndev:
            raise NcclError(4, f"ndev={ndev}, rank={rank} in an MPI world of {self._comm.Get_size()}")
        seen = self._comm.allgather((commId, rank, Device().id))
        if len({s[0] for s in seen}) != 1:
            raise NcclError(5, "the ranks passed different unique ids (it must be broadcast from one rank)")
        if len({s[1] for s in seen}) != ndev:
            raise NcclError(4, f"two ranks passed the same rank number: {[s[1] for s in seen]}")
        if len({s[2] for s in seen}) != ndev:
            raise NcclError(5, f"Duplicate GPU detected: the ranks use devices {[s[2] for s in seen]}")
        self._ndev, self._rank = ndev, rank

    def rank_id(self) -> int:
        return self._rank

    def size(self) -> int:
        return self._ndev

    def allReduce(self, sendbuf: int, recvbuf: int, count: int, datatype: int, op: int, stream: int) -> None:
        from mpi4py import MPI

        if datatype not in _DTYPES or op not in (NCCL_SUM, NCCL_PROD, NCCL_MAX, NCCL_MIN):
            raise NcclError(4, f"datatype {datatype}, op {op}")
        if not all(isinstance(p, int) and p for p in (sendbuf, recvbuf)):
            raise NcclError(4, f"buffers must be device pointers (ints); got {sendbuf!r}, {recvbuf!r}")
        ctype = np.ctypeslib.as_ctypes_type(_DTYPES[datatype])
        send = np.ctypeslib.as_array((ctype * count).from_address(sendbuf))
        recv = np.ctypeslib.as_array((ctype * count).from_address(recvbuf))
        mpi_op = {NCCL_SUM: MPI.SUM, NCCL_PROD: MPI.PROD, NCCL_MAX: MPI.MAX, NCCL_MIN: MPI.MIN}[op]
        self._comm.Allreduce(MPI.IN_PLACE if sendbuf == recvbuf else send, recv, op=mpi_op)

    def destroy(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the CuPy stand-in does not implement cupy.cuda.nccl.NcclCommunicator.{name}")


def __getattr__(name: str) -> Any:
    raise AttributeError(f"the CuPy stand-in does not implement cupy.cuda.nccl.{name}")
