"""What the CuPy backend decides on the host, tested without a GPU or CuPy: the availability probe
(with a stand-in for CuPy), the one-way imports of the GPU modules and the check of the fused loss's
arguments before a launch. What runs on the device is in tests/test_gpu_kernels.py."""

from __future__ import annotations

import ast
import contextlib
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from backends import BackendUnavailable, cupy_backend, get_backend
from backends.cuda_sources import check_loss_arguments

ROOT = Path(__file__).parents[1]


class FakeCudaRuntimeError(Exception):
    """Like cupy_backends.cuda.api.runtime.CUDARuntimeError: a message and a status code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def fake_cupy(device_count=1, kernel_error=None, product_offset=0.0, calls=None):
    """A stand-in for the cupy module on NumPy: a device count (or the error getDeviceCount raises),
    an ElementwiseKernel that fails with ``kernel_error``, and a product off by ``product_offset``."""

    def get_device_count():
        if calls is not None:
            calls.append("getDeviceCount")
        if isinstance(device_count, Exception):
            raise device_count
        return device_count

    def elementwise_kernel(in_params, out_params, operation, name):
        if kernel_error is not None:
            raise kernel_error
        return lambda x: x + 1

    class Product(np.ndarray):
        def __matmul__(self, other):
            return np.asarray(self) @ np.asarray(other) + product_offset

    return SimpleNamespace(
        cuda=SimpleNamespace(runtime=SimpleNamespace(getDeviceCount=get_device_count)),
        asarray=lambda host: np.asarray(host).view(Product),
        asnumpy=np.asarray,
        ElementwiseKernel=elementwise_kernel,
    )


@pytest.fixture
def fresh_probe():
    cupy_backend.cupy_backend.cache_clear()
    yield
    cupy_backend.cupy_backend.cache_clear()


@pytest.mark.parametrize(
    "cupy, message",
    [
        (
            fake_cupy(FakeCudaRuntimeError(100, "cudaErrorNoDevice: no CUDA-capable device is detected")),
            "needs a CUDA device; none is visible .cudaErrorNoDevice",
        ),
        (
            fake_cupy(FakeCudaRuntimeError(35, "cudaErrorInsufficientDriver: CUDA driver version is insufficient")),
            "needs an NVIDIA driver: cudaErrorInsufficientDriver",
        ),
        (fake_cupy(0), "needs a CUDA device; none is visible"),
        (
            fake_cupy(kernel_error=RuntimeError("Failed to find CUDA headers. Please install CUDA toolkit headers")),
            "cannot compile or run on the device: RuntimeError: Failed to find CUDA headers",
        ),
        (fake_cupy(product_offset=1.0), r"wrong 2×2 product: \[\[11.0, 14.0\]"),
    ],
    ids=["no-device", "old-driver", "zero-devices", "no-headers", "wrong-product"],
)
def test_the_probe_turns_each_failure_into_backend_unavailable_with_the_reason(monkeypatch, fresh_probe, cupy, message):
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    with pytest.raises(BackendUnavailable, match=message):
        get_backend("cupy")
    assert get_backend("auto").name == "numpy"


def test_the_probe_passes_a_cupy_that_compiles_runs_and_multiplies():
    cupy_backend.probe(fake_cupy())


def test_the_probe_runs_once_per_process_even_when_it_fails(monkeypatch, fresh_probe):
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "cupy", fake_cupy(0, calls=calls))
    for name in ("cupy", "auto", "cupy"):
        with contextlib.suppress(BackendUnavailable):
            get_backend(name)
    assert calls == ["getDeviceCount"]


def _imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module or "")
    return names


def test_the_gpu_modules_import_one_way():
    """cupy_backend → (lazily) cupy_kernels → cuda_sources, contract; cuda_sources never imports CuPy."""
    backend = _imports(ROOT / "backends" / "cupy_backend.py", top_level_only=True)
    kernels = _imports(ROOT / "backends" / "cupy_kernels.py", top_level_only=False)
    sources = _imports(ROOT / "backends" / "cuda_sources.py", top_level_only=False)
    assert not any(name.startswith(("cupy", "backends.cupy")) for name in backend)
    assert "backends.cupy_backend" not in kernels and "backends.cuda_sources" in kernels
    assert not any(name.startswith("cupy") or name == "backends.cupy_kernels" for name in sources)
    code = "import sys, backends.cuda_sources, backends.cupy_backend; assert 'cupy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


GOOD = {
    "logits": np.zeros((4, 5), np.float32),
    "labels": np.zeros(4, np.int64),
    "dlogits": np.empty((4, 5), np.float32),
    "row_loss": np.empty(4, np.float64),
}
BAD = {  # id: (argument, bad value, error, message)
    "logits-1d": ("logits", np.zeros(5, np.float32), ValueError, r"logits must be \(N, C\) .* got shape \(5,\)"),
    "logits-empty": ("logits", np.zeros((0, 5), np.float32), ValueError, r"got shape \(0, 5\)"),
    "logits-dtype": ("logits", np.zeros((4, 5), np.float16), TypeError, "float32 or float64; got float16"),
    "labels-shape": ("labels", np.zeros(3, np.int64), ValueError, r"labels must be \(4,\) .* got shape \(3,\)"),
    "labels-dtype": ("labels", np.zeros(4), TypeError, "labels must be integers; got float64"),
    "dlogits-dtype": ("dlogits", np.empty((4, 5)), TypeError, "dlogits must be float32 like logits; got float64"),
    "dlogits-shape": ("dlogits", np.empty((4, 4), np.float32), ValueError, r"dlogits must be \(4, 5\) .* \(4, 4\)"),
    "dlogits-view": ("dlogits", np.empty((5, 4), np.float32).T, ValueError, "dlogits must be C-contiguous"),
    "row-loss-shape": ("row_loss", np.empty(2), ValueError, r"row_loss'\] must be .* \(4,\).*got float64 \(2,\)"),
    "row-loss-dtype": ("row_loss", np.empty(4, np.float32), ValueError, "got float32"),
}  # fmt: skip


@pytest.mark.parametrize("argument, value, error, message", BAD.values(), ids=BAD.keys())
def test_the_loss_kernel_arguments_are_checked_on_the_host_naming_the_argument(argument, value, error, message):
    check_loss_arguments(**GOOD)  # the arrays of a good call pass
    with pytest.raises(error, match=message):
        check_loss_arguments(**{**GOOD, argument: value})
