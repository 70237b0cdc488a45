"""cupy.cuda in the stand-in: Device, Stream, the current stream, the runtime calls, the memory
pool and the NCCL module (over mpi4py). A synchronisation is counted as a host sync."""

from __future__ import annotations

from typing import Any

from cupy import _stand_in
from cupy.cuda import nccl, runtime

_current_device = [0]


class Device:
    """cupy.cuda.Device(device=None): the current device when None."""

    def __init__(self, device: Any = None) -> None:
        self.id = _current_device[0] if device is None else int(device)
        if not 0 <= self.id < _stand_in.DEVICE_COUNT:
            raise runtime.CUDARuntimeError(101)  # cudaErrorInvalidDevice

    def use(self) -> None:
        _current_device[0] = self.id

    def synchronize(self) -> None:
        _stand_in.host_sync("synchronize")

    def __enter__(self) -> Device:
        self._previous = _current_device[0]
        self.use()
        return self

    def __exit__(self, *exc: Any) -> None:
        _current_device[0] = self._previous

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Device) and other.id == self.id

    def __hash__(self) -> int:
        return self.id

    def __repr__(self) -> str:
        return f"<CUDA Device {self.id}>"

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the CuPy stand-in does not implement cupy.cuda.Device.{name}")


class Stream:
    """cupy.cuda.Stream(null=False, non_blocking=False, ptr=0): work runs at once; synchronize() is counted."""

    null: Stream

    def __init__(self, null: bool = False, non_blocking: bool = False, ptr: int = 0) -> None:
        self.ptr = 0 if null else id(self)

    def synchronize(self) -> None:
        _stand_in.host_sync("synchronize")

    def __enter__(self) -> Stream:
        _streams.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _streams.pop()

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the CuPy stand-in does not implement cupy.cuda.Stream.{name}")


Stream.null = Stream(null=True)
_streams = [Stream.null]


def get_current_stream(device_id: int = -1) -> Stream:
    return _streams[-1]


class MemoryPool:
    """cupy.cuda.MemoryPool: the byte counts that nnx reads (NumPy owns the memory here)."""

    def used_bytes(self) -> int:
        return 0

    def total_bytes(self) -> int:
        return 0

    def free_all_blocks(self, stream: Any = None) -> None:
        pass

    def set_limit(self, size: Any = None, fraction: Any = None) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise AttributeError(f"the CuPy stand-in does not implement cupy.cuda.MemoryPool.{name}")


def __getattr__(name: str) -> Any:
    raise AttributeError(f"the CuPy stand-in does not implement cupy.cuda.{name}")


__all__ = ["Device", "MemoryPool", "Stream", "get_current_stream", "nccl", "runtime"]
