"""Data-parallel training on a GPU: NCCL's all-reduce and fit with a communicator on CuPy. One rank
runs anywhere a GPU does (without mpiexec: a lone process is an MPI job of one rank); two ranks
need two devices (NCCL refuses two ranks on one), which the CuPy stand-in provides."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import requires_gpu
from tests.stand_in import STAND_IN
from tests.test_distributed import MPIEXEC

pytest.importorskip("mpi4py", reason="mpi4py is not installed (pip install '.[mpi]')")
pytestmark = [pytest.mark.gpu, requires_gpu]
ROOT = Path(__file__).resolve().parents[1]


def check_ranks(folder: Path, job: str, ranks: int) -> None:
    """Every rank summed the buffer over the ranks, and trained to the weights of one process."""
    for rank in range(ranks):
        saved = np.load(folder / f"{job}-{ranks}-rank{rank}.npz")
        np.testing.assert_array_equal(saved["summed"], ranks * (np.arange(12, dtype=np.float32) - 5.5))
        names = [k.removeprefix("dp.") for k in saved.files if k.startswith("dp.")]
        assert names
        for name in names:  # float64 models: the ranks' partial sums differ from one sum by rounding only
            np.testing.assert_allclose(saved[f"dp.{name}"], saved[f"alone.{name}"], rtol=1e-9, atol=1e-12)


def test_nccl_sums_a_device_buffer_and_one_rank_on_cupy_trains_as_one_process(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tests.mpi_jobs", "nccl", str(tmp_path)], cwd=ROOT,
                            capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    check_ranks(tmp_path, "nccl", 1)


@pytest.mark.mpi
@pytest.mark.skipif(not STAND_IN, reason="two ranks need two GPUs; the CuPy stand-in (NNX_FAKE_GPU=1) has them")
@pytest.mark.skipif(not Path(MPIEXEC).exists(), reason="no mpiexec for the 2-rank tests: pip install -e '.[test,mpi]'")
@pytest.mark.parametrize("optimizer", ["sgd", "momentum"])  # the weights all-reduced; the gradients
def test_two_ranks_on_two_devices_all_reduce_through_nccl_and_train_as_one_process(tmp_path, optimizer):
    job = f"nccl-{optimizer}"
    result = subprocess.run([MPIEXEC, "-n", "2", sys.executable, "-m", "tests.mpi_jobs", job, str(tmp_path)],
                            cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr
    check_ranks(tmp_path, job, 2)
