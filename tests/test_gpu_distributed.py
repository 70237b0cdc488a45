"""Data-parallel training on a GPU: NCCL's all-reduce and fit with a communicator on CuPy, on one
rank (what a single-GPU machine allows; NCCL refuses two ranks on one device). Runs without
mpiexec: a lone process is an MPI job of one rank."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import requires_gpu

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[mpi]')")
pytestmark = [pytest.mark.gpu, requires_gpu]
ROOT = Path(__file__).resolve().parents[1]


def test_nccl_sums_a_device_buffer_and_one_rank_on_cupy_trains_as_one_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tests.mpi_jobs", "nccl", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    saved = np.load(tmp_path / "nccl-1-rank0.npz")
    np.testing.assert_array_equal(saved["summed"], np.arange(12, dtype=np.float32) - 5.5)
    names = [k.removeprefix("dp.") for k in saved.files if k.startswith("dp.")]
    assert names
    for name in names:
        np.testing.assert_allclose(saved[f"dp.{name}"], saved[f"alone.{name}"], rtol=1e-12, atol=1e-14)
