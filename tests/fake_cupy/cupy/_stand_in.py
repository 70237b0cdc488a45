"""What the CuPy stand-in counts, for the tests that assert on it: host synchronisations (a device
value read on the host, or a wait for the stream) and kernel launches. Not part of CuPy's API."""

from __future__ import annotations

from collections import Counter

IS_STAND_IN = True
DEVICE_NAME = "CuPy stand-in on the CPU (tests/fake_cupy: NumPy arrays, kernels compiled with g++; no GPU)"
DEVICE_COUNT = 2  # two devices, so that two ranks of an NCCL job each have their own

host_syncs: Counter[str] = Counter()  # kind ("asnumpy", "get", "float", "synchronize", ...) -> count
launches: Counter[str] = Counter()  # kernel name -> launches


def host_sync(kind: str) -> None:
    host_syncs[kind] += 1


def reset() -> None:
    host_syncs.clear()
    launches.clear()
