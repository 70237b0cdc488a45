"""cupy.cuda.runtime in the stand-in: the calls nnx makes (device count and properties, versions)."""

from __future__ import annotations

from typing import Any

from cupy import _stand_in

_ERRORS = {
    100: "cudaErrorNoDevice: no CUDA-capable device is detected",
    101: "cudaErrorInvalidDevice: invalid device ordinal",
}


class CUDARuntimeError(RuntimeError):
    """As cupy_backends.cuda.api.runtime.CUDARuntimeError: a status and its message."""

    def __init__(self, status: int) -> None:
        self.status = status
        super().__init__(_ERRORS.get(status, f"cudaError {status}"))


def getDeviceCount() -> int:
    return _stand_in.DEVICE_COUNT


def runtimeGetVersion() -> int:
    return 12080  # the CUDA runtime version the stand-in stands for (12.8)


def driverGetVersion() -> int:
    return 12080


def getDeviceProperties(device: int) -> dict[str, Any]:
    if not 0 <= device < _stand_in.DEVICE_COUNT:
        raise CUDARuntimeError(101)
    return {"name": _stand_in.DEVICE_NAME.encode(), "totalGlobalMem": 0, "major": 0, "minor": 0}


def deviceSynchronize() -> None:
    _stand_in.host_sync("synchronize")


def __getattr__(name: str) -> Any:
    raise AttributeError(f"the CuPy stand-in does not implement cupy.cuda.runtime.{name}")
