"""Shared pieces of the benchmarks: the reference networks, timing, the GEMM floor, machine facts, reports."""

from __future__ import annotations

import datetime
import itertools
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

import nnx
from backends import Backend

# (name, layer widths, batch size): the networks the targets name
REFERENCE_STEPS = [
    ("784-1024-1024-10", [784, 1024, 1024, 10], 256),
    ("784-1024-1024-10", [784, 1024, 1024, 10], 1024),
    ("784-256-256-10", [784, 256, 256, 10], 128),
]


# the GPU targets: the same network at a small and a large batch
GPU_STEPS = [
    ("784-1024-1024-10", [784, 1024, 1024, 10], 256),
    ("784-1024-1024-10", [784, 1024, 1024, 10], 8192),
]


def mlp(widths: list[int], backend: Any = "numpy", dtype: str = "float32", seed: int = 0) -> nnx.Sequential:
    layers: list[nnx.Layer] = []
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        layers.append(nnx.Dense(a, b))
        if i < len(widths) - 2:
            layers.append(nnx.ReLU())
    return nnx.Sequential(*layers, backend=backend, seed=seed, dtype=dtype)


def step_flops(widths: list[int], batch: int) -> int:
    """FLOPs of the matrix products of one step: X·W and Xᵀ·dY per layer, dY·Wᵀ for all but the first."""
    total = 0
    for i, (a, b) in enumerate(itertools.pairwise(widths)):
        total += 2 * batch * a * b * (2 if i == 0 else 3)
    return total


class NnxStep:
    """One nnx training step (forward, fused loss, backward, SGD) on device-resident data."""

    def __init__(self, widths: list[int], batch: int, backend: Any = "numpy", dtype: str = "float32") -> None:
        rng = np.random.default_rng(0)
        self.model = mlp(widths, backend, dtype)
        be = self.model.backend
        self.x = be.asarray(rng.standard_normal((batch, widths[0])).astype(dtype))
        self.y = be.asarray(rng.integers(0, widths[-1], batch))
        self.loss, self.opt = nnx.SparseCategoricalCrossentropy(), nnx.SGD(1e-3)

    def __call__(self) -> None:
        nnx.train_step(self.model, self.x, self.y, self.loss, self.opt)


class GemmFloor:
    """Only the matrix products that a step needs, into preallocated outputs."""

    def __init__(self, widths: list[int], batch: int, backend: Backend, dtype: str = "float32") -> None:
        rng = np.random.default_rng(0)
        xp = backend.xp
        self.matmul = backend.matmul
        self.calls = []
        for i, (a, b) in enumerate(itertools.pairwise(widths)):
            x = backend.asarray(rng.standard_normal((batch, a)).astype(dtype))
            w = backend.asarray(rng.standard_normal((a, b)).astype(dtype))
            dy = backend.asarray(rng.standard_normal((batch, b)).astype(dtype))
            self.calls.append((x, w, xp.empty((batch, b), dtype)))  # X·W
            self.calls.append((x.T, dy, xp.empty((a, b), dtype)))  # Xᵀ·dY
            if i:
                self.calls.append((dy, w.T, xp.empty((batch, a), dtype)))  # dY·Wᵀ

    def __call__(self) -> None:
        for a, b, out in self.calls:
            self.matmul(a, b, out)


def measure(fn: Callable[[], None], sync: Callable[[], None], seconds: float = 1.0, warmup: int = 3) -> list[float]:
    """Per-call times (s) of fn, synchronising inside each timed call, for about ``seconds``."""
    for _ in range(warmup):
        fn()
    sync()
    times: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return times


def interleaved(
    fns: dict[str, Callable[[], None]], sync: Callable[[], None], rounds: int = 7, seconds: float = 0.3
) -> dict[str, dict[str, float]]:
    """Median and spread of each fn, measured round-robin so that machine noise hits all alike."""
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            samples[name].append(statistics.median(measure(fn, sync, seconds)))
    return {name: {"median": statistics.median(s), "min": min(s), "max": max(s)} for name, s in samples.items()}


def machine() -> dict[str, Any]:
    """CPU model, cores, BLAS and its kernel, library versions, the OpenBLAS settings and the date."""
    info: dict[str, Any] = {
        "date": datetime.date.today().isoformat(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "cores": os.cpu_count(),
    }
    try:
        with open("/proc/cpuinfo") as f:
            info["cpu"] = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        info["cpu"] = platform.processor() or "unknown"
    try:
        from threadpoolctl import threadpool_info

        blas = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        info["blas"] = ", ".join(
            f"{p['internal_api']} {p['version']} ({p.get('architecture')}, {p['num_threads']} threads)" for p in blas
        )
    except ImportError:
        info["blas"] = "unknown (install threadpoolctl)"
    info["env"] = {k: os.environ.get(k, "unset") for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")}
    from backends.blas import forced_kernel_warning

    warning = forced_kernel_warning()
    if warning:
        info["WARNING"] = warning + " (a slower BLAS: compare only runs under the same setting)"
    from backends import get_backend

    info["nnx CPU kernels"] = get_backend("numpy").kernel_status()
    return info


def report_header(title: str, info: dict[str, Any], command: str, note: str = "") -> list[str]:
    """The first lines of a markdown report: the title with the date, the machine (``info`` from
    machine()) and the command that measured it, followed by ``note``."""
    return [
        f"# {title}, {info['date']}",
        "",
        "Machine: " + "; ".join(f"{k} {v}" for k, v in info.items() if k != "date"),
        "",
        f"Command: `{command}`" + (f" {note}" if note else ""),
        "",
    ]


def write_report(lines: list[str], folder: str | Path, name: str) -> Path:
    """Print the report's lines and write them to folder/name (the folder made if missing); returns the path."""
    text = "\n".join(lines) + "\n"
    print(text)
    path = Path(folder) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
